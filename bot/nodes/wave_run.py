"""Running a wave: one `tick` advances every node of the current batch as far as the cluster allows.

See bot/nodes/waves.py for the states. A tick is idempotent: it re-reads the cluster and the join
reports, so running it twice, after a crash, or from two triggers at once (the lock) does one thing.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime

from bot.foundation.kube import KubeError, meta
from bot.foundation.store import Audit, iso, parse_iso
from bot.foundation.traffic import MetricsUnavailable
from bot.nodes import drain
from bot.nodes.wave_plan import REJOIN, batch_fits, node_ready, pods_by_node
from bot.nodes.waves import (RENDERER, TRAFFIC_QUERY, Wave, _set_phase, _wait, get, nodes_of, pause,
                             read_cluster)

log = logging.getLogger(__name__)


def tick(ctx, wave_id: int) -> str:
    wave = get(ctx, wave_id)
    if wave is None or wave.state != "running":
        return f"wave #{wave_id} is not running"
    with ctx.store.locked(f"wave:{wave.cluster}", "tick") as held:
        if held is not None:
            return f"wave #{wave_id}: another step is running"
        wave = get(ctx, wave_id)  # re-read under the lock: a pause or abort may have won meanwhile
        outcome = _advance(ctx, wave) if wave.state == "running" else f"wave #{wave_id} is {wave.state}"
    publish(ctx, wave_id)
    return outcome


def tick_all(ctx) -> str:
    running = ctx.store.query("SELECT id FROM waves WHERE state = 'running' ORDER BY id")
    outcomes = [tick(ctx, row["id"]) for row in running]
    return "; ".join(outcomes) if outcomes else "no running waves"


def publish(ctx, wave_id: int) -> None:
    """Show the wave card in its channel, in place (through the outbox: survives Slack outages)."""
    wave = get(ctx, wave_id)
    render = ctx.extras.get(RENDERER)
    if wave is None or render is None:
        return
    channel = ctx.store.query("SELECT channel FROM waves WHERE id = ?", [wave_id])[0]["channel"] \
        or ctx.settings.channels.alerts
    body = render(wave, nodes_of(ctx, wave_id), ctx.settings)
    ctx.outbox.show(wave.ref, channel, body["text"], body.get("blocks"))


# -- one step ------------------------------------------------------------------------------------
def _advance(ctx, wave: Wave) -> str:
    now = ctx.now()
    rows = [r for r in nodes_of(ctx, wave.id) if r["batch"] == wave.batch]
    if not rows:
        return _next_batch(ctx, wave)
    try:
        nodes, pods, _ = read_cluster(ctx, wave.cluster)
    except KubeError as exc:
        _wait(ctx, wave, f"the Kubernetes API did not answer ({exc}); retrying")
        return f"wave #{wave.id}: cluster unreachable"
    if all(r["phase"] == "queued" for r in rows):
        gate = _gate(ctx, wave, [r["node"] for r in rows], nodes, now)
        if gate:
            _wait(ctx, wave, gate)
            return f"wave #{wave.id} waits: {gate}"
    _wait(ctx, wave, None)
    by_name = {meta(n).get("name"): n for n in nodes}
    on_node = pods_by_node(pods)
    for row in rows:
        try:
            stopped = _advance_node(ctx, wave, row, by_name.get(row["node"]), on_node.get(row["node"], []), now)
        except KubeError as exc:
            _set_phase(ctx, wave, row["node"], row["phase"], error=str(exc))
            stopped = None
        if stopped:
            pause(ctx, wave.id, "deckhand", why=stopped)
            return f"wave #{wave.id} paused: {stopped}"
    if all(r["phase"] in ("done", "left") for r in nodes_of(ctx, wave.id) if r["batch"] == wave.batch):
        return _next_batch(ctx, wave)
    return f"wave #{wave.id}: batch {wave.batch + 1} in progress"


def _next_batch(ctx, wave: Wave) -> str:
    if wave.batch + 1 >= len(wave.plan.batches):
        ctx.store.transition("waves", {"id": wave.id}, "running", "done",
                             {"ended_at": iso(ctx.now()), "updated_at": iso(ctx.now()), "waiting": None},
                             audit=Audit(actor="deckhand", action="wave.done", result="ok", target=wave.ref,
                                         cluster=wave.cluster))
        return f"wave #{wave.id} done"
    with ctx.store.tx() as db:
        db.execute("UPDATE waves SET batch = batch + 1, updated_at = ? WHERE id = ? AND batch = ?",
                   [iso(ctx.now()), wave.id, wave.batch])
    return f"wave #{wave.id}: batch {wave.batch + 1} finished"


def _gate(ctx, wave: Wave, batch: list[str], nodes: list[dict], now: datetime) -> str | None:
    """Why the next batch must not start yet (None = go): window, traffic guard, role floors."""
    spec = wave.spec
    if spec.window and not spec.window.contains(now):
        opens = spec.window.next_open(now)
        return f"outside the maintenance window ({spec.window}); it opens {opens:%a %Y-%m-%d %H:%M %Z}"
    if spec.traffic_guard is not None:
        try:
            samples = ctx.traffic.query(wave.cluster, TRAFFIC_QUERY, now)
        except MetricsUnavailable as exc:
            return f"the traffic guard cannot read Istio's request rate ({exc.reason}); waiting until it can"
        rate = sum(s.value for s in samples)
        if rate > spec.traffic_guard:
            return (f"traffic is {rate:,.0f} req/s, above the guard of {spec.traffic_guard:,.0f} req/s; "
                    "waiting until it drops")
    floors = batch_fits(batch, nodes, spec)
    if floors:
        return "a role would go below its floor: " + "; ".join(floors)
    return None


def _advance_node(ctx, wave: Wave, row: dict, node: dict | None, pods: list[dict], now: datetime) -> str | None:
    """Move one node on; returns a reason to pause the wave, or None."""
    name, phase, detail = row["node"], row["phase"], row["detail"]
    if node is None and phase in ("queued", "cordoned", "draining", "drained"):
        if phase != "queued" and wave.spec.procedure == REJOIN:
            _set_phase(ctx, wave, name, "reinstalling", drained_at=detail.get("drained_at") or iso(now),
                       note="the Node object went away (reinstall started)")
            return None
        _set_phase(ctx, wave, name, "left", note="the node is no longer in the cluster")
        return None
    if phase == "queued":
        mine = not (node.get("spec") or {}).get("unschedulable")
        if mine:
            drain.cordon(ctx, wave.cluster, name)
        with ctx.store.tx() as db:
            db.execute("UPDATE wave_nodes SET cordoned = ? WHERE wave_id = ? AND node = ?", [int(mine), wave.id, name])
        ctx.audit("deckhand", "wave.cordon", "ok", target=wave.ref, cluster=wave.cluster,
                  params={"node": name, "was_cordoned": not mine})
        _set_phase(ctx, wave, name, "draining", drain_started=iso(now))
        phase, detail = "draining", {**detail, "drain_started": iso(now)}
    if phase in ("cordoned", "draining"):
        return _drain(ctx, wave, name, detail, pods, now)
    if phase == "reinstalling":
        stop = _await_rejoin(ctx, wave, name, detail, node, now)
        if stop is None and _phase(ctx, wave, name) == "ready":
            _hand_back(ctx, wave, row, node, now)
        return stop
    if phase == "ready":
        _hand_back(ctx, wave, row, node, now)
    return None


def _hand_back(ctx, wave: Wave, row: dict, node: dict | None, now: datetime) -> None:
    """Uncordon what this wave cordoned (a node cordoned before the wave stays so, and the card says it)."""
    name = row["node"]
    if row["cordoned"] and node is not None and (node.get("spec") or {}).get("unschedulable"):
        drain.uncordon(ctx, wave.cluster, name)
        ctx.audit("deckhand", "wave.uncordon", "ok", target=wave.ref, cluster=wave.cluster, params={"node": name})
    _set_phase(ctx, wave, name, "done", finished_at=iso(now),
               note=None if row["cordoned"] else "was cordoned before the wave: left cordoned")


def _drain(ctx, wave: Wave, name: str, detail: dict, pods: list[dict], now: datetime) -> str | None:
    left = drain.evictable(pods)
    if not left:
        after = "reinstalling" if wave.spec.procedure == REJOIN else "drained"
        _set_phase(ctx, wave, name, after, drained_at=iso(now), pods_left=0, waiting_on=None, clock_from=None)
        return None
    retry = dict(detail.get("retry") or {})
    step = drain.drain_pass(ctx, wave.cluster, left, retry, now)
    first_wait = next(iter(step.waiting.items()), None) or next(iter(step.errors.items()), None)
    _set_phase(ctx, wave, name, "draining", retry=retry, pods_left=len(left),
               waiting_on=f"`{first_wait[0]}`: {first_wait[1]}" if first_wait else None)
    started = parse_iso(detail.get("clock_from") or detail.get("drain_started")) or now
    if first_wait and now - started > wave.spec.node_timeout:
        return (f"`{name}`: pod `{first_wait[0]}` could not be evicted within {_minutes(wave.spec.node_timeout)} "
                f"({first_wait[1]}). Fix it, then Resume.")
    return None


def _await_rejoin(ctx, wave: Wave, name: str, detail: dict, node: dict | None, now: datetime) -> str | None:
    drained = detail.get("drained_at") or iso(now)
    joins = ctx.store.query("SELECT * FROM node_joins WHERE cluster = ? AND node = ?", [wave.cluster, name])
    join = joins[0] if joins else None
    fresh = join is not None and join["last_report_at"] >= drained
    if fresh and join["last_status"] == "failed" and not detail.get("join_failure_seen") == join["last_report_at"]:
        _set_phase(ctx, wave, name, "reinstalling", join_failure_seen=join["last_report_at"],
                   join=f"`{join['last_phase']}` failed")
        return (f"`{name}`: its join failed in the `{join['last_phase']}` phase; see the node-join alert in "
                f"<#{ctx.settings.channels.alerts}>. Fix it and re-run the join script, then Resume.")
    rejoined = fresh and join["started_at"] >= drained and join["last_phase"] == "ready" and join["last_status"] == "ok"
    if rejoined and node is not None and node_ready(node):
        _set_phase(ctx, wave, name, "ready", rejoined_at=iso(now), join="joined")
        return None
    if fresh:
        _set_phase(ctx, wave, name, "reinstalling", join=f"`{join['last_phase']}` {join['last_status']}")
    if now - (parse_iso(detail.get("clock_from") or drained) or now) > wave.spec.node_timeout:
        return (f"`{name}` has not rejoined and become Ready within {_minutes(wave.spec.node_timeout)} of its drain. "
                "Check the machine, then Resume (the timeout starts again).")
    return None


def _phase(ctx, wave: Wave, node: str) -> str:
    return ctx.store.query("SELECT phase FROM wave_nodes WHERE wave_id = ? AND node = ?", [wave.id, node])[0]["phase"]


def _minutes(delta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes} min"


def restart_timeouts(ctx, wave_id: int) -> None:
    """On Resume the per-node clock starts again for nodes still waiting (a person looked at them)."""
    now = iso(ctx.now())
    for row in nodes_of(ctx, wave_id):
        detail = row["detail"]
        if row["phase"] not in ("draining", "reinstalling"):
            continue
        detail["clock_from"] = now
        with ctx.store.tx() as db:
            db.execute("UPDATE wave_nodes SET detail = ? WHERE wave_id = ? AND node = ?",
                       [json.dumps(detail), wave_id, row["node"]])

