"""/service: dependency check and safe, approved deletion."""
from __future__ import annotations

from bot.context import Context
from commands.kit import usage_text, words

COMMAND = "/service"
SUMMARY = "dependency check and four-eyes deletion"
USAGE = ["deps <service> [cluster]", "delete <service> [cluster]"]


def register(app, ctx: Context) -> None:
    @app.command(COMMAND)
    def service(ack, body, respond):
        ack()
        args = words(body.get("text"))
        problem = None if not args or args[0] == "help" else f"I don't know `{COMMAND} {args[0]}`."
        respond(response_type="ephemeral", text=usage_text(COMMAND, USAGE, problem))
