"""Block Kit for node maintenance waves: the `/nodes wave` modal and the wave card, updated in place.

Pure: a wave (bot/nodes/waves.py's `Wave`, read as data) and its node rows in, dicts out. Node names,
pod names and reasons come from the cluster, so every one of them goes through `escape`. Button values
name the wave record ("<id>", or "<id>:<node>" for Hand back); the listener re-reads it.
"""
from __future__ import annotations

from datetime import datetime

from blocks.common import (actions, button, clip, confirm, context, divider, escape, header, mention, message,
                           modal, section, select_input, text_input)

PLAN_CALLBACK = "wave_plan"
START, CANCEL, PAUSE, RESUME, ABORT, HAND_BACK, REFRESH = (
    "wave_start", "wave_cancel", "wave_pause", "wave_resume", "wave_abort", "wave_hand_back", "wave_refresh")
SELECTORS = [("Label selector", "labels"), ("Node names", "names"), ("Kubelet version older than", "kubelet")]
PROCEDURES = [("Drain, then wait for reinstall and rejoin", "rejoin"), ("Drain only (hand back by a button)", "drain")]
PHASE_TEXT = {
    "queued": ":white_circle: queued", "cordoned": ":large_yellow_circle: cordoned",
    "draining": ":large_yellow_circle: draining", "drained": ":large_blue_circle: drained — waiting to be handed back",
    "reinstalling": ":large_blue_circle: waiting for reinstall and rejoin", "ready": ":large_green_circle: Ready",
    "done": ":white_check_mark: Ready, uncordoned", "left": ":heavy_minus_sign: left out",
}
STATE_TEXT = {"planned": ":clipboard: Planned", "running": ":arrow_forward: Running", "paused": ":double_vertical_bar: Paused",
              "done": ":white_check_mark: Done", "aborted": ":octagonal_sign: Aborted", "cancelled": ":x: Cancelled"}
BATCHES_SHOWN = 12
NODES_SHOWN = 15


def plan_modal(clusters: list[str], role_label: str, node_timeout: str, channel: str | None) -> dict:
    blocks = [
        section("Plan a wave: deckhand shows the batches and each role's availability first; nothing is touched "
                "until a *second DevOps person* presses Start."),
        select_input("cluster", "Cluster", [(c, c) for c in clusters], initial=clusters[0] if len(clusters) == 1 else None),
        select_input("selector_kind", "Select nodes by", SELECTORS, initial="labels"),
        text_input("selector", "Which nodes", placeholder="node-role.kubernetes.io/worker,zone=dc1 · node-1 node-2 · 1.30",
                   hint="A label selector, node names (spaces or commas), or a kubelet version, as chosen above."),
        text_input("role_label", "Role label", initial=role_label,
                   hint="Nodes are grouped into roles by this label; a key ending in * takes the rest of the key."),
        text_input("max_unavailable", "At most unavailable per role at once", initial="1",
                   hint="A number of nodes or a percentage of the role, e.g. 1 or 10%."),
        text_input("floor", "Floor: at least this many Ready per role", initial="50%",
                   hint="A batch waits while it would leave a role with fewer Ready nodes, e.g. 2 or 75%."),
        select_input("procedure", "Procedure", PROCEDURES, initial="rejoin"),
        text_input("node_timeout", "Per-node timeout", initial=node_timeout,
                   hint="How long a node may take to drain, and to rejoin, before the wave pauses, e.g. 45m."),
        text_input("window", "Maintenance window", optional=True, placeholder="mon-fri 22:00-06:00 Europe/Berlin",
                   hint="Batches start only inside it; empty = any time."),
        text_input("traffic_guard", "Traffic guard (requests/s)", optional=True, placeholder="e.g. 2000",
                   hint="Batches wait while the cluster's Istio request rate is above this; empty = no guard."),
    ]
    return modal("Node maintenance wave", blocks, PLAN_CALLBACK, submit="Show the plan", private_metadata=channel or "")


def _minutes(seconds: int) -> str:
    minutes = seconds // 60
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes} min"


def _spec_lines(spec: dict) -> str:
    what = dict((v, k) for k, v in SELECTORS).get(spec["selector_kind"]) or escape(spec["selector_kind"])
    procedure = dict((v, k) for k, v in PROCEDURES).get(spec["procedure"]) or escape(spec["procedure"])
    lines = [f"*Nodes:* {what.lower()} `{escape(clip(spec['selector'], 200))}` · *roles by* `{escape(spec['role_label'])}`",
             f"*At most out per role:* {escape(spec['max_unavailable'])} · *floor:* {escape(spec['floor'])} Ready · "
             f"*per-node timeout:* {_minutes(spec['node_timeout'])}",
             f"*Procedure:* {procedure}"]
    guards = []
    if spec.get("window"):
        guards.append(f"*window:* {escape(spec['window'])}")
    if spec.get("traffic_guard") is not None:
        guards.append(f"*traffic guard:* {spec['traffic_guard']:,.0f} req/s")
    if guards:
        lines.append(" · ".join(guards))
    return "\n".join(lines)


def _roles(roles: list[dict]) -> str:
    return " · ".join(f"`{escape(r['role'])}` {r['before']} → {r['after']} of {r['total']} (floor {r['floor']})"
                      for r in roles)


def _node_line(row: dict, now: datetime | None) -> str:
    detail = row.get("detail") or {}
    text = f"`{escape(row['node'])}` {PHASE_TEXT.get(row['phase'], escape(row['phase']))}"
    if row["phase"] == "draining" and detail.get("pods_left") is not None:
        text += f", {detail['pods_left']} pods left"
    if detail.get("waiting_on") and row["phase"] == "draining":
        text += f" — waiting on {escape(clip(detail['waiting_on'], 200))}"
    if detail.get("join") and row["phase"] == "reinstalling":
        text += f" — last join report: {escape(detail['join'])}"
    if detail.get("note"):
        text += f" — {escape(clip(detail['note'], 150))}"
    if detail.get("error"):
        text += f" — :warning: {escape(clip(detail['error'], 200))}"
    return text


def card(wave, rows: list[dict], settings=None, now: datetime | None = None) -> dict:
    """The wave card: plan, progress per batch and node, and the buttons that fit the state."""
    spec, plan = wave.spec.as_dict(), wave.plan.as_dict()
    batches = plan["batches"]
    title = f"Node wave #{wave.id} · {wave.cluster}"
    state = STATE_TEXT.get(wave.state) or escape(wave.state)
    if wave.state == "planned":
        state += f" by {mention(wave.requested_by)} — a second DevOps person must press Start"
    elif wave.state in ("running", "paused"):
        state += f" — batch {min(wave.batch + 1, len(batches))} of {len(batches)} (started by {mention(wave.started_by)})"
    blocks = [header(title), section(f"*{state}*\n{_spec_lines(spec)}")]
    if wave.state == "paused" and wave.note:
        blocks.append(section(f":double_vertical_bar: *Paused:* {escape(clip(wave.note, 1500))}"))
    if wave.state == "running" and wave.waiting:
        blocks.append(section(f":hourglass_flowing_sand: *Waiting:* {escape(clip(wave.waiting, 1500))}"))
    by_batch: dict[int, list[dict]] = {}
    for row in rows:
        by_batch.setdefault(row["batch"], []).append(row)
    blocks.append(divider())
    first = max(0, wave.batch - 2) if wave.state in ("running", "paused") else 0
    for index in range(first, min(len(batches), first + BATCHES_SHOWN)):
        batch = batches[index]
        members = by_batch.get(index, [])
        head = f"*Batch {index + 1}* — {len(batch['nodes'])} node{'s' if len(batch['nodes']) != 1 else ''} · " \
               f"{_roles(batch['roles'])}"
        if wave.state != "planned" and members and any(m["phase"] != "queued" for m in members):
            lines = [_node_line(m, now) for m in members[:NODES_SHOWN]]
        else:
            lines = [", ".join(f"`{escape(n)}`" for n in batch["nodes"][:40])]
        more = len(members) - NODES_SHOWN if len(members) > NODES_SHOWN else 0
        blocks.append(section(clip(head + "\n" + "\n".join(lines) + (f"\n_and {more} more_" if more else ""), 2900)))
    hidden = len(batches) - min(len(batches), first + BATCHES_SHOWN)
    if first or hidden:
        parts = []
        if first:
            parts.append(f"{first} earlier batch{'es' if first != 1 else ''} finished")
        if hidden:
            parts.append(f"and {hidden} more batch{'es' if hidden != 1 else ''} "
                         f"({sum(len(b['nodes']) for b in batches[-hidden:])} nodes)")
        blocks.append(context(" · ".join(parts)))
    if not batches:
        blocks.append(section(":no_entry_sign: No selected node can be taken out now."))
    blocks.extend(_left_out(plan))
    estimate = plan["estimate"]
    blocks.append(context(f"{len(plan['batches'])} batches, {sum(len(b['nodes']) for b in batches)} nodes · "
                          f"estimated {_minutes(estimate)} if nothing waits"))
    buttons = _buttons(wave, rows)
    if buttons:
        blocks.append(actions(*buttons[:25], block_id=f"wave:{wave.id}"))
    return message(escape(f"{title}: {wave.state}"), blocks)  # the header above is plain text


def _left_out(plan: dict) -> list[dict]:
    out = [_node_list("Cannot be drained now (left out)", {n: why for n, why in plan["blocked"].items()}),
           _node_list("Will wait on a disruption budget", {n: "; ".join(w) for n, w in plan["warnings"].items()})]
    if plan["missing"]:
        out.append(context("Not in the cluster: " + ", ".join(f"`{escape(n)}`" for n in plan["missing"][:20])))
    return [block for block in out if block]


def _node_list(title: str, reasons: dict[str, str], shown: int = 10) -> dict | None:
    """`• node: reason` lines under a title, the first `shown` nodes and "and N more"."""
    if not reasons:
        return None
    items = sorted(reasons.items())
    lines = [f"• `{escape(n)}`: {escape(clip(why, 300))}" for n, why in items[:shown]]
    if len(items) > shown:
        lines.append(f"_and {len(items) - shown} more_")
    return section(clip(f"*{title}:*\n" + "\n".join(lines), 2900))


def _buttons(wave, rows: list[dict]) -> list[dict]:
    value = str(wave.id)
    if wave.state == "planned":
        return [button("Start", START, value, "primary",
                       confirm_dialog=confirm("Start this wave?", f"deckhand will cordon and drain the nodes of "
                                                                  f"{escape(wave.cluster)} batch by batch, as planned.",
                                              yes="Start", danger=False)),
                button("Cancel", CANCEL, value)]
    if wave.state not in ("running", "paused"):
        return []
    abort = button("Abort", ABORT, value, "danger", confirm_dialog=confirm(
        "Abort this wave?", "Nodes this wave cordoned are uncordoned, except nodes being reinstalled (left cordoned; "
                            "the card says which).", yes="Abort"))
    main = [button("Pause", PAUSE, value) if wave.state == "running" else button("Resume", RESUME, value, "primary"),
            abort, button("Refresh", REFRESH, value)]
    hand_back = [button(f"Hand back {clip(r['node'], 60)}", HAND_BACK, f"{wave.id}:{r['node']}")
                 for r in rows if r["phase"] == "drained"]
    return main + hand_back[:20]


def notice(text: str) -> dict:
    return {"response_type": "ephemeral", "replace_original": False, "text": text}
