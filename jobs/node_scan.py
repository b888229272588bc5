"""Node-join scan: NotReady, never-joined and pending-CSR nodes, per cluster."""
from __future__ import annotations

from apscheduler.triggers.interval import IntervalTrigger

from bot.context import Context

NAME = "node-scan"


def trigger(settings):
    return IntervalTrigger(seconds=settings.node_join.interval.total_seconds())


def run(ctx: Context) -> str:
    return "not implemented yet"
