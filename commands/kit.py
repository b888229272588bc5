"""What every listener needs: argument parsing, replies, denials. No business logic here."""
from __future__ import annotations

import logging
import shlex
from typing import Any, Callable

from slack_bolt.context.respond import Respond

from blocks.common import error_text, escape
from bot.foundation.access import Decision
from bot.foundation.context import Context, new_error_id
from bot.foundation.doors import allowed_response_url
from bot.foundation.logs import redact_deep

log = logging.getLogger("deckhand.commands")


class UsageError(Exception):
    """Raised by a listener when input does not fit; the global handler shows the usage."""

    def __init__(self, message: str, usage: str):
        super().__init__(message)
        self.usage = usage


class UserFacingError(Exception):
    """A failure whose message is already fit for Slack: what failed, why, what next."""


def words(text: str | None) -> list[str]:
    """Split command text like a shell would, forgiving unbalanced quotes."""
    text = (text or "").strip()
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def user_of(body: dict) -> str:
    return body.get("user_id") or (body.get("user") or {}).get("id") or "unknown"


def channel_of(body: dict) -> str | None:
    return body.get("channel_id") or (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")


def message_ts_of(body: dict) -> str | None:
    return (body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get("ts")


def action_value(body: dict) -> str:
    acts = body.get("actions") or [{}]
    return acts[0].get("value") or (acts[0].get("selected_option") or {}).get("value") or ""


def usage_text(command: str, usage: list[str], problem: str | None = None) -> str:
    # Slack reads <…> as a link even inside backticks, so placeholders like <service> are escaped.
    lines = [f"`{command} {escape(u)}`" if u else f"`{command}`" for u in usage]
    head = f":grey_question: {problem}\n" if problem else ""
    return head + f"*Usage of {command}:*\n" + "\n".join(lines)


def deny(ctx: Context, respond: Callable, user: str, action: str, decision: Decision,
         target: str | None = None, cluster: str | None = None) -> None:
    """An ephemeral 'not allowed' with the reason, and an audit row."""
    ctx.audit(user, action, "denied", target=target, cluster=cluster, params={"reason": decision.reason})
    ctx.metrics.requests.labels(kind="denial", name=action, outcome="denied").inc()
    respond(response_type="ephemeral", replace_original=False,
            text=f":no_entry: You can't do that: {decision.reason}.")


def fail(respond: Callable, what: str, exc: Exception, next_step: str = "Try again; if it keeps failing, ask DevOps.") -> str:
    """Show a backend failure (Kubernetes, GitHub, Prometheus) with an error id, and log it."""
    error_id = new_error_id()
    what = what if what.endswith(" failed") else f"{what} failed"  # said once: never "failed failed"
    log.warning("%s (error id %s): %s", what, error_id, exc)
    respond(response_type="ephemeral", replace_original=False, text=error_text(what, str(exc), next_step, error_id))
    return error_id


def safe_respond(respond: Callable, **kwargs: Any) -> None:
    """respond() to a response_url; a dead URL (older than 30 min) must not break the flow."""
    try:
        respond(**kwargs)
    except Exception as exc:
        log.info("respond() failed: %s", exc)


AFTER_ACK_FAILED = "after_ack_failed"  # ctx.extras: how a failure after a modal's ack is reported (commands.show_error)


def after_ack(ctx: Context, body: dict, work: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Queue what a modal submission's listener does once it has acked.

    A modal listener runs on the request thread (commands/pool.py), so that Slack has the ack the
    moment the listener decides it; anything slow after that (Kubernetes, GitHub, Slack) goes to the
    listener pool through here. A failure there is reported as any listener's would be."""
    executor = ctx.extras.get("listener_executor")

    def run() -> None:
        try:
            work(*args, **kwargs)
        except Exception as exc:
            report = ctx.extras.get(AFTER_ACK_FAILED)
            if report is None:
                raise
            report(exc, body)

    if executor is None:
        return run()
    try:
        executor.submit(run)
    except RuntimeError:  # shutting down: the pool takes no more work
        log.warning("not finishing the %s submitted by %s: deckhand is shutting down",
                    ((body.get("view") or {}).get("callback_id") or "modal"), user_of(body))


class CheckedRespond(Respond):
    """Bolt's respond(), but only to Slack's own hosts, and with tokens redacted from what is sent.

    A response_url is an address deckhand POSTs to; one that points anywhere else (an internal
    service, a slow host holding a thread) is refused, whoever supplied it. Text that quotes an
    upstream error could carry a token an upstream echoed back; it is redacted here, once.
    """

    def __init__(self, response_url: str | None, slack_api_url: str | None):
        super().__init__(response_url=response_url)
        self.allowed = allowed_response_url(response_url, slack_api_url)

    def __call__(self, *args: Any, **kwargs: Any):
        if not self.allowed:
            log.warning("not responding: the response_url is not on Slack's hooks host or SLACK_API_URL's host")
            return None
        return super().__call__(*redact_deep(list(args)), **redact_deep(kwargs))
