"""Signed Slack requests, sent with bounded concurrency, count and time; timed to the HTTP answer.

Payloads come from tests/fakes/slack.SlackSender (Slack's real shapes, response_urls and
trigger_ids minted by the Slack fake) but are built before the clock starts; each is signed just
before it is sent, so a long run never trips the 5-minute replay window. Only the POST and the
read of the answer are timed, on a keep-alive connection per worker (as an HTTP client would).
"""
from __future__ import annotations

import http.client
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

from tests.fakes.slack import SlackSender, slack_signature


@dataclass
class SignedRequest:
    kind: str  # what the table groups by: command, button, modal, ...
    name: str  # e.g. "/ops help", an action_id, a callback_id
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Sent:
    kind: str
    name: str
    status: int | None  # None: failed before an answer (see error) or not sent
    seconds: float | None
    error: str | None = None


class _Builder(SlackSender):
    """SlackSender whose raw() returns the request instead of POSTing it."""

    kind = "request"
    name = ""

    def raw(self, body, headers=None, sign=True, timestamp=None, signature=None, content_type=None):  # noqa: ARG002
        if isinstance(body, str):
            body = body.encode("utf-8")
        out = {"Content-Type": content_type or "application/x-www-form-urlencoded",
               "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)", "Accept": "application/json,*/*"}
        out.update(headers or {})
        return SignedRequest(self.kind, self.name, body, out)


class RequestBuilder:
    """`builder.command("/ops", "help")`, `builder.block_actions(...)`, `builder.view_submission(...)`
    return SignedRequest objects labelled `kind` / `name` (default name: the command text, the
    action_id or the callback_id)."""

    def __init__(self, url: str, signing_secret: str, fake: Any):
        self._sender = _Builder(url, signing_secret, fake)

    def _build(self, kind: str, name: str, method: Callable[..., SignedRequest], *args: Any, **kw: Any) -> SignedRequest:
        self._sender.kind, self._sender.name = kind, name
        return method(*args, **kw)

    def command(self, command: str, text: str = "", kind: str = "command", **kw: Any) -> SignedRequest:
        name = f"{command} {text}".strip()
        return self._build(kind, name, self._sender.command, command, text, **kw)

    def block_actions(self, action_id: str, kind: str = "button", **kw: Any) -> SignedRequest:
        return self._build(kind, action_id, self._sender.block_actions, action_id, **kw)

    def view_submission(self, callback_id: str, kind: str = "modal", **kw: Any) -> SignedRequest:
        return self._build(kind, callback_id, self._sender.view_submission, callback_id, **kw)


def request_builder(bot_url: str, signing_secret: str, slack_fake: Any) -> RequestBuilder:
    return RequestBuilder(bot_url, signing_secret, slack_fake)


def send_all(url: str, requests: list[SignedRequest], concurrency: int, signing_secret: str, *,
             time_limit: float = 120.0, timeout: float = 10.0, path: str = "/slack/events") -> list[Sent]:
    """POST every request, at most `concurrency` in flight; stop sending after `time_limit` seconds
    (the rest are reported as not sent). Each answer is awaited at most `timeout` seconds."""
    target = urlsplit(url)
    local = threading.local()
    deadline = time.monotonic() + time_limit

    def connection() -> http.client.HTTPConnection:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(target.hostname, target.port, timeout=timeout)
        return conn

    def send(request: SignedRequest) -> Sent:
        if time.monotonic() > deadline:
            return Sent(request.kind, request.name, None, None, "not sent: time limit reached")
        stamp = str(int(time.time()))
        headers = {**request.headers, "X-Slack-Request-Timestamp": stamp,
                   "X-Slack-Signature": slack_signature(signing_secret, stamp, request.body)}
        conn = connection()
        started = time.perf_counter()
        try:
            conn.request("POST", path, body=request.body, headers=headers)
            response = conn.getresponse()
            response.read()
            elapsed = time.perf_counter() - started
            if response.will_close:
                conn.close()
                local.conn = None
            return Sent(request.kind, request.name, response.status, elapsed)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            local.conn = None
            return Sent(request.kind, request.name, None, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="load") as pool:
        return list(pool.map(send, requests))


def wait_quiet(counts: Callable[[], dict[str, int]], quiet: float = 2.5, limit: float = 60.0,
               poll: float = 0.25) -> float:
    """Wait until `counts()` has not changed for `quiet` seconds (the bot finished the work it
    queued), at most `limit` seconds. Returns the seconds waited."""
    started = time.monotonic()
    last, last_change = counts(), time.monotonic()
    while time.monotonic() - started < limit:
        time.sleep(poll)
        now = counts()
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change >= quiet:
            break
    return time.monotonic() - started


class LoadProcess:
    """The load generator in a process of its own, so that what it measures is the server's answer
    time and not this process's: the backend fakes live here and, while deckhand keeps them busy,
    their threads would hold this interpreter's GIL and delay the client's clock (the bare app keeps
    them idle, so the comparison would be skewed against deckhand).

        with LoadProcess() as load:
            sent = load.send_all(url, requests, concurrency, secret, time_limit=40)
    """

    def __init__(self) -> None:
        self._pool = None

    def __enter__(self) -> "LoadProcess":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: forking a process full of server threads can copy a lock held mid-flight
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        self._pool.submit(_ready).result(timeout=120)  # pay the child's imports before any timing
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def send_all(self, url: str, requests: list[SignedRequest], concurrency: int, signing_secret: str,
                 **kw: Any) -> list[Sent]:
        assert self._pool is not None, "use LoadProcess as a context manager"
        return self._pool.submit(send_all, url, requests, concurrency, signing_secret, **kw).result()


def _ready() -> bool:
    return True
