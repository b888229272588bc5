"""The console's modals: show the open one, fill it at prompts, submit it, follow what the app answers.

Slack semantics kept here (https://api.slack.com/surfaces/modals#updating_response):
a plain ack() to view_submission closes the submitted view (a pushed view goes back to the
one below); response_action "errors" keeps it open with messages under the named blocks;
"update" replaces it, "push" stacks a new one, "clear" closes them all. Input that the person
typed survives an update for blocks that keep their block_id and action_id.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from console.forms import Cancelled, FieldPrompter, Field, initial_values, input_fields
from console.render import indent, render_view, text_of

if TYPE_CHECKING:
    from console import Console


@dataclass
class Form:
    values: dict = field(default_factory=dict)
    answered: set = field(default_factory=set)

    def adopt(self, view: dict) -> None:
        """Start from the view's initial values, keeping what the person answered for fields still there."""
        fresh = initial_values(view)
        keys = {f.key for f in input_fields(view)}
        self.answered &= keys
        for block_id, action_id in self.answered:
            old = self.values.get(block_id, {}).get(action_id)
            if old is not None:
                fresh[block_id][action_id] = old
        self.values = fresh

    def leaf(self, f: Field) -> dict | None:
        return self.values.get(f.block_id, {}).get(f.action_id)


class ModalSession:
    def __init__(self, console: "Console"):
        self.console = console
        self.forms: dict[str, Form] = {}
        self.presented: set[str] = set()  # view hashes already shown

    @property
    def slack(self):
        return self.console.slack

    def values_for(self, view_id: str) -> dict:
        form = self.forms.get(view_id)
        return form.values if form else {}

    def present(self) -> None:
        """Show the acting user's top modal if it is new or changed, and fill it if it has inputs."""
        console = self.console
        while True:
            view = self.slack.top_modal(console.user)
            if view is None or view["hash"] in self.presented:
                return
            self.presented.add(view["hash"])
            if not view.get("submit"):
                self.show(view)
                console.say("(`click N` presses a button in it, `close` closes it)")
                return
            self.fill(view)

    def show(self, view: dict, values: dict | None = None) -> None:
        console = self.console
        surface = ("view", view["id"])
        with console.print_lock:
            console.forget(surface)
            console.say()
            console.say(indent(render_view(view, console.number(surface), values)))

    def fill(self, view: dict) -> None:
        console = self.console
        form = self.forms.setdefault(view["id"], Form())
        form.adopt(view)
        self.show(view, form.values)
        prompter = FieldPrompter(console.read, console.say)
        while True:
            todo = [f for f in input_fields(view) if f.key not in form.answered]
            if todo:
                f = todo[0]
                try:
                    leaf = prompter.fill(f, form.leaf(f))
                except Cancelled:
                    self.close(view)
                    return
                form.values.setdefault(f.block_id, {})[f.action_id] = leaf
                form.answered.add(f.key)
                if f.dispatch:
                    view = self.after(view, lambda: self.send_input_action(view, f, leaf))
                    if view is None:
                        return
                continue
            answer = console.read(f"  Submit \"{text_of(view.get('submit'))}\"? [Y/n, edit, click N]: ").strip().lower()
            if answer in ("", "y", "yes", "submit"):
                if self.submit(view, form):
                    return
                view = self.slack.view(view["id"]) or view
            elif answer in ("n", "no", "cancel", "close"):
                self.close(view)
                return
            elif answer == "edit":
                form.answered.clear()
            elif answer.startswith("click ") and answer[6:].strip().isdigit():
                number = int(answer[6:])
                if number not in console.by_surface.get(("view", view["id"]), []):
                    console.say(f"  [{number}] is not a button in this modal.")
                    continue
                view = self.after(view, lambda: console.click(number))
                if view is None:
                    return
            else:
                console.say("  Type y to submit, n to cancel, `edit` to change the answers, or `click N`.")

    def after(self, view: dict, interaction) -> dict | None:
        """Run an interaction inside a modal; the view to keep filling, or None if another modal took over."""
        interaction()
        self.console.settle()
        top = self.slack.top_modal(self.console.user)
        if top is None or top["id"] != view["id"]:
            return None
        if top["hash"] != view["hash"]:
            self.presented.add(top["hash"])
            self.forms[view["id"]].adopt(top)
            self.show(top, self.forms[view["id"]].values)
        return top

    def send_input_action(self, view: dict, f: Field, leaf: dict) -> None:
        """An input block with dispatch_action sends block_actions as soon as its value is chosen."""
        console = self.console
        payload = console.envelope("block_actions", view["id"])
        action = {"action_id": f.action_id, "block_id": f.block_id, "type": leaf.get("type"),
                  **{k: v for k, v in leaf.items() if k != "type"}}
        current = self.slack.view(view["id"]) or view
        current["state"] = {"values": self.forms[view["id"]].values}
        payload.update(container={"type": "view", "view_id": view["id"]}, view=current, actions=[action])
        console.report(console.send_payload(payload), f"the field `{f.label}`")

    def submit(self, view: dict, form: Form) -> bool:
        """Send view_submission; True when this view is done (closed, replaced, or another on top)."""
        console = self.console
        current = self.slack.view(view["id"]) or view
        current["state"] = {"values": form.values}
        payload = console.envelope("view_submission", view["id"])
        payload.update(view=current, response_urls=[])
        response = console.send_payload(payload)
        status = getattr(response, "status", 404)
        if status >= 400:
            console.report(response, f"the modal `{view.get('callback_id')}`")
            console.say("  The modal stays open; try again or `n` to cancel.")
            return False
        body = (response.body or "").strip()
        answer = json.loads(body) if body.startswith("{") else {}
        action = answer.get("response_action")
        if action == "errors":
            self.show_errors(view, form, answer.get("errors") or {})
            console.settle()
            return False
        if action == "update":
            self.slack.replace_view(view["id"], answer["view"])
            form.answered.clear()  # a new step: ask again, with what was typed as the defaults
        elif action == "push":
            self.slack.push_view(console.user, answer["view"])
        elif action == "clear":
            self.slack.close_all(console.user)
        else:
            self.slack.close_top(console.user)
            self.reopen_below()
        console.settle()
        return True

    def show_errors(self, view: dict, form: Form, errors: dict) -> None:
        labels = {f.block_id: f for f in input_fields(view)}
        for block_id, message in errors.items():
            f = labels.get(block_id)
            self.console.say(f"  ✗ {f.label if f else block_id}: {message}")
            if f:
                form.answered.discard(f.key)

    def reopen_below(self) -> None:
        """The view under a closed one shows again (its answers kept)."""
        below = self.slack.top_modal(self.console.user)
        if below:
            self.presented.discard(below["hash"])

    def close(self, view: dict) -> None:
        """The modal's Close button: view_closed when the app asked for it, then back to the view below."""
        console = self.console
        if view.get("notify_on_close"):
            payload = console.envelope("view_closed", view["id"])
            current = self.slack.view(view["id"]) or view
            current["state"] = {"values": self.values_for(view["id"])}
            payload.update(view=current, is_cleared=False)
            console.send_payload(payload)
        self.slack.close_top(console.user)
        console.forget(("view", view["id"]))
        console.say("  (modal closed)")
        console.settle()
        self.reopen_below()

    def close_all(self, quiet: bool = True) -> bool:
        """Close every open modal of the acting user; False if none was open."""
        closed = False
        while (view := self.slack.top_modal(self.console.user)) is not None:
            if view.get("notify_on_close"):
                payload = self.console.envelope("view_closed", view["id"])
                view["state"] = {"values": self.values_for(view["id"])}
                payload.update(view=view, is_cleared=True)
                self.console.send_payload(payload)
            self.slack.close_top(self.console.user)
            self.console.forget(("view", view["id"]))
            closed = True
        if closed and not quiet:
            self.console.say("(closed the open modal)")
        if closed:
            self.console.settle()
        return closed
