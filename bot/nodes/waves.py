"""Node maintenance waves: take nodes out in batches, wait for them to come back, hand them back.

States of a wave (every move a compare-and-set with its audit row in the same transaction):

    planned ──start (a second DevOps person)──▶ running ──▶ done
       │                                         │  ▲
       └──cancel──▶ cancelled             pause  │  │ resume
                                                 ▼  │
                                                paused          running/paused ──abort──▶ aborted

Phases of a node: queued → cordoned → draining → drained (drain only: waits for Hand back) or
reinstalling (waits for the join script's reports and Ready) → ready → done (uncordoned).

`tick(ctx, wave_id)` advances a running wave by one step and is safe to call any time, from the
`node-waves` job or right after a click: it holds the lock `wave:<cluster>` (one wave per cluster,
and one tick at a time), re-reads the cluster (one list of Nodes and one of Pods, never a get per
node), and acts from what the cluster shows now, so a restart mid-wave just continues. Before a batch
starts, availability is recomputed and the batch waits while it would break a role's floor, while
the maintenance window is closed, or while the cluster's Istio request rate is above the guard.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from bot.foundation.kube import NODES, PDBS, PODS, KubeError, meta
from bot.foundation.store import Audit, iso, parse_iso
from bot.foundation.traffic import MetricsUnavailable
from bot.nodes import drain
from bot.nodes.wave_plan import REJOIN, Plan, WaveSpec, available, batch_fits, node_ready, plan, pods_by_node

log = logging.getLogger(__name__)

ACTIVE = ("planned", "running", "paused")
ENDED = ("done", "aborted", "cancelled")
PHASES = ("queued", "cordoned", "draining", "drained", "reinstalling", "ready", "done", "left")
RENDERER = "wave_renderer"
TRAFFIC_QUERY = 'sum(rate(istio_requests_total{reporter="destination"}[5m]))'
Renderer = Callable[["Wave", list[dict], Any], dict]


class WaveRefused(Exception):
    """Said to the person who clicked: what is not possible now and why."""


@dataclass
class Wave:
    id: int
    cluster: str
    state: str
    spec: WaveSpec
    plan: Plan
    requested_by: str
    started_by: str | None
    batch: int
    waiting: str | None
    note: str | None
    created_at: datetime
    updated_at: datetime
    extra: dict = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"wave:{self.id}"

    @classmethod
    def of(cls, row: dict) -> "Wave":
        return cls(id=row["id"], cluster=row["cluster"], state=row["state"],
                   spec=WaveSpec.from_dict(json.loads(row["spec"])), plan=Plan.from_dict(json.loads(row["plan"])),
                   requested_by=row["requested_by"], started_by=row["started_by"], batch=row["batch"],
                   waiting=row["waiting"], note=row["note"], created_at=parse_iso(row["created_at"]),
                   updated_at=parse_iso(row["updated_at"]))


# -- reading -------------------------------------------------------------------------------------
def get(ctx, wave_id: int) -> Wave | None:
    rows = ctx.store.query("SELECT * FROM waves WHERE id = ?", [wave_id])
    return Wave.of(rows[0]) if rows else None


def active(ctx, cluster: str | None = None) -> list[Wave]:
    sql = f"SELECT * FROM waves WHERE state IN ({', '.join('?' for _ in ACTIVE)})"
    params: list[Any] = list(ACTIVE)
    if cluster:
        sql += " AND cluster = ?"
        params.append(cluster)
    return [Wave.of(r) for r in ctx.store.query(sql + " ORDER BY id", params)]


def nodes_of(ctx, wave_id: int) -> list[dict]:
    rows = ctx.store.query("SELECT * FROM wave_nodes WHERE wave_id = ? ORDER BY batch, node", [wave_id])
    for row in rows:
        row["detail"] = json.loads(row["detail"] or "{}")
    return rows


# -- planning ------------------------------------------------------------------------------------
def read_cluster(ctx, cluster: str, with_budgets: bool = False) -> tuple[list[dict], list[dict], list[dict]]:
    nodes = ctx.kube.list(cluster, NODES)
    pods = ctx.kube.list(cluster, PODS)
    pdbs = ctx.kube.list(cluster, PDBS) if with_budgets else []
    return nodes, pods, pdbs


def per_node_estimate(ctx, spec: WaveSpec) -> timedelta:
    """Drain a few minutes; a rejoin as long as this cluster's recent joins took (median), else 20 min."""
    if spec.procedure != REJOIN:
        return timedelta(minutes=5)
    rows = ctx.store.query("SELECT started_at, joined_at FROM node_joins WHERE cluster = ? AND joined_at IS NOT NULL "
                           "ORDER BY joined_at DESC LIMIT 50", [spec.cluster])
    took = sorted(parse_iso(r["joined_at"]) - parse_iso(r["started_at"]) for r in rows)
    rejoin = took[len(took) // 2] if took else timedelta(minutes=20)
    return timedelta(minutes=5) + min(rejoin, spec.node_timeout)


def propose(ctx, spec: WaveSpec, user: str, channel: str | None) -> Wave:
    """Plan from a fresh read of the cluster and store it as `planned` (nothing touched yet)."""
    if ctx.settings.waves is None or not ctx.settings.waves.enabled:
        raise WaveRefused("Node maintenance waves are turned off in deckhand's config (`waves.enabled`).")
    current = active(ctx, spec.cluster)
    if current:
        raise WaveRefused(f"Wave #{current[0].id} is already {current[0].state} on `{spec.cluster}`: one wave per "
                          "cluster at a time. Finish, abort or cancel it first.")
    nodes, pods, pdbs = read_cluster(ctx, spec.cluster, with_budgets=True)
    result = plan(spec, nodes, pods, pdbs, per_node_estimate(ctx, spec))
    now = ctx.now()
    with ctx.store.tx() as db:
        try:
            cursor = db.execute(
                "INSERT INTO waves(cluster, state, spec, plan, requested_by, batch, channel, created_at, updated_at) "
                "VALUES(?, 'planned', ?, ?, ?, 0, ?, ?, ?)",
                [spec.cluster, json.dumps(spec.as_dict()), json.dumps(result.as_dict()), user, channel, iso(now),
                 iso(now)])
        except Exception as exc:  # the partial unique index: someone planned one a moment ago
            if "UNIQUE" in str(exc):
                raise WaveRefused(f"Another wave was just planned on `{spec.cluster}`; one per cluster at a time.") \
                    from None
            raise
        wave_id = cursor.lastrowid
        for index, batch in enumerate(result.batches):
            for node in batch.nodes:
                db.execute("INSERT INTO wave_nodes(wave_id, node, batch, phase, detail, cordoned, phase_at) "
                           "VALUES(?, ?, ?, 'queued', '{}', 0, ?)", [wave_id, node, index, iso(now)])
        ctx.store.audit(Audit(actor=user, action="wave.plan", result="ok", target=f"wave:{wave_id}",
                              cluster=spec.cluster, params={**spec.as_dict(), "nodes": len(result.nodes),
                                                            "batches": len(result.batches)}))
    return get(ctx, wave_id)


# -- decisions -----------------------------------------------------------------------------------
def _move(ctx, wave: Wave, user: str, action: str, from_states, to_state: str, **values: Any) -> bool:
    return ctx.store.transition(
        "waves", {"id": wave.id}, from_states, to_state, {"updated_at": iso(ctx.now()), **values},
        audit=Audit(actor=user, action=f"wave.{action}", result="ok", target=wave.ref, cluster=wave.cluster))


def start(ctx, wave_id: int, user: str) -> Wave:
    wave = _require(ctx, wave_id)
    if wave.state != "planned":
        raise WaveRefused(f"Wave #{wave.id} is {wave.state}; only a planned wave can be started.")
    if user == wave.requested_by:
        raise WaveRefused("You planned this wave, so a second DevOps person must start it (four-eyes rule).")
    if not wave.plan.batches:
        raise WaveRefused("This plan has no node that can be taken out now; plan again when that changes.")
    if not _move(ctx, wave, user, "start", "planned", "running", started_by=user):
        raise WaveRefused(f"Wave #{wave.id} was {get(ctx, wave.id).state} already.")
    return get(ctx, wave.id)


def cancel(ctx, wave_id: int, user: str) -> Wave:
    wave = _require(ctx, wave_id)
    if not _move(ctx, wave, user, "cancel", "planned", "cancelled", ended_at=iso(ctx.now())):
        raise WaveRefused(f"Wave #{wave.id} is {get(ctx, wave.id).state}; only a planned wave can be cancelled.")
    return get(ctx, wave.id)


def pause(ctx, wave_id: int, user: str, why: str | None = None) -> Wave:
    wave = _require(ctx, wave_id)
    note = why or f"paused by <@{user}>"
    if not _move(ctx, wave, user, "pause", "running", "paused", note=note, waiting=None):
        raise WaveRefused(f"Wave #{wave.id} is {get(ctx, wave.id).state}; only a running wave can be paused.")
    return get(ctx, wave.id)


def resume(ctx, wave_id: int, user: str) -> Wave:
    wave = _require(ctx, wave_id)
    if not _move(ctx, wave, user, "resume", "paused", "running", note=None, waiting=None):
        raise WaveRefused(f"Wave #{wave.id} is {get(ctx, wave.id).state}; only a paused wave can be resumed.")
    return get(ctx, wave.id)


def abort(ctx, wave_id: int, user: str) -> tuple[Wave, list[str]]:
    """Stop for good; uncordon what this wave cordoned, except nodes mid-reinstall (said, and left)."""
    wave = _require(ctx, wave_id)
    with ctx.store.locked(f"wave:{wave.cluster}", "abort", wait=30) as held:
        if held is not None:
            raise WaveRefused("The wave is busy with a step right now; try Abort again in a moment.")
        if not _move(ctx, wave, user, "abort", ("running", "paused"), "aborted", ended_at=iso(ctx.now())):
            raise WaveRefused(f"Wave #{wave.id} is {get(ctx, wave.id).state}; there is nothing to abort.")
        said = []
        for row in nodes_of(ctx, wave.id):
            if row["phase"] in ("queued", "done", "left"):
                continue
            if row["phase"] == "reinstalling":
                said.append(f"`{row['node']}` is being reinstalled: left cordoned; uncordon it once it is back")
                _set_phase(ctx, wave, row["node"], "left", note="mid-reinstall at abort; left cordoned")
                continue
            if row["cordoned"]:
                try:
                    drain.uncordon(ctx, wave.cluster, row["node"])
                    said.append(f"`{row['node']}` uncordoned")
                    _set_phase(ctx, wave, row["node"], "left", note="uncordoned at abort")
                except KubeError as exc:
                    said.append(f"`{row['node']}` could NOT be uncordoned ({exc}); run `kubectl uncordon "
                                f"{row['node']}`")
            else:
                _set_phase(ctx, wave, row["node"], "left", note="not cordoned by this wave")
        ctx.audit(user, "wave.abort.cleanup", "ok", target=wave.ref, cluster=wave.cluster, params={"said": said})
    return get(ctx, wave.id), said


def hand_back(ctx, wave_id: int, node: str, user: str) -> Wave:
    """Drain-only waves: the person says the node's maintenance is done; uncordon it."""
    wave = _require(ctx, wave_id)
    if wave.state not in ("running", "paused"):
        raise WaveRefused(f"Wave #{wave.id} is {wave.state}.")
    rows = [r for r in nodes_of(ctx, wave.id) if r["node"] == node]
    if not rows or rows[0]["phase"] != "drained":
        raise WaveRefused(f"`{node}` is not drained and waiting to be handed back.")
    with ctx.store.locked(f"wave:{wave.cluster}", "hand-back", wait=30) as held:
        if held is not None:
            raise WaveRefused("The wave is busy with a step right now; try again in a moment.")
        won = ctx.store.transition("wave_nodes", {"wave_id": wave.id, "node": node}, "drained", "ready",
                                   {"phase_at": iso(ctx.now())}, state_column="phase",
                                   audit=Audit(actor=user, action="wave.hand_back", result="ok", target=wave.ref,
                                               cluster=wave.cluster, params={"node": node}))
        if not won:
            raise WaveRefused(f"`{node}` was handed back already.")
    return get(ctx, wave.id)


def _require(ctx, wave_id: int) -> Wave:
    wave = get(ctx, wave_id)
    if wave is None:
        raise WaveRefused(f"There is no wave #{wave_id} in deckhand's database.")
    return wave


def _set_phase(ctx, wave: Wave, node: str, phase: str, **detail: Any) -> None:
    with ctx.store.tx() as db:
        row = list(db.query("SELECT detail FROM wave_nodes WHERE wave_id = ? AND node = ?", [wave.id, node]))
        merged = {**json.loads(row[0]["detail"] or "{}"), **detail} if row else detail
        db.execute("UPDATE wave_nodes SET phase = ?, detail = ?, phase_at = CASE WHEN phase = ? THEN phase_at "
                   "ELSE ? END WHERE wave_id = ? AND node = ?",
                   [phase, json.dumps(merged), phase, iso(ctx.now()), wave.id, node])


def _wait(ctx, wave: Wave, why: str | None) -> None:
    if wave.waiting != why:
        with ctx.store.tx() as db:
            db.execute("UPDATE waves SET waiting = ?, updated_at = ? WHERE id = ? AND state = 'running'",
                       [why, iso(ctx.now()), wave.id])
        wave.waiting = why
