"""Filling a modal at terminal prompts, one input block at a time, into Slack's `state.values`.

Slack checks some input constraints in the client before a view_submission is ever sent
(required fields, min/max length, number ranges, max selected items); so do we, re-asking
until the answer fits. Everything else is the app's to validate (response_action "errors").
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Callable

from console.render import describe_value, text_of


class Cancelled(Exception):
    """The person typed `cancel` at a prompt: close the modal."""


@dataclass(frozen=True)
class Field:
    block_id: str
    action_id: str
    label: str
    element: dict
    optional: bool
    hint: str
    dispatch: bool

    @property
    def key(self) -> tuple[str, str]:
        return self.block_id, self.action_id


def input_fields(view: dict) -> list[Field]:
    fields = []
    for block in view.get("blocks") or []:
        if block.get("type") != "input":
            continue
        element = block.get("element") or {}
        fields.append(Field(block_id=block.get("block_id", ""), action_id=element.get("action_id", ""),
                            label=text_of(block.get("label")), element=element,
                            optional=bool(block.get("optional")), hint=text_of(block.get("hint")),
                            dispatch=bool(block.get("dispatch_action"))))
    return fields


def options_of(element: dict) -> list[dict]:
    options = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        options.extend(group.get("options") or [])
    return options


def initial_leaf(element: dict) -> dict:
    """The state leaf Slack reports for an untouched element (its initial_* values)."""
    kind = element.get("type", "plain_text_input")
    leaf: dict = {"type": kind}
    if kind in ("static_select", "external_select", "radio_buttons"):
        leaf["selected_option"] = element.get("initial_option")
    elif kind in ("multi_static_select", "multi_external_select", "checkboxes"):
        leaf["selected_options"] = element.get("initial_options") or []
    elif kind == "users_select":
        leaf["selected_user"] = element.get("initial_user")
    elif kind == "multi_users_select":
        leaf["selected_users"] = element.get("initial_users") or []
    elif kind in ("conversations_select", "channels_select"):
        key = "conversation" if kind.startswith("conv") else "channel"
        leaf[f"selected_{key}"] = element.get(f"initial_{key}")
    elif kind in ("multi_conversations_select", "multi_channels_select"):
        key = "conversations" if "conv" in kind else "channels"
        leaf[f"selected_{key}"] = element.get(f"initial_{key}") or []
    elif kind == "datepicker":
        leaf["selected_date"] = element.get("initial_date")
    elif kind == "timepicker":
        leaf["selected_time"] = element.get("initial_time")
    else:
        leaf["value"] = element.get("initial_value")
    return leaf


def initial_values(view: dict) -> dict:
    values: dict = {}
    for f in input_fields(view):
        values.setdefault(f.block_id, {})[f.action_id] = initial_leaf(f.element)
    return values


def is_empty(leaf: dict | None) -> bool:
    return not describe_value({}, leaf)


class FieldPrompter:
    """Asks for one field's value with `ask(prompt) -> str` (raises EOFError at end of input)."""

    def __init__(self, ask: Callable[[str], str], say: Callable[[str], None]):
        self.ask = ask
        self.say = say

    def fill(self, f: Field, current: dict | None) -> dict:
        current = current or initial_leaf(f.element)
        kind = f.element.get("type", "plain_text_input")
        shown = describe_value(f.element, current)
        optional = " [optional]" if f.optional else ""  # the hint is in the modal shown above
        options = options_of(f.element)
        if options:
            for i, option in enumerate(options, 1):
                self.say(f"    {i}) {text_of(option.get('text'))}")
            optional += " (numbers, comma-separated)" if self._multi(kind) else " (number)"
        while True:
            if kind == "plain_text_input" and f.element.get("multiline"):
                answer = self._multiline(f, shown, optional)
            else:
                answer = self.ask(f"  {f.label}{optional}{f' [{shown}]' if shown else ''}: ").strip()
            if answer.lower() == "cancel":
                raise Cancelled()
            if answer == "":
                if shown or f.optional:
                    return current
                self.say("    This field is required.")
                continue
            if answer == "-" and f.optional:
                return initial_leaf({"type": kind})  # cleared
            leaf, problem = self.parse(f, kind, answer, options)
            if problem:
                self.say(f"    {problem}")
                continue
            return leaf

    def press(self, element: dict, block_id: str | None) -> dict | None:
        """The `actions[0]` that pressing a button or choosing in a menu sends; None when the person
        backs out (denies the confirm dialog, or types `cancel`). Slack sends nothing then either."""
        action = {"action_id": element.get("action_id"), "block_id": block_id or "", "type": element.get("type"),
                  "action_ts": f"{time.time():.6f}"}
        dialog = element.get("confirm")
        if dialog:
            self.say(f"  {text_of(dialog.get('title')) or 'Are you sure?'}\n  {text_of(dialog.get('text'))}")
            yes, no = text_of(dialog.get("confirm")) or "Yes", text_of(dialog.get("deny")) or "Cancel"
            if self.ask(f"  {yes}? [y/N] ({no} = n): ").strip().lower() not in ("y", "yes"):
                self.say(f"  ({no}: nothing was sent)")
                return None
        if element.get("type") == "button":
            action["text"] = element.get("text")
            action.update({k: element[k] for k in ("value", "style") if element.get(k)})
            if element.get("url"):
                self.say(f"  (in Slack this also opens {element['url']})")
            return action
        label = element.get("placeholder") or {"type": "plain_text", "text": element.get("type", "choose")}
        menu = Field(block_id=block_id or "", action_id=element.get("action_id", ""), label=text_of(label),
                     element=element, optional=False, hint="", dispatch=False)
        try:
            leaf = self.fill(menu, None)
        except Cancelled:
            return None
        action.update({k: v for k, v in leaf.items() if k != "type"})
        return action

    @staticmethod
    def _multi(kind: str) -> bool:
        return kind.startswith("multi_") or kind == "checkboxes"

    def _multiline(self, f: Field, shown: str, suffix: str) -> str:
        """One line, like every other field; a line ending in a backslash continues (as in a shell)."""
        current = f" [{shown[:40]}…]" if len(shown) > 40 else f" [{shown}]" if shown else ""
        line = self.ask(f"  {f.label}{suffix} (end a line with \\ to add another){current}: ")
        lines = []
        while line.endswith("\\"):
            lines.append(line[:-1])
            line = self.ask("  … ")
        lines.append(line)
        return "\n".join(lines) if len(lines) > 1 else lines[0].strip()

    def parse(self, f: Field, kind: str, answer: str, options: list[dict]) -> tuple[dict, str | None]:
        element = f.element
        if options:
            picks = [a.strip() for a in answer.split(",")] if self._multi(kind) else [answer]
            chosen = []
            for pick in picks:
                option = self._option(pick, options)
                if option is None:
                    return {}, f"Choose by number (1-{len(options)}), value or text; {pick!r} is none of them."
                chosen.append(option)
            if self._multi(kind):
                most = element.get("max_selected_items")
                if most and len(chosen) > most:
                    return {}, f"Choose at most {most}."
                return {"type": kind, "selected_options": chosen}, None
            return {"type": kind, "selected_option": chosen[0]}, None
        if kind in ("static_select", "external_select"):  # no options to show: take the value as typed
            return {"type": kind, "selected_option": {"text": {"type": "plain_text", "text": answer},
                                                      "value": answer}}, None
        if kind in ("users_select", "conversations_select", "channels_select"):
            key = {"users_select": "user", "conversations_select": "conversation", "channels_select": "channel"}[kind]
            return {"type": kind, f"selected_{key}": answer}, None
        if kind.startswith("multi_") and kind.endswith("_select"):
            key = kind[len("multi_"):-len("_select")] + "s"
            return {"type": kind, f"selected_{key}": [a.strip() for a in answer.split(",") if a.strip()]}, None
        if kind == "datepicker":
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", answer):
                return {}, "Use a date like 2026-01-31."
            return {"type": kind, "selected_date": answer}, None
        if kind == "timepicker":
            if not re.fullmatch(r"\d{2}:\d{2}", answer):
                return {}, "Use a time like 09:30."
            return {"type": kind, "selected_time": answer}, None
        if kind == "number_input":
            return self._number(element, answer)
        if kind == "email_text_input" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", answer):
            return {}, "Enter an email address."
        if kind == "url_text_input" and not re.match(r"https?://\S+$", answer):
            return {}, "Enter a URL starting with http:// or https://."
        low, high = element.get("min_length"), element.get("max_length")
        if low and len(answer) < low:
            return {}, f"Enter at least {low} characters."
        if high and len(answer) > high:
            return {}, f"Enter at most {high} characters (that was {len(answer)})."
        return {"type": kind, "value": answer}, None

    @staticmethod
    def _option(pick: str, options: list[dict]) -> dict | None:
        if pick.isdigit() and 1 <= int(pick) <= len(options):
            return options[int(pick) - 1]
        for option in options:
            if pick in (option.get("value"), text_of(option.get("text"))):
                return option
        return None

    @staticmethod
    def _number(element: dict, answer: str) -> tuple[dict, str | None]:
        decimal = bool(element.get("is_decimal_allowed"))
        try:
            number = float(answer) if decimal else int(answer)
        except ValueError:
            return {}, "Enter a number." if decimal else "Enter a whole number."
        low, high = element.get("min_value"), element.get("max_value")
        if low is not None and number < float(low) or high is not None and number > float(high):
            return {}, f"Enter a number between {low if low is not None else '-∞'} and {high if high is not None else '∞'}."
        return {"type": "number_input", "value": answer}, None
