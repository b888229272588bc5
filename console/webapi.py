"""The Slack Web API methods deckhand calls, as the console's pretend Slack answers them.

`WebApiMethods` is mixed into `console_slack.LocalSlack`, which owns the state, the lock and the
HTTP server: each `m_<method>` takes the call's arguments and returns the fields of an ok answer,
or raises SlackError with Slack's error code. Answers carry the fields Slack documents and that
deckhand reads (ts, channel, view, permalink, users).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

TEAM_ID = "T0CONSOLE"
BOT_USER_ID = "U0DECKHAND"
BOT_ID = "B0DECKHAND"
APP_ID = "A0DECKHAND"
TOKEN = "xoxb-console-local"
JSON_FIELDS = ("blocks", "view", "attachments", "metadata")


@dataclass
class Event:
    """Something the person at the console should see. kind: message, update, delete, ephemeral,
    ephemeral_update, ephemeral_delete, home, modal, unsupported, rejected."""

    kind: str
    channel: str | None = None
    ts: str | None = None
    user: str | None = None
    thread_ts: str | None = None
    text: str | None = None
    blocks: list | None = None
    view: dict | None = None
    detail: str = ""


@dataclass
class Origin:
    """Where a response_url leads back to: the channel, and the message a button sat on."""

    channel: str
    user: str
    message_ts: str | None = None
    ephemeral: bool = False


@dataclass
class State:
    messages: dict[str, dict[str, dict]] = field(default_factory=dict)      # channel -> ts -> message
    ephemerals: dict[str, dict] = field(default_factory=dict)               # ts -> {channel, user, text, blocks}
    views: dict[str, dict] = field(default_factory=dict)                    # view id -> view
    stacks: dict[str, list[str]] = field(default_factory=dict)              # user -> open modal ids, top last
    homes: dict[str, str] = field(default_factory=dict)                     # user -> home view id
    triggers: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # trigger -> (user, view id)
    origins: dict[str, Origin] = field(default_factory=dict)                # response_url id -> origin


class SlackError(Exception):
    pass


def slack_limits(blocks: Any, max_blocks: int) -> str | None:
    """The first Slack limit these blocks break, or None."""
    if not isinstance(blocks, list):
        return "blocks must be a list"
    if len(blocks) > max_blocks:
        return f"{len(blocks)} blocks (Slack allows {max_blocks})"
    for i, block in enumerate(blocks):
        text = (block.get("text") or {}).get("text", "") if isinstance(block.get("text"), dict) else ""
        if block.get("type") == "section" and len(text) > 3000:
            return f"blocks[{i}]: section text of {len(text)} characters (Slack allows 3000)"
        if block.get("type") == "header" and len(text) > 150:
            return f"blocks[{i}]: header of {len(text)} characters (Slack allows 150)"
        if len(block.get("fields") or []) > 10:
            return f"blocks[{i}]: more than 10 fields"
        if block.get("type") == "actions" and len(block.get("elements") or []) > 25:
            return f"blocks[{i}]: more than 25 elements"
    return None


class WebApiMethods:
    """Needs from its host: state, lock, on_event, group_members, _post, _delete, add_ephemeral,
    push_view, replace_view, _store_view."""

    def _find(self, channel: str, ts: Any) -> dict:
        message = self.state.messages.get(channel, {}).get(str(ts))
        if message is None:
            raise SlackError("message_not_found")
        return message

    # -- Web API methods (the ones deckhand calls) -------------------------------------------------
    def m_auth_test(self, args: dict) -> dict:
        return {"url": "https://console.invalid/", "team": "console", "user": "deckhand", "team_id": TEAM_ID,
                "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": False}

    def m_api_test(self, args: dict) -> dict:
        return {"args": args}

    def m_chat_postMessage(self, args: dict) -> dict:
        self._check(args)
        channel = str(args.get("channel") or "")
        if not channel:
            raise SlackError("channel_not_found")
        if channel.startswith(("U", "W")):
            channel = "D" + channel[1:]  # posting to a user ID lands in the DM with them
        message = self._post(channel, args)
        return {"channel": channel, "ts": message["ts"], "message": copy.deepcopy(message)}

    def m_chat_update(self, args: dict) -> dict:
        self._check(args)
        channel = str(args.get("channel"))
        message = self._find(channel, args.get("ts"))
        for key in ("text", "blocks"):
            if args.get(key) is not None:
                message[key] = args[key]
        self.on_event(Event("update", channel=channel, ts=message["ts"], text=message["text"],
                            blocks=message.get("blocks")))
        return {"channel": channel, "ts": message["ts"], "text": message["text"]}

    def m_chat_delete(self, args: dict) -> dict:
        channel = str(args.get("channel"))
        self._find(channel, args.get("ts"))
        self._delete(Origin(channel=channel, user=""), str(args.get("ts")))
        return {"channel": channel, "ts": args.get("ts")}

    def m_chat_postEphemeral(self, args: dict) -> dict:
        self._check(args)
        if not args.get("user"):
            raise SlackError("user_not_found")
        ts = self.add_ephemeral(str(args.get("channel")), str(args["user"]), args.get("text"), args.get("blocks"))
        return {"message_ts": ts}

    def m_chat_getPermalink(self, args: dict) -> dict:
        channel = str(args.get("channel"))
        message = self._find(channel, args.get("message_ts"))
        return {"channel": channel, "permalink": f"https://console.invalid/archives/{channel}/p{message['ts'].replace('.', '')}"}

    def m_conversations_replies(self, args: dict) -> dict:
        channel, ts = str(args.get("channel")), str(args.get("ts"))
        parent = self._find(channel, ts)
        replies = [m for m in self.state.messages.get(channel, {}).values() if m.get("thread_ts") == ts and m["ts"] != ts]
        return {"messages": copy.deepcopy([parent] + replies), "has_more": False,
                "response_metadata": {"next_cursor": ""}}

    def m_conversations_history(self, args: dict) -> dict:
        channel = str(args.get("channel"))
        messages = [m for m in self.state.messages.get(channel, {}).values() if not m.get("thread_ts")]
        messages.sort(key=lambda m: float(m["ts"]), reverse=True)
        return {"messages": copy.deepcopy(messages[: int(args.get("limit") or 100)]), "has_more": False,
                "response_metadata": {"next_cursor": ""}}

    def m_conversations_open(self, args: dict) -> dict:
        users = args.get("users") or ""
        users = users if isinstance(users, list) else [u for u in str(users).split(",") if u]
        if args.get("channel"):
            return {"channel": {"id": args["channel"]}}
        if not users:
            raise SlackError("users_list_not_supplied")
        return {"channel": {"id": "D" + users[0][1:]}}

    def m_users_info(self, args: dict) -> dict:
        user = str(args.get("user") or "")
        if not user:
            raise SlackError("user_not_found")
        return {"user": {"id": user, "team_id": TEAM_ID, "name": user.lower(), "real_name": user, "deleted": False,
                         "is_bot": False, "tz": "UTC", "tz_offset": 0,
                         "profile": {"real_name": user, "display_name": user, "email": f"{user.lower()}@console.invalid"}}}

    def m_usergroups_users_list(self, args: dict) -> dict:
        return {"users": list(self.group_members(str(args.get("usergroup") or "")))}

    def m_reactions_add(self, args: dict) -> dict:
        self._find(str(args.get("channel")), args.get("timestamp"))
        return {}

    def m_views_open(self, args: dict) -> dict:
        user, _ = self._trigger(args)
        view = self._view_arg(args)
        stored = self.push_view(user, view)
        self.on_event(Event("modal", user=user, view=stored))
        return {"view": stored}

    def m_views_push(self, args: dict) -> dict:
        user, _ = self._trigger(args)
        stored = self.push_view(user, self._view_arg(args))
        self.on_event(Event("modal", user=user, view=stored))
        return {"view": stored}

    def m_views_update(self, args: dict) -> dict:
        current = self.state.views.get(str(args.get("view_id") or ""))
        if current is None and args.get("external_id"):
            current = next((v for v in self.state.views.values() if v.get("external_id") == args["external_id"]), None)
        if current is None:
            raise SlackError("not_found")
        if args.get("hash") and args["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        stored = self.replace_view(current["id"], self._view_arg(args))
        user = next((u for u, stack in self.state.stacks.items() if stored["id"] in stack), None)
        if stored.get("type") == "home":
            self.on_event(Event("home", user=next((u for u, v in self.state.homes.items() if v == stored["id"]), None),
                                view=stored))
        else:
            self.on_event(Event("modal", user=user, view=stored))
        return {"view": stored}

    def m_views_publish(self, args: dict) -> dict:
        user = str(args.get("user_id") or "")
        if not user:
            raise SlackError("invalid_arguments: user_id is required")
        view = self._view_arg(args)
        if view.get("type") != "home":
            raise SlackError("invalid_arguments: views.publish takes a home view")
        existing = self.state.homes.get(user)
        if existing and args.get("hash") and args["hash"] != self.state.views[existing]["hash"]:
            raise SlackError("hash_conflict")
        stored = self.replace_view(existing, view) if existing else self._store_view(view)
        self.state.homes[user] = stored["id"]
        self.on_event(Event("home", user=user, view=stored))
        return {"view": copy.deepcopy(stored)}

    def _trigger(self, args: dict) -> tuple[str, str | None]:
        trigger = self.state.triggers.get(str(args.get("trigger_id") or args.get("interactivity_pointer") or ""))
        if trigger is None:
            raise SlackError("invalid_trigger_id: unknown or missing trigger_id")
        return trigger

    def _view_arg(self, args: dict) -> dict:
        view = args.get("view")
        if not isinstance(view, dict):
            raise SlackError("invalid_arguments: view is required")
        problem = slack_limits(view.get("blocks") or [], 100)
        if problem:
            raise SlackError(f"invalid_arguments: {problem}")
        title = (view.get("title") or {}).get("text", "")
        if view.get("type") == "modal" and not 0 < len(title) <= 24:
            raise SlackError(f"invalid_arguments: modal title must be 1-24 characters, got {len(title)}")
        return view
