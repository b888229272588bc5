"""Node-join scan: NotReady, never-joined and pending-CSR nodes, per cluster (bot/nodes/scan.py)."""
from __future__ import annotations

from apscheduler.triggers.interval import IntervalTrigger

from blocks import nodes as node_blocks
from bot.nodes import alerts
from bot.nodes import scan as nodes_scan
from bot.foundation.context import Context

NAME = "node-scan"


def trigger(settings):
    return IntervalTrigger(seconds=settings.node_join.interval.total_seconds())


def run(ctx: Context) -> str:
    alerts.attach(ctx, renderer=node_blocks)
    return nodes_scan.scan(ctx)
