"""Block Kit for `/idle`: the current idle list per team (with the digest's buttons for those who may use
them) and `/idle savings`. Pure: views from bot/idle/report.py in, dicts out. Within 50 blocks: services
that do not fit are counted in an "and N more" note that says how to narrow the list."""
from __future__ import annotations

from datetime import datetime

from blocks.common import (MAX_MESSAGE_BLOCKS, actions, button, clip, context, cores, escape, gib, header, message,
                           section)
from blocks.idle import service_blocks, span

SCAN = "idle_list_scan"
LIST_PREFIX = "idle-list|"  # block_id of a service in /idle: idle-list|<command text>|<service key>


def _utc(iso_text: str | None) -> str:
    return datetime.fromisoformat(iso_text).strftime("%Y-%m-%d %H:%M UTC") if iso_text else "?"


def _idle_for(seconds: float) -> str:
    days = int(seconds // 86400)
    return f"{days}d" if days else f"{int(seconds // 3600)}h"


def _services(n: int) -> str:
    return f"{n} service" + ("" if n == 1 else "s")


def _amount(totals: dict) -> str:
    return f"{cores(totals['cpu_cores'])}, {gib(totals['memory_bytes'])}"


def list_block_id(args: str, key: str, suffix: str = "") -> str:
    """Unique per block (Slack refuses duplicates) and at most 255 characters."""
    return clip(f"{LIST_PREFIX}{args[:80]}|{key}", 250, "") + suffix


def parse_block_id(block_id: str) -> str | None:
    """The command text a list was shown for (untrusted: the caller parses it like typed text)."""
    if not block_id.startswith(LIST_PREFIX):
        return None
    return block_id[len(LIST_PREFIX):].rsplit("|", 1)[0]


def _scan_line(view: dict) -> str:
    scan = view["scan"]
    if scan is None:
        return ":warning: No idle scan has run yet, so nothing is listed. It runs on `idle.schedule`; DevOps can run one now."
    line = f"Latest scan: {_utc(scan['at'])}"
    if scan["outcome"] != "ok":
        line += f" (*{escape(scan['outcome'])}*: {escape(clip(scan['detail'], 300))})"
    return line + f" · no Istio traffic for {span(view['window'])} counts as idle"


def _service(item: dict, view: dict, args: str, may_act: bool) -> list[dict]:
    info, controls = service_blocks(item, view["snooze"])
    info = {**info, "block_id": list_block_id(args, item["key"])}
    info["text"] = {**info["text"], "text": clip(info["text"]["text"] + f"\nIdle for *{_idle_for(item['idle_seconds'])}*"
                                                 f" (team *{escape(item['team'])}*)", 3000)}
    if not may_act or controls.get("type") != "actions":
        return [info]
    return [info, {**controls, "block_id": list_block_id(args, item["key"], "#actions")}]


def list_message(view: dict, *, args: str, devops: bool, own_teams: list[str], note: str | None = None) -> dict:
    scope = view["scope"]
    title = "Idle services" + (f" in {view['cluster']}" if view["cluster"] else "")
    blocks: list[dict] = [header(title), context(_scan_line(view))]
    if note:
        blocks.append(context(note))
    for outage in view["outages"]:
        blocks.append(context(f":warning: `{escape(outage['cluster'])}` not scanned since {_utc(outage['since'])}: "
                              f"metrics unavailable ({escape(clip(outage['reason'], 200))}); its services are not listed."))
    fleet = view["fleet"]
    fleet_line = (f"*Fleet:* {fleet['count']} idle {'service' if fleet['count'] == 1 else 'services'}" + (f" ({fleet['kept']} kept)" if fleet["kept"] else "")
                  + f" · reclaimable *{_amount(fleet)}*")
    tail = [section(fleet_line)]
    if devops:
        tail.append(actions(button("Run a fresh scan", SCAN, args or "-"), block_id="idle-list-scan"))
    if scope is not None and not scope:
        blocks.append(section("You are in no team in deckhand's config, so there is no list of yours. Name a team: "
                              "`/idle &lt;team&gt;`."))
    elif not view["teams"]:
        who = "your team" if scope and len(scope) == 1 else ("your teams" if scope else "any team")
        where = f" in `{escape(view['cluster'])}`" if view["cluster"] else ""
        # Skipped clusters prove nothing (the scan's guard): no celebration while some were not scanned.
        sure = view["scan"] is not None and not view["outages"]
        blocks.append(section(f"No idle services for {who}{where}" + (". :tada:" if sure else " in what was scanned.")))
    room = MAX_MESSAGE_BLOCKS - len(blocks) - len(tail) - 1  # one for "and N more"
    hidden = 0
    for team in view["teams"]:
        totals = team["totals"]
        head = section(f"*{escape(team['team'])}* — {totals['count']} idle" + (f" ({totals['kept']} kept)"
                                                                                if totals["kept"] else "")
                       + f" · reclaimable *{_amount(totals)}*")
        may_act = devops or team["team"] in own_teams
        if room < 2:
            hidden += len(team["items"])
            continue
        blocks.append(head)
        room -= 1
        for item in team["items"]:
            part = _service(item, view, args, may_act)
            if len(part) > room:
                hidden += 1
                continue
            blocks += part
            room -= len(part)
    if hidden:
        blocks.append(context(f"and {hidden} more idle services not shown (Slack shows 50 blocks): narrow it with "
                              "`/idle &lt;team&gt; &lt;cluster&gt;`."))
    text = f"Idle services: {fleet['count']} in the fleet could free {_amount(fleet)}"
    return message(text, blocks + tail)


def savings_message(view: dict) -> dict:
    scope = "all teams" if view["scope"] is None else (", ".join(view["scope"]) or "no team")
    blocks: list[dict] = [header("Reclaimed and still idle"), context(f"Teams: {escape(scope)} · as of {_utc(view['now'])}")]
    got, idle = view["reclaimed"], view["idle_total"]
    blocks.append(section(f"*Reclaimed so far:* *{_amount(got)}* in {got['actions']} deletions and scale-downs\n"
                          f"*Still idle:* *{_amount(idle)}* in {_services(idle['count'])}"
                          + (f" ({idle['kept']} kept, not counted)" if idle["kept"] else "")))
    lines = []
    for month in view["months"]:
        parts = [f"{escape(t['team'])} {_amount(t)} ({t['actions']})" for t in month["teams"]]
        lines.append(f"`{escape(month['month'])}` " + " · ".join(parts))
    if lines:
        shown = lines[:24]
        text = "*Reclaimed by month* (team: CPU, memory (actions))\n" + "\n".join(shown)
        if len(lines) > len(shown):
            text += f"\nand {len(lines) - len(shown)} earlier months"
        blocks.append(section(clip(text, 3000)))
    else:
        blocks.append(section("*Reclaimed by month:* nothing recorded yet. Deletions through `/service delete` and "
                              "the idle digest count here."))
    if view["idle"]:
        rows = [f"{escape(t['team'])}: {_amount(t)} in {_services(t['count'])}" for t in view["idle"][:30]]
        if len(view["idle"]) > 30:
            rows.append(f"and {len(view['idle']) - 30} more teams")
        blocks.append(section(clip("*Still idle by team*\n" + "\n".join(rows), 3000)))
    blocks.append(context("`/idle` lists the idle services with their buttons."))
    return message(f"Reclaimed {_amount(got)}; still idle {_amount(idle)}", blocks)
