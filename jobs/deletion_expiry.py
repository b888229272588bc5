"""Expire deletion requests older than deletion.request_ttl and update their messages."""
from __future__ import annotations

from apscheduler.triggers.interval import IntervalTrigger

from blocks.service import request_message
from bot.deletion import lifecycle
from bot.foundation.context import Context

NAME = "deletion-expiry"


def trigger(settings):
    return IntervalTrigger(minutes=5)


def run(ctx: Context) -> str:
    # Clicks check expiry themselves; this job updates messages nobody clicks on and keeps the gauge right.
    if lifecycle.RENDERER not in ctx.extras:
        lifecycle.set_renderer(ctx, request_message)
    interrupted = lifecycle.recover_interrupted(ctx)
    expired = lifecycle.expire_due(ctx)
    pending = lifecycle.refresh_pending_gauge(ctx)
    summary = f"expired {expired} deletion request{'' if expired == 1 else 's'}; {pending} pending"
    return summary + (f"; {interrupted} interrupted by a restart, waiting to be continued" if interrupted else "")
