"""The console's Slack: a Web API server on loopback that keeps what the bot says.

The console points the bot's WebClient and its response_urls here, so listeners make the same
calls they make in production (chat.postMessage, views.open, usergroups.users.list, …) and
the console shows the results. Each visible change is reported to `on_event`. Slack's own
limits are checked (50 blocks per message, 100 per view, 3,000 characters per section) so a
message Slack would reject fails here the same way, with Slack's error code.
"""
from __future__ import annotations

import copy
import itertools
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from console.webapi import (APP_ID, BOT_ID, BOT_USER_ID, JSON_FIELDS, TEAM_ID, Event, Origin, SlackError,
                                     State, WebApiMethods, slack_limits)


class LocalSlack(WebApiMethods):
    def __init__(self, on_event: Callable[[Event], None], group_members: Callable[[str], list[str]]):
        self.on_event = on_event
        self.group_members = group_members
        self.state = State()
        self.lock = threading.RLock()
        self._counter = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "LocalSlack":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, body = owner.handle(self.path, self.headers.get("Content-Type", ""), raw)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8" if not isinstance(body, bytes)
                                 else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="console-slack", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return self.url + "/api/"

    # -- minting -----------------------------------------------------------------------------
    def next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._counter):06d}"

    def trigger(self, user: str, view_id: str | None = None) -> str:
        trigger_id = f"{int(time.time())}.{next(self._counter)}.{uuid.uuid4().hex}"
        with self.lock:
            self.state.triggers[trigger_id] = (user, view_id)
        return trigger_id

    def response_url(self, origin: Origin) -> str:
        rid = uuid.uuid4().hex[:16]
        with self.lock:
            self.state.origins[rid] = origin
        return f"{self.url}/response/{rid}"

    # -- what the console reads ----------------------------------------------------------------
    def message(self, channel: str, ts: str) -> dict | None:
        with self.lock:
            found = self.state.messages.get(channel, {}).get(ts)
            return copy.deepcopy(found) if found else None

    def view(self, view_id: str) -> dict | None:
        with self.lock:
            found = self.state.views.get(view_id)
            return copy.deepcopy(found) if found else None

    def top_modal(self, user: str) -> dict | None:
        with self.lock:
            stack = self.state.stacks.get(user) or []
            return copy.deepcopy(self.state.views[stack[-1]]) if stack else None

    def home(self, user: str) -> dict | None:
        with self.lock:
            view_id = self.state.homes.get(user)
            return copy.deepcopy(self.state.views[view_id]) if view_id else None

    def add_ephemeral(self, channel: str, user: str, text: str | None, blocks: list | None) -> str:
        ts = self.next_ts()
        with self.lock:
            self.state.ephemerals[ts] = {"channel": channel, "user": user, "text": text, "blocks": blocks}
        self.on_event(Event("ephemeral", channel=channel, ts=ts, user=user, text=text, blocks=blocks))
        return ts

    # -- modal stack, for view_submission responses (response_action) and closing --------------
    def push_view(self, user: str, view: dict) -> dict:
        with self.lock:
            stack = self.state.stacks.setdefault(user, [])
            stored = self._store_view(view, previous=stack[-1] if stack else None)
            stack.append(stored["id"])
            return copy.deepcopy(stored)

    def replace_view(self, view_id: str, view: dict) -> dict:
        with self.lock:
            return copy.deepcopy(self._store_view(view, view_id=view_id))

    def close_top(self, user: str) -> None:
        with self.lock:
            stack = self.state.stacks.get(user) or []
            if stack:
                stack.pop()

    def close_all(self, user: str) -> None:
        with self.lock:
            self.state.stacks[user] = []

    def _store_view(self, view: dict, view_id: str | None = None, previous: str | None = None) -> dict:
        old = self.state.views.get(view_id or "")
        vid = view_id or f"V0{next(self._counter):08d}"
        stored = {**copy.deepcopy(view), "id": vid, "team_id": TEAM_ID, "app_id": APP_ID, "bot_id": BOT_ID,
                  "state": {"values": {}}, "hash": f"{time.time():.6f}.{uuid.uuid4().hex[:8]}",
                  "previous_view_id": old["previous_view_id"] if old else previous,
                  "root_view_id": old["root_view_id"] if old else vid}
        stored.setdefault("private_metadata", "")
        stored.setdefault("callback_id", "")
        stored.setdefault("external_id", (old or {}).get("external_id", ""))
        self.state.views[vid] = stored
        return stored

    # -- HTTP ----------------------------------------------------------------------------------
    def handle(self, raw_path: str, content_type: str, raw: bytes) -> tuple[int, Any]:
        path = urlsplit(raw_path).path
        text = raw.decode("utf-8", errors="replace")
        if path.startswith("/response/"):
            return self._respond(path.rsplit("/", 1)[-1], text)
        method = path.removeprefix("/api/").strip("/")
        args: dict[str, Any] = {k: v[-1] for k, v in parse_qs(urlsplit(raw_path).query).items()}
        if text and "json" in content_type:
            args.update(json.loads(text))
        elif text:
            args.update({k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()})
        for key in JSON_FIELDS:
            if isinstance(args.get(key), str) and args[key][:1] in "[{":
                args[key] = json.loads(args[key])
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            self.on_event(Event("unsupported", detail=method))
            return 200, {"ok": False, "error": "unknown_method"}
        try:
            with self.lock:
                return 200, {"ok": True, **handler(args)}
        except SlackError as exc:
            self.on_event(Event("rejected", detail=f"{method}: {exc}"))
            return 200, {"ok": False, "error": str(exc).split(":")[0]}

    def _check(self, args: dict, max_blocks: int = 50) -> None:
        if args.get("blocks") is not None:
            problem = slack_limits(args["blocks"], max_blocks)
            if problem:
                raise SlackError(f"invalid_blocks: {problem}")
        if not args.get("text") and not args.get("blocks") and not args.get("attachments"):
            raise SlackError("no_text: a message needs text or blocks")

    def _respond(self, rid: str, text: str) -> tuple[int, Any]:
        with self.lock:
            origin = self.state.origins.get(rid)
        if origin is None:
            return 404, b"expired_url"
        body = json.loads(text or "{}")
        ts = origin.message_ts
        if body.get("delete_original") and ts:
            self._delete(origin, ts)
            return 200, b"ok"
        try:
            self._check(body)
        except SlackError as exc:
            self.on_event(Event("rejected", detail=f"response_url: {exc}"))
            return 400, str(exc).split(":")[0].encode()
        text_, blocks = body.get("text"), body.get("blocks")
        if body.get("replace_original") and ts:
            with self.lock:
                if origin.ephemeral and ts in self.state.ephemerals:
                    self.state.ephemerals[ts].update(text=text_, blocks=blocks)
                    kind = "ephemeral_update"
                else:
                    message = self.state.messages.get(origin.channel, {}).get(ts)
                    if message is None:
                        return 404, b"message_not_found"
                    message.update(text=text_, blocks=blocks)
                    kind = "update"
            self.on_event(Event(kind, channel=origin.channel, ts=ts, user=origin.user, text=text_, blocks=blocks))
        elif body.get("response_type") == "in_channel":
            with self.lock:
                self._post(origin.channel, body)
        else:
            self.add_ephemeral(origin.channel, origin.user, text_, blocks)
        return 200, b"ok"

    def _delete(self, origin: Origin, ts: str) -> None:
        with self.lock:
            if origin.ephemeral:
                self.state.ephemerals.pop(ts, None)
            else:
                self.state.messages.get(origin.channel, {}).pop(ts, None)
        self.on_event(Event("ephemeral_delete" if origin.ephemeral else "delete", channel=origin.channel, ts=ts))

    def _post(self, channel: str, args: dict) -> dict:
        ts = self.next_ts()
        message = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID, "team": TEAM_ID,
                   "ts": ts, "text": args.get("text") or "", "blocks": args.get("blocks")}
        if args.get("thread_ts"):
            message["thread_ts"] = str(args["thread_ts"])
        self.state.messages.setdefault(channel, {})[ts] = message
        self.on_event(Event("message", channel=channel, ts=ts, thread_ts=message.get("thread_ts"),
                            text=message["text"], blocks=message["blocks"]))
        return message
