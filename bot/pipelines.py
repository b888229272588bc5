"""Pipeline spec, validation, rendering (templates/ beside it), pull requests, merge tracking."""
from __future__ import annotations

from bot.context import Context


def handle_github_webhook(ctx: Context, body: bytes, headers) -> tuple[int, dict]:
    return 501, {"error": "GitHub webhooks are not implemented yet"}
