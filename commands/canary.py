"""/canary: live canaries with per-version traffic; step, promote, abort buttons."""
from __future__ import annotations

from bot.context import Context
from commands.kit import usage_text, words

COMMAND = "/canary"
SUMMARY = "live canaries with traffic per version; step, promote or abort"
USAGE = ["[list]", "<service> [cluster]"]


def register(app, ctx: Context) -> None:
    @app.command(COMMAND)
    def canary(ack, body, respond):
        ack()
        args = words(body.get("text"))
        problem = None if not args or args[0] == "help" else f"I don't know `{COMMAND} {args[0]}`."
        respond(response_type="ephemeral", text=usage_text(COMMAND, USAGE, problem))
