"""Block Kit for /ops: help, audit log, savings, job runs."""
from __future__ import annotations

from blocks.common import clip_words, context, cores, divider, escape, fit_message, gib, header, link, mention, section


def help_message(commands: list[tuple[str, list[str], str]]) -> dict:
    blocks = [header("deckhand commands")]
    for command, usage, summary in commands:
        # Slack reads <…> as a link even inside backticks: escape placeholders like <service>.
        lines = "\n".join(f"`{escape(command)} {escape(u)}`" if u else f"`{escape(command)}`" for u in usage)
        blocks.append(section(f"*{escape(command)}* — {escape(summary)}\n{lines}"))
    blocks.append(context("Every command answers `help`. Buttons ask before they change anything."))
    return {"text": "deckhand commands", "blocks": fit_message(blocks)[0]}


def audit_message(rows: list[dict], target: str | None) -> dict:
    title = f"Audit log for {target}" if target else "Audit log"
    if not rows:
        return {"text": f"{escape(title)}: nothing recorded", "blocks": [section(f"*{escape(title)}*: nothing recorded yet.")]}
    lines = []
    for row in rows:
        where = f" on `{escape(row['cluster'])}`" if row.get("cluster") else ""
        what = f" `{escape(row['target'])}`" if row.get("target") else ""
        permalink = f" {link(row['permalink'], 'message')}" if row.get("permalink") else ""
        lines.append(f"`{escape(row['at'][:16].replace('T', ' '))}` {mention(row['actor'])} *{escape(row['action'])}*"
                     f"{what}{where} → {escape(row['result'])}{permalink}")
    text = "\n".join(lines)
    return {"text": escape(title), "blocks": [header(title), section(text[:2990]), context(f"{len(rows)} most recent entries")]}


def savings_message(rows: list[dict]) -> dict:
    if not rows:
        return {"text": "No savings recorded yet",
                "blocks": [section("*Reclaimed resources*: nothing recorded yet. Deletions and scaled-down canaries count here.")]}
    total_cpu = sum(r["cpu_cores"] or 0 for r in rows)
    total_mem = sum(r["memory_bytes"] or 0 for r in rows)
    blocks = [header("Reclaimed resources"),
              section(f"*Total:* {cores(total_cpu)}, {gib(total_mem)} across {sum(r['actions'] for r in rows)} actions"),
              divider()]
    lines = [f"`{escape(r['month'])}` *{escape(r['team'])}*: {cores(r['cpu_cores'] or 0)}, {gib(r['memory_bytes'] or 0)}"
             f" ({r['actions']} actions)" for r in rows]
    blocks.append(section("\n".join(lines)[:2990]))
    return {"text": f"Reclaimed {cores(total_cpu)}, {gib(total_mem)}", "blocks": blocks}


def jobs_message(jobs: list[dict]) -> dict:
    """jobs: name, schedule, next_run, last (job_runs row or None)."""
    lines = []
    for job in jobs:
        last = job.get("last")
        if last:
            ended = (last.get("ended_at") or "running")[:16].replace("T", " ")
            detail = f" — {escape(clip_words(last['detail'], 160))}" if last.get("detail") else ""
            state = f"last {escape(last['outcome'])} at {escape(ended)}{detail}"
        else:
            state = "never run"
        lines.append(f"*{escape(job['name'])}* ({escape(job['schedule'])}; next {escape(job.get('next_run') or '—')}): "
                     f"{state}")
    return {"text": "Scheduled jobs", "blocks": [header("Scheduled jobs"), section("\n".join(lines) or "No jobs."),
                                                 context("Run one now with `/ops run &lt;job&gt;` (DevOps only).")]}
