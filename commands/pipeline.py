"""/pipeline: create and edit pipelines from a modal, list them, bump batch base images."""
from __future__ import annotations

from bot.context import Context
from commands.kit import usage_text, words

COMMAND = "/pipeline"
SUMMARY = "create and edit CI/CD pipelines; bump batch base images"
USAGE = ["create", "edit <service>", "list [team]", "batch-image bump <image> <version>"]


def register(app, ctx: Context) -> None:
    @app.command(COMMAND)
    def pipeline(ack, body, respond):
        ack()
        args = words(body.get("text"))
        problem = None if not args or args[0] == "help" else f"I don't know `{COMMAND} {args[0]}`."
        respond(response_type="ephemeral", text=usage_text(COMMAND, USAGE, problem))
