"""Buttons for the nodes feature (no slash command of its own)."""
from __future__ import annotations

from bot.context import Context


def register(app, ctx: Context) -> None:
    pass
