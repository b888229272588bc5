"""Idle-service scan and per-team digest."""
from __future__ import annotations

from apscheduler.triggers.cron import CronTrigger

from bot.context import Context

NAME = "idle-scan"


def trigger(settings):
    return CronTrigger.from_crontab(settings.idle.schedule)


def run(ctx: Context) -> str:
    return "not implemented yet"
