"""Block Kit building blocks shared by every message and modal. Pure: data in, dicts out.

Slack's limits are enforced here, once, so no feature can exceed them by accident:
50 blocks per message, 100 per modal, 3,000 characters per section text, 2,000 per context
element, 150 per header and plain-text button label (75), 24 per modal title.
https://api.slack.com/reference/block-kit/blocks
"""
from __future__ import annotations

import re
from typing import Any, Iterable

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_CONTEXT_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_VALUE = 2000
MAX_MODAL_TITLE = 24
MAX_FALLBACK_TEXT = 3000


def clip(text: str, limit: int, suffix: str = "…") -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - len(suffix)] + suffix


def clip_words(text: str, limit: int, suffix: str = "…") -> str:
    """Like clip, but cut at a word boundary (unless one word fills the whole limit)."""
    text = str(text)
    if len(text) <= limit:
        return text
    cut = text[: limit - len(suffix) + 1]
    at = cut.rfind(" ")
    return (cut[:at] if at > limit // 2 else cut[:-1]).rstrip(" ,;:—-") + suffix


def escape(text: Any) -> str:
    """The one escape for outside text in mrkdwn: Slack reads `<…>` as a mention, a broadcast
    (`<!channel>`) or a link, and `&…;` as an entity, so &, < and > become entities
    (https://api.slack.com/reference/surfaces/formatting#escaping). Every renderer passes every
    value it did not write itself through this (or through mention/link/code below)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_USER_ID = re.compile(r"[UWB][A-Z0-9]{2,20}")
_USERGROUP_ID = re.compile(r"S[A-Z0-9]{2,20}")
_LINK_URL = re.compile(r"https?://[^\s<>|]+")


def mention(user: Any) -> str:
    """`<@U…>` for a Slack user id; anything else is shown as text, never as a live sequence."""
    text = str(user)
    return f"<@{text}>" if _USER_ID.fullmatch(text) else escape(text)


def group_mention(group: Any) -> str:
    """`<!subteam^S…>` for a user group id; anything else as text."""
    text = str(group)
    return f"<!subteam^{text}>" if _USERGROUP_ID.fullmatch(text) else escape(text)


def link(url: Any, label: Any) -> str:
    """`<url|label>` for an http(s) URL that cannot end the link early; otherwise the label alone."""
    text = str(url or "")
    return f"<{text.replace('&', '&amp;')}|{escape(label)}>" if _LINK_URL.fullmatch(text) else escape(label)


def mrkdwn(text: str) -> dict:
    return {"type": "mrkdwn", "text": clip(text, MAX_SECTION_TEXT)}


def plain(text: str, limit: int = MAX_HEADER_TEXT) -> dict:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def header(text: str) -> dict:
    return {"type": "header", "text": plain(text)}


def section(text: str, accessory: dict | None = None, block_id: str | None = None) -> dict:
    block: dict[str, Any] = {"type": "section", "text": mrkdwn(text)}
    if accessory:
        block["accessory"] = accessory
    if block_id:
        block["block_id"] = block_id
    return block


def fields(pairs: Iterable[tuple[str, str]], block_id: str | None = None) -> dict:
    """A section with up to 10 two-column fields (`*label*\\nvalue`)."""
    items = [{"type": "mrkdwn", "text": clip(f"*{k}*\n{v}", MAX_FIELD_TEXT)} for k, v in list(pairs)[:10]]
    block: dict[str, Any] = {"type": "section", "fields": items}
    if block_id:
        block["block_id"] = block_id
    return block


def context(*texts: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(t, MAX_CONTEXT_TEXT)} for t in texts[:10]]}


def divider() -> dict:
    return {"type": "divider"}


def code(text: str, limit: int = MAX_SECTION_TEXT) -> str:
    """A code block that fits in a section, keeping the END of long logs (where errors are). Slack
    parses `<!channel>` and links inside code blocks too, so the text is escaped; a ``` in it would
    end the block, so it becomes look-alike backticks."""
    body = escape(str(text).replace("```", "ˋˋˋ"))
    room = limit - 8
    if len(body) > room:
        body = "…" + body[-(room - 1):]
    return f"```{body}```"


def confirm(title: str, text: str, yes: str = "Yes", no: str = "Cancel", danger: bool = True) -> dict:
    dialog = {"title": plain(title, 100), "text": mrkdwn(clip(text, 300)), "confirm": plain(yes, 30),
              "deny": plain(no, 30)}
    if danger:
        dialog["style"] = "danger"
    return dialog


def button(text: str, action_id: str, value: str = "", style: str | None = None, url: str | None = None,
           confirm_dialog: dict | None = None) -> dict:
    element: dict[str, Any] = {"type": "button", "text": plain(text, MAX_BUTTON_TEXT), "action_id": action_id}
    if value:
        element["value"] = clip(value, MAX_VALUE, "")
    if style in ("primary", "danger"):
        element["style"] = style
    if url:
        element["url"] = url
    if confirm_dialog:
        element["confirm"] = confirm_dialog
    return element


def actions(*elements: dict, block_id: str | None = None) -> dict:
    block: dict[str, Any] = {"type": "actions", "elements": list(elements)[:25]}
    if block_id:
        block["block_id"] = block_id
    return block


def fit_message(blocks: list[dict], more: str = "and {n} more — see the thread") -> tuple[list[dict], list[dict]]:
    """Split blocks at Slack's 50-block limit: (what fits, with an "and N more" note; the rest)."""
    if len(blocks) <= MAX_MESSAGE_BLOCKS:
        return blocks, []
    head = blocks[: MAX_MESSAGE_BLOCKS - 1]
    rest = blocks[MAX_MESSAGE_BLOCKS - 1:]
    return head + [context(more.format(n=len(rest)))], rest


def chunks(blocks: list[dict], size: int = MAX_MESSAGE_BLOCKS) -> list[list[dict]]:
    return [blocks[i: i + size] for i in range(0, len(blocks), size)] or [[]]


def message(text: str, blocks: list[dict]) -> dict:
    """A chat.postMessage/chat.update body: notification `text` plus blocks within limits."""
    fitted, _ = fit_message(blocks)
    return {"text": clip(text, MAX_FALLBACK_TEXT), "blocks": fitted}


def modal(title: str, blocks: list[dict], callback_id: str, submit: str | None = "Submit",
          close: str = "Cancel", private_metadata: str = "", external_id: str | None = None) -> dict:
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": callback_id,
        "title": plain(title, MAX_MODAL_TITLE),
        "close": plain(close, 24),
        "blocks": blocks[:MAX_VIEW_BLOCKS],
        "private_metadata": clip(private_metadata, 3000, ""),
    }
    if submit:
        view["submit"] = plain(submit, 24)
    if external_id:
        view["external_id"] = external_id
    return view


def option(text: str, value: str) -> dict:
    return {"text": plain(text, 75), "value": clip(value, 150, "")}


def text_input(block_id: str, label: str, *, action_id: str = "value", initial: str | None = None,
               placeholder: str | None = None, hint: str | None = None, optional: bool = False,
               multiline: bool = False, max_length: int | None = None) -> dict:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": action_id, "multiline": multiline}
    if initial:
        element["initial_value"] = str(initial)
    if placeholder:
        element["placeholder"] = plain(placeholder, 150)
    if max_length:
        element["max_length"] = max_length
    return _input(block_id, label, element, hint, optional)


def select_input(block_id: str, label: str, choices: list[tuple[str, str]], *, action_id: str = "value",
                 initial: str | None = None, hint: str | None = None, optional: bool = False,
                 multi: bool = False, initial_many: list[str] | None = None, dispatch: bool = False) -> dict:
    opts = [option(text, value) for text, value in choices][:100]
    element: dict[str, Any] = {"type": "multi_static_select" if multi else "static_select",
                               "action_id": action_id, "options": opts}
    if multi and initial_many:
        element["initial_options"] = [o for o in opts if o["value"] in initial_many]
    elif initial is not None:
        chosen = [o for o in opts if o["value"] == initial]
        if chosen:
            element["initial_option"] = chosen[0]
    block = _input(block_id, label, element, hint, optional)
    if dispatch:
        block["dispatch_action"] = True
    return block


def _input(block_id: str, label: str, element: dict, hint: str | None, optional: bool) -> dict:
    block: dict[str, Any] = {"type": "input", "block_id": block_id, "label": plain(label, 2000), "element": element,
                             "optional": optional}
    if hint:
        block["hint"] = plain(hint, 2000)
    return block


def error_text(what_failed: str, why: str, next_step: str, error_id: str | None = None) -> str:
    """Every user-visible failure says what failed, why, and what to do next."""
    text = f":warning: *{what_failed}* — {why}\n{next_step}"
    if error_id:
        text += f"\n_Error id `{error_id}`_"
    return text


def cores(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") + " cores" if value != 1 else "1 core"


def gib(memory_bytes: float) -> str:
    return f"{memory_bytes / 2**30:.1f} GiB"
