"""Advance running node maintenance waves (bot/nodes/wave_run.py): one tick per wave, every `waves.interval`."""
from __future__ import annotations

from apscheduler.triggers.interval import IntervalTrigger

from blocks.waves import card
from bot.foundation.context import Context
from bot.nodes import wave_run, waves

NAME = "node-waves"


def trigger(settings):
    if not settings.waves.enabled:
        return None
    return IntervalTrigger(seconds=int(settings.waves.interval.total_seconds()))


def run(ctx: Context) -> str:
    if waves.RENDERER not in ctx.extras:
        ctx.extras[waves.RENDERER] = lambda wave, rows, settings: card(wave, rows, settings, ctx.now())
    return wave_run.tick_all(ctx)
