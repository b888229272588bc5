"""Slack fakes for tests.

`SlackFake` is a real HTTP server on a free loopback port that speaks the Slack Web API wire format
(form-encoded or JSON bodies, `Authorization: Bearer` tokens, `{"ok": ...}` answers with Slack's real
field names and error codes, 429 + `Retry-After`), keeps the state the bot cares about (messages with
threads and edits, ephemerals, views, response_url posts), records every call and can inject failures.
Point the bot at it with `SLACK_API_URL=fake.api_url` (WebClient `base_url`); `.../api/`, `.../api`
and the bare root all work.

`SlackSender` (alias `SlackSigner`) plays Slack towards the app: it POSTs slash commands,
block_actions, view_submission / view_closed and Events API envelopes to the app's real
`/slack/events` endpoint, signed exactly as Slack signs them (`v0=HMAC-SHA256(secret,
"v0:{timestamp}:{body}")` in `X-Slack-Signature`, `X-Slack-Request-Timestamp`).

Fixture: `slack_fake` (function scope, started and stopped around the test).
"""
from __future__ import annotations

import collections
import copy
import hashlib
import hmac
import inspect
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterable, List, Optional, Union
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

TEAM_ID = "T0TEAM"
TEAM_NAME = "Example"
TEAM_DOMAIN = "example"
WORKSPACE_URL = "https://example.slack.com/"
BOT_USER_ID = "U0BOT"
BOT_USER_NAME = "deckhand"
BOT_ID = "B0BOT"
APP_ID = "A0APP"
VERIFICATION_TOKEN = "fake-verification-token"

# Slack's documented limits.
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_TEXT = 40_000
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_SECTION_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_BLOCK_ID = 255
MAX_ACTION_ID = 255
MAX_ACTIONS_ELEMENTS = 25
MAX_CONTEXT_ELEMENTS = 10
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_URL = 3000
MAX_OPTIONS = 100
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_LABEL = 2000
MAX_VIEW_TITLE = 24
MAX_VIEW_BUTTON_TEXT = 24
MAX_PRIVATE_METADATA = 3000
MAX_CALLBACK_ID = 255

# Fields that slack_sdk (or a hand-written client) sends as JSON strings inside form bodies.
JSON_FIELDS = {"blocks", "view", "attachments", "metadata", "user_auth_blocks", "unfurls", "chunks"}

KNOWN_BLOCK_TYPES = {
    "section", "divider", "image", "actions", "context", "input", "header", "file", "rich_text",
    "video", "markdown", "call", "table", "context_actions",
}

Json = Dict[str, Any]


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


class _SlackError(Exception):
    """Raised inside a method handler; becomes `{"ok": false, "error": ...}`."""

    def __init__(self, error: str, messages: Optional[List[str]] = None, **extra: Any):
        super().__init__(error)
        self.error = error
        self.messages = messages or []
        self.extra = extra

    def body(self) -> Json:
        body: Json = {"ok": False, "error": self.error}
        if self.messages:
            body["errors"] = [m.replace("[ERROR] ", "", 1) for m in self.messages]
            body["response_metadata"] = {"messages": list(self.messages)}
        body.update(self.extra)
        return body


# Every Web API method called on any fake in this test session: the manifest test derives the
# bot scopes deckhand needs from it (tests/test_zz_permissions.py).
SESSION_METHODS: set[str] = set()


@dataclass
class Call:
    """One recorded Web API call."""

    method: str
    args: Json
    token: Optional[str]
    status: int = 0
    response: Json = field(default_factory=dict)
    headers: Dict[str, str] = field(default_factory=dict)
    path: str = ""
    content_type: str = ""
    body: str = ""
    time: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))

    @property
    def error(self) -> Optional[str]:
        return self.response.get("error")

    def describe(self) -> str:
        outcome = "ok" if self.ok else f"error={self.error}"
        args = {k: v for k, v in self.args.items() if k not in {"blocks", "view", "attachments"}}
        extra = []
        for k in ("blocks", "view", "attachments"):
            if k in self.args:
                v = self.args[k]
                extra.append(f"{k}=<{len(v) if isinstance(v, list) else 'dict'}>")
        text = json.dumps(args, default=str)
        if len(text) > 200:
            text = text[:200] + "..."
        return f"{self.method} [{self.status} {outcome}] {text} {' '.join(extra)}".rstrip()


@dataclass
class _Injection:
    method: str
    error: str
    status: int
    remaining: Optional[int]
    retry_after: Optional[Union[int, str]]
    delay: float
    channel: Optional[str]


@dataclass
class _RateLimit:
    method: str
    per_second: int
    retry_after: Optional[Union[int, str]]
    window: float = 1.0


# ---------------------------------------------------------------------------------------------
# Block Kit validation (the subset of Slack's rules that real bots trip over)
# ---------------------------------------------------------------------------------------------


def _text_of(obj: Any) -> str:
    if isinstance(obj, dict):
        t = obj.get("text", "")
        return t if isinstance(t, str) else ""
    return obj if isinstance(obj, str) else ""


class _Validator:
    def __init__(self, root: str):
        self.root = root
        self.errors: List[str] = []

    def err(self, pointer: str, msg: str) -> None:
        self.errors.append(f"[ERROR] {msg} [json-pointer:{self.root}{pointer}]")

    def max_len(self, pointer: str, value: Any, limit: int) -> None:
        if isinstance(value, str) and len(value) > limit:
            self.err(pointer, f"must be less than {limit + 1} characters")

    def text_object(self, pointer: str, obj: Any, limit: int, plain_only: bool = False) -> None:
        if not isinstance(obj, dict):
            self.err(pointer, "must be an object with type and text")
            return
        kind = obj.get("type")
        allowed = {"plain_text"} if plain_only else {"plain_text", "mrkdwn"}
        if kind not in allowed:
            self.err(pointer + "/type", f"must be one of {sorted(allowed)}")
        if not isinstance(obj.get("text"), str):
            self.err(pointer + "/text", "must provide a string")
            return
        self.max_len(pointer + "/text", obj["text"], limit)

    def options(self, pointer: str, options: Any) -> None:
        if not isinstance(options, list):
            return
        if len(options) > MAX_OPTIONS:
            self.err(pointer, f"no more than {MAX_OPTIONS} items allowed")
        for i, opt in enumerate(options):
            if not isinstance(opt, dict):
                self.err(f"{pointer}/{i}", "must be an object")
                continue
            self.text_object(f"{pointer}/{i}/text", opt.get("text"), MAX_OPTION_TEXT)
            self.max_len(f"{pointer}/{i}/value", opt.get("value"), MAX_OPTION_VALUE)

    def element(self, pointer: str, el: Any, action_ids: set) -> None:
        if not isinstance(el, dict) or not isinstance(el.get("type"), str):
            self.err(pointer, "must be an object with a type")
            return
        action_id = el.get("action_id")
        if action_id is not None:
            self.max_len(pointer + "/action_id", action_id, MAX_ACTION_ID)
            if action_id in action_ids:
                self.err(pointer + "/action_id", "action_id must be unique within the block")
            action_ids.add(action_id)
        kind = el["type"]
        if kind == "button":
            self.text_object(pointer + "/text", el.get("text"), MAX_BUTTON_TEXT, plain_only=True)
            self.max_len(pointer + "/value", el.get("value"), MAX_BUTTON_VALUE)
            self.max_len(pointer + "/url", el.get("url"), MAX_URL)
            if el.get("style") not in (None, "primary", "danger"):
                self.err(pointer + "/style", "must be one of primary, danger")
        elif kind in {"static_select", "multi_static_select", "radio_buttons", "checkboxes", "overflow"}:
            if "options" in el:
                self.options(pointer + "/options", el["options"])
            for gi, group in enumerate(el.get("option_groups") or []):
                if isinstance(group, dict):
                    self.options(f"{pointer}/option_groups/{gi}/options", group.get("options"))
        elif kind == "image":
            if not el.get("image_url") and not el.get("slack_file"):
                self.err(pointer + "/image_url", "must provide image_url")
            if not isinstance(el.get("alt_text"), str):
                self.err(pointer + "/alt_text", "must provide alt_text")

    def block(self, pointer: str, block: Any, block_ids: set) -> None:
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            self.err(pointer, "must be an object with a type")
            return
        kind = block["type"]
        if kind not in KNOWN_BLOCK_TYPES:
            self.err(pointer + "/type", f"unknown block type: {kind}")
            return
        block_id = block.get("block_id")
        if block_id is not None:
            self.max_len(pointer + "/block_id", block_id, MAX_BLOCK_ID)
            if block_id in block_ids:
                self.err(pointer + "/block_id", "block_id must be unique")
            block_ids.add(block_id)
        action_ids: set = set()
        if kind == "section":
            if "text" not in block and "fields" not in block:
                self.err(pointer, "must provide text or fields")
            if "text" in block:
                self.text_object(pointer + "/text", block["text"], MAX_SECTION_TEXT)
            fields = block.get("fields")
            if fields is not None:
                if not isinstance(fields, list) or not fields:
                    self.err(pointer + "/fields", "must provide at least one field")
                else:
                    if len(fields) > MAX_SECTION_FIELDS:
                        self.err(pointer + "/fields", f"no more than {MAX_SECTION_FIELDS} items allowed")
                    for i, f in enumerate(fields):
                        self.text_object(f"{pointer}/fields/{i}", f, MAX_SECTION_FIELD_TEXT)
            if "accessory" in block:
                self.element(pointer + "/accessory", block["accessory"], action_ids)
        elif kind == "header":
            self.text_object(pointer + "/text", block.get("text"), MAX_HEADER_TEXT, plain_only=True)
        elif kind in {"actions", "context"}:
            limit = MAX_ACTIONS_ELEMENTS if kind == "actions" else MAX_CONTEXT_ELEMENTS
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements:
                self.err(pointer + "/elements", "must provide at least one element")
                return
            if len(elements) > limit:
                self.err(pointer + "/elements", f"no more than {limit} items allowed")
            for i, el in enumerate(elements):
                if kind == "context" and isinstance(el, dict) and el.get("type") in {"plain_text", "mrkdwn"}:
                    continue
                self.element(f"{pointer}/elements/{i}", el, action_ids)
        elif kind == "input":
            self.text_object(pointer + "/label", block.get("label"), MAX_LABEL, plain_only=True)
            if not isinstance(block.get("element"), dict):
                self.err(pointer + "/element", "must provide an element")
            else:
                self.element(pointer + "/element", block["element"], action_ids)
        elif kind == "image":
            self.element(pointer, dict(block, type="image"), action_ids)

    def blocks(self, pointer: str, blocks: Any, max_blocks: int) -> None:
        if not isinstance(blocks, list):
            self.err(pointer, "must be an array")
            return
        if len(blocks) > max_blocks:
            self.err(pointer, f"no more than {max_blocks} items allowed")
        block_ids: set = set()
        for i, b in enumerate(blocks):
            self.block(f"{pointer}/{i}", b, block_ids)


def validate_message_blocks(blocks: Any) -> List[str]:
    v = _Validator("")
    v.blocks("/blocks", blocks, MAX_MESSAGE_BLOCKS)
    return v.errors


def validate_view(view: Any, *, require_modal: bool = False, require_home: bool = False) -> List[str]:
    v = _Validator("/view")
    if not isinstance(view, dict):
        v.err("", "must be an object")
        return v.errors
    kind = view.get("type")
    if kind not in {"modal", "home"}:
        v.err("/type", "must be one of modal, home")
    if require_modal and kind != "modal":
        v.err("/type", "must be modal")
    if require_home and kind != "home":
        v.err("/type", "must be home")
    v.blocks("/blocks", view.get("blocks", []), MAX_VIEW_BLOCKS)
    v.max_len("/private_metadata", view.get("private_metadata"), MAX_PRIVATE_METADATA)
    v.max_len("/callback_id", view.get("callback_id"), MAX_CALLBACK_ID)
    if kind == "modal":
        if "title" not in view:
            v.err("/title", "must provide a title")
        else:
            v.text_object("/title", view["title"], MAX_VIEW_TITLE, plain_only=True)
        for key in ("submit", "close"):
            if key in view and view[key] is not None:
                v.text_object(f"/{key}", view[key], MAX_VIEW_BUTTON_TEXT, plain_only=True)
        has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in view.get("blocks") or [])
        if has_input and not view.get("submit"):
            v.err("/submit", "submit is required when an input block is present")
    return v.errors


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


class SlackFake:
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

    # -- inspection ----------------------------------------------------------------------------

    @property
    def calls(self) -> List[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str, *, ok: Optional[bool] = None) -> List[Call]:
        with self._lock:
            return [c for c in self._calls if c.method == method and (ok is None or c.ok == ok)]

    def _resolve_channel(self, channel: str) -> str:
        if channel and channel[0] in "UW":
            return "D" + channel[1:]
        return channel

    def _export(self, channel: str, msg: Json, with_replies: bool) -> Json:
        out = copy.deepcopy(msg)
        out["channel"] = channel
        if with_replies:
            out["replies"] = [
                self._export(channel, self._messages[channel][ts], False)
                for ts in self._replies.get((channel, msg["ts"]), [])
                if ts in self._messages[channel]
            ]
        return out

    def messages(self, channel: Optional[str] = None) -> Dict[str, Json]:
        """Current top-level messages (edits applied, deletions removed) keyed by ts, oldest first;
        each carries `channel` and `replies` (its thread). A user id as channel means the DM."""
        with self._lock:
            chans = [self._resolve_channel(channel)] if channel else list(self._messages)
            rows = []
            for ch in chans:
                for ts, msg in self._messages.get(ch, {}).items():
                    if msg.get("thread_ts") and msg["thread_ts"] != ts:
                        continue
                    rows.append(self._export(ch, msg, True))
            rows.sort(key=lambda m: float(m["ts"]))
            return {m["ts"]: m for m in rows}

    def message(self, channel: str, ts: str) -> Optional[Json]:
        """One message (top-level or reply) by channel + ts, or None."""
        with self._lock:
            ch = self._resolve_channel(channel)
            msg = self._messages.get(ch, {}).get(ts)
            return self._export(ch, msg, True) if msg else None

    def ephemerals(self, user: Optional[str] = None) -> List[Json]:
        with self._lock:
            return [copy.deepcopy(e) for e in self._ephemerals if user is None or e["user"] == user]

    @property
    def views(self) -> Dict[str, Json]:
        with self._lock:
            return copy.deepcopy(self._views)

    def views_for(self, user_id: str) -> List[Json]:
        """Views opened through a trigger minted for `user_id`, or published to their home tab."""
        with self._lock:
            return [
                copy.deepcopy(self._views[vid])
                for vid, meta in self._view_meta.items()
                if meta.get("user") == user_id and vid in self._views
            ]

    @property
    def responses(self) -> List[Json]:
        with self._lock:
            return copy.deepcopy(self._responses)

    def responses_to(self, url: str) -> List[Json]:
        with self._lock:
            return [copy.deepcopy(r) for r in self._responses if r["url"] == url]

    def wait_for(self, predicate: Callable[..., Any], timeout: float = 5.0, interval: float = 0.005) -> Any:
        """Poll `predicate()` (or `predicate(fake)`) until it returns something truthy; return that.
        On timeout raise AssertionError describing the recorded calls and responses."""
        try:
            wants_arg = len(inspect.signature(predicate).parameters) >= 1
        except (TypeError, ValueError):
            wants_arg = False
        deadline = time.monotonic() + timeout
        last_exc: Optional[BaseException] = None
        while True:
            try:
                result = predicate(self) if wants_arg else predicate()
                last_exc = None
            except (AssertionError, LookupError, AttributeError, TypeError) as exc:
                result, last_exc = None, exc
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"condition not met within {timeout}s"
                    + (f" (last error: {last_exc!r})" if last_exc else "")
                    + "\n" + self.describe()
                )
            time.sleep(interval)

    def wait_for_call(self, method: str, predicate: Optional[Callable[[Call], bool]] = None,
                      count: int = 1, timeout: float = 5.0) -> Call:
        """Wait until `count` calls to `method` (matching `predicate`) were answered; return the last."""
        def check():
            hits = [c for c in self.calls_to(method) if predicate is None or predicate(c)]
            return hits[count - 1] if len(hits) >= count else None
        return self.wait_for(check, timeout=timeout)

    def describe(self, last: int = 40) -> str:
        with self._lock:
            calls = self._calls[-last:]
            lines = [f"recorded Slack calls ({len(self._calls)}):"]
            lines += [f"  {c.describe()}" for c in calls] or ["  (none)"]
            lines.append(f"response_url posts ({len(self._responses)}):")
            lines += [
                f"  {r['id']}: {json.dumps({k: r.get(k) for k in ('response_type', 'text', 'replace_original', 'delete_original')})}"
                for r in self._responses[-last:]
            ] or ["  (none)"]
            if self._internal_errors:
                lines.append(f"fake internal errors: {self._internal_errors!r}")
            return "\n".join(lines)

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
            self._response_urls[rid] = {"channel": channel, "message_ts": message_ts, "user": user}
        return f"{self.url}/response/{rid}"

    def mint_trigger_id(self, user_id: Optional[str] = None, view_id: Optional[str] = None) -> str:
        trigger = f"{int(time.time())}.{next(self._id_counter):013d}.{uuid.uuid4().hex}"
        with self._lock:
            self._triggers[trigger] = {"user": user_id, "view_id": view_id}
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

    # -- state helpers -------------------------------------------------------------------------

    def _check_channel(self, args: Json, key: str = "channel") -> str:
        channel = args.get(key)
        if not channel:
            raise _SlackError("channel_not_found")
        channel = str(channel)
        if channel in self.missing_channels or self._resolve_channel(channel) in self.missing_channels:
            raise _SlackError("channel_not_found")
        return self._resolve_channel(channel)

    def _check_message_content(self, args: Json, require: bool = True) -> None:
        text = args.get("text")
        if isinstance(text, str) and len(text) > MAX_TEXT:
            raise _SlackError("msg_too_long")
        blocks = args.get("blocks")
        if blocks is not None:
            if isinstance(blocks, str):
                raise _SlackError("invalid_blocks_format")
            errors = validate_message_blocks(blocks)
            if errors:
                raise _SlackError("invalid_blocks", errors)
        if isinstance(args.get("attachments"), str):
            raise _SlackError("invalid_attachments")
        if require and not text and not blocks and not args.get("attachments"):
            raise _SlackError("no_text")

    def _bot_message(self, args: Json, ts: str) -> Json:
        msg: Json = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "text": args.get("text", "") or "",
            "ts": ts,
            "bot_profile": {"id": BOT_ID, "app_id": APP_ID, "name": BOT_USER_NAME, "team_id": TEAM_ID,
                            "deleted": False},
        }
        if args.get("blocks") is not None:
            msg["blocks"] = args["blocks"]
        if args.get("attachments") is not None:
            msg["attachments"] = args["attachments"]
        if args.get("metadata") is not None:
            msg["metadata"] = args["metadata"]
        return msg

    def _store_message(self, channel: str, args: Json, thread_ts: Optional[str] = None) -> Json:
        ts = self._next_ts()
        msg = self._bot_message(args, ts)
        if thread_ts:
            thread_ts = str(thread_ts)
            msg["thread_ts"] = thread_ts
            msg["parent_user_id"] = BOT_USER_ID
            parent = self._messages[channel].get(thread_ts)
            if parent is not None:
                parent["thread_ts"] = thread_ts
                parent["reply_count"] = parent.get("reply_count", 0) + 1
                parent["reply_users"] = sorted(set(parent.get("reply_users", [])) | {BOT_USER_ID})
                parent["reply_users_count"] = len(parent["reply_users"])
                parent["latest_reply"] = ts
            if _truthy(args.get("reply_broadcast", False)):
                msg["subtype"] = "thread_broadcast"
            self._replies[(channel, thread_ts)].append(ts)
        self._messages[channel][ts] = msg
        return msg

    def _find_message(self, channel: str, ts: Any) -> Json:
        msg = self._messages.get(channel, {}).get(str(ts or ""))
        if msg is None:
            raise _SlackError("message_not_found")
        return msg

    def _delete_message(self, channel: str, ts: str) -> None:
        msg = self._messages.get(channel, {}).pop(ts, None)
        if msg and msg.get("thread_ts") and msg["thread_ts"] != ts:
            replies = self._replies.get((channel, msg["thread_ts"]), [])
            if ts in replies:
                replies.remove(ts)
            parent = self._messages[channel].get(msg["thread_ts"])
            if parent is not None:
                parent["reply_count"] = max(0, parent.get("reply_count", 1) - 1)

    def _user(self, user_id: str) -> Json:
        if user_id in self.missing_users:
            raise _SlackError("user_not_found")
        conf = copy.deepcopy(self.users.get(user_id, {}))
        name = conf.pop("name", user_id.lower())
        real_name = conf.pop("real_name", f"User {user_id}")
        display_name = conf.pop("display_name", name)
        email = conf.pop("email", f"{name}@example.com")
        tz = conf.pop("tz", "Europe/Berlin")
        tz_label = conf.pop("tz_label", "Central European Time")
        tz_offset = conf.pop("tz_offset", 3600)
        profile = {
            "real_name": real_name,
            "real_name_normalized": real_name,
            "display_name": display_name,
            "display_name_normalized": display_name,
            "email": email,
            "team": TEAM_ID,
            "image_72": "https://example.slack.com/avatar.png",
        }
        profile.update(conf.pop("profile", {}))
        user = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "deleted": False,
            "real_name": real_name,
            "tz": tz,
            "tz_label": tz_label,
            "tz_offset": tz_offset,
            "profile": profile,
            "is_admin": False,
            "is_owner": False,
            "is_bot": False,
            "is_app_user": False,
            "updated": 1700000000,
        }
        user.update(conf)
        return user

    def _channel_info(self, channel: str) -> Json:
        conf = copy.deepcopy(self.channels.get(channel, {}))
        is_im = channel.startswith("D")
        info = {
            "id": channel,
            "name": conf.pop("name", None if is_im else f"channel-{channel.lower()}"),
            "is_channel": not is_im and not channel.startswith("G"),
            "is_group": False,
            "is_im": is_im,
            "is_mpim": False,
            "is_private": channel.startswith("G"),
            "is_archived": False,
            "is_general": False,
            "is_member": True,
            "created": 1700000000,
            "creator": "U0ADMIN",
            "context_team_id": TEAM_ID,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        }
        if is_im:
            info["user"] = "U" + channel[1:]
            info.pop("name")
        info.update(conf)
        return info

    def _new_view(self, view: Json, view_id: Optional[str] = None, previous: Optional[str] = None,
                  root: Optional[str] = None) -> Json:
        vid = view_id or self._next_id("V")
        out = {
            "id": vid,
            "team_id": TEAM_ID,
            "type": view.get("type"),
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "close": view.get("close"),
            "submit": view.get("submit"),
            "previous_view_id": previous,
            "root_view_id": root or vid,
            "app_id": APP_ID,
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": TEAM_ID,
            "bot_id": BOT_ID,
        }
        if view.get("type") == "modal":
            out["title"] = view.get("title")
        self._views[vid] = out
        return out

    def _view_arg(self, args: Json, **kw: Any) -> Json:
        view = args.get("view")
        if view is None:
            raise _SlackError("invalid_arguments", ["[ERROR] missing required field: view"])
        if not isinstance(view, dict):
            raise _SlackError("invalid_arguments", ["[ERROR] view must be a JSON object"])
        errors = validate_view(view, **kw)
        if errors:
            raise _SlackError("invalid_arguments", errors)
        return view

    def _trigger(self, args: Json) -> Json:
        trigger = args.get("trigger_id") or args.get("interactivity_pointer")
        if not trigger:
            raise _SlackError("invalid_arguments", ["[ERROR] missing required field: trigger_id"])
        return self._triggers.get(str(trigger), {})

    # -- Web API methods -------------------------------------------------------------------------

    def _m_api_test(self, args: Json) -> Json:
        return {"ok": True, "args": {k: v for k, v in args.items()}}

    def _m_auth_test(self, args: Json) -> Json:
        return {
            "ok": True,
            "url": WORKSPACE_URL,
            "team": TEAM_NAME,
            "user": BOT_USER_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _m_chat_postMessage(self, args: Json) -> Json:
        channel = self._check_channel(args)
        self._check_message_content(args)
        msg = self._store_message(channel, args, thread_ts=args.get("thread_ts"))
        return {"ok": True, "channel": channel, "ts": msg["ts"], "message": copy.deepcopy(msg)}

    def _m_chat_update(self, args: Json) -> Json:
        channel = self._check_channel(args)
        msg = self._find_message(channel, args.get("ts"))
        self._check_message_content(args, require=False)
        for key in ("text", "blocks", "attachments", "metadata"):
            if key in args and args[key] is not None:
                msg[key] = args[key]
        msg["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
        out = {k: v for k, v in msg.items() if k != "bot_profile"}
        return {"ok": True, "channel": channel, "ts": msg["ts"], "text": msg.get("text", ""),
                "message": copy.deepcopy(out)}

    def _m_chat_delete(self, args: Json) -> Json:
        channel = self._check_channel(args)
        msg = self._find_message(channel, args.get("ts"))
        self._delete_message(channel, msg["ts"])
        return {"ok": True, "channel": channel, "ts": msg["ts"]}

    def _m_chat_postEphemeral(self, args: Json) -> Json:
        channel = self._check_channel(args)
        user = args.get("user")
        if not user:
            raise _SlackError("user_not_found")
        if user in self.missing_users:
            raise _SlackError("user_not_found")
        self._check_message_content(args)
        ts = self._next_ts()
        record = {"channel": channel, "user": str(user), "message_ts": ts, "text": args.get("text", ""),
                  "blocks": args.get("blocks"), "attachments": args.get("attachments"),
                  "thread_ts": args.get("thread_ts")}
        self._ephemerals.append(record)
        return {"ok": True, "message_ts": ts}

    def _m_chat_getPermalink(self, args: Json) -> Json:
        channel = self._check_channel(args)
        msg = self._find_message(channel, args.get("message_ts"))
        link = f"https://example.slack.com/archives/{channel}/p{msg['ts'].replace('.', '')}"
        if msg.get("thread_ts") and msg["thread_ts"] != msg["ts"]:
            link += f"?thread_ts={msg['thread_ts']}&cid={channel}"
        return {"ok": True, "channel": channel, "permalink": link}

    def _m_conversations_replies(self, args: Json) -> Json:
        channel = self._check_channel(args)
        ts = str(args.get("ts") or "")
        parent = self._messages.get(channel, {}).get(ts)
        if parent is None:
            raise _SlackError("thread_not_found")
        msgs = [copy.deepcopy(parent)]
        msgs += [copy.deepcopy(self._messages[channel][r]) for r in self._replies.get((channel, ts), [])
                 if r in self._messages[channel]]
        limit = int(args.get("limit") or 1000)
        return {"ok": True, "messages": msgs[:limit], "has_more": len(msgs) > limit,
                "response_metadata": {"next_cursor": ""}}

    def _m_conversations_history(self, args: Json) -> Json:
        channel = self._check_channel(args)
        msgs = [copy.deepcopy(m) for ts, m in self._messages.get(channel, {}).items()
                if not m.get("thread_ts") or m["thread_ts"] == ts or m.get("subtype") == "thread_broadcast"]
        msgs.sort(key=lambda m: float(m["ts"]), reverse=True)
        limit = int(args.get("limit") or 100)
        return {"ok": True, "messages": msgs[:limit], "has_more": len(msgs) > limit, "pin_count": 0,
                "response_metadata": {"next_cursor": ""}}

    def _m_conversations_info(self, args: Json) -> Json:
        channel = self._check_channel(args)
        return {"ok": True, "channel": self._channel_info(channel)}

    def _m_conversations_open(self, args: Json) -> Json:
        if args.get("channel"):
            channel = self._check_channel(args)
        else:
            users = args.get("users")
            if isinstance(users, list):
                users = ",".join(users)
            users = [u for u in str(users or "").split(",") if u]
            if not users:
                raise _SlackError("users_list_not_supplied")
            for u in users:
                if u in self.missing_users:
                    raise _SlackError("user_not_found")
            channel = self._resolve_channel(users[0]) if len(users) == 1 else self._next_id("G")
        return {"ok": True, "channel": {"id": channel}}

    def _m_reactions_add(self, args: Json) -> Json:
        channel = self._check_channel(args)
        msg = self._find_message(channel, args.get("timestamp"))
        name = str(args.get("name") or "")
        if not name:
            raise _SlackError("invalid_name")
        for r in msg.setdefault("reactions", []):
            if r["name"] == name:
                raise _SlackError("already_reacted")
        msg["reactions"].append({"name": name, "users": [BOT_USER_ID], "count": 1})
        return {"ok": True}

    def _m_users_info(self, args: Json) -> Json:
        user_id = args.get("user")
        if not user_id:
            raise _SlackError("user_not_found")
        return {"ok": True, "user": self._user(str(user_id))}

    def _m_usergroups_users_list(self, args: Json) -> Json:
        group = args.get("usergroup")
        if not group or group not in self.usergroups:
            raise _SlackError("no_such_subteam")
        return {"ok": True, "users": list(self.usergroups[group])}

    def _m_views_open(self, args: Json) -> Json:
        trig = self._trigger(args)
        view = self._view_arg(args, require_modal=True)
        out = self._new_view(view)
        self._view_meta[out["id"]] = {"user": trig.get("user"), "trigger_id": args.get("trigger_id")}
        return {"ok": True, "view": copy.deepcopy(out)}

    def _m_views_push(self, args: Json) -> Json:
        trig = self._trigger(args)
        view = self._view_arg(args, require_modal=True)
        previous = trig.get("view_id")
        root = self._views[previous]["root_view_id"] if previous in self._views else None
        out = self._new_view(view, previous=previous, root=root)
        self._view_meta[out["id"]] = {"user": trig.get("user"), "trigger_id": args.get("trigger_id")}
        return {"ok": True, "view": copy.deepcopy(out)}

    def _m_views_update(self, args: Json) -> Json:
        view_id, external_id = args.get("view_id"), args.get("external_id")
        if not view_id and not external_id:
            raise _SlackError("invalid_arguments", ["[ERROR] either view_id or external_id is required"])
        view = self._view_arg(args)
        current = None
        if view_id:
            current = self._views.get(str(view_id))
        else:
            current = next((v for v in self._views.values() if v.get("external_id") == external_id), None)
        if current is None:
            raise _SlackError("not_found")
        if args.get("hash") and args["hash"] != current["hash"]:
            raise _SlackError("hash_conflict")
        out = self._new_view(view, view_id=current["id"], previous=current["previous_view_id"],
                             root=current["root_view_id"])
        if not view.get("external_id") and current.get("external_id"):
            out["external_id"] = current["external_id"]
        return {"ok": True, "view": copy.deepcopy(out)}

    def _m_views_publish(self, args: Json) -> Json:
        user_id = args.get("user_id")
        if not user_id:
            raise _SlackError("invalid_arguments", ["[ERROR] missing required field: user_id"])
        if user_id in self.missing_users:
            raise _SlackError("user_not_found")
        view = self._view_arg(args, require_home=True)
        existing = self._home_views.get(str(user_id))
        if existing and args.get("hash") and args["hash"] != self._views[existing]["hash"]:
            raise _SlackError("hash_conflict")
        out = self._new_view(view, view_id=existing)
        self._home_views[str(user_id)] = out["id"]
        self._view_meta[out["id"]] = {"user": str(user_id)}
        return {"ok": True, "view": copy.deepcopy(out)}


# ---------------------------------------------------------------------------------------------
# Signed requests towards the app (what Slack sends to /slack/events)
# ---------------------------------------------------------------------------------------------


def slack_signature(signing_secret: str, timestamp: Union[int, str], body: Union[str, bytes]) -> str:
    """`v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`, as in Slack's "Verifying requests" doc."""
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    base = f"v0:{timestamp}:{body}".encode("utf-8")
    return "v0=" + hmac.new(signing_secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def _infer_input_type(leaf: Json) -> str:
    for key, kind in (
        ("selected_options", "multi_static_select"),
        ("selected_option", "static_select"),
        ("selected_conversations", "multi_conversations_select"),
        ("selected_conversation", "conversations_select"),
        ("selected_channels", "multi_channels_select"),
        ("selected_channel", "channels_select"),
        ("selected_users", "multi_users_select"),
        ("selected_user", "users_select"),
        ("selected_date", "datepicker"),
        ("selected_time", "timepicker"),
    ):
        if key in leaf:
            return kind
    return "plain_text_input"


def normalize_state_values(values: Optional[Json]) -> Json:
    """Slack's `state.values` shape. Leaves may be given as plain strings (plain_text_input values)
    or dicts without `type` (inferred from `selected_*`)."""
    out: Json = {}
    for block_id, actions in (values or {}).items():
        out[block_id] = {}
        for action_id, leaf in actions.items():
            if not isinstance(leaf, dict):
                leaf = {"type": "plain_text_input", "value": leaf}
            else:
                leaf = dict(leaf)
                leaf.setdefault("type", _infer_input_type(leaf))
            out[block_id][action_id] = leaf
    return out


def _find_element(blocks: Any, action_id: str):
    for block in blocks or []:
        if not isinstance(block, dict):
            continue
        candidates = []
        if block.get("type") == "actions":
            candidates = block.get("elements") or []
        elif block.get("type") == "section" and isinstance(block.get("accessory"), dict):
            candidates = [block["accessory"]]
        elif block.get("type") == "input" and isinstance(block.get("element"), dict):
            candidates = [block["element"]]
        for el in candidates:
            if isinstance(el, dict) and el.get("action_id") == action_id:
                return block.get("block_id"), el
    return None, None


class SlackSender:
    """Sends Slack-signed requests to the app's real `/slack/events` endpoint.

    `app_url` is the app's base URL (or the full events URL). `fake` (optional) supplies
    response_urls / trigger_ids and the current state of messages and views, so payloads carry
    what Slack would send (the message a button sits on, the view being submitted).
    """

    def __init__(self, app_url: str, signing_secret: str, fake: Optional[SlackFake] = None,
                 *, timeout: float = 10.0, path: str = "/slack/events"):
        app_url = app_url.rstrip("/")
        self.url = app_url if app_url.endswith(path) else app_url + path
        self.signing_secret = signing_secret
        self.fake = fake
        self.timeout = timeout
        self.session = requests.Session()
        self.team_id = TEAM_ID
        self.team_domain = TEAM_DOMAIN
        self.api_app_id = APP_ID
        self.verification_token = VERIFICATION_TOKEN
        self.sent: List[requests.PreparedRequest] = []

    # -- signing ---------------------------------------------------------------------------------

    def sign(self, body: Union[str, bytes], timestamp: Optional[Union[int, str]] = None) -> Dict[str, str]:
        """The two headers Slack adds: X-Slack-Request-Timestamp and X-Slack-Signature."""
        ts = str(int(time.time())) if timestamp is None else str(timestamp)
        return {"X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": slack_signature(self.signing_secret, ts, body)}

    def raw(self, body: Union[str, bytes, Json], headers: Optional[Dict[str, str]] = None, sign: bool = True,
            timestamp: Optional[Union[int, str]] = None, signature: Optional[str] = None,
            content_type: Optional[str] = None) -> requests.Response:
        """POST `body` as-is. sign=False sends no signature headers; `timestamp` / `signature`
        override what is sent (stale / forged tests). A dict body is sent as JSON."""
        if isinstance(body, dict):
            body = json.dumps(body)
            content_type = content_type or "application/json"
        if isinstance(body, str):
            body = body.encode("utf-8")
        out: Dict[str, str] = {
            "Content-Type": content_type or "application/x-www-form-urlencoded",
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "Accept": "application/json,*/*",
        }
        if sign:
            out.update(self.sign(body, timestamp))
        elif timestamp is not None:
            out["X-Slack-Request-Timestamp"] = str(timestamp)
        if signature is not None:
            out["X-Slack-Signature"] = signature
        out.update(headers or {})
        resp = self.session.post(self.url, data=body, headers=out, timeout=self.timeout)
        self.sent.append(resp.request)
        return resp

    def _send(self, body: str, content_type: str, retry_num: Optional[int], retry_reason: Optional[str],
              headers: Optional[Dict[str, str]]) -> requests.Response:
        extra = dict(headers or {})
        if retry_num is not None:
            extra["X-Slack-Retry-Num"] = str(retry_num)
            extra["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
        elif retry_reason is not None:
            extra["X-Slack-Retry-Reason"] = retry_reason
        return self.raw(body, headers=extra, content_type=content_type)

    def _send_payload(self, payload: Json, **kw: Any) -> requests.Response:
        body = urlencode({"payload": json.dumps(payload)})
        return self._send(body, "application/x-www-form-urlencoded", **kw)

    # -- helpers -----------------------------------------------------------------------------------

    def _trigger_id(self, user_id: str, view_id: Optional[str] = None) -> str:
        if self.fake is not None:
            return self.fake.mint_trigger_id(user_id, view_id)
        return f"{int(time.time())}.{uuid.uuid4().int % 10**13:013d}.{uuid.uuid4().hex}"

    def _response_url(self, channel: Optional[str] = None, ts: Optional[str] = None,
                      user: Optional[str] = None) -> str:
        if self.fake is not None:
            return self.fake.response_url(channel=channel, message_ts=ts, user=user)
        return "http://127.0.0.1:9/response/none"  # nothing listens there: never the real Slack

    def _user(self, user_id: str) -> Json:
        name = user_id.lower()
        if self.fake is not None and user_id in self.fake.users:
            name = self.fake.users[user_id].get("name", name)
        return {"id": user_id, "username": name, "name": name, "team_id": self.team_id}

    def _channel(self, channel_id: str) -> Json:
        name = f"channel-{channel_id.lower()}"
        if self.fake is not None and channel_id in self.fake.channels:
            name = self.fake.channels[channel_id].get("name", name)
        return {"id": channel_id, "name": name}

    def _team(self) -> Json:
        return {"id": self.team_id, "domain": self.team_domain}

    @staticmethod
    def _action_ts() -> str:
        return f"{time.time():.6f}"

    # -- what Slack sends --------------------------------------------------------------------------

    def command(self, command: str, text: str = "", user_id: str = "U0DEV", channel_id: str = "C0DEV",
                team_id: Optional[str] = None, trigger_id: Optional[str] = None,
                response_url: Optional[str] = None, retry_num: Optional[int] = None,
                retry_reason: Optional[str] = None, headers: Optional[Dict[str, str]] = None,
                **extra_fields: str) -> requests.Response:
        """A slash command, form-encoded exactly like Slack's payload."""
        if not command.startswith("/"):
            command = "/" + command
        user = self._user(user_id)
        fields = {
            "token": self.verification_token,
            "team_id": team_id or self.team_id,
            "team_domain": self.team_domain,
            "channel_id": channel_id,
            "channel_name": self._channel(channel_id)["name"],
            "user_id": user_id,
            "user_name": user["username"],
            "command": command,
            "text": text,
            "api_app_id": self.api_app_id,
            "is_enterprise_install": "false",
            "response_url": response_url or self._response_url(channel_id, None, user_id),
            "trigger_id": trigger_id or self._trigger_id(user_id),
        }
        fields.update(extra_fields)
        return self._send(urlencode(fields), "application/x-www-form-urlencoded",
                          retry_num=retry_num, retry_reason=retry_reason, headers=headers)

    def block_actions(self, action_id: str, value: Optional[str] = None, user_id: str = "U0DEV",
                      channel_id: Optional[str] = "C0DEV", message_ts: Optional[str] = None,
                      message: Optional[Json] = None, container: Optional[Json] = None,
                      trigger_id: Optional[str] = None, block_id: Optional[str] = None,
                      view: Optional[Union[str, Json]] = None, response_url: Optional[str] = None,
                      action: Optional[Json] = None, state_values: Optional[Json] = None,
                      retry_num: Optional[int] = None, retry_reason: Optional[str] = None,
                      headers: Optional[Dict[str, str]] = None) -> requests.Response:
        """A block_actions interaction (button by default; `action` overrides/extends actions[0],
        e.g. {"type": "static_select", "selected_option": {...}}).

        On a message: pass message_ts (the fake's stored message is used as `message`) or `message`.
        In a modal: pass `view` (a view dict or a view id known to the fake); no channel/response_url.
        block_id, value and button text default to what the element in the blocks says.
        """
        payload: Json = {
            "type": "block_actions",
            "user": self._user(user_id),
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "team": self._team(),
            "enterprise": None,
            "is_enterprise_install": False,
        }
        blocks: Any = None
        view_id = None
        if view is not None:
            if isinstance(view, str):
                stored = self.fake.views.get(view) if self.fake is not None else None
                view = stored or {"id": view, "type": "modal", "blocks": []}
            view = copy.deepcopy(view)
            view_id = view.get("id")
            view.setdefault("state", {"values": {}})
            if state_values is not None:
                view["state"] = {"values": normalize_state_values(state_values)}
            blocks = view.get("blocks")
            payload["container"] = container or {"type": "view", "view_id": view_id}
            payload["view"] = view
            if channel_id and container is not None and container.get("type") == "message":
                payload["channel"] = self._channel(channel_id)
        else:
            if message is None and message_ts is not None and self.fake is not None and channel_id:
                message = self.fake.message(channel_id, message_ts)
            if message is None:
                message = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID,
                           "team": self.team_id, "text": "", "blocks": [],
                           "ts": message_ts or f"{time.time():.6f}"}
            message = {k: v for k, v in copy.deepcopy(message).items() if k not in {"replies", "channel"}}
            message_ts = message_ts or message.get("ts")
            blocks = message.get("blocks")
            payload["container"] = container or {"type": "message", "message_ts": message_ts,
                                                 "channel_id": channel_id, "is_ephemeral": False}
            payload["channel"] = self._channel(channel_id or "C0DEV")
            payload["message"] = message
            payload["state"] = {"values": normalize_state_values(state_values)}
            payload["response_url"] = response_url or self._response_url(channel_id, message_ts, user_id)
        payload["trigger_id"] = trigger_id or self._trigger_id(user_id, view_id)

        found_block_id, element = _find_element(blocks, action_id)
        element = element or {}
        act: Json = {
            "action_id": action_id,
            "block_id": block_id or found_block_id or uuid.uuid4().hex[:5],
            "type": element.get("type", "button"),
            "action_ts": self._action_ts(),
        }
        if act["type"] == "button":
            act["text"] = element.get("text") or {"type": "plain_text", "text": action_id, "emoji": True}
            if element.get("style"):
                act["style"] = element["style"]
        resolved_value = value if value is not None else element.get("value")
        if resolved_value is not None:
            act["value"] = resolved_value
        act.update(action or {})
        payload["actions"] = [act]
        return self._send_payload(payload, retry_num=retry_num, retry_reason=retry_reason, headers=headers)

    def _submission_view(self, callback_id: str, view_id: Optional[str], hash: Optional[str],
                         private_metadata: Optional[str]) -> Json:
        stored: Optional[Json] = None
        if self.fake is not None:
            views = self.fake.views
            if view_id is not None:
                stored = views.get(view_id)
            else:
                matching = [v for v in views.values() if v.get("callback_id") == callback_id]
                stored = matching[-1] if matching else None
        view: Json = copy.deepcopy(stored) if stored else {
            "id": view_id or f"V0{uuid.uuid4().hex[:9].upper()}",
            "team_id": self.team_id,
            "type": "modal",
            "blocks": [],
            "private_metadata": "",
            "callback_id": callback_id,
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "title": {"type": "plain_text", "text": "Modal"},
            "clear_on_close": False,
            "notify_on_close": False,
            "close": None,
            "submit": None,
            "previous_view_id": None,
            "root_view_id": None,
            "app_id": self.api_app_id,
            "external_id": "",
            "app_installed_team_id": self.team_id,
            "bot_id": BOT_ID,
        }
        if view.get("root_view_id") is None:
            view["root_view_id"] = view["id"]
        view["callback_id"] = callback_id
        if private_metadata is not None:
            view["private_metadata"] = private_metadata
        if hash is not None:
            view["hash"] = hash
        return view

    def view_submission(self, callback_id: str, values: Optional[Json] = None, user_id: str = "U0DEV",
                        private_metadata: Optional[str] = None, view_id: Optional[str] = None,
                        hash: Optional[str] = None, response_urls: Optional[List[Json]] = None,
                        retry_num: Optional[int] = None, retry_reason: Optional[str] = None,
                        headers: Optional[Dict[str, str]] = None) -> requests.Response:
        """A view_submission. `values` is Slack's state.values: {block_id: {action_id: {...}}}.
        view_id=None uses the newest view the fake holds with this callback_id (else a fresh id);
        private_metadata / hash default to the stored view's."""
        view = self._submission_view(callback_id, view_id, hash, private_metadata)
        view["state"] = {"values": normalize_state_values(values)}
        payload = {
            "type": "view_submission",
            "team": self._team(),
            "user": self._user(user_id),
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "trigger_id": self._trigger_id(user_id, view["id"]),
            "view": view,
            "response_urls": response_urls or [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        return self._send_payload(payload, retry_num=retry_num, retry_reason=retry_reason, headers=headers)

    def view_closed(self, callback_id: str, user_id: str = "U0DEV", view_id: Optional[str] = None,
                    private_metadata: Optional[str] = None, is_cleared: bool = False,
                    values: Optional[Json] = None, headers: Optional[Dict[str, str]] = None) -> requests.Response:
        view = self._submission_view(callback_id, view_id, None, private_metadata)
        view["state"] = {"values": normalize_state_values(values)}
        payload = {
            "type": "view_closed",
            "team": self._team(),
            "user": self._user(user_id),
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "view": view,
            "is_cleared": is_cleared,
            "is_enterprise_install": False,
            "enterprise": None,
        }
        return self._send_payload(payload, retry_num=None, retry_reason=None, headers=headers)

    def event(self, event: Json, team_id: Optional[str] = None, event_id: Optional[str] = None,
              event_time: Optional[int] = None, retry_num: Optional[int] = None,
              retry_reason: Optional[str] = None, headers: Optional[Dict[str, str]] = None) -> requests.Response:
        """An Events API request. A dict whose type is `event_callback` or `url_verification`
        is sent as-is; anything else is the inner event and gets wrapped in an event_callback envelope."""
        if event.get("type") in {"event_callback", "url_verification", "app_rate_limited"}:
            envelope = dict(event)
            if envelope["type"] == "url_verification":
                envelope.setdefault("token", self.verification_token)
                envelope.setdefault("challenge", uuid.uuid4().hex)
        else:
            inner = dict(event)
            now = time.time()
            inner.setdefault("event_ts", f"{now:.6f}")
            envelope = {
                "token": self.verification_token,
                "team_id": team_id or self.team_id,
                "context_team_id": team_id or self.team_id,
                "context_enterprise_id": None,
                "api_app_id": self.api_app_id,
                "event": inner,
                "type": "event_callback",
                "event_id": event_id or "Ev" + uuid.uuid4().hex[:10].upper(),
                "event_time": event_time or int(now),
                "authorizations": [{"enterprise_id": None, "team_id": team_id or self.team_id,
                                    "user_id": BOT_USER_ID, "is_bot": True, "is_enterprise_install": False}],
                "is_ext_shared_channel": False,
                "event_context": "4-" + uuid.uuid4().hex,
            }
        return self._send(json.dumps(envelope), "application/json",
                          retry_num=retry_num, retry_reason=retry_reason, headers=headers)

    def url_verification(self, challenge: Optional[str] = None) -> requests.Response:
        return self.event({"type": "url_verification", "challenge": challenge or uuid.uuid4().hex})


SlackSigner = SlackSender


@pytest.fixture
def slack_fake():
    """A started SlackFake, stopped after the test."""
    fake = SlackFake().start()
    try:
        yield fake
    finally:
        fake.stop()
