"""Block Kit for idle services: the per-team digest (and its thread replies), the Keep modal, the list
of kept services, and the "metrics unavailable" alert. Pure: data in, dicts out."""
from __future__ import annotations

import json

from blocks.common import (MAX_MESSAGE_BLOCKS, MAX_VIEW_BLOCKS, actions, button, clip, context, cores, escape, gib,
                           header, mention, modal, section, text_input)

# Every service takes exactly two blocks (what it is + its buttons or outcome), so a part can be
# re-rendered after a click without ever crossing Slack's 50-block limit.
BLOCKS_PER_SERVICE = 2
PARENT_FIXED_BLOCKS = 7  # header, summary, how-to, "N more", no-endpoints, skipped clusters, footer
THREAD_FIXED_BLOCKS = 1
PARENT_SERVICES = (MAX_MESSAGE_BLOCKS - PARENT_FIXED_BLOCKS) // BLOCKS_PER_SERVICE
THREAD_SERVICES = (MAX_MESSAGE_BLOCKS - THREAD_FIXED_BLOCKS) // BLOCKS_PER_SERVICE
NO_ENDPOINTS_SHOWN = 15

REQUEST_DELETION, SNOOZE, KEEP, UNKEEP, KEPT_LIST = (
    "idle_request_deletion", "idle_snooze", "idle_keep", "idle_unkeep", "idle_kept_list")
KEEP_VIEW = "idle_keep"
KEEP_REASON_BLOCK = "reason"


def span(seconds: float) -> str:
    """7d, 12h, 30m — how the config spells durations."""
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def snooze_label(seconds: float) -> str:
    days = int(seconds) // 86400
    if days and int(seconds) % 86400 == 0:
        return f"Snooze {days} day" + ("s" if days != 1 else "")
    return f"Snooze {span(seconds)}"


def _day(iso_text: str | None) -> str:
    return (iso_text or "")[:10] or "?"


def _workloads(item: dict) -> str:
    shown = [f"{escape(w['kind'])} `{escape(w['name'])}` ×{escape(w['replicas'])}" for w in item.get("workloads", [])[:3]]
    more = len(item.get("workloads", [])) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _outcome(item: dict) -> str:
    by = mention(item["decided_by"]) if item.get("decided_by") else "someone"
    state = item.get("state")
    if state == "snoozed":
        return f"\n:zzz: Snoozed by {by} until {_day(item.get('snoozed_until'))}; listed again then if still idle."
    if state == "kept":
        return f"\n:pushpin: Kept by {by} on {_day(item.get('decided_at'))}: “{escape(clip(item.get('reason') or '', 300))}”"
    if state == "deletion_requested":
        return (f"\n:wastebasket: {by} asked to delete it on {_day(item.get('decided_at'))}; the dependency check "
                "and approval go on in the deletion flow.")
    if state == "cleared":
        return f"\n:white_check_mark: Left the list: {escape(item.get('cleared_reason') or 'no longer idle')}."
    return ""


def service_blocks(item: dict, snooze_seconds: float) -> list[dict]:
    """Two blocks for one listed service: what it holds, then the buttons its state allows."""
    key = item["key"]
    where = f"`{escape(item['cluster'])}/{escape(item['namespace'])}`"
    name = f"~{escape(item['service'])}~" if item.get("state") == "cleared" else f"*{escape(item['service'])}*"
    text = (f"{name}  {where}\n*{cores(item.get('cpu_cores') or 0)}, {gib(item.get('memory_bytes') or 0)}* reserved "
            f"by {_workloads(item)} · created {_day(item.get('created'))}") + _outcome(item)
    info = section(text, block_id=clip(f"idle:{key}", 255, ""))
    request = button("Request deletion", REQUEST_DELETION, key)
    snooze = button(snooze_label(snooze_seconds), SNOOZE, key)
    keep = button("Keep", KEEP, key)
    buttons = {"open": [request, snooze, keep], "snoozed": [request, keep], "deletion_requested": [snooze, keep],
               "kept": [button("Un-keep", UNKEEP, key)]}.get(item.get("state"))
    block_id = clip(f"idle-actions:{key}", 255, "")
    if buttons is None:
        return [info, {**context("Nothing to do here any more."), "block_id": block_id}]
    return [info, actions(*buttons, block_id=block_id)]


def _summary_text(summary: dict) -> str:
    window = span(summary["window"])
    count = summary["count"]
    clusters = ", ".join(f"`{escape(c)}`" for c in summary.get("clusters", []))
    if not count:
        return f"No idle services in {clusters or 'the scanned clusters'} over the last *{window}*."
    noun = "service" if count == 1 else "services"
    return (f"*{count} {noun}* in {clusters} had no Istio traffic (no requests, TCP connections or bytes) "
            f"for *{window}*.\nReclaimable: *{cores(summary['cpu_cores'])}, {gib(summary['memory_bytes'])}*")


def digest_message(view: dict) -> dict:
    """One part of a team's digest: the parent message (part 0) or a thread reply."""
    summary, items = view["summary"], view["items"]
    team = summary.get("team", "unowned")
    snooze_seconds = summary.get("snooze", 30 * 86400)
    if view["part"] > 0:
        blocks = [context(f"*Idle services: {escape(team)}* — part {view['part'] + 1} of {view['parts']}")]
        for item in items:
            blocks += service_blocks(item, snooze_seconds)
        return {"text": f"Idle services for {escape(team)}, part {view['part'] + 1} of {view['parts']}", "blocks": blocks}

    blocks = [header(f"Idle services: {team}"), section(_summary_text(summary))]  # a header is plain text
    if items:
        blocks.append(context(
            f"Sorted by reclaimable CPU, then memory. *{snooze_label(snooze_seconds)}* hides a service for that "
            "long; *Keep* hides it until someone un-keeps it. To opt a Service out for good, annotate it "
            "`deckhand.io/idle-alert: \"false\"`."))
    for item in items:
        blocks += service_blocks(item, snooze_seconds)
    rest = summary["count"] - len(items)
    if rest > 0:
        blocks.append(context(f":thread: {rest} more idle {'service' if rest == 1 else 'services'} in the thread."))
    if summary.get("no_endpoints"):
        shown = summary["no_endpoints"][:NO_ENDPOINTS_SHOWN]
        lines = [f"• `{escape(s['key'])}` ({s['replicas']} replica{'' if s['replicas'] == 1 else 's'}, no ready pod)"
                 for s in shown]
        hidden = len(summary["no_endpoints"]) - len(shown)
        if hidden > 0:
            lines.append(f"and {hidden} more")
        blocks.append(section("*No ready endpoints* — not counted as idle; their pods may be failing or not "
                              "passing readiness:\n" + "\n".join(lines)))
    if summary.get("skipped"):
        down = "; ".join(f"`{escape(c)}` ({escape(r)})" for c, r in summary["skipped"])
        blocks.append(context(f":warning: Not scanned: {down}. Services there are not listed."))
    blocks.append(actions(button("Kept services", KEPT_LIST, team), block_id="idle-footer"))
    text = (f"Idle services for {escape(team)}: {summary['count']} could free {cores(summary['cpu_cores'])}, "
            f"{gib(summary['memory_bytes'])}")
    return {"text": text, "blocks": blocks}


def keep_modal(item: dict, private_metadata: dict) -> dict:
    where = f"`{escape(item['cluster'])}/{escape(item['namespace'])}`"
    return modal(
        "Keep idle service",
        [section(f"Keep *{escape(item['service'])}* ({where}) out of idle digests until someone un-keeps it. "
                 "Your name and reason are recorded."),
         text_input(KEEP_REASON_BLOCK, "Why keep it?", multiline=True, max_length=500,
                    placeholder="e.g. disaster-recovery standby: traffic only during a failover")],
        KEEP_VIEW, submit="Keep", private_metadata=json.dumps(private_metadata, sort_keys=True))


def kept_list_modal(team: str, rows: list[dict], note: str | None = None) -> dict:
    blocks = [section(f"*Kept idle services: {escape(team)}*\nThese are left out of idle digests until un-kept.")]
    if note:
        blocks.append(context(note))
    room = MAX_VIEW_BLOCKS - len(blocks) - 1
    for row in rows[:room]:
        key = f"{row['cluster']}/{row['namespace']}/{row['service']}"
        text = (f"*{escape(row['service'])}*  `{escape(row['cluster'])}/{escape(row['namespace'])}`\n"
                f"Kept by {mention(row['decided_by'])} on {_day(row['decided_at'])}: “{escape(clip(row['reason'] or '', 300))}”")
        blocks.append(section(text, accessory=button("Un-keep", UNKEEP, key)))
    if not rows:
        blocks.append(section("Nothing is kept."))
    elif len(rows) > room:
        blocks.append(context(f"and {len(rows) - room} more"))
    return modal("Kept services", blocks, "idle_kept_list", submit=None, close="Close", private_metadata=team)


def outage_alert(cluster: str, reason: str, window_seconds: float) -> dict:
    text = (f":warning: *Idle-service scan skipped on `{escape(cluster)}`: metrics unavailable* — {escape(reason)}.\n"
            f"Nothing in `{escape(cluster)}` is flagged idle meanwhile: missing data is not proof of no traffic. "
            f"Check that Prometheus for `{escape(cluster)}` is up and scrapes the Istio sidecars; the next scan "
            f"retries on its own (or run `/ops run idle-scan`).")
    return {"text": f"Idle-service scan skipped on {escape(cluster)}: metrics unavailable ({escape(reason)})",
            "blocks": [section(text), context(f"Window {span(window_seconds)}. Posted once per outage.")]}
