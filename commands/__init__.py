"""Slack listeners, one module per feature; `register_all` wires them and the shared middleware.

Middleware here, once, for every request:
- Slack retries (`X-Slack-Retry-Num`) of a request we already received are acked and dropped:
  the first delivery is (or was) being handled. Keyed by trigger_id / event_id in SQLite, so it
  holds across threads and restarts.
- commands and clicks acked before their listener is queued (commands/pool.py).
- one error handler that turns any exception into a short ephemeral message with an error id
  that is also logged; no stack traces in Slack. It answers only requests whose signature held
  (app.DeckhandApp verifies before Bolt), and never on the HTTP request thread.

Metrics and logs name a request only by what the feature modules registered (SlackNames), so an
unknown command, action id or callback id is `other`, never a new series.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from slack_bolt import BoltResponse

from blocks.common import error_text
from bot.foundation.context import Context, new_error_id
from commands import canary, home, idle, nodes, ops, pipeline, service, waves
from commands.kit import AFTER_ACK_FAILED, UsageError, UserFacingError, channel_of, usage_text, user_of

log = logging.getLogger("deckhand.commands")

MODULES = [ops, pipeline, canary, service, nodes, waves, idle, home]


def help_lines() -> list[tuple[str, list[str], str]]:
    """(command, usage lines, summary) for every slash command, for /ops help and the manifest test."""
    return [(m.COMMAND, m.USAGE, m.SUMMARY) for m in MODULES if getattr(m, "COMMAND", None)]


class SlackNames:
    """The commands, subcommands, action ids, callback ids and event types deckhand registered.

    Metrics labels and log lines name a request only by these; anything else is `other`, so a
    body cannot mint new series (each series costs memory until restart, and `/metrics` grows).
    """

    KINDS = {"command", "action", "view", "event", "options", "shortcut"}

    def __init__(self) -> None:
        self.names: dict[str, set[str]] = {kind: set() for kind in self.KINDS}
        self.subcommands: dict[str, set[str]] = {}

    def add(self, kind: str, constraint: Any) -> None:
        if isinstance(constraint, dict):
            constraint = constraint.get("callback_id") or constraint.get("action_id") or constraint.get("type")
        if isinstance(constraint, str):
            self.names[kind].add(constraint)

    def learn_usage(self) -> None:
        """`/ops help`, `/pipeline batch-image`: the literal first word of each usage line."""
        for command, usage, _ in help_lines():
            words_ = {line.split(" ", 1)[0].strip("[]") for line in usage if line}
            self.subcommands[command] = {w for w in words_ if w and w.replace("-", "").isalnum()}

    def name(self, kind: str, value: Any) -> str:
        return value if isinstance(value, str) and value in self.names.get(kind, ()) else "other"

    def command(self, command: Any, text: Any) -> str:
        if self.name("command", command) == "other":
            return "other"
        sub = (text if isinstance(text, str) else "").strip().split(" ", 1)[0]
        return f"{command} {sub}" if sub in self.subcommands.get(command, ()) else command


class _Recording:
    """Stands in for the Bolt app while the feature modules register, noting every name they claim."""

    def __init__(self, app, names: SlackNames):
        self._app, self._names = app, names

    def __getattr__(self, attr: str):
        return getattr(self._app, attr)

    def _claim(self, kind: str, method: str):
        def claim(constraints, *args, **kwargs):
            self._names.add(kind, constraints)
            return getattr(self._app, method)(constraints, *args, **kwargs)
        return claim

    @property
    def command(self):
        return self._claim("command", "command")

    @property
    def action(self):
        return self._claim("action", "action")

    @property
    def view(self):
        return self._claim("view", "view")

    @property
    def event(self):
        return self._claim("event", "event")


def request_name(body: dict, names: SlackNames | None = None) -> tuple[str, str]:
    """(kind, name) of a request for metrics and logs, both from fixed or registered sets only."""
    names = names or SlackNames()
    if body.get("command"):
        return "command", names.command(body.get("command"), body.get("text"))
    kind = body.get("type", "event")
    if kind == "block_actions":
        actions = body.get("actions")
        first = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else {}
        return "action", names.name("action", first.get("action_id"))
    if kind in ("view_submission", "view_closed"):
        view = body.get("view") if isinstance(body.get("view"), dict) else {}
        return "view", names.name("view", view.get("callback_id"))
    if kind == "event_callback":
        event = body.get("event") if isinstance(body.get("event"), dict) else {}
        return "event", names.name("event", event.get("type"))
    return (kind if kind in ("url_verification", "app_rate_limited", "shortcut", "message_action") else "other"), "other"


def dedupe_key(body: dict) -> str | None:
    if body.get("event_id"):
        return f"event:{body['event_id']}"
    if body.get("trigger_id"):
        return f"trigger:{body['trigger_id']}"
    return None


class SeenKeys:
    """Delivery keys seen recently, in memory, so the ack path needs no SQLite write.

    Slack retries within about a minute (https://api.slack.com/apis/events-api#retries), so memory
    decides almost always; keys are also written to SQLite off the ack path, and a retry that memory
    has not seen (e.g. after a restart) is checked there.
    """

    TTL = 900.0

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = now
            if len(self._seen) > 10000:
                self._seen = {k: t for k, t in self._seen.items() if now - t < self.TTL}
            return True


VERIFIED = "deckhand_verified"  # set on a request's context by app.DeckhandApp.dispatch once its signature holds


def register_all(app, ctx: Context) -> SlackNames:
    """Register the middleware, the error handler and every feature's listeners; return the names
    they registered (app.DeckhandApp labels metrics with them)."""
    seen = SeenKeys()
    names = SlackNames()
    names.learn_usage()

    def first_delivery(key: str, retry: str | None) -> bool:
        if not seen.first(key):
            return False
        if retry is not None:
            return ctx.store.once(key)  # memory may have been lost with a restart: ask the database
        keys = ctx.extras.get("slack_replays")  # bot.foundation.doors.SlackReplays: batched, off this thread
        if keys is not None:
            keys.record(key)
        else:
            ctx.store.once(key)
        return True

    @app.middleware
    def drop_slack_retries(req, resp, next):  # noqa: A002 - Bolt's name
        body = req.body or {}
        key = dedupe_key(body)
        retry = (req.headers.get("x-slack-retry-num") or [None])[0]
        if key and not first_delivery(key, retry):
            kind, name = request_name(body, names)
            ctx.metrics.requests.labels(kind=kind, name=name, outcome="duplicate").inc()
            log.info("dropped duplicate delivery of %s %s (retry %s)", kind, name, retry)
            return BoltResponse(status=200, body="")
        return next()

    @app.middleware
    def standby(req, resp, next):  # noqa: A002
        if ctx.is_leader():
            return next()
        return BoltResponse(status=200, body=":hourglass: deckhand is failing over to another instance; "
                                             "try again in a minute.")

    @app.middleware
    def ack_before_queueing(req, resp, next):  # noqa: A002
        body = req.body or {}
        if body.get("command") or body.get("type") == "block_actions":
            req.context.ack()  # see commands/pool.py: these listeners never answer in the ack
        return next()  # modal submissions run their listener inline (commands/pool.py)

    @app.error
    def show_error(error, body, context, respond, client, logger):
        kind, name = request_name(body or {}, names)
        if not (context or {}).get(VERIFIED):
            # Never act on a body whose signature did not hold: its response_url, channel and user
            # are whatever the sender chose. app.DeckhandApp refuses those before Bolt; belt and braces.
            log.warning("error on an unverified request (%s); not answering it", type(error).__name__)
            return
        user = user_of(body or {})
        if isinstance(error, UsageError):
            text = usage_text(body.get("command", ""), [error.usage], str(error)) if body.get("command") else str(error)
        elif isinstance(error, UserFacingError):
            text = str(error)
        else:
            error_id = new_error_id()
            ctx.metrics.errors.labels(where=f"{kind}:{name}").inc()
            log.error("error id %s in %s %s for %s", error_id, kind, name, user, exc_info=error)
            text = error_text("Something went wrong", f"deckhand hit an unexpected error while handling {name}.",
                              "Try again; if it keeps happening, tell DevOps the error id.", error_id)
        channel = channel_of(body or {})
        via_url = respond is not None and bool(body.get("response_url") or (body.get("response_urls") or [None])[0])

        def show() -> None:
            try:
                if via_url:
                    respond(response_type="ephemeral", replace_original=False, text=text)
                elif channel and user != "unknown":
                    client.chat_postEphemeral(channel=channel, user=user, text=text)
                elif user != "unknown":
                    # A modal submission (or a click in App Home) names no channel and carries no
                    # response_url: tell the person in their DM with the app (chat.postMessage with a
                    # user ID as `channel`, https://docs.slack.dev/reference/methods/chat.postMessage),
                    # where the error id stays to be quoted to DevOps.
                    client.chat_postMessage(channel=user, text=text)
            except Exception as exc:  # Slack itself failing must not raise from the error handler
                log.warning("could not show the error to %s: %s", user, exc)

        # An error can surface on the HTTP request thread (middleware, a modal's ack); Slack calls
        # there would hold the thread for as long as Slack (or a dead response_url) takes.
        executor = ctx.extras.get("listener_executor")
        try:
            executor.submit(show) if executor is not None else threading.Thread(target=show, daemon=True).start()
        except RuntimeError:  # shutting down: the pool takes no more work
            log.warning("could not show the error to %s: deckhand is shutting down", user)

    ctx.extras[AFTER_ACK_FAILED] = lambda error, body: show_error(error, body, {VERIFIED: True}, None, ctx.slack, log)
    for module in MODULES:
        module.register(_Recording(app, names), ctx)
    return names
