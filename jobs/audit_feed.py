"""Post new audit rows, compactly, to channels.audit — batched, and never in the way of an action.

Rows are written by the actions themselves (same transaction as their state change); this
job only mirrors them to Slack. One message carries up to BATCH rows, so a busy minute costs a
few messages, not hundreds. If Slack is down the rows stay unposted and go out next time.
"""
from __future__ import annotations

from apscheduler.triggers.interval import IntervalTrigger

from blocks.audit import audit_feed_message
from bot.foundation.context import Context

NAME = "audit-feed"
BATCH = 25


def trigger(settings):
    return IntervalTrigger(seconds=30) if settings.channels.audit else None


def run(ctx: Context) -> str:
    channel = ctx.settings.channels.audit
    if not channel:
        return "no audit channel configured"
    posted = 0
    while True:
        rows = ctx.store.query("SELECT * FROM audit WHERE posted = 0 ORDER BY id LIMIT ?", [BATCH])
        if not rows:
            break
        rows = [_with_permalink(ctx, row) for row in rows]
        with ctx.store.tx() as db:
            ctx.outbox.post(channel, ref=f"audit:{rows[0]['id']}-{rows[-1]['id']}", **audit_feed_message(rows))
            db.execute(f"UPDATE audit SET posted = 1 WHERE id IN ({','.join('?' for _ in rows)})",
                       [r["id"] for r in rows])
        posted += len(rows)
    return f"{posted} audit entries queued for #{channel}"


def _with_permalink(ctx: Context, row: dict) -> dict:
    """Fill the row's permalink from its channel and ts, once; Slack being down just leaves it empty."""
    if row.get("permalink") or not (row.get("channel") and row.get("ts")) or ctx.slack is None:
        return row
    try:
        link = ctx.slack.chat_getPermalink(channel=row["channel"], message_ts=row["ts"]).get("permalink")
    except Exception:
        return row
    with ctx.store.tx() as db:
        db.execute("UPDATE audit SET permalink = ? WHERE id = ?", [link, row["id"]])
    return {**row, "permalink": link}
