"""Expire deletion requests older than deletion.request_ttl and update their messages."""
from __future__ import annotations

from apscheduler.triggers.interval import IntervalTrigger

from bot.context import Context

NAME = "deletion-expiry"


def trigger(settings):
    return IntervalTrigger(minutes=5)


def run(ctx: Context) -> str:
    return "not implemented yet"
