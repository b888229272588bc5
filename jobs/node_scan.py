"""Node-join scan: NotReady, never-joined and pending-CSR nodes, per cluster (bot/nodes/scan.py)."""
from __future__ import annotations

from apscheduler.triggers.interval import IntervalTrigger

from blocks import nodes as node_blocks
from bot.nodes import alerts, history
from bot.nodes import scan as nodes_scan
from bot.foundation.context import Context

NAME = "node-scan"


def trigger(settings):
    return IntervalTrigger(seconds=settings.node_join.interval.total_seconds())


def run(ctx: Context) -> str:
    alerts.attach(ctx, renderer=node_blocks)
    summary = nodes_scan.scan(ctx)
    pruned = history.prune(ctx)  # node_join.retention: what /nodes can show as history
    if any(pruned.values()):
        summary += f"; forgot {pruned['reports']} join reports and {pruned['incidents']} resolved incidents " \
                   "past node_join.retention"
    return summary
