"""Fallback for the GitHub webhook: poll open pipeline PRs for merge or close."""
from __future__ import annotations

from apscheduler.triggers.interval import IntervalTrigger

from bot.context import Context

NAME = "pr-poll"


def trigger(settings):
    return IntervalTrigger(seconds=settings.pipelines.poll_interval.total_seconds()) if settings.github else None


def run(ctx: Context) -> str:
    return "not implemented yet"
