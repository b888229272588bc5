"""Slack's documented Block Kit limits and a validator for message blocks and views."""
from __future__ import annotations

from typing import Any, List

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
# Per-element option limits, confirmation dialogs, placeholders and hints
# (https://api.slack.com/reference/block-kit/block-elements, .../composition-objects#confirm).
MAX_OVERFLOW_OPTIONS = 5
MAX_RADIO_OPTIONS = 10
MAX_CHECKBOX_OPTIONS = 10
MAX_CONFIRM_TITLE = 100
MAX_CONFIRM_TEXT = 300
MAX_CONFIRM_BUTTON = 30
MAX_PLACEHOLDER = 150
MAX_HINT = 2000
MAX_OPTION_DESCRIPTION = 75
OPTION_LIMITS = {"overflow": MAX_OVERFLOW_OPTIONS, "radio_buttons": MAX_RADIO_OPTIONS,
                 "checkboxes": MAX_CHECKBOX_OPTIONS, "static_select": MAX_OPTIONS, "multi_static_select": MAX_OPTIONS}
# Only these may sit in an input block (https://api.slack.com/reference/block-kit/blocks#input).
INPUT_ELEMENTS = {
    "plain_text_input", "checkboxes", "radio_buttons", "static_select", "multi_static_select", "external_select",
    "multi_external_select", "users_select", "multi_users_select", "conversations_select",
    "multi_conversations_select", "channels_select", "multi_channels_select", "datepicker", "timepicker",
    "datetimepicker", "email_text_input", "url_text_input", "number_input", "file_input", "rich_text_input",
}
KNOWN_BLOCK_TYPES = {
    "section", "divider", "image", "actions", "context", "input", "header", "file", "rich_text",
    "video", "markdown", "call", "table", "context_actions",
}


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
        if obj["text"] == "":
            self.err(pointer + "/text", "must be more than 0 characters")
        self.max_len(pointer + "/text", obj["text"], limit)

    def options(self, pointer: str, options: Any, limit: int = MAX_OPTIONS, plain_only: bool = True) -> None:
        if not isinstance(options, list):
            return
        if len(options) > limit:
            self.err(pointer, f"no more than {limit} items allowed")
        for i, opt in enumerate(options):
            if not isinstance(opt, dict):
                self.err(f"{pointer}/{i}", "must be an object")
                continue
            # Selects and overflow menus show options as plain_text only; radio buttons and checkboxes
            # may use mrkdwn.
            self.text_object(f"{pointer}/{i}/text", opt.get("text"), MAX_OPTION_TEXT, plain_only=plain_only)
            self.max_len(f"{pointer}/{i}/value", opt.get("value"), MAX_OPTION_VALUE)
            if "description" in opt:
                self.text_object(f"{pointer}/{i}/description", opt["description"], MAX_OPTION_DESCRIPTION,
                                 plain_only=plain_only)

    def confirm(self, pointer: str, dialog: Any) -> None:
        if not isinstance(dialog, dict):
            self.err(pointer, "must be an object")
            return
        self.text_object(pointer + "/title", dialog.get("title"), MAX_CONFIRM_TITLE, plain_only=True)
        self.text_object(pointer + "/text", dialog.get("text"), MAX_CONFIRM_TEXT)
        self.text_object(pointer + "/confirm", dialog.get("confirm"), MAX_CONFIRM_BUTTON, plain_only=True)
        self.text_object(pointer + "/deny", dialog.get("deny"), MAX_CONFIRM_BUTTON, plain_only=True)
        if dialog.get("style") not in (None, "primary", "danger"):
            self.err(pointer + "/style", "must be one of primary, danger")

    def initial(self, pointer: str, el: dict) -> None:
        """initial_option(s) must be one of the element's options, exactly as given there."""
        offered = [o for o in el.get("options") or [] if isinstance(o, dict)]
        for group in el.get("option_groups") or []:
            if isinstance(group, dict):
                offered += [o for o in group.get("options") or [] if isinstance(o, dict)]
        if "initial_option" in el and el["initial_option"] not in offered:
            self.err(pointer + "/initial_option", "must be one of the provided options")
        for i, opt in enumerate(el.get("initial_options") or []):
            if opt not in offered:
                self.err(f"{pointer}/initial_options/{i}", "must be one of the provided options")

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
        if "confirm" in el:
            self.confirm(pointer + "/confirm", el["confirm"])
        if "placeholder" in el:
            self.text_object(pointer + "/placeholder", el["placeholder"], MAX_PLACEHOLDER, plain_only=True)
        if kind == "button":
            self.text_object(pointer + "/text", el.get("text"), MAX_BUTTON_TEXT, plain_only=True)
            self.max_len(pointer + "/value", el.get("value"), MAX_BUTTON_VALUE)
            self.max_len(pointer + "/url", el.get("url"), MAX_URL)
            if el.get("style") not in (None, "primary", "danger"):
                self.err(pointer + "/style", "must be one of primary, danger")
        elif kind in OPTION_LIMITS:
            plain_only = kind not in ("radio_buttons", "checkboxes")
            if "options" in el:
                if kind == "overflow" and not el["options"]:
                    self.err(pointer + "/options", "must provide at least 1 items")
                self.options(pointer + "/options", el["options"], OPTION_LIMITS[kind], plain_only)
            for gi, group in enumerate(el.get("option_groups") or []):
                if isinstance(group, dict):
                    self.options(f"{pointer}/option_groups/{gi}/options", group.get("options"), MAX_OPTIONS, plain_only)
            self.initial(pointer, el)
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
                    self.text_object(f"{pointer}/elements/{i}", el, MAX_SECTION_TEXT)
                    continue
                self.element(f"{pointer}/elements/{i}", el, action_ids)
        elif kind == "input":
            self.text_object(pointer + "/label", block.get("label"), MAX_LABEL, plain_only=True)
            if "hint" in block:
                self.text_object(pointer + "/hint", block["hint"], MAX_HINT, plain_only=True)
            if not isinstance(block.get("element"), dict):
                self.err(pointer + "/element", "must provide an element")
            else:
                if block["element"].get("type") not in INPUT_ELEMENTS:
                    self.err(pointer + "/element/type", f"{block['element'].get('type')} is not a valid input element")
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
