"""The Socket Mode link: one WebSocket to Slack, opened in the background, kept through Slack's bad minutes.

Slack's side (https://docs.slack.dev/apis/events-api/using-socket-mode/): `apps.connections.open`
with the app-level token returns a single-use WebSocket URL; Slack says `hello`, then sends envelopes
that must be acked within 3 seconds; it sends `disconnect` (refresh_requested, warning, link_disabled)
before it closes a connection, and it spreads envelopes over *every* open connection of the app.

What this promises:
- Starting never waits for Slack: `want(True)` returns at once and a background thread connects.
  A failed attempt is logged once, with its cause, and retried after a capped exponential backoff with
  jitter (1 s doubling to 30 s, each delay drawn from its upper half), so a fleet restarted during a
  Slack outage does not reconnect in lockstep. `problem()` says "connecting (attempt N, last error ...)"
  for /readyz until `hello` arrives.
- A connection that Slack asks to refresh is replaced before the old one is closed (no gap). A
  connection that dies without a close frame is replaced at once, then with backoff if that fails.
- Only the leader holds the connection (app.py calls `want()` from the lease): a standby's connection
  would receive its share of the envelopes.
- `stop()` closes the WebSocket first, so Slack sends nothing more here, and returns once it is closed.

The client is slack_sdk's websocket-client adapter, not the built-in one, because of how each notices an
abrupt drop (measured against tests/fakes/slack/socket_mode.py; bench/socket_reconnect.py): websocket-client
raises on a TCP reset and on a FIN (recv returns b"") at once, so we reconnect in well under a second;
the built-in client (slack_sdk 3.48.0) treats an empty recv as "no data", spins, and only notices a FIN when
pings go stale (60 s measured) and an RST at its next connection check (10 s with Bolt's defaults). Its own
reconnect logic is switched off here (`_LinkClient`): it reconnects with no backoff and would re-use a spent
ticket; this link decides when to connect.
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from typing import Callable, Optional

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.websocket_client import SocketModeClient

log = logging.getLogger("deckhand.socket_mode")
# The adapter logs every error it sees (often twice); this link logs each failure once, with its cause.
_library_log = logging.getLogger("deckhand.socket_mode.client")
_library_log.setLevel(logging.CRITICAL)


class _SaidByTheLink(logging.Filter):
    """websocket-client logs each drop ("... - goodbye") and each connect itself; the link logs both,
    with the cause, once. Other websocket-client messages (e.g. from the Kubernetes client) stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.endswith(" - goodbye") or message == "Websocket connected")


logging.getLogger("websocket").addFilter(_SaidByTheLink())

DISCONNECT_REASONS = ("refresh_requested", "warning", "link_disabled")
Listener = Callable[[SocketModeClient, SocketModeRequest], None]


class LinkError(Exception):
    """One failed attempt to connect; the message names the cause."""


class _LinkClient(SocketModeClient):
    """The websocket-client adapter with its own reconnecting switched off: the library calls
    connect_to_new_endpoint on `disconnect` frames and closes, and re-runs the old session (with its spent
    ticket) every 0.5 s; the link does both itself instead."""

    session_ended: threading.Event  # set by the link when this client's WebSocket session is over

    def connect_to_new_endpoint(self, force: bool = False) -> None:
        pass

    def _run_current_session(self) -> None:
        pass


class SocketModeLink:
    def __init__(self, app_token: str, api_url: str | None, listener: Listener, metrics, *,
                 ping_interval: float = 10.0, ping_timeout: float = 5.0, hello_timeout: float = 10.0,
                 backoff_base: float = 1.0, backoff_cap: float = 30.0, concurrency: int = 10,
                 rng: Callable[[], float] = random.random):
        self.app_token, self.listener, self.metrics = app_token, listener, metrics
        # Its own client without retry handlers: this link's backoff is the retry, and each failure is
        # logged once here (the bot's client retries 5xx twice, logging each).
        kwargs = {"base_url": api_url if api_url.endswith("/") else api_url + "/"} if api_url else {}
        self.web_client = WebClient(timeout=10, retry_handlers=[], **kwargs)
        self.ping_interval, self.ping_timeout, self.hello_timeout = ping_interval, ping_timeout, hello_timeout
        self.backoff_base, self.backoff_cap, self.concurrency, self.rng = backoff_base, backoff_cap, concurrency, rng
        self._cond = threading.Condition()
        self._wanted = False
        self._stopping = False
        self._client: Optional[_LinkClient] = None
        self._renew: Optional[str] = None  # why the current connection must be replaced
        self._attempt = 0  # failed attempts since the last connection
        self._last_error: Optional[str] = None
        self._connected_once = False
        self._thread: Optional[threading.Thread] = None

    # -- control ------------------------------------------------------------------------------------

    def start(self) -> "SocketModeLink":
        self._thread = threading.Thread(target=self._run, name="socket-mode", daemon=True)
        self._thread.start()
        return self

    def want(self, connected: bool) -> None:
        """Open (leader) or close (standby) the connection; returns at once."""
        with self._cond:
            if self._wanted != connected:
                log.info("Socket Mode: %s", "connecting to Slack" if connected else "closing: not the leader")
            self._wanted = connected
            self._cond.notify_all()

    def stop(self, timeout: float = 10.0) -> None:
        """Close the WebSocket (Slack then sends elsewhere) and end the background thread."""
        with self._cond:
            self._stopping, self._wanted = True, False
            client, self._client = self._client, None
            self._cond.notify_all()
        if client is not None:
            self._close(client)
            log.info("Socket Mode connection closed")
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def connected(self) -> bool:
        """A live connection (one being refreshed still counts: it is open until its successor is)."""
        with self._cond:
            return self._client is not None and self._renew != "dropped"

    def problem(self) -> Optional[str]:
        """What /readyz reports while this instance should be connected and is not; None otherwise."""
        with self._cond:
            if not self._wanted or (self._client is not None and self._renew != "dropped"):
                return None
            attempt = self._attempt + 1
            error = f", last error: {self._last_error}" if self._last_error else ""
            return f"slack: connecting (attempt {attempt}{error})"

    # -- the background thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._needs_work():
                    self._cond.wait()
                if self._stopping:
                    return
                wanted, old, reason = self._wanted, self._client, self._renew
            if not wanted:
                with self._cond:
                    self._client, self._renew = None, None
                self.metrics.socket_mode_connected.set(0)
                self._close(old)
                continue
            try:
                client = self._open()
            except LinkError as exc:
                self._failed(str(exc))
                continue
            with self._cond:
                if self._stopping or not self._wanted:
                    keep = False
                else:
                    keep, self._client, self._renew = True, client, None
                    self._attempt, self._last_error = 0, None
                    if client.session_ended.is_set():  # dropped between hello and here: _pump saw
                        self._renew = "dropped"        # another current client and left it to us
            if not keep:
                self._close(client)
                continue
            self.metrics.socket_mode_connected.set(1)
            if self._connected_once:
                self.metrics.socket_mode_reconnects.labels(reason=reason or "other").inc()
                log.info("Socket Mode reconnected (%s)", reason or "other")
            else:
                log.info("Socket Mode connected")
            self._connected_once = True
            if old is not None:
                self._close(old)  # after the new one is up: a refresh loses nothing

    def _needs_work(self) -> bool:
        if self._wanted:
            return self._client is None or self._renew is not None
        return self._client is not None

    def _failed(self, cause: str) -> None:
        with self._cond:
            self._attempt += 1
            self._last_error = cause
            attempt = self._attempt
        delay = backoff_delay(attempt, self.backoff_base, self.backoff_cap, self.rng())
        self.metrics.socket_mode_connect_failures.inc()
        log.warning("Socket Mode: connecting to Slack failed (attempt %d): %s; retrying in %.1fs",
                    attempt, cause, delay)
        end = time.monotonic() + delay
        with self._cond:
            while not self._stopping and self._wanted and time.monotonic() < end:
                self._cond.wait(end - time.monotonic())

    def _open(self) -> _LinkClient:
        try:
            url = self.web_client.apps_connections_open(app_token=self.app_token)["url"]
        except SlackApiError as exc:
            raise LinkError(f"apps.connections.open answered {exc.response.get('error')} "
                            f"(HTTP {exc.response.status_code})") from None
        except Exception as exc:  # name resolution, refused, timeout: the cause is in the message
            raise LinkError(f"apps.connections.open failed: {_cause(exc)}") from None
        client = _LinkClient(app_token=self.app_token, web_client=self.web_client, logger=_library_log,
                             auto_reconnect_enabled=False, ping_interval=self.ping_interval,
                             concurrency=self.concurrency)
        hello, ended, errors = threading.Event(), threading.Event(), []
        client.session_ended = ended
        client.on_message_listeners.append(lambda ws, raw: self._on_message(client, raw, hello))
        client.on_error_listeners.append(lambda ws, error: errors.append(error))
        sockets: list = []  # the TCP socket under the session, closed by _pump whatever websocket-client did
        client.on_open_listeners.append(lambda ws: sockets.append(getattr(ws.sock, "sock", None)))
        client.socket_mode_request_listeners.append(self._dispatch)
        client.wss_uri = url
        client.connect()
        threading.Thread(target=self._pump, args=(client, ended, errors, sockets), name="socket-mode-session",
                         daemon=True).start()
        deadline = time.monotonic() + self.hello_timeout
        while not hello.is_set() and not ended.is_set() and time.monotonic() < deadline:
            hello.wait(0.05)
        if hello.is_set():
            return client
        self._close(client)
        cause = _cause(errors[-1]) if errors else f"no hello within {self.hello_timeout:.0f}s"
        raise LinkError(f"WebSocket {_host(url)}: {cause}")

    def _pump(self, client: _LinkClient, ended: threading.Event, errors: list, sockets: list) -> None:
        """Run one WebSocket session until it ends, then ask for a new one if it was the current one."""
        session = client.current_session
        try:
            # ping_timeout: a connection that silently stops answering (no FIN, no RST) is given up
            # after ping_interval + ping_timeout instead of never.
            session.run_forever(ping_interval=self.ping_interval, ping_timeout=self.ping_timeout)
        except Exception as exc:
            errors.append(exc)
        for sock in sockets:
            # websocket-client 1.9's WebSocket.close() returns early once it marked itself disconnected
            # (a ping timeout, a lost connection), leaving the TCP socket open until garbage collection.
            if sock is not None:
                sock.close()
        ended.set()
        with self._cond:
            if self._client is not client or self._renew is not None:
                return
            self._renew = "dropped"
            self.metrics.socket_mode_connected.set(0)
            self._cond.notify_all()
        cause = _cause(errors[-1]) if errors else "closed by Slack"
        log.warning("Socket Mode connection lost: %s; reconnecting", cause)

    def _dispatch(self, client: _LinkClient, request: SocketModeRequest) -> None:
        try:
            self.listener(client, request)
        except Exception:  # the library would log it to its muted logger
            log.exception("Socket Mode %s envelope %s failed", request.type, request.envelope_id)

    def _on_message(self, client: _LinkClient, raw: str, hello: threading.Event) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            return
        kind = message.get("type")
        if kind == "hello":
            hello.set()
        elif kind == "disconnect":
            reason = message.get("reason")
            reason = reason if reason in DISCONNECT_REASONS else "other"
            log.info("Slack asked this connection to reconnect (%s)", reason)
            with self._cond:
                if self._client is client and self._renew is None:
                    self._renew = reason
                    self._cond.notify_all()

    @staticmethod
    def _close(client: Optional[_LinkClient]) -> None:
        if client is None:
            return
        try:
            client.close()  # sends a close frame; waits for running listeners (they ack first, then hand off)
        except Exception as exc:
            log.debug("closing a Socket Mode client: %s", exc)


def backoff_delay(attempt: int, base: float, cap: float, draw: float) -> float:
    """Seconds to wait after the `attempt`-th failure in a row: base doubling per failure up to `cap`,
    then "equal jitter" (`draw` in [0, 1) picks a point in the upper half), so instances that lost
    Slack together do not come back in lockstep, and no delay is shorter than half its step."""
    ceiling = min(cap, base * 2 ** min(attempt - 1, 30))
    return ceiling / 2 + draw * ceiling / 2


def _cause(exc: BaseException) -> str:
    """The innermost reason: 'Connection refused', 'Name or service not known', not the wrapper's text."""
    seen = exc
    for _ in range(5):
        nested = getattr(seen, "reason", None) or seen.__cause__ or seen.__context__
        if not isinstance(nested, BaseException):
            break
        seen = nested
    text = str(seen) or type(seen).__name__
    return text if seen is exc else f"{text} ({type(exc).__name__})"


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc or "?"
