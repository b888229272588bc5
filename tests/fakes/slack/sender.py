"""SlackSender: Slack-signed slash commands, interactivity payloads and Events API envelopes."""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from typing import Any, Dict, List, Optional, Union
from urllib.parse import urlencode

import requests

from .common import APP_ID, BOT_ID, BOT_USER_ID, TEAM_DOMAIN, TEAM_ID, VERIFICATION_TOKEN, Json
from .server import SlackFake

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
        if self.fake is not None:
            self.fake.add_users(user_id)  # whoever clicks exists in the workspace
            if user_id in self.fake.users:
                name = self.fake.users[user_id].get("name", name)
        return {"id": user_id, "username": name, "name": name, "team_id": self.team_id}

    def _channel(self, channel_id: str) -> Json:
        name = f"channel-{channel_id.lower()}"
        if self.fake is not None:
            self.fake.add_channels(channel_id)  # a command typed in a channel: the channel exists
            if channel_id in self.fake.channels:
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
