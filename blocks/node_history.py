"""Block Kit for `/nodes`: the fleet overview, one cluster, one node's whole join story. Pure: views in
(built by bot/nodes/history.py), dicts out. Everything from a node or a cluster object (names, log tails,
condition messages) is escaped here; Slack's limits (50 blocks, 3,000 characters a section) are kept
with "and N more" notes."""
from __future__ import annotations

from datetime import datetime

from blocks.common import (MAX_MESSAGE_BLOCKS, MAX_SECTION_TEXT, clip, code, context, escape, header, link, mention,
                           message, section)
from blocks.nodes import TITLES

SHOWN_INCIDENTS = 20
OUTCOME_ICONS = {"joined": ":white_check_mark:", "failed": ":x:", "in progress": ":hourglass_flowing_sand:",
                 "stopped reporting": ":grey_question:"}
PHASE_ICONS = {"ok": ":white_check_mark:", "failed": ":x:", "started": ":hourglass_flowing_sand:"}


def _utc(iso_text: str | None, seconds: bool = False) -> str:
    if not iso_text:
        return "?"
    moment = datetime.fromisoformat(iso_text)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def sections(lines: list[str], limit: int = MAX_SECTION_TEXT) -> list[dict]:
    """Lines packed into as few sections as fit 3,000 characters each."""
    out, current = [], ""
    for line in lines:
        line = clip(line, limit)
        if current and len(current) + 1 + len(line) > limit:
            out.append(section(current))
            current = ""
        current = f"{current}\n{line}" if current else line
    return out + ([section(current)] if current else [])


def _fit(blocks: list[dict], footer: dict | None, what: str) -> list[dict]:
    """Keep within 50 blocks, leaving room for the footer and an "and N more" note."""
    room = MAX_MESSAGE_BLOCKS - (1 if footer else 0)
    if len(blocks) > room:
        hidden = len(blocks) - (room - 1)
        blocks = blocks[: room - 1] + [context(f"and {hidden} more {what} not shown (Slack shows 50 blocks)")]
    return blocks + ([footer] if footer else [])


# -- /nodes -------------------------------------------------------------------------------------------
def overview_line(row: dict) -> str:
    name = f"*{escape(row['cluster'])}*"
    joins = f"joins 24h: {row['joins_ok']} ok / {row['joins_failed']} failed"
    if row["joins_running"]:
        joins += f" / {row['joins_running']} in progress"
    incidents = f"{_plural(row['open_incidents'], 'open incident')}"
    if not row["reachable"]:
        # Never "0 NotReady": deckhand does not know.
        return (f":warning: {name} — *did not answer*: {escape(clip(row['error'], 300))} · {joins} · {incidents}")
    icon = ":large_green_circle:" if not row["not_ready"] and not row["open_incidents"] else ":red_circle:"
    return (f"{icon} {name} — {row['ready']}/{row['total']} Ready · {row['not_ready']} NotReady · "
            f"{row['cordoned']} cordoned · {joins} · {incidents}")


def overview_message(rows: list[dict], now: str) -> dict:
    down = [r for r in rows if not r["reachable"]]
    blocks = [header("Nodes per cluster")]
    if not rows:
        blocks.append(section("No clusters are configured (`clusters:` in deckhand.yaml)."))
    blocks += sections([overview_line(r) for r in rows])
    footer = context(f"As of {_utc(now)} · `/nodes &lt;cluster&gt;` for open incidents and recent joins · "
                     "`/nodes &lt;cluster&gt; &lt;node&gt;` for a node's whole join story")
    text = f"Nodes in {_plural(len(rows), 'cluster')}" + (f"; {len(down)} did not answer" if down else "")
    return message(text, _fit(blocks, footer, "sections"))


def _title(reason: str) -> str:
    return TITLES.get(reason) or escape(reason)


def incident_line(item: dict) -> str:
    title = _title(item["reason"])
    who = "the whole cluster" if item["node"] == "*" else f"`{escape(item['node'])}`"
    line = f":red_circle: {who} — *{title}* for {escape(item['age'])} (since {_utc(item['since'])})"
    if item.get("summary"):
        line += f": {escape(clip(item['summary'], 200))}"
    if item.get("permalink"):
        line += f" · {link(item['permalink'], 'alert message')}"
    elif not item.get("ts"):
        line += " · _alert not posted (silenced or queued)_"
    if item.get("acked_by"):
        line += f" · acknowledged by {mention(item['acked_by'])}"
    return line


def attempt_line(item: dict, with_node: bool = True) -> str:
    icon = OUTCOME_ICONS.get(item["outcome"], "")
    node = f"`{escape(item['node'])}` " if with_node else ""
    line = (f"{icon} {node}{_utc(item['started_at'])} — reached `{escape(item['reached'])}`, "
            f"*{escape(item['outcome'])}* in {escape(item['duration'])}")
    if item["outcome"] == "failed":
        failed = next((p for p in item["phases"] if p["status"] == "failed"), None)
        if failed and failed["exit_code"] is not None:
            line += f" (exit code {escape(failed['exit_code'])})"
    if item["slow"]:
        line += f" · :turtle: *slow* (over {escape(item['slow_after'])}, twice the cluster's p90)"
    return line


def cluster_message(view: dict) -> dict:
    cluster = escape(view["cluster"])
    blocks = [header(f"Nodes in {view['cluster']}")]
    incidents = view["incidents"]
    if incidents:
        lines = [incident_line(i) for i in incidents[:SHOWN_INCIDENTS]]
        if len(incidents) > SHOWN_INCIDENTS:
            lines.append(f"and {len(incidents) - SHOWN_INCIDENTS} more open incidents")
        blocks.append(section(f"*Open incidents ({len(incidents)})*"))
        blocks += sections(lines)
    else:
        blocks.append(section("*Open incidents:* none :white_check_mark:"))
    attempts = view["attempts"]
    if attempts:
        blocks.append(section(f"*Last {len(attempts)} join attempts* (of {view['attempt_count']} in the last "
                              f"{escape(view['retention'])})"))
        blocks += sections([attempt_line(a) for a in attempts])
    else:
        blocks.append(section(f"*Join attempts:* none reported in the last {escape(view['retention'])}."))
    notes = [f"As of {_utc(view['now'])}"]
    if view.get("slow_after"):
        notes.append(f":turtle: = took over {escape(view['slow_after'])} (twice the p90 of this cluster's joins)")
    notes.append(f"`/nodes {cluster} &lt;node&gt;` for every phase, exit code and log tail")
    text = f"{cluster}: {_plural(len(incidents), 'open incident')}, {_plural(view['attempt_count'], 'join attempt')}"
    return message(text, _fit(blocks, context(" · ".join(notes)), "sections"))


# -- /nodes <cluster> <node> ------------------------------------------------------------------------
def attempt_blocks(number: int, item: dict) -> list[dict]:
    head = f"*Attempt {number}* · {attempt_line(item, with_node=False)}"
    if item["script_version"]:
        head += f" · script `{escape(item['script_version'])}`"
    lines = [head]
    for phase in item["phases"]:
        line = f"{PHASE_ICONS.get(phase['status'], '')} `{escape(phase['phase'])}` started {_clock(phase['started_at'])}"
        if phase["status"] == "ok":
            line += f" → ok {_clock(phase['ok_at'])}"
        elif phase["status"] == "failed":
            line += f" → *failed* {_clock(phase['failed_at'])}"
            if phase["exit_code"] is not None:
                line += f", exit code `{escape(phase['exit_code'])}`"
            if phase["failures"] > 1:
                line += f" ({escape(phase['failures'])} failures)"
        if phase["seconds"] is not None:
            line += f" ({escape(phase['duration'])})"
        if phase["status"] == "failed" and phase["message"]:
            line += f"\n      {escape(clip(phase['message'], 500))}"
        lines.append(line)
    blocks = sections(lines)
    for phase in item["phases"]:
        if phase["log_tail"]:
            heading = f"*Log tail of `{escape(phase['phase'])}`*\n"
            blocks.append(section(heading + code(phase["log_tail"], MAX_SECTION_TEXT - len(heading))))  # code() escapes
    return blocks


def _clock(iso_text: str | None) -> str:
    return _utc(iso_text, seconds=True)[11:19] if iso_text else "?"


def _current(view: dict) -> list[dict]:
    if not view["reachable"]:
        return [section(f":warning: *`{escape(view['cluster'])}` did not answer*, so the Node's current state is "
                        f"unknown: {escape(clip(view['error'], 500))}")]
    if not view["exists"]:
        return [section(f"*Now:* no Node object `{escape(view['node'])}` in `{escape(view['cluster'])}` (never "
                        "registered, or deleted).")]
    state = "Ready" if view["ready"] == "True" else f"*not Ready* (Ready={escape(view['ready'])})"
    lines = [f"*Now:* {state}" + (" · *cordoned*" if view["cordoned"] else "")
             + f" · kubelet `{escape(view['kubelet_version'])}` · registered {_utc(view['created'])}"]
    lines.append("*Taints:* " + (", ".join(f"`{escape(t)}`" for t in view["taints"][:15]) or "none"))
    for cond in view["conditions"][:12]:
        why = ": ".join(x for x in (cond["reason"], cond["message"]) if x)
        lines.append(f"• {escape(cond['type'])}={escape(cond['status'])}" + (f" — {escape(clip(why, 300))}" if why else ""))
    return sections(lines)


def _history_lines(view: dict) -> list[str]:
    lines = []
    for item in view["incidents"]:
        title = _title(item["reason"])
        if item["state"] == "open":
            line = f":red_circle: *{title}* open for {escape(item['age'])} (since {_utc(item['since'])})"
        else:
            line = (f":white_check_mark: *{title}* {_utc(item['since'])}, resolved after {escape(item['age'])}: "
                    f"{escape(item['resolution'] or 'resolved')}")
        if item["acked_by"]:
            line += f" · acknowledged by {mention(item['acked_by'])} at {_utc(item['acked_at'])}"
        if item.get("permalink"):
            line += f" · {link(item['permalink'], 'alert message')}"
        lines.append(line)
    for silence in view["silences"]:
        scope = "the whole cluster" if silence["scope"] == "cluster" else "this node"
        lines.append(f":zzz: {mention(silence['by'])} silenced {scope} at {_utc(silence['at'])} until {_utc(silence['until'])}")
    return lines


def node_message(view: dict) -> dict:
    where = f"{view['node']} in {view['cluster']}"
    blocks = [header(where)] + _current(view)  # a header is plain text: no escaping
    history = _history_lines(view)
    blocks.append(section(f"*Incidents ({len(view['incidents'])})*" + ("" if history else ": none")))
    blocks += sections(history)
    attempts = view["attempts"]
    blocks.append(section(f"*Join attempts ({len(attempts)})*" + (", newest first" if attempts else
                                                                   f": none reported in the last {escape(view['retention'])}")))
    count = len(attempts)
    shown = 0
    for index, item in enumerate(attempts):
        part = attempt_blocks(count - index, item)
        if len(blocks) + len(part) > MAX_MESSAGE_BLOCKS - 2:
            break
        blocks += part
        shown += 1
    if shown < count:
        blocks.append(context(f"and {count - shown} older attempts not shown (Slack shows 50 blocks); "
                              "their reports are in deckhand's database"))
    notes = [f"As of {_utc(view['now'])}", f"history kept {escape(view['retention'])}"]
    if view.get("slow_after"):
        notes.append(f":turtle: = took over {escape(view['slow_after'])} (twice the p90 of this cluster's joins)")
    text = f"{escape(where)}: {_plural(count, 'join attempt')}, {_plural(len(view['incidents']), 'incident')}"
    return message(text, blocks + [context(" · ".join(notes))])


# -- answers that are not a view ------------------------------------------------------------------------
def ambiguous_text(node: str, clusters: list[str]) -> str:
    places = ", ".join(f"`{escape(c)}`" for c in clusters)
    return (f":grey_question: A node named `{escape(node)}` is in several clusters ({places}); say which, e.g. "
            f"`/nodes {escape(clusters[0])} {escape(node)}`.")


def unknown_node_text(node: str, clusters: list[str], down: list[str]) -> str:
    text = (f":grey_question: `{escape(node)}` is neither a cluster ({', '.join(f'`{escape(c)}`' for c in clusters)})"
            " nor a node deckhand knows of in them (no Node object, no join report, no incident).")
    if down:
        text += f" Not checked, they did not answer: {', '.join(f'`{escape(c)}`' for c in down)}."
    return text


def waves_text() -> str:
    return ("`/nodes wave` takes no arguments: it opens the planner for a node maintenance wave. "
            "A node named `wave` is shown with `/nodes &lt;cluster&gt; wave`.")
