"""/canary: live canaries with per-version traffic; step, promote, abort buttons.

`/canary [list]` answers privately. `/canary <service> [cluster]` posts the canary's card in the
channel: who steps, promotes or aborts is the team's business, and the card is updated in place
with progress and outcome (chat.update; respond(replace_original) when the bot cannot post there).
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from slack_sdk.errors import SlackApiError

from blocks.common import MAX_MESSAGE_BLOCKS
from blocks.canary import (ABORT, PROMOTE, REFRESH, STEP, gone_message, list_message, outcome_note,
                           status_message)
from blocks.common import escape
from bot import canary as canaries
from bot.canary import reminders as canary_reminders
from bot.canary.model import CanaryRef
from bot.canary.traffic import canary_traffic
from bot.foundation.context import Context
from bot.foundation.kube import KubeError
from commands.kit import action_value, channel_of, deny, fail, message_ts_of, safe_respond, usage_text, user_of, words

COMMAND = "/canary"
SUMMARY = "live canaries with traffic per version; step, promote or abort"
USAGE = ["[list]", "<service> [cluster]"]

# chat.update is a Tier 3 method (~50 per minute per workspace); a rollout wait reports often.
PROGRESS_INTERVAL = 3.0

log = logging.getLogger("deckhand.canary")


class Card:
    """The message a button sits on, updated in place."""

    def __init__(self, ctx: Context, body: dict, respond):
        self.ctx, self.respond = ctx, respond
        container = body.get("container") or {}
        self.channel, self.ts = channel_of(body), message_ts_of(body)
        self.ephemeral = bool(container.get("is_ephemeral"))
        self._last = 0.0
        self._lock = threading.Lock()
        self.updatable = True
        self.responded = 0

    def show(self, payload: dict, progress: bool = False) -> None:
        if self.channel and self.ts and not self.ephemeral and self.ctx.slack is not None and self.updatable:
            try:
                self.ctx.slack.chat_update(channel=self.channel, ts=self.ts, text=payload["text"],
                                           blocks=payload["blocks"])
                return
            except SlackApiError as exc:  # e.g. posted through response_url: only respond() can edit it
                log.info("chat.update of the canary card failed (%s); using respond()", exc.response.get("error"))
                self.updatable = False
        # A response_url takes 5 posts in 30 minutes: progress may use one, the outcome needs one.
        if progress and self.responded >= 1:
            return
        self.responded += 1
        safe_respond(self.respond, replace_original=True, **payload)

    def progress_of(self, canary):
        def report(text: str) -> None:
            with self._lock:
                now = time.monotonic()
                if self._last and now - self._last < PROGRESS_INTERVAL:
                    return
                self._last = now
            try:  # showing progress must never break the operation it reports on
                self.show(status_message(canary, None, self.ctx.now(), note=f":hourglass_flowing_sand: {escape(text)}",
                                         working=True), progress=True)
            except Exception:
                log.exception("could not show canary progress")
        return report


def register(app, ctx: Context) -> None:
    ctx.outbox.on_sent(canary_reminders.REF_PREFIX,
                       lambda ref, channel, ts: canary_reminders.message_sent(ctx, ref, channel, ts))

    @app.command(COMMAND)
    def canary_command(ack, body, respond):
        ack()
        args = words(body.get("text"))
        sub = args[0].lower() if args else "list"
        if sub == "help":
            return respond(response_type="ephemeral", text=usage_text(COMMAND, USAGE))
        if sub == "list":
            return show_list(ctx, respond)
        if len(args) > 2:
            return respond(response_type="ephemeral",
                           text=usage_text(COMMAND, USAGE, f"I don't know `{COMMAND} {' '.join(args)}`."))
        cluster = args[1] if len(args) > 1 else None
        if cluster and ctx.settings.cluster(cluster) is None:
            known = ", ".join(f"`{c.name}`" for c in ctx.settings.clusters)
            problem = f"`{cluster}` is not a cluster (clusters: {known}), so I don't know `{COMMAND} {' '.join(args)}`."
            return respond(response_type="ephemeral", text=usage_text(COMMAND, USAGE, problem))
        show_one(ctx, body, respond, args[0], cluster)

    for action, action_id in (("step", STEP), ("promote", PROMOTE), ("abort", ABORT)):
        app.action(action_id)(_operation(ctx, action))

    @app.action(REFRESH)
    def refresh(ack, body, respond):
        ack()
        ref = _ref_of(body, respond)
        if ref is None:
            return
        card = Card(ctx, body, respond)
        try:
            canary = canaries.read(ctx, ref[0])
        except KubeError as exc:
            return fail(respond, f"Reading the canary of {ref[0].service}", exc, "Try again in a minute.")
        if canary is None:
            return card.show(gone_message(ref[0]))
        card.show(status_message(canary, canary_traffic(ctx, canary) if canary.live else None, ctx.now()))


LIST_TRAFFIC_WORKERS = 8  # Prometheus queries in flight for one /canary list (two per live canary)


def show_list(ctx: Context, respond) -> None:
    found = canaries.discover(ctx)
    live = [c for c in found.canaries if c.live][:MAX_MESSAGE_BLOCKS]
    with ThreadPoolExecutor(max_workers=LIST_TRAFFIC_WORKERS, thread_name_prefix="canary-list") as pool:
        traffic = dict(zip([c.ref.key for c in live], pool.map(lambda c: canary_traffic(ctx, c), live)))
    respond(response_type="ephemeral",
            **list_message(found.canaries, [str(e) for e in found.errors], ctx.now(), len(ctx.settings.clusters),
                           traffic))


def show_one(ctx: Context, body: dict, respond, service: str, cluster: str | None) -> None:
    found = canaries.find(ctx, service, cluster)
    where = f"cluster `{cluster}`" if cluster else "any cluster"
    down = "; ".join(str(e) for e in found.errors)
    if not found.canaries:
        text = f"No live canary of `{service}` in {where}."
        text += (f" Some clusters did not answer: {down}. Try again shortly." if down else
                 " A canary is a VirtualService splitting weight between subsets `stable` and `canary`, or an Argo "
                 "`Rollout` with a canary strategy and a new version in progress. See all with `/canary list`.")
        return respond(response_type="ephemeral", text=text)
    if len(found.canaries) > 1:
        places = ", ".join(f"`{c.ref.cluster}/{c.ref.namespace}`" for c in found.canaries)
        return respond(response_type="ephemeral", text=f"`{service}` has canaries in several places ({places}); "
                                                       f"add the cluster, e.g. `{COMMAND} {service} "
                                                       f"{found.canaries[0].ref.cluster}`.")
    canary = found.canaries[0]
    payload = status_message(canary, canary_traffic(ctx, canary), ctx.now())
    channel = channel_of(body)
    if ctx.slack is not None and channel:
        try:
            ctx.slack.chat_postMessage(channel=channel, **payload)
            return
        except SlackApiError as exc:  # not a member of that channel, a DM...: answer through response_url
            log.info("posting the canary card to %s failed (%s); using respond()", channel, exc.response.get("error"))
    respond(response_type="in_channel", **payload)


def _ref_of(body: dict, respond) -> tuple[CanaryRef, dict] | None:
    try:
        return CanaryRef.from_button(action_value(body))
    except ValueError:
        safe_respond(respond, response_type="ephemeral", replace_original=False,
                     text=":grey_question: This button is not from a current canary card. "
                          "Run `/canary &lt;service&gt;` for a fresh one.")
        return None


def _operation(ctx: Context, action: str):
    def handle(ack, body, respond):
        ack()
        user = user_of(body)
        parsed = _ref_of(body, respond)
        if parsed is None:
            return
        ref, seen = parsed
        card = Card(ctx, body, respond)
        try:
            current = canaries.read(ctx, ref)
        except KubeError as exc:
            return fail(respond, f"Reading the canary of {ref.service}", exc,
                        "Nothing was changed. Try again in a minute.")
        if current is None:
            return card.show(gone_message(ref))
        decision = ctx.access.may(user, "canary.operate", current.team)
        if not decision:
            return deny(ctx, respond, user, f"canary.{action}", decision, target=ref.service, cluster=ref.cluster)
        outcome = canaries.operate(ctx, ref, action, user, seen if action == "step" else None,
                                   progress=card.progress_of(current))
        if outcome.status in ("busy", "moved", "gone"):
            safe_respond(respond, response_type="ephemeral", replace_original=False,
                         text=f":information_source: {outcome.summary}")
            # A press that lost the race (another operation is running, another step landed first, the
            # canary just ended) changed nothing: only its presser hears so. The card shows the winner's
            # outcome and who did it, so it must not be overwritten by a press that did nothing.
            if outcome.status != "gone" or outcome.canary is not None:
                return
        final = outcome.canary
        if final is None:
            return card.show(gone_message(ref, outcome_note(outcome)))
        traffic = canary_traffic(ctx, final) if final.live else None
        card.show(status_message(final, traffic, ctx.now(), note=outcome_note(outcome)))
    handle.__name__ = f"canary_{action}"
    return handle
