"""Block Kit for node-join alerts: one incident; for a storm, a message per cluster and in its thread one
reply per reason listing the nodes; resolution replies.

Views are plain dicts built by bot/nodes/alerts.py (`_view`, `_render_group`, `_render_reason`). Button
values name what a button acts on ("<incident id>" or "group:<incident id>"); a node's menu in a reason
reply carries "<choice>:<incident id>". commands/nodes.py handles the clicks.
"""
from __future__ import annotations

from datetime import datetime, timezone

from blocks.common import (MAX_SECTION_TEXT, actions, button, clip, code, confirm, context, escape, fields,
                           mention, message, option, section)

TITLES = {
    "join-failed": "Join failed",
    "never-joined": "Never joined",
    "startup-timeout": "Never became Ready",
    "not-ready": "NotReady",
    "csr-pending": "Certificate requests pending",
    "unreachable": "Cluster unreachable",
    "degraded": "Many nodes not Ready",
}
ACK = "node_alert_ack"
SILENCE = "node_alert_silence"  # + _<scope>_<duration>, e.g. node_alert_silence_cluster_24h
SILENCE_CHOICES = (("node", "4h"), ("node", "24h"), ("cluster", "4h"), ("cluster", "24h"))
NODE_MENU = "node_alert_node"  # a node's overflow menu in a reason reply; values "<choice>:<incident id>"
MENU_CHOICES = ("ack", "silence_node_4h", "silence_node_24h")
REASON_LINES = 20  # nodes listed in a reason reply; the rest are counted ("and N more")


def incident(view: dict) -> dict:
    """A standalone incident message, or one node's message in a grouped message's thread."""
    title = _title(view["reason"])
    where = _where(view)
    detail = view["detail"]
    if view["state"] == "resolved":
        head = (f":large_green_circle: *Resolved: {title}* — {where}\nResolved after {escape(view['failing_for'])}: "
                f"{escape(view['resolution'] or 'resolved')}.")
    else:
        head = f":red_circle: *{title}* — {where}\n{escape(detail.get('summary', ''))}"
    blocks = [section(head)]
    blocks.append(fields(_facts(view)))
    blocks.extend(_details(view))
    blocks.append(context(_status_line(view)))
    if view["state"] == "open":
        blocks.append(_buttons(view))
    verb = "resolved" if view["state"] == "resolved" else "needs attention"
    return message(f"{title}: {_plain_where(view)} {verb}", blocks)


def group(view: dict) -> dict:
    """The channel message for a storm in one cluster: counts per reason; the nodes are listed in its
    thread, one reply per reason (reason_reply)."""
    cluster = _cluster_name(view["cluster"])
    if view["state"] == "resolved":
        head = f":large_green_circle: *All {view['total']} node alerts in `{cluster}` are resolved*"
    else:
        head = f":rotating_light: *{view['open']} of {view['total']} nodes in `{cluster}` need attention*"
    per_reason: dict[str, list[int]] = {}
    for item in view["incidents"]:
        counts = per_reason.setdefault(item["reason"], [0, 0])
        counts[0 if item["state"] == "open" else 1] += 1
    lines = []
    for reason, (opened, resolved) in sorted(per_reason.items(), key=lambda kv: (-kv[1][0], kv[0])):
        title = _title(reason)
        icon = ":red_circle:" if opened else ":white_check_mark:"
        if opened:
            lines.append(f"{icon} *{title}*: {_count(opened, 'node')} open" + (f", {resolved} resolved" if resolved else ""))
        else:
            lines.append(f"{icon} *{title}*: all {_count(resolved, 'node')} resolved")
    blocks = [section(head)] + [section(chunk) for chunk in _chunks(lines)]
    notes = ["The nodes, one reply per reason, are in the thread; each line's menu acknowledges or silences that node."]
    if view["acked_by"]:
        notes.append("Acknowledged by " + ", ".join(mention(u) for u in view["acked_by"]))
    if view["silenced"]:
        notes.append(_silenced(view["silenced"]))
    blocks.append(context(" · ".join(notes)))
    if view["state"] == "open":
        blocks.append(actions(
            button("Acknowledge all", ACK, view["target"], style="primary"),
            *[_silence_button(view, "cluster", d) for d in ("4h", "24h")]))
    return message(f"{view['open']} of {view['total']} nodes in {cluster} need attention"
                   if view["state"] == "open" else f"Node alerts in {cluster} resolved", blocks)


def reason_reply(view: dict) -> dict:
    """One reply in a storm's thread: every node of the cluster failing for one reason, open ones first,
    at most REASON_LINES of them, each with a menu to acknowledge or silence that node."""
    cluster = _cluster_name(view["cluster"])
    title = _title(view["reason"])
    if view["state"] == "resolved":
        head = f":large_green_circle: *{title}* — all {_count(view['total'], 'node')} in `{cluster}` resolved"
    else:
        head = f":red_circle: *{title}* — {view['open']} of {_count(view['total'], 'node')} in `{cluster}` open"
    blocks = [section(head)]
    shown = view["incidents"][:REASON_LINES]
    for item in shown:
        blocks.append(_node_line(item))
    more = view["incidents"][REASON_LINES:]
    if more:
        still = sum(1 for i in more if i["state"] == "open")
        blocks.append(context(f"_and {len(more)} more ({still} open)_ — `/nodes {cluster}` lists every one"))
    return message(f"{title} in {cluster}: {view['open']} of {view['total']} nodes open", blocks)


def _node_line(item: dict) -> dict:
    node = escape(item["node"])
    if item["state"] != "open":
        return section(f":white_check_mark: `{node}` — resolved after {escape(item['failing_for'])}: "
                       f"{clip(escape(item['resolution'] or 'resolved'), 200)}")
    text = (f":red_circle: `{node}` — since {_ago(item['failing_since_unix'])}: "
            f"{clip(escape(item['detail'].get('summary', '')), 300)}")
    csrs = item["detail"].get("csrs") or []
    if csrs:
        text += f" · {_count(len(csrs), 'pending CSR')}"
    if item["acked_by"]:
        text += f" · :eyes: {mention(item['acked_by'])}"
    if item["silenced"]:
        text += " · " + _silenced(item["silenced"])
    choices = [("Acknowledge", "ack")] if not item["acked_by"] else []
    choices += [("Silence node 4h", "silence_node_4h"), ("Silence node 24h", "silence_node_24h")]
    menu = {"type": "overflow", "action_id": NODE_MENU,
            "options": [option(label, f"{choice}:{item['id']}") for label, choice in choices]}
    return section(text, accessory=menu)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def resolved_reply(view: dict) -> dict:
    title = _title(view["reason"])
    text = (f":white_check_mark: {_where(view)} ({title}) resolved after *{escape(view['failing_for'])}*: "
            f"{escape(view['resolution'] or 'resolved')}.")
    return message(f"{_plain_where(view)} resolved after {escape(view['failing_for'])}", [section(text)])


def acknowledged_notice(count: int, already_by: str | None) -> dict:
    if count:
        return {"text": f":eyes: Acknowledged {count} alert{'s' if count != 1 else ''}; the message shows your name."}
    if already_by:
        return {"text": f":eyes: {mention(already_by)} already acknowledged this."}
    return {"text": "Nothing to acknowledge: these alerts are already resolved."}


def silenced_notice(info: dict) -> dict:
    what = f"all node alerts in `{_cluster_name(info['cluster'])}`" if info["node"] == "*" else \
        f"`{_cluster_name(info['cluster'])}` / `{escape(info['node'])}`"
    until = _date(info["until_unix"], info["until"])
    if info.get("changed") is False:  # someone (maybe this user, a moment ago) already silenced it as long
        return {"text": f":zzz: {mention(info['by'])} already silenced {what} until {until}; nothing changed."}
    return {"text": f":zzz: Silenced {what} until {_date(info['until_unix'], info['until'])}. Alerts are still tracked "
                    "and kept current, but nothing new is posted for them until then. `/ops audit` shows who."}


# -- pieces ---------------------------------------------------------------------------------------
def _facts(view: dict) -> list[tuple[str, str]]:
    detail = view["detail"]
    since = _date(view["failing_since_unix"], view["failing_since"])
    facts = [("Cluster", f"`{_cluster_name(view['cluster'])}`")]
    if view["node"] != "*":
        facts.append(("Node", f"`{escape(view['node'])}`"))
    if view["state"] == "resolved":
        facts.append(("Was failing for", f"{escape(view['failing_for'])} (since {since})"))
    else:  # Slack renders the age, so the message needs no edit as time passes
        facts.append(("Failing since", f"{_ago(view['failing_since_unix'])} ({since})"))
    if detail.get("phase"):
        facts.append(("Phase", f"`{escape(detail['phase'])}`"))
    if detail.get("exit_code") is not None:
        facts.append(("Exit code", f"`{escape(detail['exit_code'])}`"))
    if detail.get("failures", 0) > 1:
        facts.append(("Failures", escape(detail["failures"])))
    if detail.get("last_phase"):
        facts.append(("Last report", f"`{escape(detail['last_phase'])}` {escape(detail['last_status'])}"))
    if detail.get("ready") and detail.get("condition_reason"):
        facts.append(("Ready", f"{escape(detail['ready'])} ({escape(detail['condition_reason'])})"))
    if detail.get("unhealthy") is not None:
        facts.append(("Not Ready", f"{escape(detail['unhealthy'])} of {escape(detail['total'])} "
                                   f"(limit {escape(detail['limit_percent'])}%)"))
    if detail.get("script_version"):
        facts.append(("Script", f"`{escape(detail['script_version'])}`"))
    return facts


def _details(view: dict) -> list[dict]:
    detail = view["detail"]
    out = []
    if detail.get("message") and view["reason"] == "join-failed":
        out.append(section(f"*Message:* {escape(detail['message'])}"))
    if detail.get("condition_message"):
        out.append(section(f"*Ready condition:* {escape(detail['condition_message'])}"))
    if detail.get("error"):
        out.append(section(f"*Error:* {escape(detail['error'])}\nCheck the API server and deckhand's kubeconfig "
                           "for this cluster; `python app.py check` probes it."))
    notes = []
    if detail.get("taints"):
        notes.append("*Taints:* " + ", ".join(f"`{escape(t)}`" for t in detail["taints"][:10]))
    if detail.get("cordoned"):
        notes.append("*Cordoned* (unschedulable)")
    for cond in (detail.get("conditions") or [])[:8]:
        source = " (node-problem-detector)" if cond.get("npd") else ""
        why = ": ".join(x for x in (cond.get("reason"), cond.get("message")) if x)
        notes.append(f"*{escape(cond['type'])}*{source}" + (f" — {escape(why)}" if why else ""))
    if notes:
        out.append(section("\n".join(notes)))
    if detail.get("csrs"):
        lines = [f"`{escape(c['name'])}` ({escape(c['signer'].rsplit('/', 1)[-1])}, by `{escape(c['requestor'])}`, "
                 f"pending since {_ago(c['created_unix'])})" for c in detail["csrs"][:10]]
        out.append(section("*Pending certificate requests:*\n" + "\n".join(lines)
                           + "\nApprove with `kubectl certificate approve &lt;name&gt;` once you trust the node."))
    if detail.get("reasons"):
        out.append(section("*Why not Ready:* " + ", ".join(f"{escape(k)} × {v}" for k, v in detail["reasons"].items())))
    if detail.get("nodes"):
        shown = detail["nodes"][:15]
        more = len(detail["nodes"]) - len(shown)
        listed = ", ".join(f"`{escape(n['name'])}` ({escape(n['ready'])}{', ' + escape(n['reason']) if n['reason'] else ''})"
                           for n in shown)
        out.append(section("*Nodes:* " + listed + (f" and {more} more" if more else "")))
    if detail.get("never_joined"):
        out.append(section(f"Also {escape(detail['never_joined'])} node(s) never joined; they are alerted one by one "
                           "once the cluster recovers."))
    if detail.get("log_tail"):
        heading = "*Log tail*\n"
        out.append(section(heading + code(detail["log_tail"], MAX_SECTION_TEXT - len(heading))))
    return out


def _status_line(view: dict) -> str:
    parts = []
    if view["acked_by"]:
        parts.append(f":eyes: Acknowledged by {mention(view['acked_by'])}")
    if view["silenced"]:
        parts.append(_silenced(view["silenced"]))
    parts.append(f"incident #{view['id']}")
    return " · ".join(parts)


def _buttons(view: dict) -> dict:
    elements = []
    if not view["acked_by"]:
        elements.append(button("Acknowledge", ACK, view["target"], style="primary"))
    scopes = ("cluster",) if view["node"] == "*" else ("node", "cluster")
    elements += [_silence_button(view, scope, d) for scope, d in SILENCE_CHOICES if scope in scopes]
    return actions(*elements)


def _silence_button(view: dict, scope: str, duration: str) -> dict:
    dialog = None
    if scope == "cluster":
        cluster = _cluster_name(view["cluster"])
        dialog = confirm(f"Silence {cluster} for {duration}?",
                         f"No new node alerts for `{cluster}` will be posted for {duration}. Existing ones stay tracked.",
                         yes=f"Silence {duration}", danger=False)
    return button(f"Silence {scope} {duration}", f"{SILENCE}_{scope}_{duration}", view["target"], confirm_dialog=dialog)


def _silenced(silence: dict) -> str:
    scope = "cluster" if silence["cluster_wide"] else "node"
    return f":zzz: {scope} silenced until {_date(silence['until_unix'], silence['until'])} by {mention(silence['by'])}"


def _where(view: dict) -> str:
    cluster = f"`{_cluster_name(view['cluster'])}`"
    return cluster if view["node"] == "*" else f"{cluster} / `{escape(view['node'])}`"


def _plain_where(view: dict) -> str:
    cluster = _cluster_name(view["cluster"])
    return cluster if view["node"] == "*" else f"{cluster}/{escape(view['node'])}"


def _cluster_name(cluster: str) -> str:
    return escape(cluster) if cluster else "unknown cluster"


def _title(reason: str) -> str:
    return TITLES.get(reason) or escape(reason)


def _date(unix: int, fallback_iso: str) -> str:
    """Slack shows the reader's local time; the fallback is UTC."""
    fallback = datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if unix else fallback_iso
    return f"<!date^{unix}^{{date_short_pretty}} {{time}}|{fallback}>"


def _ago(unix: int) -> str:
    """"3 hours ago", rendered by Slack in the reader's client. An open alert whose text held its own
    age ("for 30m") changed every scan tick and was edited every tick: with hundreds of open alerts
    that backlog outgrew Slack's one-message-per-second-per-channel pace (bench/node_scan.py)."""
    fallback = datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{unix}^{{ago}}|{fallback}>"


def _chunks(lines: list[str]) -> list[str]:
    out, current = [], ""
    for line in lines:
        if current and len(current) + len(line) + 1 > MAX_SECTION_TEXT - 10:
            out.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    return out + ([current] if current else [])
