"""Node-join health: join-script reports, the cluster scan, incidents."""
from __future__ import annotations

from bot.context import Context


def handle_report(ctx: Context, body: bytes, headers) -> tuple[int, dict]:
    return 501, {"error": "node-join reports are not implemented yet"}
