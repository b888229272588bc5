"""SlackFake's state helpers and Web API method handlers (`_m_<method>`), mixed into SlackFake."""
from __future__ import annotations

import copy
import time
import uuid
from typing import Any, Optional

from .common import (APP_ID, BOT_ID, BOT_USER_ID, BOT_USER_NAME, MAX_VIEW_STACK, TEAM_ID, TEAM_NAME, TRIGGER_TTL,
                     WORKSPACE_URL, Json, _SlackError, _truthy)
from .limits import MAX_TEXT, validate_message_blocks, validate_view


class _WebApiMethods:
    """Web API methods of SlackFake; relies on the state SlackFake.__init__ sets up."""

    # -- state helpers -------------------------------------------------------------------------

    def _check_channel(self, args: Json, key: str = "channel", user_means_dm: bool = False,
                       member: bool = False) -> str:
        """The channel a call names. Only chat.postMessage takes a user id for the DM with that user
        (`user_means_dm`; https://api.slack.com/methods/chat.postMessage#app_home): elsewhere a U... id is
        channel_not_found. `member`: the bot must be in it (not_in_channel), as for posting and reading."""
        channel = args.get(key)
        if not channel:
            raise _SlackError("channel_not_found")
        channel = str(channel)
        if channel[0] in "UW" and not user_means_dm:
            raise _SlackError("channel_not_found")
        if channel in self.missing_channels or self._resolve_channel(channel) in self.missing_channels:
            raise _SlackError("channel_not_found")
        resolved = self._resolve_channel(channel)
        if member and not self.is_member(resolved):
            raise _SlackError("not_in_channel")
        return resolved

    def _known_channel(self, channel: str) -> bool:
        if channel in self.channels or channel in self.known_channels or channel in self._messages:
            return True
        if self.member_of is not None and channel in self.member_of:
            return True
        return channel.startswith("D") and ("U" + channel[1:]) in self._all_users()

    def _all_users(self) -> set:
        return set(self.users) | self.known_users

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
        if user_id in self.missing_users or user_id not in self._all_users():
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
        """Exchange a trigger_id: once (exchanged_trigger_id), within 3 s of the interaction
        (expired_trigger_id), and only one Slack minted (invalid_trigger_id). See views.open's errors."""
        trigger = args.get("trigger_id") or args.get("interactivity_pointer")
        if not trigger:
            raise _SlackError("invalid_arguments", ["[ERROR] missing required field: trigger_id"])
        meta = self._triggers.get(str(trigger))
        if meta is None:
            raise _SlackError("invalid_trigger_id")
        if meta["used"]:
            raise _SlackError("exchanged_trigger_id")
        if self.clock() - meta["minted"] > TRIGGER_TTL:
            raise _SlackError("expired_trigger_id")
        meta["used"] = True
        return meta

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
        channel = self._check_channel(args, user_means_dm=True, member=True)
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
        channel = self._check_channel(args, member=True)
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
        channel = self._check_channel(args, member=True)
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
        channel = self._check_channel(args, member=True)
        msgs = [copy.deepcopy(m) for ts, m in self._messages.get(channel, {}).items()
                if not m.get("thread_ts") or m["thread_ts"] == ts or m.get("subtype") == "thread_broadcast"]
        msgs.sort(key=lambda m: float(m["ts"]), reverse=True)
        limit = int(args.get("limit") or 100)
        return {"ok": True, "messages": msgs[:limit], "has_more": len(msgs) > limit, "pin_count": 0,
                "response_metadata": {"next_cursor": ""}}

    def _m_conversations_info(self, args: Json) -> Json:
        channel = self._check_channel(args)
        if not self._known_channel(channel):
            raise _SlackError("channel_not_found")
        info = self._channel_info(channel)
        info["is_member"] = self.is_member(channel)
        return {"ok": True, "channel": info}

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
                if u in self.missing_users or u not in self._all_users():
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
        # "a valid trigger_id generated from an interaction within the existing modal"; "After a modal is
        # opened, the app is limited to pushing 2 additional views" (https://api.slack.com/methods/views.push).
        trig = self._trigger(args)
        view = self._view_arg(args, require_modal=True)
        previous = trig.get("view_id")
        if previous not in self._views or self._views[previous].get("type") != "modal":
            raise _SlackError("not_found")
        root = self._views[previous]["root_view_id"]
        if sum(1 for v in self._views.values() if v.get("root_view_id") == root) >= MAX_VIEW_STACK:
            raise _SlackError("push_limit_reached")
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
