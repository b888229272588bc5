"""Forgotten canaries: which ones to remind about, at most once per `canary.stale_after`.

A canary is forgotten when it is half-promoted (neither 0% nor 100%) and nobody stepped it
through deckhand for longer than `canary.stale_after` (since the last step, else since it
started: see bot/canary/model.py for where those times come from). The `canary_reminders` table
holds, per canary, when it was last reminded, for which revision, and the Slack message, so the
reminder repeats at most once per stale_after, starts over for a new canary revision, and is
updated to "ended" once the canary is gone.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

from bot.canary.model import Canary
from bot.foundation.store import iso, parse_iso

REF_PREFIX = "canary-reminder:"


def stale(canaries: list[Canary], now: datetime, stale_after: timedelta) -> list[Canary]:
    out = []
    for canary in canaries:
        idle = canary.idle_for(now)
        if canary.in_progress and idle is not None and idle >= stale_after:
            out.append(canary)
    return out


def due(ctx, canary: Canary, now: datetime, stale_after: timedelta) -> bool:
    rows = ctx.store.query("SELECT revision, reminded_at FROM canary_reminders WHERE key = ?", [canary.ref.key])
    if not rows:
        return True
    return rows[0]["revision"] != canary.revision or parse_iso(rows[0]["reminded_at"]) <= now - stale_after


def channel_for(settings, team: str | None) -> tuple[str, str | None]:
    """The owner team's channel (and its user group to mention); else the alerts channel."""
    spec = settings.teams.get(team or "")
    if spec and spec.channel:
        return spec.channel, spec.usergroup
    return settings.channels.alerts, spec.usergroup if spec else None


def claim(ctx, canary: Canary, channel: str, now: datetime, stale_after: timedelta,
          post: Callable[[str], object]) -> bool:
    """Compare-and-set the reminder time; only the winner calls `post(ref)`, in the same transaction
    (so the outbox row and the dedupe row commit together or not at all)."""
    ref = f"{REF_PREFIX}{canary.ref.key}|{iso(now)}"
    with ctx.store.tx() as db:
        cursor = db.execute(
            "INSERT INTO canary_reminders(key, cluster, namespace, service, revision, reminded_at, ref, channel) "
            "VALUES(?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET revision = excluded.revision, "
            "reminded_at = excluded.reminded_at, ref = excluded.ref, channel = excluded.channel, ts = NULL "
            "WHERE canary_reminders.revision != excluded.revision OR canary_reminders.reminded_at <= ?",
            [canary.ref.key, canary.ref.cluster, canary.ref.namespace, canary.ref.service, canary.revision,
             iso(now), ref, channel, iso(now - stale_after)])
        if cursor.rowcount != 1:
            return False
        post(ref)
        ctx.audit("deckhand", "canary.remind", "posted", target=canary.ref.service, cluster=canary.ref.cluster,
                  channel=channel, params={"namespace": canary.ref.namespace, "weight": canary.canary_weight,
                                           "revision": canary.revision})
    return True


def message_sent(ctx, ref: str, channel: str, ts: str) -> None:
    """Outbox hook: remember where the reminder landed, to update it when the canary ends."""
    with ctx.store.tx() as db:
        db.execute("UPDATE canary_reminders SET channel = ?, ts = ? WHERE ref = ?", [channel, ts, ref])


def ended(ctx, live_keys: set[str], answered: Callable[[str], bool]) -> list[dict]:
    """Reminded canaries that are gone, in clusters that answered (no answer proves nothing)."""
    rows = ctx.store.query("SELECT * FROM canary_reminders ORDER BY key")
    return [r for r in rows if r["key"] not in live_keys and answered(r["cluster"])]


def forget(ctx, key: str, ref: str) -> bool:
    with ctx.store.tx() as db:
        return db.execute("DELETE FROM canary_reminders WHERE key = ? AND ref = ?", [key, ref]).rowcount == 1
