"""An authenticating query layer in front of the real Prometheus, the way a fleet endpoint looks to deckhand.

Thanos Query, Mimir and VictoriaMetrics are usually reached through a gateway that wants a bearer
token, and Mimir/Cortex want the tenant in `X-Scope-OrgID`. This proxy, on a free loopback port,
refuses exactly what they refuse and forwards the rest to a real Prometheus:

* no or a wrong `Authorization: Bearer <token>` -> 401 (the body never repeats what was sent);
* a missing or other tenant header -> 401 `no org id` (Mimir's answer without a tenant);
* `/api/v1/*` is forwarded (GET query string or POST form, as Prometheus accepts both); everything
  else is 404, as on a gateway that only exposes the query API.

It records every request (method, path, the PromQL, whether it was authenticated) and can make
answers partial the way Thanos does: `gateway.warnings = ["..."]` adds a `warnings` list to every
successful query answer (Thanos' partial response), `gateway.partial = True` sets VictoriaMetrics'
`isPartial`. The data itself stays the real Prometheus's answer. `token=None` asks for no token (a plain
Prometheus); `hold` runs before a query is forwarded and answers 503 when it returns False (a test
can make queries wait for each other).

    with QueryGateway(prometheus.url, token="t0ken", tenant="ops") as gateway:
        gateway.url  # http://127.0.0.1:<port>
"""
from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from typing import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: str | None   # the PromQL, when it was a query
    authorized: bool


class QueryGateway:
    def __init__(self, upstream: str, *, token: str | None, tenant: str | None = None,
                 tenant_header: str = "X-Scope-OrgID", hold: Callable[[], bool] | None = None):
        self.upstream = urlsplit(upstream)
        self.token, self.tenant, self.tenant_header, self.hold = token, tenant, tenant_header, hold
        self.warnings: list[str] = []
        self.partial = False
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "QueryGateway":
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server's naming
                gateway._handle(self, b"")

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                gateway._handle(self, self.rfile.read(length) if length else b"")

            def log_message(self, *args):  # quiet: tests print the recorded requests instead
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "QueryGateway":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what it saw -------------------------------------------------------------------------------
    def queries(self, authorized: bool = True) -> list[str]:
        with self._lock:
            return [s.query for s in self.requests if s.query is not None and s.authorized == authorized]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- the door ----------------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        split = urlsplit(handler.path)
        form = parse_qs(split.query)
        if handler.command == "POST" and "form-urlencoded" in (handler.headers.get("Content-Type") or ""):
            form.update(parse_qs(body.decode("utf-8", "replace")))
        promql = (form.get("query") or [None])[0]
        authorized = self.token is None or handler.headers.get("Authorization") == f"Bearer {self.token}"
        tenant_ok = self.tenant is None or handler.headers.get(self.tenant_header) == self.tenant
        with self._lock:
            self.requests.append(Seen(handler.command, split.path, promql, authorized and tenant_ok))
        if not authorized:
            return self._reply(handler, 401, b"Unauthorized\n", "text/plain",
                               {"WWW-Authenticate": 'Bearer realm="query"'})
        if not tenant_ok:
            return self._reply(handler, 401, b"no org id\n", "text/plain")
        if not split.path.startswith("/api/v1/"):
            return self._reply(handler, 404, b"404 page not found\n", "text/plain")
        if promql is not None and self.hold is not None and not self.hold():
            return self._reply(handler, 503, b"held query not released\n", "text/plain")
        status, content, kind = self._forward(handler, body)
        if status == 200 and promql is not None and (self.warnings or self.partial):
            answer = json.loads(content)
            if self.warnings:
                answer["warnings"] = list(self.warnings)
            if self.partial:
                answer["isPartial"] = True
            content = json.dumps(answer).encode()
        self._reply(handler, status, content, kind)

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, bytes, str]:
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        try:
            headers = {"Content-Type": handler.headers.get("Content-Type") or "application/octet-stream"}
            connection.request(handler.command, handler.path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.read(), response.getheader("Content-Type") or "application/json"
        finally:
            connection.close()

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, content: bytes, kind: str,
               headers: dict[str, str] | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(content)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(content)
