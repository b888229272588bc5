"""Fallback for the GitHub webhook: poll open pipeline PRs for merge or close.

Runs even when the webhook is configured (deliveries get lost); a PR seen by both is notified
once, because settling is a compare-and-set on the request's state.
"""
from __future__ import annotations

from apscheduler.triggers.interval import IntervalTrigger

from bot import pipelines
from bot.foundation.context import Context

NAME = "pr-poll"


def trigger(settings):
    return IntervalTrigger(seconds=settings.pipelines.poll_interval.total_seconds()) if settings.github else None


def run(ctx: Context) -> str:
    return pipelines.poll(ctx)
