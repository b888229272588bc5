"""`KubeFake` itself (lifecycle, registry, failure injection; its Python API is seeding.py) and its HTTP plumbing."""
from __future__ import annotations

import collections
import json
import os
import socket
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import parse_qs, urlsplit

import yaml

from .common import JSON, _dumps
from .errors import ApiError, status_body
from .eviction import EvictionMixin
from .kubeconfig import write_kubeconfig
from .recording import SESSION_CALLS, Headers, RecordedRequest, _Rule
from .resources import BUILTIN_TYPES, SEED_NAMESPACES, ResourceType
from .deletion import _DeletionMixin
from .routing import _RoutingMixin
from .seeding import SeedingMixin
from .store import _Entry, _StoreMixin


# ------------------------------------------------------------------------------------------------
# The fake
# ------------------------------------------------------------------------------------------------
class KubeFake(SeedingMixin, _RoutingMixin, _StoreMixin, _DeletionMixin, EvictionMixin):
    """An in-memory Kubernetes API server on http://127.0.0.1:<free port>."""

    def __init__(self, *, seed_namespaces: bool = True, strict_namespaces: bool = True, token: str = "fake-token",
                 latency: float = 0.0):
        self.token = token
        # Creating through HTTP in a namespace that does not exist is a 404, as on a real cluster. Seeding
        # with add() is not checked: tests seed objects without their Namespace.
        self.strict_namespaces = strict_namespaces
        self._request_context = threading.local()  # fieldValidation and Warning headers of the current request
        self._gc_pending = False  # the garbage collector has work (see deletion.py)
        self._deleted_uids: set[str] = set()  # owners deleted through the API: their dependents are collected
        self.compacted_rv = 0  # continue tokens and watches from at or before this revision get 410 (compact())
        self.require_token = False  # True: requests without `Authorization: Bearer <token>` get 401
        self.latency = latency  # seconds added to every response (benchmarks)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._released = threading.Event()  # set by release_hangs(): requests held by hang() answer now
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._group_versions: dict[str, list[str]] = {}
        self._store: dict[tuple[str, str], dict[tuple[str, str], _Entry]] = {}
        self._rv = 0
        self._history: collections.deque = collections.deque(maxlen=20000)  # (rv, type, key, entry)
        self._requests: list[RecordedRequest] = []
        self._failures: list[_Rule] = []
        self._hangs: list[_Rule] = []
        self._hooks: list[Callable[[str, ResourceType, dict], None]] = []
        self.hook_errors: list[str] = []
        self._logs: dict[tuple[str, str, str | None], str] = {}
        self.deletions: list[dict] = []  # deletes through HTTP: apiVersion, kind, namespace, name, propagationPolicy
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        for rt in BUILTIN_TYPES:
            self._register(rt)
        if seed_namespaces:
            for ns in SEED_NAMESPACES:
                self.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns},
                          "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "KubeFake":
        if self._server is None:
            self._stopping.clear()
            self._server = _Server(("127.0.0.1", 0), _Handler, self)
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"kube-fake-{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        server.shutdown()
        server.server_close()
        with self._lock:
            conns, self._connections = list(self._connections), set()
        for conn in conns:  # idle keep-alive connections: make clients see a closed server
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> "KubeFake":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("KubeFake is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- registry -----------------------------------------------------------------------------
    def register_resource(self, group: str, version: str, plural: str, kind: str, namespaced: bool = True, *,
                          short_names: Iterable[str] = (), status: bool = False, scale: bool = False,
                          categories: Iterable[str] = (), custom: bool = True) -> ResourceType:
        """Serve another resource type (CRD-like by default: DELETE answers with the object)."""
        subs = {"status"} if status else set()
        if scale:
            subs.add("scale")
        rt = ResourceType(group=group, version=version, plural=plural, kind=kind, namespaced=namespaced,
                          singular=kind.lower(), short_names=tuple(short_names), categories=tuple(categories),
                          subresources=frozenset(subs), delete_returns_object=custom, custom=custom)
        self._register(rt)
        return rt

    def _register(self, rt: ResourceType) -> None:
        with self._lock:
            self._types[(rt.group, rt.version, rt.plural)] = rt
            versions = self._group_versions.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
            self._store.setdefault(rt.storage_key, {})

    def resource_types(self) -> list[ResourceType]:
        with self._lock:
            return list(self._types.values())

    def resource_type(self, kind_or_plural: str, api_version: str | None = None) -> ResourceType:
        """Find a type by kind, plural, singular, short name or `plural.group`; ValueError if unknown
        or ambiguous. Of several versions of one group the first registered (preferred) wins."""
        name = kind_or_plural
        group = version = None
        if api_version is not None:
            group, _, version = api_version.rpartition("/")
        elif "." in name:
            name, _, group = name.partition(".")
        lname = name.lower()
        with self._lock:
            found = [rt for rt in self._types.values()
                     if (group is None or rt.group == group) and (version is None or rt.version == version)
                     and (lname in (rt.plural, rt.singular, rt.kind.lower()) or lname in rt.short_names)]
        if not found:
            raise ValueError(f"no resource type {kind_or_plural!r}"
                             + (f" in {api_version!r}" if api_version else "")
                             + "; use register_resource() to serve it")
        keys = {rt.storage_key for rt in found}
        if len(keys) > 1:
            options = ", ".join(sorted(f"{rt.plural}.{rt.group}" if rt.group else rt.plural for rt in found))
            raise ValueError(f"{kind_or_plural!r} is ambiguous ({options}); pass api_version")
        return found[0]

    # -- requests, failures, hooks --------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received, in arrival order."""
        with self._lock:
            return list(self._requests)

    def writes(self) -> list[RecordedRequest]:
        """Non-GET requests in arrival order (injected failures included)."""
        return [r for r in self.requests if r.is_write]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def fail(self, method: str | None = None, path_contains: str | None = None, status: int = 500,
             times: int | None = 1, retry_after: float | int | None = None, body: Any = None,
             message: str | None = None) -> _Rule:
        """Answer the next `times` matching requests (None: all) with `status` and a Status body
        (or `body`: a dict for JSON, str/bytes sent raw). 429 carries `Retry-After` (default 1)."""
        if status == 429 and retry_after is None:
            retry_after = 1
        rule = _Rule(method, path_contains, times, status, retry_after, body, message)
        with self._lock:
            self._failures.append(rule)
        return rule

    def hang(self, path_contains: str | None = None, seconds: float = 30.0, method: str | None = None,
             times: int | None = 1) -> _Rule:
        """Delay matching requests by `seconds` before answering normally (client timeouts)."""
        rule = _Rule(method, path_contains, times, seconds=seconds)
        with self._lock:
            self._hangs.append(rule)
        return rule

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()
            self._hangs.clear()

    def release_hangs(self) -> None:
        """Let every request held by hang() answer now (normally), and stop holding new ones."""
        with self._lock:
            self._hangs.clear()
            released, self._released = self._released, threading.Event()
        released.set()

    def on_write(self, callback: Callable[[str, ResourceType, dict], None]) -> Callable:
        """Call `callback(verb, resource_type, obj)` after each successful write through HTTP, before
        the response is sent. verb: create, update, patch, delete, update_status, patch_status,
        update_scale, patch_scale, update_approval, evict. `obj` is a copy of the stored object (the
        deleted one for delete). Usable as a decorator."""
        with self._lock:
            self._hooks.append(callback)
        return callback

    def remove_on_write(self, callback: Callable) -> None:
        with self._lock:
            self._hooks.remove(callback)

    def check_hooks(self) -> None:
        """Raise if an on_write hook raised (the kube_fake fixture calls this at teardown)."""
        if self.hook_errors:
            raise AssertionError("an on_write hook of the Kubernetes fake raised:\n" + "\n".join(self.hook_errors))

    # -- kubeconfig ---------------------------------------------------------------------------
    def kubeconfig(self, path: str | os.PathLike, context: str = "fake", namespace: str = "default") -> str:
        return write_kubeconfig(path, {context: self}, namespace=namespace)


# ------------------------------------------------------------------------------------------------
# HTTP plumbing
# ------------------------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address, handler, fake: KubeFake):
        self.fake = fake
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-apiserver-fake"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.fake._lock:
            self.server.fake._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.fake._lock:
                self.server.fake._connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = lambda self: self._serve()  # noqa: E731

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        fake = self.server.fake
        method = self.command
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        raw = self._read_body()
        body: Any = None
        bad_body = None
        if raw:
            text = raw.decode("utf-8", "replace")
            try:
                if "yaml" in content_type:
                    body = yaml.safe_load(text)
                elif "protobuf" in content_type:
                    body, bad_body = text, (415, "protobuf is not supported by the fake; send JSON")
                else:
                    body = json.loads(text)
            except (ValueError, yaml.YAMLError) as exc:
                body, bad_body = text, (400, f"the body of the request could not be decoded: {exc}")
        record = RecordedRequest(method=method, path=url.path, query=query, content_type=content_type, body=body,
                                 headers=Headers(self.headers.items()), timestamp=time.time())
        if (self.headers.get("User-Agent") or "").startswith("deckhand/"):
            SESSION_CALLS.add((method, url.path, "watch" if query.get("watch") in ("1", "true") else ""))
        with fake._lock:
            fake._requests.append(record)
            hang = next((r for r in fake._hangs if r.matches(method, url.path)), None)
            if hang:
                hang.consume()
            failure = next((r for r in fake._failures if r.matches(method, url.path)), None)
            if failure:
                failure.consume()
        if fake.latency:
            fake._stopping.wait(fake.latency)
        if hang:
            released = fake._released
            deadline = time.monotonic() + hang.seconds
            while not (released.is_set() or fake._stopping.is_set()) and time.monotonic() < deadline:
                released.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        if fake._stopping.is_set():
            self.close_connection = True
            return
        if failure:
            record.injected = True
            record.status = failure.status
            headers = {}
            if failure.retry_after is not None:
                headers["Retry-After"] = str(failure.retry_after)
            if failure.body is None:
                details = {"retryAfterSeconds": int(failure.retry_after)} if failure.retry_after is not None else None
                payload = _dumps(status_body(failure.status, failure.message or f"injected failure ({failure.status})",
                                             details=details))
                ctype = JSON
            elif isinstance(failure.body, (bytes, str)):
                payload = failure.body.encode() if isinstance(failure.body, str) else failure.body
                ctype = "text/plain"
            else:
                payload, ctype = _dumps(failure.body), JSON
            self._respond(failure.status, ctype, payload, headers)
            return
        request = fake._request_context
        request.field_validation, request.warnings = query.get("fieldValidation"), []
        try:
            if fake.require_token and self.headers.get("Authorization") != f"Bearer {fake.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            if bad_body:
                raise ApiError(bad_body[0], bad_body[1])
            answer = fake._handle(self, method, url.path, query, content_type, body)
        except ApiError as exc:
            answer = (exc.code, JSON, _dumps(exc.status()))
            if exc.headers:
                record.status = exc.code
                self._respond(*answer, exc.headers)
                return
        except Exception:  # noqa: BLE001 - a fake bug must reach the test as a 500, not a hang
            answer = (500, JSON, _dumps(status_body(500, "fake kube-apiserver bug:\n" + traceback.format_exc())))
        if answer is None:  # a watch streamed its own response
            record.status = 200
            return
        record.status = answer[0]
        # Field validation `Warn`: one `Warning: 299 - "<text>"` header per problem (RFC 7234 warn-code 299).
        warnings = [("Warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"') for w in request.warnings]
        self._respond(*answer, warnings)

    def _respond(self, code: int, ctype: str, payload: bytes,
                 headers: Mapping[str, str] | list[tuple[str, str]] | None = None) -> None:
        lines = [f"HTTP/1.1 {code} {self.responses.get(code, ('',))[0]}", f"Content-Type: {ctype}",
                 f"Content-Length: {len(payload)}", "Cache-Control: no-cache, private",
                 f"Date: {self.date_time_string()}"]
        pairs = headers.items() if isinstance(headers, Mapping) else (headers or [])
        lines += [f"{k}: {v}" for k, v in pairs]
        if self.close_connection:
            lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.command != "HEAD":
            data += payload
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def start_stream(self, ctype: str) -> None:
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n"
                f"Cache-Control: no-cache, private\r\nDate: {self.date_time_string()}\r\n\r\n")
        self.wfile.write(head.encode("latin-1"))

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
