"""`python app.py console`: chat with deckhand in the terminal, Hubot-shell style.

Nothing is faked on deckhand's side: the real Bolt app (app.build_bolt) gets Slack-signed
requests built exactly like Slack's (slash commands, block_actions, view_submission, the
app_home_opened event) and its listeners run as in production. What they say goes through
the bot's own WebClient and response_urls to a pretend Slack on loopback (console_slack),
which prints it here. Buttons are numbered; `click N` presses one; modals are filled at
prompts field by field. Kubernetes, Prometheus and GitHub are the real configured ones, so an
integration that is not set up answers with the same error a Slack user would see.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import hmac
import io
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
import uuid
from typing import Any, Callable
from urllib.parse import urlencode

from slack_bolt import BoltRequest, BoltResponse

from bot.foundation.access import Access
from bot.foundation.context import Context, slack_client
from console.forms import FieldPrompter
from console.modal import ModalSession
from console.render import indent, render_message, render_view
from console.slack import LocalSlack
from console.webapi import APP_ID, BOT_USER_ID, TEAM_ID, TOKEN, Event, Origin

CHANNEL = "C0CONSOLE"
CONSOLE_USER = "U0CONSOLE"
HELP = """Console commands:
  /<command> [text]   run a slash command, e.g. `/ops help` (lists deckhand's commands)
  click N             press button [N]; asks first when the button has a confirmation
  as USER [GROUP…]    act as another Slack user (U…); GROUPs (S…) make them a member of those user groups
  home                open your App Home tab
  close               close the open modal
  help                this text
  quit                leave (Ctrl-D works too)
In a modal: answer each field (Enter keeps the value in [brackets], `-` clears an optional one,
`cancel` closes the modal), then confirm the submit."""


def default_user(ctx: Context) -> tuple[str, str | None]:
    """(user, group to put them in): $DECKHAND_CONSOLE_USER, else the first devops user in the config."""
    chosen = os.environ.get("DECKHAND_CONSOLE_USER", "")
    if re.fullmatch(r"[UW][A-Z0-9]{2,}", chosen):
        return chosen, None
    devops = ctx.settings.roles.devops
    user = next((d for d in devops if d[0] in "UW"), None)
    if user:
        return user, None
    return CONSOLE_USER, next((d for d in devops if d.startswith("S")), None)


@dataclasses.dataclass
class Clickable:
    element: dict
    block_id: str | None
    surface: tuple  # ("message", channel, ts) | ("ephemeral", channel, ts) | ("view", view_id)


class Console:
    def __init__(self, ctx: Context, *, stdin=None, stdout=None, user: str | None = None,
                 channel: str | None = None, dispatch=None, settle_timeout: float | None = None,
                 build_bolt: Callable[..., Any] | None = None, shutdown: Callable[..., Any] | None = None,
                 intro: list[str] | None = None, commands: dict[str, tuple[str, str, Callable[..., None]]] | None = None,
                 on_start: Callable[[], Any] | None = None):
        # app.py hands over how to build the Bolt app and how to shut down, so this adapter never
        # imports the composition root (that was the project's only import cycle). The demo adds its
        # own console commands (name -> (usage, what it does, fn(text, say))), lines to print first,
        # and what to do once deckhand is up (on_start).
        self.ctx = ctx
        self.build_bolt = build_bolt
        self.shutdown = shutdown
        # A closed stdin (`make run <&-`) leaves sys.stdin None: read it as an empty script.
        self.stdin = stdin or sys.stdin or io.StringIO("")
        self.stdout = stdout or sys.stdout or io.StringIO()
        self.interactive = self.stdin is sys.stdin and is_terminal(sys.stdin)
        self.intro = list(intro or [])
        self.extra_commands = dict(commands or {})
        self.on_start = on_start
        self.channel = channel or os.environ.get("DECKHAND_CONSOLE_CHANNEL") or CHANNEL
        first, group = (user, None) if user else default_user(ctx)
        self.user = first
        self.groups: dict[str, set[str]] = {group: {first}} if group else {}
        self.dispatcher = dispatch
        self.settle_timeout = settle_timeout or float(os.environ.get("DECKHAND_CONSOLE_WAIT", "60"))
        self.signing_secret = secrets.token_hex(16)
        self.slack = LocalSlack(self.show, lambda g: sorted(self.groups.get(g, ())))
        self.print_lock = threading.RLock()
        self.buttons: dict[int, Clickable] = {}
        self.by_surface: dict[tuple, list[int]] = {}
        self.next_number = 1
        self.pending: set[concurrent.futures.Future] = set()
        self.pending_lock = threading.Lock()
        self.at_prompt = False  # waiting for the next command: nothing else is running
        self.homes_seen = 0
        self.on_home = False  # the App Home tab is what the acting user looks at (after `home`, until a command)
        self.modals = ModalSession(self)

    # -- wiring --------------------------------------------------------------------------------
    def start(self) -> None:
        self.slack.start()
        ctx = self.ctx
        ctx.secrets = dataclasses.replace(ctx.secrets, slack_bot_token=TOKEN, slack_app_token=None,
                                          slack_signing_secret=self.signing_secret, slack_api_url=self.slack.api_url)
        ctx.slack = slack_client(TOKEN, self.slack.api_url)
        ctx.outbox.client = ctx.slack
        ctx.outbox.min_interval = 0.0  # the console's Slack has no rate limits to respect
        ctx.access = Access(ctx.settings, lambda g: ctx.slack.usergroups_users_list(usergroup=g)["users"], ttl=0)
        ctx.bot_user_id = BOT_USER_ID
        if self.dispatcher is None:
            bolt = self.build_bolt(ctx, workers=4)
            self._track(ctx.extras["listener_executor"])
            self.dispatcher = bolt.dispatch
        ctx.outbox.start()
        if self.on_start is not None:
            self.on_start()

    def _track(self, executor) -> None:
        """Know when listeners still run after ack(), so output is complete before the next prompt."""
        submit = executor.submit

        def done(future: concurrent.futures.Future) -> None:
            with self.pending_lock:
                self.pending.discard(future)

        def tracked(fn, *args, **kwargs):
            future = submit(fn, *args, **kwargs)
            with self.pending_lock:
                self.pending.add(future)
            future.add_done_callback(done)
            return future

        executor.submit = tracked

    def stop(self) -> None:
        if self.shutdown is not None:
            self.shutdown(self.ctx, None, grace=10)
        self.slack.stop()

    # -- terminal ------------------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        with self.print_lock:
            self.stdout.write(text + "\n")
            self.stdout.flush()

    def read(self, prompt: str) -> str:
        if self.interactive:
            return input(prompt)
        with self.print_lock:
            self.stdout.write(prompt)
            self.stdout.flush()
        line = self.stdin.readline()
        if not line:
            self.say()
            raise EOFError
        self.say(line.rstrip("\n"))  # echo, so a piped session reads like a transcript
        return line.rstrip("\n")

    def run(self) -> int:
        try:
            for line in self.intro:
                self.say(line)
            self.start()
            self.settle()  # what deckhand says about the world it found comes before the first prompt
            self.banner()
            while True:
                self.modals.present()
                self.at_prompt = True
                try:
                    line = self.read(f"{self.user}> ").strip()
                finally:
                    self.at_prompt = False
                if line and not self.handle(line):
                    break
        except EOFError:
            pass
        except KeyboardInterrupt:
            self.say()
            return 130
        finally:
            self.stop()
        return 0

    def banner(self) -> None:
        self.say("deckhand console: deckhand's own listeners, with a pretend Slack in this terminal "
                 "(nothing is sent to Slack).")
        self.say(f"You are {self.user} ({self.describe_user()}) in #{self.channel}. "
                 "Type `/ops help` for deckhand's commands, `help` for the console's.")
        self.say("Scheduled jobs do not run here; run one with `/ops run <job>`.")
        if self.ctx.settings.github and not self.ctx.secrets.github_token:
            self.say("GitHub: GITHUB_TOKEN is not set, so anything that opens a pull request will say so.")

    def describe_user(self) -> str:
        teams = self.ctx.access.teams_of(self.user)
        role = "DevOps" if self.ctx.access.is_devops(self.user) else "not DevOps"
        return f"{role}; teams: {', '.join(teams) if teams else 'none'}"

    def handle(self, line: str) -> bool:
        word, _, rest = line.partition(" ")
        word = word.lower()
        if word in ("quit", "exit"):
            return False
        if word == "help":
            extra = "".join(f"\n  {usage:<19} {what}" for usage, what, _ in self.extra_commands.values())
            self.say(HELP.replace("\nIn a modal:", extra + "\nIn a modal:", 1))
        elif word in self.extra_commands:
            self.extra_commands[word][2](rest, self.say)
            self.settle()
        elif word == "as":
            self.on_home = False
            self.act_as(rest.split())
        elif word == "click":
            if not rest.strip().isdigit():
                self.say("Usage: click N (N is the number shown in [brackets] on a button)")
            else:
                self.click(int(rest))
        elif word == "home":
            self.open_home()
        elif word == "close":
            if not self.modals.close_all(quiet=False):
                self.say("No modal is open.")
        elif line.startswith("/"):
            self.command(word, rest)
        else:
            self.say("deckhand listens to slash commands here, e.g. `/ops help`; `help` lists the console's commands.")
        return True

    def act_as(self, args: list[str]) -> None:
        if not args or not re.fullmatch(r"[UW][A-Z0-9]{2,}", args[0]) or \
                not all(re.fullmatch(r"S[A-Z0-9]+", g) for g in args[1:]):
            self.say("Usage: as USER [GROUP…], e.g. `as U0PAYDEV` or `as U0ALICE S0DEVOPSGROUP`")
            return
        self.user = args[0]
        for group in args[1:]:
            self.groups.setdefault(group, set()).add(self.user)
        self.say(f"You are now {self.user} ({self.describe_user()}).")

    # -- showing what the bot says -------------------------------------------------------------
    def number(self, surface: tuple):
        def assign(element: dict, block_id: str | None) -> int:
            n = self.next_number
            self.next_number += 1
            self.buttons[n] = Clickable(element, block_id, surface)
            self.by_surface.setdefault(surface, []).append(n)
            return n
        return assign

    def forget(self, surface: tuple) -> None:
        for n in self.by_surface.pop(surface, []):
            self.buttons.pop(n, None)

    def show(self, event: Event) -> None:
        with self.print_lock:
            self._show(event)

    def _show(self, event: Event) -> None:
        kind = event.kind
        where = f"#{event.channel}"
        if event.channel and event.channel.startswith("D"):  # a DM with the bot: D + the user ID's tail
            where = "your DM" if event.channel[1:] == self.user[1:] else f"the DM with U{event.channel[1:]}"
        if kind == "modal":
            if self.at_prompt and event.user == self.user:
                self.say("(a modal changed; press Enter to see it)")
            return
        if kind in ("unsupported", "rejected"):
            self.say(f"(console: the bot called Slack's {event.detail}, which the console does not simulate)"
                     if kind == "unsupported" else f"(Slack rejected a call: {event.detail})")
            return
        if kind in ("delete", "ephemeral_delete"):
            self.forget(("message" if kind == "delete" else "ephemeral", event.channel, event.ts))
            self.say(f"(deckhand deleted its message {event.ts} in {where})\n")
            return
        if kind == "home":
            surface = ("view", event.view["id"])
            self.forget(surface)  # its old buttons are gone either way
            if not self.on_home or event.user != self.user:
                return  # a refresh nobody is looking at, as in Slack; `home` shows the current one
            self.homes_seen += 1
            self.say(f"App Home of {event.user}:")
            self.say(indent(render_view(event.view, self.number(surface))) + "\n")
            return
        if kind in ("ephemeral", "ephemeral_update"):
            surface = ("ephemeral", event.channel, event.ts)
            to = "only you can see this" if event.user == self.user else f"only {event.user} can see this"
            head = f"deckhand ({to})" if kind == "ephemeral" else f"deckhand replaced its message ({to})"
        else:
            surface = ("message", event.channel, event.ts)
            thread = f", thread {event.thread_ts}" if event.thread_ts else ""
            head = f"deckhand in {where} [{event.ts}{thread}]" if kind == "message" else \
                f"deckhand edited its message [{event.ts}] in {where}"
        self.forget(surface)
        self.say(head + ":")
        self.say(indent(render_message(event.text, event.blocks, self.number(surface))) + "\n")

    # -- talking to the bot ----------------------------------------------------------------------
    def send(self, raw: str, content_type: str) -> BoltResponse:
        timestamp = str(int(time.time()))
        signature = "v0=" + hmac.new(self.signing_secret.encode(), f"v0:{timestamp}:{raw}".encode(),
                                     hashlib.sha256).hexdigest()
        headers = {"content-type": content_type, "x-slack-request-timestamp": timestamp,
                   "x-slack-signature": signature}
        return self.dispatcher(BoltRequest(body=raw, headers=headers))

    def send_payload(self, payload: dict) -> BoltResponse:
        return self.send(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")

    def envelope(self, kind: str, view_id: str | None = None) -> dict:
        return {"type": kind, "user": {"id": self.user, "username": self.user.lower(), "name": self.user.lower(),
                                       "team_id": TEAM_ID},
                "api_app_id": APP_ID, "token": "console", "team": {"id": TEAM_ID, "domain": "console"},
                "enterprise": None, "is_enterprise_install": False,
                "trigger_id": self.slack.trigger(self.user, view_id)}

    def settle(self) -> None:
        """Wait until the listeners started by the last request are done and the outbox is sent."""
        deadline = time.monotonic() + self.settle_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.say("(deckhand is still working; what it says will show up here when it does)")
                return
            with self.pending_lock:
                running = list(self.pending)
            if running:
                concurrent.futures.wait(running, timeout=remaining)
                continue
            if not self.ctx.outbox.flush(max_seconds=max(remaining, 0.1)) and not self.pending:
                return

    def report(self, response: BoltResponse | None, what: str) -> None:
        status = getattr(response, "status", 404)
        if status == 404:
            self.say(f"(nothing in deckhand handles {what})")
        elif status >= 400:
            self.say(f"(deckhand answered {what} with HTTP {status}: {getattr(response, 'body', '')})")

    def command(self, command: str, text: str) -> None:
        self.modals.close_all(quiet=False)
        self.on_home = False  # a slash command is typed in a channel
        fields = {"token": "console", "team_id": TEAM_ID, "team_domain": "console", "channel_id": self.channel,
                  "channel_name": "console", "user_id": self.user, "user_name": self.user.lower(),
                  "command": command, "text": text.strip(), "api_app_id": APP_ID, "is_enterprise_install": "false",
                  "response_url": self.slack.response_url(Origin(self.channel, self.user)),
                  "trigger_id": self.slack.trigger(self.user)}
        response = self.send(urlencode(fields), "application/x-www-form-urlencoded")
        if getattr(response, "status", 404) == 404:
            from commands import help_lines

            known = " ".join(c for c, _, _ in help_lines())
            self.say(f"{command} is not a deckhand command. Its commands: {known}")
            return
        self.report(response, command)
        body = (response.body or "").strip() if response else ""
        if body:  # ack(text) / ack(blocks=…) is shown to the user like an ephemeral message
            message = json.loads(body) if body.startswith("{") else {"text": body}
            self.slack.add_ephemeral(self.channel, self.user, message.get("text"), message.get("blocks"))
        self.settle()

    def click(self, number: int) -> None:
        target = self.buttons.get(number)
        if target is None:
            shown = ", ".join(f"[{n}]" for n in sorted(self.buttons)[-10:]) or "none yet"
            self.say(f"There is no button [{number}] on screen (buttons now: {shown}).")
            return
        action = FieldPrompter(self.read, self.say).press(target.element, target.block_id)
        if action is None:
            return
        payload = self.envelope("block_actions", target.surface[1] if target.surface[0] == "view" else None)
        payload["actions"] = [action]
        if target.surface[0] == "view":
            view = self.slack.view(target.surface[1])
            if view is None:
                self.say("That view is gone.")
                return
            view["state"] = {"values": self.modals.values_for(view["id"])}
            payload.update(container={"type": "view", "view_id": view["id"]}, view=view)
        else:
            kind, channel, ts = target.surface
            ephemeral = kind == "ephemeral"
            payload.update(container={"type": "message", "message_ts": ts, "channel_id": channel,
                                      "is_ephemeral": ephemeral},
                           channel={"id": channel, "name": "console"}, state={"values": {}},
                           response_url=self.slack.response_url(Origin(channel, self.user, ts, ephemeral)))
            if not ephemeral:  # Slack does not send the message itself for ephemeral ones
                payload["message"] = self.slack.message(channel, ts)
        self.report(self.send_payload(payload), f"the action `{action['action_id']}`")
        self.settle()

    def open_home(self) -> None:
        self.on_home = True
        before = self.homes_seen
        event = {"type": "app_home_opened", "user": self.user, "channel": "D" + self.user[1:], "tab": "home",
                 "event_ts": f"{time.time():.6f}"}
        home = self.slack.home(self.user)
        if home:
            event["view"] = home
        envelope = {"token": "console", "team_id": TEAM_ID, "api_app_id": APP_ID, "event": event,
                    "type": "event_callback", "event_id": "Ev" + uuid.uuid4().hex[:12].upper(),
                    "event_time": int(time.time()),
                    "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}]}
        response = self.send(json.dumps(envelope), "application/json")
        self.settle()
        if self.homes_seen == before:
            if home:
                self.show(Event("home", user=self.user, view=home))
            elif getattr(response, "status", 404) == 404:
                self.say("(deckhand has no App Home yet)")
            else:
                self.say("(deckhand did not publish an App Home for you)")


def is_terminal(stream) -> bool:
    """True when `stream` is an open terminal; False for a pipe, a file, or a closed stdin (None)."""
    try:
        return stream is not None and stream.isatty()
    except (ValueError, OSError):  # a closed file object
        return False


def logs_to_file(path: str) -> logging.Handler:
    """Send deckhand's log to `path` instead of the terminal: log lines would otherwise land in the
    middle of the chat. The handlers keep their format and secret redaction."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    for old in root.handlers:
        if old.formatter is not None:
            handler.setFormatter(old.formatter)
        for log_filter in old.filters:
            handler.addFilter(log_filter)
    root.handlers[:] = [handler]
    return handler


def run_console(ctx: Context, build_bolt: Callable[..., Any], shutdown: Callable[..., Any], *,
                log_path: str | None = None, **options: Any) -> int:
    """The console over `ctx`. With `log_path`, deckhand's log goes there and the banner says so."""
    try:
        import readline  # noqa: F401 - line editing and history for input() at a terminal
    except ImportError:
        pass
    handler = None
    if log_path:
        try:
            handler = logs_to_file(log_path)
            options.setdefault("intro", [])
            options["intro"] = [*options["intro"], f"deckhand's log (warnings, errors): {os.path.abspath(log_path)}"]
        except OSError as exc:
            logging.getLogger().setLevel(logging.ERROR)
            options["intro"] = [*options.get("intro", []), f"(cannot write the log to {log_path}: {exc}; "
                                                           "only errors are shown)"]
    logging.getLogger("deckhand.bolt").setLevel(logging.ERROR)  # "unhandled request" is answered in the chat
    try:
        return Console(ctx, build_bolt=build_bolt, shutdown=shutdown, **options).run()
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
