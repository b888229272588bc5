"""Slack listeners, one module per feature; `register_all` wires them and the shared middleware.

Middleware here, once, for every request:
- Slack retries (`X-Slack-Retry-Num`) of a request we already received are acked and dropped:
  the first delivery is (or was) being handled. Keyed by trigger_id / event_id in SQLite, so it
  holds across threads and restarts.
- commands and clicks acked before their listener is queued (commands/pool.py).
- one error handler that turns any exception into a short ephemeral message with an error id
  that is also logged; no stack traces in Slack.
"""
from __future__ import annotations

import logging
import threading
import time

from slack_bolt import BoltResponse

from blocks.common import error_text
from bot.foundation.context import Context, new_error_id
from commands import canary, home, idle, nodes, ops, pipeline, service, waves
from commands.kit import UsageError, UserFacingError, channel_of, usage_text, user_of

log = logging.getLogger("deckhand.commands")

MODULES = [ops, pipeline, canary, service, nodes, waves, idle, home]


def help_lines() -> list[tuple[str, list[str], str]]:
    """(command, usage lines, summary) for every slash command, for /ops help and the manifest test."""
    return [(m.COMMAND, m.USAGE, m.SUMMARY) for m in MODULES if getattr(m, "COMMAND", None)]


def request_name(body: dict) -> tuple[str, str]:
    if body.get("command"):
        sub = (body.get("text") or "").strip().split(" ", 1)[0]
        return "command", f"{body['command']} {sub}".strip()
    kind = body.get("type", "event")
    if kind == "block_actions":
        return "action", ((body.get("actions") or [{}])[0]).get("action_id", "?")
    if kind in ("view_submission", "view_closed"):
        return "view", (body.get("view") or {}).get("callback_id", "?")
    if kind == "event_callback":
        return "event", (body.get("event") or {}).get("type", "?")
    return kind, "?"


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


def register_all(app, ctx: Context) -> None:
    seen = SeenKeys()

    def first_delivery(key: str, retry: str | None) -> bool:
        if not seen.first(key):
            return False
        if retry is not None:
            return ctx.store.once(key)  # memory may have been lost with a restart: ask the database
        executor = ctx.extras.get("listener_executor")
        if executor is not None:
            executor.submit(ctx.store.once, key)
        else:
            ctx.store.once(key)
        return True

    @app.middleware
    def drop_slack_retries(req, resp, next):  # noqa: A002 - Bolt's name
        body = req.body or {}
        key = dedupe_key(body)
        retry = (req.headers.get("x-slack-retry-num") or [None])[0]
        if key and not first_delivery(key, retry):
            kind, name = request_name(body)
            ctx.metrics.requests.labels(kind=kind, name=name, outcome="duplicate").inc()
            log.info("dropped duplicate delivery %s (retry %s)", key, retry)
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
        return next()  # modal submissions take the urgent lane in app.DeckhandApp.dispatch

    @app.error
    def show_error(error, body, respond, client, logger):
        user = user_of(body or {})
        kind, name = request_name(body or {})
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
        try:
            if respond is not None and (body.get("response_url") or (body.get("response_urls") or [None])[0]):
                respond(response_type="ephemeral", replace_original=False, text=text)
            elif channel_of(body or {}) and user != "unknown":
                client.chat_postEphemeral(channel=channel_of(body), user=user, text=text)
        except Exception as exc:  # Slack itself failing must not raise from the error handler
            log.warning("could not show the error to %s: %s", user, exc)

    for module in MODULES:
        module.register(app, ctx)
