"""Block Kit as terminal text, for the console. Pure: blocks in, lines out.

Interactive elements (buttons, menus) get a number from the `number` callback so the person
at the terminal can press them with `click N`; the console decides what a number points to.
"""
from __future__ import annotations

import re
import textwrap
from typing import Any, Callable, Iterable

# (element, block_id) -> the number shown as [N], or None to show the element without one.
Numberer = Callable[[dict, str | None], int | None]

INTERACTIVE = {"button", "static_select", "external_select", "users_select", "conversations_select",
               "channels_select", "overflow", "multi_static_select", "multi_users_select", "datepicker",
               "timepicker", "radio_buttons", "checkboxes"}
INDENT = "  "
_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")
_FENCE = re.compile(r"```(.*?)```", re.S)


def mrkdwn(text: Any) -> str:
    """Slack's control sequences as a person would read them: mentions, channels, links, entities."""
    def link(match: re.Match) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith("@"):
            return "@" + (label or target[1:])
        if target.startswith("#"):
            return "#" + (label or target[1:])
        if target.startswith("!"):
            if target.startswith("!subteam^"):
                return label or "@" + target[len("!subteam^"):]
            return label or "@" + target[1:].split("^")[0]
        return f"{label} ({target})" if label and label != target else target

    out = _LINK.sub(link, str(text or ""))
    return out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def text_of(obj: Any) -> str:
    if isinstance(obj, dict):
        return mrkdwn(obj.get("text", "")) if obj.get("type") == "mrkdwn" else str(obj.get("text", ""))
    return "" if obj is None else str(obj)


def paragraph(text: str) -> list[str]:
    """A section's text: code fences become indented blocks, everything else stays as written."""
    lines: list[str] = []
    position = 0
    for match in _FENCE.finditer(text):
        lines.extend(text[position:match.start()].rstrip("\n").splitlines())
        lines.extend("    " + line for line in match.group(1).strip("\n").splitlines() or [""])
        position = match.end()
    lines.extend(text[position:].lstrip("\n").splitlines())
    return lines


def field_line(field: dict) -> str:
    """`*Cluster*\\nprod-a` (blocks.common.fields) reads as `Cluster: prod-a`."""
    text = text_of(field)
    head, _, rest = text.partition("\n")
    if rest and len(head) > 2 and head.startswith("*") and head.endswith("*"):
        return f"{head[1:-1]}: {rest.replace(chr(10), ' ')}"
    return text.replace("\n", " ")


def element_text(element: dict, number: int | None) -> str:
    kind = element.get("type")
    tag = f"[{number}] " if number is not None else ""
    if kind == "button":
        label = text_of(element.get("text")) or element.get("action_id", "button")
        style = " (danger)" if element.get("style") == "danger" else ""
        link = f" -> {element['url']}" if element.get("url") else ""
        return f"{tag}{label}{style}{link}"
    if kind == "image":
        return f"[image: {element.get('alt_text', '')}]"
    if kind in ("plain_text", "mrkdwn"):
        return text_of(element)
    if kind == "overflow":
        return f"{tag}… more ({len(element.get('options') or [])} choices)"
    if kind in INTERACTIVE:
        chosen = selected_text(element)
        placeholder = text_of(element.get("placeholder")) or kind.replace("_", " ")
        return f"{tag}▾ {chosen or placeholder}"
    return f"[{kind}]"


def selected_text(element: dict) -> str:
    if element.get("initial_option"):
        return text_of(element["initial_option"].get("text"))
    if element.get("initial_options"):
        return ", ".join(text_of(o.get("text")) for o in element["initial_options"])
    for key in ("initial_user", "initial_conversation", "initial_channel", "initial_date", "initial_time"):
        if element.get(key):
            return str(element[key])
    return ""


def _numbered(element: dict, block_id: str | None, number: Numberer) -> str:
    n = number(element, block_id) if element.get("type") in INTERACTIVE else None
    return element_text(element, n)


def render_blocks(blocks: Iterable[dict] | None, number: Numberer, values: dict | None = None) -> list[str]:
    """Lines for a message's or a view's blocks. `values` (view state) fills input blocks."""
    lines: list[str] = []
    for block in blocks or []:
        kind = block.get("type")
        block_id = block.get("block_id")
        if kind == "header":
            lines.append(f"== {text_of(block.get('text'))} ==")
        elif kind == "section":
            body = paragraph(text_of(block.get("text"))) if block.get("text") else []
            body += [INDENT + field_line(f) for f in block.get("fields") or []]
            accessory = block.get("accessory")
            if accessory:
                item = _numbered(accessory, block_id, number)
                if body and accessory.get("type") != "image":
                    body[-1] = f"{body[-1]}   {item}"
                else:
                    body.append(item)
            lines.extend(body)
        elif kind == "context":
            lines.append("  › " + "  ·  ".join(element_text(e, None) for e in block.get("elements") or []))
        elif kind == "divider":
            lines.append("-" * 40)
        elif kind == "actions":
            lines.append("  ".join(_numbered(e, block_id, number) for e in block.get("elements") or []))
        elif kind == "image":
            lines.append(f"[image: {block.get('alt_text', '')}]")
        elif kind == "input":
            lines.extend(_input_lines(block, (values or {}).get(block_id or "", {})))
        elif kind in ("rich_text", "markdown"):
            lines.extend(paragraph(block.get("text") or _rich_text(block.get("elements") or [])))
        else:
            lines.append(f"[{kind} block]")
    return lines


def _rich_text(elements: list) -> str:
    out = []
    for element in elements:
        if isinstance(element, dict):
            if "text" in element and isinstance(element["text"], str):
                out.append(element["text"])
            elif element.get("type") == "user":
                out.append("@" + element.get("user_id", ""))
            elif element.get("type") == "link":
                out.append(element.get("text") or element.get("url", ""))
            out.append(_rich_text(element.get("elements") or []))
    return "".join(out)


def _input_lines(block: dict, state: dict) -> list[str]:
    element = block.get("element") or {}
    label = text_of(block.get("label"))
    optional = " (optional)" if block.get("optional") else ""
    shown = describe_value(element, state.get(element.get("action_id", ""))) or selected_text(element) \
        or element.get("initial_value") or ""
    line = f"▸ {label}{optional}" + (f": {shown}" if shown else "")
    hint = [f"  ({text_of(block['hint'])})"] if block.get("hint") else []
    return [line] + hint


def describe_value(element: dict, leaf: dict | None) -> str:
    """What a person entered, from a state.values leaf."""
    if not leaf:
        return ""
    if leaf.get("selected_option"):
        return text_of(leaf["selected_option"].get("text"))
    if leaf.get("selected_options"):
        return ", ".join(text_of(o.get("text")) for o in leaf["selected_options"])
    for key in ("value", "selected_user", "selected_conversation", "selected_channel", "selected_date",
                "selected_time"):
        if leaf.get(key):
            return str(leaf[key])
    for key in ("selected_users", "selected_conversations", "selected_channels"):
        if leaf.get(key):
            return ", ".join(leaf[key])
    return ""


def render_message(text: str | None, blocks: list | None, number: Numberer) -> list[str]:
    """A message: its blocks when it has any (Slack shows `text` only as the notification)."""
    if blocks:
        return render_blocks(blocks, number)
    return paragraph(mrkdwn(text or "")) or ["(empty message)"]


def render_view(view: dict, number: Numberer, values: dict | None = None) -> list[str]:
    title = text_of(view.get("title")) if view.get("type") == "modal" else "App Home"
    lines = [f"┌ {title}"]
    lines += ["│ " + line for line in render_blocks(view.get("blocks"), number, values)]
    buttons = []
    if view.get("submit"):
        buttons.append(f"<{text_of(view['submit'])}>")
    if view.get("type") == "modal":
        buttons.append(f"<{text_of(view.get('close')) or 'Close'}>")
    lines.append("└ " + "  ".join(buttons))
    return lines


def indent(lines: Iterable[str], width: int = 100) -> str:
    """Indent a message body under its header line, wrapping long prose but never code."""
    out = []
    for line in lines:
        lead = re.match(r"(?:│ )?\s*", line).group(0)
        if len(line) <= width or lead.endswith("    "):  # code stays as written
            out.append(INDENT + line)
        else:
            out.extend(INDENT + part for part in textwrap.wrap(
                line, width, subsequent_indent=lead + "  ", break_on_hyphens=False) or [""])
    return "\n".join(out)
