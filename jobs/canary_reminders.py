"""Reminders for canaries left half-promoted longer than canary.stale_after."""
from __future__ import annotations

from apscheduler.triggers.interval import IntervalTrigger

from bot.context import Context

NAME = "canary-reminders"


def trigger(settings):
    return IntervalTrigger(seconds=settings.canary.reminder_schedule.total_seconds())


def run(ctx: Context) -> str:
    return "not implemented yet"
