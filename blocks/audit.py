"""The compact audit feed posted to channels.audit."""
from __future__ import annotations

import json

from blocks.common import clip, context, escape, link, mention, section


def audit_line(row: dict) -> str:
    target = f" `{escape(row['target'])}`" if row.get("target") else ""
    cluster = f" on `{escape(row['cluster'])}`" if row.get("cluster") else ""
    params = json.loads(row.get("params") or "{}")
    reason = f" — {escape(clip(str(params['reason']), 120))}" if params.get("reason") else ""
    permalink = f" ({link(row['permalink'], 'link')})" if row.get("permalink") else ""
    return (f"`{escape(row['at'][11:16])}` {mention(row['actor'])} {escape(row['action'])}{target}{cluster}: "
            f"*{escape(row['result'])}*{reason}{permalink}")


def audit_feed_message(rows: list[dict]) -> dict:
    lines = [audit_line(r) for r in rows]
    body = "\n".join(lines)
    blocks = [section(body)]
    if len(body) > 2990:
        blocks = [section("\n".join(lines[: len(lines) // 2])), section("\n".join(lines[len(lines) // 2:]))]
    blocks.append(context(f"audit #{rows[0]['id']}–{rows[-1]['id']} · `/ops audit` for more"))
    return {"text": f"{len(rows)} audited actions", "blocks": blocks}
