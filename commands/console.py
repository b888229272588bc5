"""Terminal console (Hubot shell style). Placeholder until the console issue lands."""
from __future__ import annotations

import sys

from bot.context import Context


def run_console(ctx: Context) -> int:
    print("deckhand: Slack credentials are missing: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (HTTP mode) "
          "or SLACK_APP_TOKEN (Socket Mode). Create the Slack app from deploy/slack/manifest.yaml "
          "(Socket Mode) or deploy/slack/manifest-http.yaml (HTTP).", file=sys.stderr)
    return 2
