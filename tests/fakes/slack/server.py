"""The fake Slack Web API server: HTTP plumbing, configuration and response_urls (what tests read back:
inspection.py)."""
from __future__ import annotations

import collections
import itertools
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterable, List, Optional, Union
from urllib.parse import parse_qs, urlsplit

from .common import (BOT_USER_ID, JSON_FIELDS, RESPONSE_URL_TTL, RESPONSE_URL_USES, SESSION_METHODS, Call, Json,
                     _Injection, _RateLimit, _SlackError, _truthy)
from .limits import validate_message_blocks
from .inspection import InspectionMixin
from .methods import _WebApiMethods

# ---------------------------------------------------------------------------------------------
# The fake Web API server
# ---------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeSlack/1.0"
    fake: "SlackFake"  # set on the subclass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            status, headers, body = self.fake._handle_http(self.command, self.path, dict(self.headers.items()), raw)
        except Exception as exc:  # a bug in the fake: answer loudly instead of hanging the client
            status, headers = 500, {"Content-Type": "application/json; charset=utf-8"}
            body = json.dumps({"ok": False, "error": "fake_internal_error", "detail": repr(exc)}).encode()
            self.fake._internal_errors.append(exc)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


class SlackFake(InspectionMixin, _WebApiMethods):
    """Fake Slack Web API + response_url endpoint on 127.0.0.1:<free port>."""

    def __init__(
        self,
        *,
        valid_tokens: Optional[Iterable[str]] = None,
        latency: float = 0.0,
        retry_after: Union[int, str] = 1,
    ):
        self.valid_tokens: Optional[set] = set(valid_tokens) if valid_tokens is not None else None
        self.latency = latency
        self.retry_after = retry_after
        # configuration
        self.usergroups: Dict[str, List[str]] = {}
        self.users: Dict[str, Json] = {}
        self.missing_users: set = set()
        self.channels: Dict[str, Json] = {}
        self.missing_channels: set = set()
        # Who and what exists, as Slack knows it: users.info / conversations.info answer user_not_found /
        # channel_not_found for anything else. Configured users and channels, the bot, and every user and
        # channel a SlackSender request came from are known; tests add more with add_users / add_channels.
        self.known_users: set = {BOT_USER_ID}
        self.known_channels: set = set()
        # Channels the bot is a member of. None: every channel (a bare fake); the harness sets the config's
        # channels. chat.postMessage and friends answer not_in_channel elsewhere (DMs are always open).
        self.member_of: Optional[set] = None
        # The clock trigger_ids (3 s) and response_urls (30 min) age by; tests move it instead of sleeping.
        self.clock: Callable[[], float] = time.monotonic
        # state
        self._lock = threading.RLock()
        self._calls: List[Call] = []
        self._messages: Dict[str, Dict[str, Json]] = collections.defaultdict(dict)  # channel -> ts -> msg
        self._replies: Dict[tuple, List[str]] = collections.defaultdict(list)  # (channel, thread_ts) -> [ts]
        self._ephemerals: List[Json] = []
        self._views: Dict[str, Json] = {}
        self._view_meta: Dict[str, Json] = {}
        self._home_views: Dict[str, str] = {}
        self._responses: List[Json] = []
        self._response_urls: Dict[str, Json] = {}
        self._triggers: Dict[str, Json] = {}
        self._injections: List[_Injection] = []
        self._rate_limits: Dict[str, _RateLimit] = {}
        self._rate_history: Dict[tuple, collections.deque] = collections.defaultdict(collections.deque)
        self._internal_errors: List[BaseException] = []
        self._ts_counter = itertools.count(1)
        self._id_counter = itertools.count(1)
        self._server: Optional[ThreadingHTTPServer] = None
        self.socket_mode = None  # a started SocketModeGateway answers apps.connections.open
        self._thread: Optional[threading.Thread] = None
        self.url = ""

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> "SlackFake":
        handler = type("BoundSlackHandler", (_Handler,), {"fake": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="slack-fake", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "SlackFake":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        """What the bot's `SLACK_API_URL` / WebClient `base_url` should be."""
        return self.url + "/api/"

    def env(self) -> Dict[str, str]:
        return {"SLACK_API_URL": self.api_url}

    def client(self, token: str = "xoxb-test-token", **kwargs: Any):
        """A real slack_sdk WebClient pointed at this fake."""
        from slack_sdk import WebClient

        return WebClient(token=token, base_url=self.api_url, **kwargs)

    # -- configuration -------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        error: Optional[str] = None,
        status: Optional[int] = None,
        times: Optional[int] = 1,
        retry_after: Optional[Union[int, str]] = None,
        *,
        delay: float = 0.0,
        channel: Optional[str] = None,
    ) -> _Injection:
        """Make the next `times` calls to `method` ("*" = any) fail (times=None: until clear_failures()).

        status 429 (the default when error is None or "ratelimited") answers `Retry-After` +
        `{"ok":false,"error":"ratelimited"}`; 5xx answers `{"ok":false,"error":error or "internal_error"}`;
        otherwise HTTP 200 with `{"ok":false,"error":error}`. `delay` holds the answer back (timeouts).
        """
        if status is None:
            status = 429 if error in (None, "ratelimited") else 200
        if status == 429:
            error = "ratelimited"
        elif error is None:
            error = "internal_error" if status >= 500 else "fatal_error"
        inj = _Injection(method, error, status, times, retry_after, delay, channel)
        with self._lock:
            self._injections.append(inj)
        return inj

    def add_users(self, *user_ids: str) -> None:
        with self._lock:
            self.known_users.update(user_ids)

    def add_channels(self, *channel_ids: str) -> None:
        with self._lock:
            self.known_channels.update(channel_ids)

    def join(self, *channel_ids: str) -> None:
        """Make the bot a member of `channel_ids` (and only of the channels ever joined)."""
        with self._lock:
            self.member_of = set(self.member_of or ()) | set(channel_ids)
            self.known_channels.update(channel_ids)

    def leave(self, *channel_ids: str) -> None:
        with self._lock:
            if self.member_of is not None:
                self.member_of -= set(channel_ids)

    def is_member(self, channel: str) -> bool:
        if not channel or channel[0] not in "CG":  # DMs (D...) and user ids: always reachable
            return True
        with self._lock:
            return self.member_of is None or channel in self.member_of

    def clear_failures(self) -> None:
        with self._lock:
            self._injections.clear()

    def rate_limit(
        self,
        method: str = "chat.postMessage",
        per_channel_per_second: Optional[int] = 1,
        retry_after: Optional[Union[int, str]] = None,
    ) -> None:
        """Answer 429 when a channel gets more than N accepted `method` calls within a sliding second.
        `per_channel_per_second=None` turns the mode off for that method. 429'd posts are not stored."""
        with self._lock:
            if per_channel_per_second is None:
                self._rate_limits.pop(method, None)
            else:
                self._rate_limits[method] = _RateLimit(method, per_channel_per_second, retry_after)

    def clear(self) -> None:
        """Forget recorded calls and state (messages, ephemerals, views, responses).
        Configuration (users, usergroups, channels, failures, rate limits, latency) is kept."""
        with self._lock:
            self._calls.clear()
            self._messages.clear()
            self._replies.clear()
            self._ephemerals.clear()
            self._views.clear()
            self._view_meta.clear()
            self._home_views.clear()
            self._responses.clear()
            self._rate_history.clear()
            self._internal_errors.clear()

    # -- minting -------------------------------------------------------------------------------

    def _next_ts(self) -> str:
        n = next(self._ts_counter)
        micros = 1_700_000_000_000_000 + n * 100
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}0{next(self._id_counter):09X}"

    def response_url(self, channel: Optional[str] = None, message_ts: Optional[str] = None,
                     user: Optional[str] = None) -> str:
        """Mint a response_url served by this fake. With channel + message_ts, `replace_original` /
        `delete_original` posts edit that stored message, and `in_channel` posts add one to channel."""
        rid = uuid.uuid4().hex[:16]
        with self._lock:
            self._response_urls[rid] = {"channel": channel, "message_ts": message_ts, "user": user,
                                        "minted": self.clock(), "uses": 0}
        return f"{self.url}/response/{rid}"

    def mint_trigger_id(self, user_id: Optional[str] = None, view_id: Optional[str] = None) -> str:
        trigger = f"{int(time.time())}.{next(self._id_counter):013d}.{uuid.uuid4().hex}"
        with self._lock:
            self._triggers[trigger] = {"user": user_id, "view_id": view_id, "minted": self.clock(), "used": False}
        return trigger

    # -- HTTP plumbing -------------------------------------------------------------------------

    def _retry_after_value(self, value: Optional[Union[int, str]]) -> str:
        return str(int(value if value is not None else self.retry_after))

    def _handle_http(self, verb: str, raw_path: str, headers: Dict[str, str], raw: bytes):
        if self.latency:
            time.sleep(self.latency)
        parts = urlsplit(raw_path)
        path = parts.path
        if path.startswith("/response/"):
            return self._handle_response_url(path[len("/response/"):].strip("/"), headers, raw)
        method = path[len("/api/"):] if path.startswith("/api/") else path.lstrip("/")
        method = method.strip("/")

        lower = {k.lower(): v for k, v in headers.items()}
        content_type = lower.get("content-type", "")
        text = raw.decode("utf-8", errors="replace")
        args: Json = {}
        if parts.query:
            args.update({k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()})
        json_error = None
        if text:
            if "application/json" in content_type:
                try:
                    loaded = json.loads(text)
                    if isinstance(loaded, dict):
                        args.update(loaded)
                    else:
                        json_error = "invalid_json"
                except ValueError:
                    json_error = "invalid_json"
            else:
                args.update({k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()})
        for key in JSON_FIELDS:
            if isinstance(args.get(key), str) and args[key][:1] in ("[", "{"):
                try:
                    args[key] = json.loads(args[key])
                except ValueError:
                    json_error = json_error or (f"invalid_{key}_format" if key == "blocks" else "invalid_arguments")

        token = None
        auth = lower.get("authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        if "token" in args:
            token = token or str(args["token"])
            args.pop("token")

        call = Call(method=method, args=args, token=token, headers=dict(headers), path=path,
                    content_type=content_type, body=text, time=time.time())
        status, extra_headers, body = self._answer(call, json_error)
        call.status = status
        call.response = body
        if token and token.endswith("-deckhand"):  # the bot under test (tests.harness.BOT_TOKEN)
            SESSION_METHODS.add(method)
        with self._lock:
            self._calls.append(call)
        out_headers = {"Content-Type": "application/json; charset=utf-8",
                       "X-Slack-Req-Id": uuid.uuid4().hex}
        out_headers.update(extra_headers)
        return status, out_headers, json.dumps(body).encode("utf-8")

    def _answer(self, call: Call, json_error: Optional[str]):
        if call.method == "apps.connections.open" and self.socket_mode is not None:
            # the app-level token (xapp-), not a bot token: the gateway checks it (socket_mode.py)
            status, body = self.socket_mode.connections_open(call.token)
            return status, {}, body
        handler = getattr(self, "_m_" + call.method.replace(".", "_"), None) if call.method else None
        if handler is None:
            return 200, {}, {"ok": False, "error": "unknown_method", "req_method": call.method}
        if not call.token:
            return 200, {}, {"ok": False, "error": "not_authed"}
        if not self._token_ok(call.token):
            return 200, {}, {"ok": False, "error": "invalid_auth"}
        injected = self._take_injection(call)
        if injected is not None:
            if injected.delay:
                time.sleep(injected.delay)
            if injected.status == 429:
                return 429, {"Retry-After": self._retry_after_value(injected.retry_after)}, \
                    {"ok": False, "error": "ratelimited"}
            return injected.status, {}, {"ok": False, "error": injected.error}
        if json_error:
            return 200, {}, {"ok": False, "error": json_error}
        with self._lock:
            limited = self._check_rate_limit(call)
            if limited is not None:
                return 429, {"Retry-After": self._retry_after_value(limited.retry_after)}, \
                    {"ok": False, "error": "ratelimited"}
            try:
                body = handler(call.args)
            except _SlackError as e:
                return 200, {}, e.body()
            # a successful post counts towards the per-channel window
            rl = self._rate_limits.get(call.method)
            if rl is not None and body.get("ok"):
                channel = self._resolve_channel(str(call.args.get("channel", "")))
                self._rate_history[(call.method, channel)].append(time.monotonic())
        return 200, {}, body

    def _token_ok(self, token: str) -> bool:
        if self.valid_tokens is None:
            return token.startswith("xoxb-")
        return token in self.valid_tokens

    def _take_injection(self, call: Call) -> Optional[_Injection]:
        with self._lock:
            for inj in self._injections:
                if inj.method not in (call.method, "*"):
                    continue
                if inj.channel is not None and call.args.get("channel") != inj.channel:
                    continue
                if inj.remaining is not None:
                    inj.remaining -= 1
                    if inj.remaining <= 0:
                        self._injections.remove(inj)
                return inj
        return None

    def _check_rate_limit(self, call: Call) -> Optional[_RateLimit]:
        rl = self._rate_limits.get(call.method)
        if rl is None:
            return None
        channel = self._resolve_channel(str(call.args.get("channel", "")))
        history = self._rate_history[(call.method, channel)]
        now = time.monotonic()
        while history and now - history[0] >= rl.window:
            history.popleft()
        if len(history) >= rl.per_second:
            return rl
        return None

    # -- response_url ----------------------------------------------------------------------------

    def _handle_response_url(self, rid: str, headers: Dict[str, str], raw: bytes):
        text = raw.decode("utf-8", errors="replace")
        with self._lock:
            meta = self._response_urls.get(rid)
            # "You can use a response_url up to five times within 30 minutes"
            # (https://api.slack.com/interactivity/handling#message_responses).
            if meta is not None and self.clock() - meta["minted"] > RESPONSE_URL_TTL:
                return 404, {"Content-Type": "text/plain"}, b"expired_url"
            if meta is not None and meta["uses"] >= RESPONSE_URL_USES:
                return 404, {"Content-Type": "text/plain"}, b"used_url"
        if meta is None:
            return 404, {"Content-Type": "text/plain"}, b"expired_url"
        try:
            body = json.loads(text) if text else {}
        except ValueError:
            lower = {k.lower(): v for k, v in headers.items()}
            if "json" in lower.get("content-type", ""):
                return 400, {"Content-Type": "text/plain"}, b"invalid_payload"
            body = {k: v[-1] for k, v in parse_qs(text).items()}
            if "payload" in body:
                body = json.loads(body["payload"])
        if not isinstance(body, dict):
            return 400, {"Content-Type": "text/plain"}, b"invalid_payload"
        if isinstance(body.get("blocks"), list):
            errors = validate_message_blocks(body["blocks"])
            if errors:
                return 400, {"Content-Type": "text/plain"}, b"invalid_blocks"
        if not body.get("delete_original") and not any(k in body for k in ("text", "blocks", "attachments")):
            return 400, {"Content-Type": "text/plain"}, b"no_text"
        record = {
            "id": rid,
            "url": f"{self.url}/response/{rid}",
            "response_type": body.get("response_type"),
            "text": body.get("text"),
            "blocks": body.get("blocks"),
            "attachments": body.get("attachments"),
            "replace_original": _truthy(body.get("replace_original", False)),
            "delete_original": _truthy(body.get("delete_original", False)),
            "thread_ts": body.get("thread_ts"),
            "body": body,
            "time": time.time(),
        }
        with self._lock:
            meta["uses"] += 1
            self._responses.append(record)
            channel, ts = meta.get("channel"), meta.get("message_ts")
            if channel:
                ch = self._resolve_channel(channel)
                if record["delete_original"] and ts:
                    self._delete_message(ch, ts)
                elif record["replace_original"] and ts and ts in self._messages.get(ch, {}):
                    msg = self._messages[ch][ts]
                    for key in ("text", "blocks", "attachments"):
                        if key in body:
                            msg[key] = body[key]
                    msg["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
                elif record["response_type"] == "in_channel":
                    self._store_message(ch, body, thread_ts=body.get("thread_ts"))
        return 200, {"Content-Type": "text/html"}, b"ok"
