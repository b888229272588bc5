"""A fake Slack Socket Mode gateway: the WebSocket side of Slack, on loopback.

What Slack does (https://docs.slack.dev/apis/events-api/using-socket-mode/), and so what this does:
- `apps.connections.open` (on the SlackFake's Web API) takes the app-level token (`xapp-`; a bot
  token gets `not_allowed_token_type`) and answers `{"ok": true, "url": "ws://.../link/?ticket=..."}`.
  Each ticket opens one connection, once; a reused or unknown ticket is refused at the handshake.
- On a new connection the gateway sends `{"type": "hello", "num_connections": N, ...}`.
- Envelopes carry `slash_commands`, `interactive` or `events_api` payloads with an `envelope_id`;
  the app acks with `{"envelope_id": ...}` plus, where `accepts_response_payload` is true
  (slash commands, view submissions, options), a `payload` (e.g. `response_action: errors`).
  A payload on an envelope that accepts none is recorded in `problems`.
- Slack spreads envelopes over every open connection of the app (round robin here).
- `disconnect` frames (`refresh_requested`, `link_disabled`, `warning`) ask the app to reconnect;
  for `refresh_requested` and `link_disabled` the old connection is closed once the app has a newer one
  (or after `grace` seconds). Pings are answered with pongs. Client frames must be masked (RFC 6455 5.1).

Failure switches: `outage()` makes `apps.connections.open` fail (HTTP 500 by default) until
`outage(False)`; `refuse_handshakes` resets every new WebSocket; `drop(how="rst"|"fin")` ends a
connection abruptly without a close frame, by TCP reset or by an orderly FIN; `silence()` keeps it open
but stops answering (no pongs).

    gateway = SocketModeGateway(slack_fake).start()     # slack_fake now answers apps.connections.open
    ...start the app with SLACK_APP_TOKEN=gateway.app_token...
    gateway.wait_for_connections(1)
    ack = gateway.send_envelope("slash_commands", {"command": "/ops", "text": "help", ...})
    ack.payload, ack.elapsed                            # what the app put in its ack, seconds to ack
    gateway.drop("fin"); gateway.wait_for_connections(1, opened_after=...)

`SocketModeSender` (tests/fakes/slack/socket_sender.py) builds the same payloads as SlackSender and
sends them as envelopes, so a test can run over either transport.
"""
from __future__ import annotations

import base64
import hashlib
import itertools
import json
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qs, urlsplit

from .common import APP_ID, Json

APP_TOKEN = "xapp-1-A0APP-1-testsocketmodetoken"
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DISCONNECT_REASONS = ("refresh_requested", "link_disabled", "warning")
# What Slack sets per envelope type: only these may carry a response payload in their ack.
ACCEPTS_PAYLOAD = {"slash_commands": True, "events_api": False}


class AckTimeout(AssertionError):
    """The app did not ack an envelope in time."""


@dataclass
class Ack:
    """The app's answer to one envelope."""

    envelope_id: str
    payload: Optional[Json]
    connection: int
    elapsed: float  # seconds from sending the envelope to receiving the ack
    raw: Json = field(default_factory=dict)


class Connection:
    """One WebSocket the app holds. Its reader thread owns the socket; other threads only send."""

    def __init__(self, gateway: "SocketModeGateway", number: int, sock: socket.socket, ticket: str):
        self.gateway, self.number, self.sock, self.ticket = gateway, number, sock, ticket
        self.opened_at = time.monotonic()
        self.closed_at: Optional[float] = None
        self.close_reason = ""
        self.disconnect_sent: Optional[str] = None
        self._send_lock = threading.Lock()
        self._pending_end: Optional[str] = None  # "rst" / "fin" / "close": done by the reader
        self.silent = False  # see SocketModeGateway.silence()
        self._ended = threading.Event()
        self._buffer = b""

    @property
    def open(self) -> bool:
        return self.closed_at is None

    def __repr__(self) -> str:
        state = "open" if self.open else f"closed ({self.close_reason})"
        return f"<connection {self.number} {state}>"

    # -- sending (any thread) ----------------------------------------------------------------------

    def send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([n])
        elif n < 1 << 16:
            header += bytes([126]) + struct.pack("!H", n)
        else:
            header += bytes([127]) + struct.pack("!Q", n)
        with self._send_lock:
            if not self.open:
                raise ConnectionError(f"connection {self.number} is closed")
            self.sock.sendall(header + payload)

    def send_json(self, message: Json) -> None:
        self.send_frame(OP_TEXT, json.dumps(message).encode())

    def end(self, how: str, timeout: float = 5.0) -> None:
        """Ask the reader to end the connection ("rst", "fin" or "close") and wait until it has."""
        self._pending_end = how
        if not self._ended.wait(timeout):
            raise AssertionError(f"connection {self.number} did not end ({how}) within {timeout}s")

    # -- the reader thread ---------------------------------------------------------------------------

    def run(self) -> None:
        self.sock.settimeout(0.02)  # the reader polls so it can end the socket itself (see end())
        try:
            while self.open:
                if self._pending_end:
                    self._finish(self._pending_end)
                    return
                if self.silent:
                    time.sleep(0.02)  # the reader's poll interval, while it plays dead
                    continue
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    continue
                except OSError as exc:
                    self._finish("lost", f"client reset ({exc.__class__.__name__})")
                    return
                if not chunk:
                    self._finish("lost", "client closed the TCP connection without a close frame")
                    return
                self._buffer += chunk
                while self.open and self._read_frame():
                    pass
        finally:
            self._ended.set()

    def _read_frame(self) -> bool:
        buf = self._buffer
        if len(buf) < 2:
            return False
        opcode, masked, n = buf[0] & 0x0F, buf[1] & 0x80, buf[1] & 0x7F
        at = 2
        if n == 126:
            if len(buf) < 4:
                return False
            n, at = struct.unpack("!H", buf[2:4])[0], 4
        elif n == 127:
            if len(buf) < 10:
                return False
            n, at = struct.unpack("!Q", buf[2:10])[0], 10
        if not masked:
            self.gateway.problems.append(f"connection {self.number}: unmasked client frame (RFC 6455 5.1)")
            self._finish("close", "protocol error", code=1002)
            return False
        if len(buf) < at + 4 + n:
            return False
        mask = buf[at:at + 4]
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(buf[at + 4:at + 4 + n]))
        self._buffer = buf[at + 4 + n:]
        if opcode == OP_PING:
            self.send_frame(OP_PONG, data)
        elif opcode == OP_CLOSE:
            code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
            self._finish("close", f"client closed (code {code})", code=code)
        elif opcode == OP_TEXT:
            self.gateway._on_text(self, data.decode("utf-8", errors="replace"))
        return True

    def _finish(self, how: str, reason: str = "", code: int = 1000) -> None:
        with self._send_lock:
            if self.closed_at is not None:
                return
            try:
                if how == "rst":
                    # SO_LINGER with a zero timeout: close() sends RST instead of FIN (socket(7)).
                    self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif how == "fin":
                    self.sock.shutdown(socket.SHUT_RDWR)
                elif how == "close":
                    self.sock.sendall(bytes([0x80 | OP_CLOSE, 2]) + struct.pack("!H", code))
            except OSError:
                pass
            self.sock.close()
            self.closed_at = time.monotonic()
            self.close_reason = reason or {"rst": "gateway reset (RST)", "fin": "gateway hung up (FIN)",
                                           "close": "gateway closed"}.get(how, how)
        self.gateway._on_closed(self)


class SocketModeGateway:
    """Slack's Socket Mode side for one app, on 127.0.0.1:<free port>. See the module docstring."""

    def __init__(self, slack_fake, app_token: str = APP_TOKEN, *, grace: float = 10.0):
        self.slack = slack_fake
        self.app_token = app_token
        self.grace = grace
        self.problems: List[str] = []
        self.acks: List[Ack] = []
        self.tickets_issued = 0
        self.refuse_handshakes = False
        self._outage: Optional[tuple] = None
        self._tickets: Dict[str, bool] = {}  # ticket -> used
        self._connections: List[Connection] = []
        self._waiting: Dict[str, tuple] = {}  # envelope_id -> (event, holder, sent_at, accepts_payload)
        self._numbers = itertools.count(1)
        self._turn = itertools.count()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._listener: Optional[socket.socket] = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> "SocketModeGateway":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        listener.settimeout(0.05)
        self._listener, self.port = listener, listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, name="socket-mode-gateway", daemon=True).start()
        self.slack.socket_mode = self
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        for conn in self.connections():
            conn.end("close")
        if getattr(self.slack, "socket_mode", None) is self:
            self.slack.socket_mode = None

    # -- apps.connections.open (called by SlackFake) ----------------------------------------------------

    def outage(self, on: bool = True, *, status: int = 500, error: str = "internal_error") -> None:
        """While on, `apps.connections.open` answers `status` with `{"ok": false, "error": error}`."""
        with self._lock:
            self._outage = (status, error) if on else None

    def connections_open(self, token: Optional[str]) -> tuple:
        """The Web API method: (HTTP status, body)."""
        if not token:
            return 200, {"ok": False, "error": "not_authed"}
        if not token.startswith("xapp-"):
            return 200, {"ok": False, "error": "not_allowed_token_type"}
        if token != self.app_token:
            return 200, {"ok": False, "error": "invalid_auth"}
        with self._lock:
            if self._outage is not None:
                status, error = self._outage
                return status, {"ok": False, "error": error}
            ticket = uuid.uuid4().hex
            self._tickets[ticket] = False
            self.tickets_issued += 1
        return 200, {"ok": True, "url": f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={APP_ID}"}

    # -- connections ---------------------------------------------------------------------------------------

    def connections(self, include_closed: bool = False) -> List[Connection]:
        with self._lock:
            return [c for c in self._connections if include_closed or c.open]

    def wait_for_connections(self, count: int = 1, *, opened_after: Optional[float] = None,
                             timeout: float = 20.0) -> List[Connection]:
        """Wait until exactly `count` connections are open (all opened after the monotonic time
        `opened_after`, if given); return them, oldest first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                open_now = [c for c in self._connections if c.open]
                fresh = [c for c in open_now if opened_after is None or c.opened_at > opened_after]
                if len(open_now) == count and len(fresh) == count:
                    return open_now
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"wanted {count} open Socket Mode connections"
                                         f"{' opened after the mark' if opened_after else ''} within {timeout}s;"
                                         f" have {self._connections}; problems {self.problems}")
                self._changed.wait(min(left, 0.1))

    def disconnect(self, reason: str = "refresh_requested", connection: Optional[Connection] = None,
                   grace: Optional[float] = None) -> Connection:
        """Send a `disconnect` frame. For refresh_requested / link_disabled the connection is closed
        once the app has opened a newer one, or after `grace` seconds."""
        if reason not in DISCONNECT_REASONS:
            raise ValueError(f"Slack sends no disconnect reason {reason!r}")
        conn = connection or self._only_connection()
        conn.disconnect_sent = reason
        conn.send_json({"type": "disconnect", "reason": reason,
                        "debug_info": {"host": f"applink-fake-{conn.number}"}})
        if reason != "warning":
            grace = self.grace if grace is None else grace
            threading.Thread(target=self._close_when_replaced, args=(conn, grace), daemon=True).start()
        return conn

    def drop(self, how: str = "rst", connection: Optional[Connection] = None) -> Connection:
        """End a connection abruptly, without a WebSocket close frame: "rst" or "fin"."""
        if how not in ("rst", "fin"):
            raise ValueError("how is 'rst' or 'fin'")
        conn = connection or self._only_connection()
        conn.end(how)
        return conn

    def silence(self, connection: Optional[Connection] = None) -> Connection:
        """Keep the TCP connection open but stop reading it and answering pings (a half-dead link:
        no FIN, no RST, as behind a stalled NAT or proxy)."""
        conn = connection or self._only_connection()
        conn.silent = True
        return conn

    def _only_connection(self) -> Connection:
        open_now = self.connections()
        if len(open_now) != 1:
            raise AssertionError(f"expected one open Socket Mode connection, have {open_now}")
        return open_now[0]

    def _close_when_replaced(self, conn: Connection, grace: float) -> None:
        deadline = time.monotonic() + grace
        with self._changed:
            while conn.open and time.monotonic() < deadline:
                if any(c.open and c.opened_at > conn.opened_at for c in self._connections):
                    break
                self._changed.wait(0.05)
        if conn.open:
            conn.end("close")

    # -- envelopes -------------------------------------------------------------------------------------------

    def send_envelope(self, type: str, payload: Json, *, connection: Optional[Connection] = None,  # noqa: A002
                      accepts_response_payload: Optional[bool] = None, retry_attempt: int = 0,
                      retry_reason: str = "", envelope_id: Optional[str] = None, timeout: float = 10.0) -> Ack:
        """Send one envelope and wait for its ack; raise AckTimeout if none comes within `timeout`."""
        if type not in ("slash_commands", "interactive", "events_api"):
            raise ValueError(f"unknown envelope type {type!r}")
        if accepts_response_payload is None:
            accepts_response_payload = ACCEPTS_PAYLOAD.get(type, payload.get("type") in (
                "view_submission", "block_suggestion"))
        envelope_id = envelope_id or str(uuid.uuid4())
        envelope = {"envelope_id": envelope_id, "type": type, "payload": payload,
                    "accepts_response_payload": accepts_response_payload}
        if type == "events_api":
            envelope.update({"retry_attempt": retry_attempt, "retry_reason": retry_reason})
        conn = connection or self._next_connection()
        done, holder = threading.Event(), []
        sent_at = time.monotonic()
        with self._lock:
            self._waiting[envelope_id] = (done, holder, sent_at, accepts_response_payload)
        conn.send_json(envelope)
        if not done.wait(timeout):
            with self._lock:
                self._waiting.pop(envelope_id, None)
            raise AckTimeout(f"no ack for {type} envelope {envelope_id} within {timeout}s on {conn}")
        return holder[0]

    def _next_connection(self) -> Connection:
        open_now = self.connections()
        if not open_now:
            raise AssertionError("no open Socket Mode connection to send an envelope on")
        return open_now[next(self._turn) % len(open_now)]

    def _on_text(self, conn: Connection, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            self.problems.append(f"connection {conn.number}: a text frame that is not JSON: {text[:200]!r}")
            return
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        with self._lock:
            waiting = self._waiting.pop(envelope_id, None) if envelope_id else None
        if waiting is None:
            self.problems.append(f"connection {conn.number}: a message that acks no pending envelope: {text[:200]!r}")
            return
        done, holder, sent_at, accepts_payload = waiting
        payload = message.get("payload")
        if payload and not accepts_payload:
            self.problems.append(f"envelope {envelope_id}: ack carries a payload the envelope does not accept")
        ack = Ack(envelope_id, payload, conn.number, time.monotonic() - sent_at, message)
        with self._lock:
            self.acks.append(ack)
        holder.append(ack)
        done.set()

    # -- accepting ----------------------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while self._listener is not None:
            try:
                sock, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._handshake, args=(sock,), name="socket-mode-conn", daemon=True).start()

    def _handshake(self, sock: socket.socket) -> None:
        if self.refuse_handshakes:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            return
        sock.settimeout(5)
        request = b""
        try:
            while b"\r\n\r\n" not in request and len(request) < 16384:
                chunk = sock.recv(4096)
                if not chunk:
                    sock.close()
                    return
                request += chunk
        except OSError:
            sock.close()
            return
        head = request.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        parts = head[0].split(" ")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
        target = urlsplit(parts[1] if len(parts) > 1 else "")
        ticket = (parse_qs(target.query).get("ticket") or [""])[0]
        with self._lock:
            known = self._tickets.get(ticket)
            if known is False:
                self._tickets[ticket] = True
        problem = None
        if parts[0] != "GET" or target.path.rstrip("/") != "/link":
            problem = "404 Not Found"
        elif headers.get("upgrade", "").lower() != "websocket" or "sec-websocket-key" not in headers \
                or headers.get("sec-websocket-version") != "13":
            problem = "400 Bad Request"
        elif known is None or known is True:
            self.problems.append(f"handshake with {'a used' if known else 'an unknown'} ticket")
            problem = "401 Unauthorized"
        if problem:
            sock.sendall(f"HTTP/1.1 {problem}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            sock.close()
            return
        accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + _GUID).encode()).digest()).decode()
        sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
        conn = Connection(self, next(self._numbers), sock, ticket)
        conn._buffer = request.split(b"\r\n\r\n", 1)[1]
        # hello goes out before the connection is listed, so no envelope can overtake it
        conn.send_json({"type": "hello", "num_connections": len(self.connections()) + 1,
                        "debug_info": {"host": f"applink-fake-{conn.number}", "build_number": 1,
                                       "approximate_connection_time": 18060},
                        "connection_info": {"app_id": APP_ID}})
        with self._changed:
            self._connections.append(conn)
            self._changed.notify_all()
        conn.run()

    def _on_closed(self, conn: Connection) -> None:
        with self._changed:
            self._changed.notify_all()
