"""Reminders for canaries left half-promoted longer than canary.stale_after.

Each run lists the fleet's canaries (one list per kind per cluster), reminds the owner team's
channel (else the alerts channel) about each forgotten one — with the card's buttons and what the
canary keeps reserved — at most once per stale_after, and turns the reminder of a canary that has
ended into "ended". Messages go through the outbox, in the transaction that records the reminder.
"""
from __future__ import annotations

from apscheduler.triggers.interval import IntervalTrigger

from blocks.canary import ended_message, reminder_message
from bot import canary as canaries
from bot.canary import reminders
from bot.canary.traffic import canary_traffic
from bot.foundation.context import Context

NAME = "canary-reminders"


def trigger(settings):
    return IntervalTrigger(seconds=settings.canary.reminder_schedule.total_seconds())


def run(ctx: Context) -> str:
    ctx.outbox.on_sent(reminders.REF_PREFIX, lambda ref, channel, ts: reminders.message_sent(ctx, ref, channel, ts))
    now, stale_after = ctx.now(), ctx.settings.canary.stale_after
    found = canaries.discover(ctx)
    forgotten = reminders.stale(found.canaries, now, stale_after)
    sent = 0
    for canary in forgotten:
        if not reminders.due(ctx, canary, now, stale_after):
            continue
        channel, group = reminders.channel_for(ctx.settings, canary.team)
        payload = reminder_message(canary, canary_traffic(ctx, canary), now, stale_after, group)
        if reminders.claim(ctx, canary, channel, now, stale_after,
                           lambda ref, channel=channel, payload=payload: ctx.outbox.post(
                               channel, payload["text"], payload["blocks"], ref=ref)):
            sent += 1
    finished = reminders.ended(ctx, {c.ref.key for c in found.canaries}, found.answered)
    for row in finished:
        payload = ended_message(row["service"], row["cluster"], row["namespace"])
        if not reminders.forget(ctx, row["key"], row["ref"]):
            continue
        if row["ts"]:
            ctx.outbox.update(row["channel"], row["ts"], payload["text"], payload["blocks"])
        else:  # not sent yet: say "ended" instead of the reminder
            ctx.outbox.replace_pending(row["ref"], payload["text"], payload["blocks"])
    summary = (f"{len(found.canaries)} live canaries, {len(forgotten)} forgotten, {sent} reminded, "
               f"{len(finished)} reminders marked ended")
    if found.errors:
        summary += f"; {len(found.errors)} clusters did not answer: " + "; ".join(str(e) for e in found.errors[:3])
    return summary
