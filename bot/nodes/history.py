"""The read side of node joins: what `/nodes` shows, from what deckhand stored and what the cluster says now.

Join attempts are not stored as rows of their own: they are rebuilt from the join script's reports
(`node_reports`, one row per phase report, kept for `node_join.retention`), so every attempt a node
ever made survives restarts and nothing needs migrating. Every run of the join script begins with
`discovery started` (deploy/node-join/join-node.sh), which starts a new attempt here.

A join is marked slow when it took more than twice the p90 of the cluster's successful joins
(within the retention), once the cluster has at least MIN_SAMPLES of them to compare with.
Retention: `prune` (run by the node-scan job) forgets reports and resolved incidents older than
`node_join.retention`; open incidents are never pruned.
"""
from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.foundation.kube import NODES, KubeError
from bot.foundation.store import iso, parse_iso
from bot.nodes import alerts
from bot.nodes.reports import _NODE_NAME, PHASES
from bot.nodes.scan import node_state

MIN_SAMPLES = 5  # below this many successful joins, a p90 says nothing
SLOW_FACTOR = 2
RECENT = timedelta(hours=24)
JOINED, FAILED, RUNNING, STOPPED = "joined", "failed", "in progress", "stopped reporting"


@dataclass
class PhaseRun:
    name: str
    started_at: datetime | None = None
    ok_at: datetime | None = None
    failed_at: datetime | None = None
    failures: int = 0
    exit_code: int | None = None
    message: str = ""
    log_tail: str = ""

    @property
    def status(self) -> str:
        last = max((t for t in (self.ok_at, self.failed_at) if t), default=None)
        if last is None:
            return "started"
        return "ok" if last == self.ok_at and (self.failed_at is None or self.ok_at >= self.failed_at) else "failed"

    @property
    def seconds(self) -> float | None:
        end = self.ok_at if self.status == "ok" else self.failed_at
        return (end - self.started_at).total_seconds() if end and self.started_at else None


@dataclass
class Attempt:
    cluster: str
    node: str
    started_at: datetime
    last_at: datetime
    phases: dict[str, PhaseRun] = field(default_factory=dict)
    last_phase: str = ""
    last_status: str = ""
    script_version: str = ""
    reports: int = 0
    slow: bool = False

    @property
    def reached(self) -> str:
        return max(self.phases, key=PHASES.index) if self.phases else "discovery"

    def outcome(self, now: datetime, stalled_after: timedelta) -> str:
        if self.last_status == "failed":
            return FAILED
        if self.last_phase == "ready" and self.last_status == "ok":
            return JOINED
        return RUNNING if now - self.last_at < stalled_after else STOPPED

    @property
    def seconds(self) -> float:
        return (self.last_at - self.started_at).total_seconds()

    @property
    def joined(self) -> bool:
        return self.last_phase == "ready" and self.last_status == "ok"


def is_node_name(text: str) -> bool:
    """Typed by a person and put in an API path: a node name is a lowercase DNS name, nothing else."""
    return len(text) <= 253 and bool(_NODE_NAME.match(text))


def attempts_from(reports: list[dict]) -> list[Attempt]:
    """Reports of ONE node in id order -> its attempts, oldest first."""
    out: list[Attempt] = []
    for row in reports:
        at = parse_iso(row["received_at"])
        current = out[-1] if out else None
        # The script starts every run with `discovery started` and stops at its first failure; a run whose
        # `started` report was lost still shows as a discovery report after a later phase or a failure.
        if current is None or (row["phase"] == "discovery" and (
                row["status"] == "started" or current.last_phase != "discovery" or current.last_status == "failed")):
            current = Attempt(cluster=row["cluster"], node=row["node"], started_at=at, last_at=at)
            out.append(current)
        if row["cluster"]:
            current.cluster = row["cluster"]
        run = current.phases.setdefault(row["phase"], PhaseRun(row["phase"]))
        if row["status"] == "started":
            run.started_at = run.started_at or at
        elif row["status"] == "ok":
            run.ok_at = at
            run.started_at = run.started_at or at
        else:
            run.failed_at, run.failures = at, run.failures + 1
            run.started_at = run.started_at or at
            run.exit_code, run.message, run.log_tail = row["exit_code"], row["message"], row["log_tail"]
        current.last_at, current.last_phase, current.last_status = at, row["phase"], row["status"]
        current.script_version = row["script_version"] or current.script_version
        current.reports += 1
    return out


def duration_text(seconds: float) -> str:
    """Join timings to the second: 38s, 4m12s, 1h02m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s" if rest else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def p90(values: list[float]) -> float | None:
    """90th percentile, interpolated between the two nearest ranks (numpy's default), so in a small
    sample one outlier does not become the p90 itself; None below MIN_SAMPLES."""
    if len(values) < MIN_SAMPLES:
        return None
    ordered = sorted(values)
    position = 0.9 * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _grouped(rows: list[dict]) -> dict[str, list[dict]]:
    by_node: dict[str, list[dict]] = {}
    for row in rows:
        by_node.setdefault(row["node"], []).append(row)
    return by_node


def cluster_attempts(ctx, cluster: str, since: datetime | None = None) -> list[Attempt]:
    """Every attempt in the cluster within the retention (or since `since`), oldest report first per node."""
    since = since or ctx.now() - ctx.settings.node_join.retention
    # Messages and log tails (up to 4 KiB each) are left out: only a node's own view shows them.
    rows = ctx.store.query("SELECT id, received_at, cluster, node, phase, status, exit_code, script_version, "
                           "'' AS message, '' AS log_tail FROM node_reports WHERE cluster = ? AND received_at >= ? "
                           "ORDER BY node, id", [cluster, iso(since)])
    return [a for reports in _grouped(rows).values() for a in attempts_from(reports)]


def slow_after(attempts: list[Attempt]) -> float | None:
    """Seconds past which a join is slow: twice the p90 of the successful ones among `attempts`."""
    typical = p90([a.seconds for a in attempts if a.joined])
    return typical * SLOW_FACTOR if typical is not None else None


def mark_slow(attempts: list[Attempt], threshold: float | None) -> None:
    for attempt in attempts:
        attempt.slow = bool(threshold and attempt.joined and attempt.seconds > threshold)


# -- incidents --------------------------------------------------------------------------------------
def _incident_rows(ctx, where: str, params: list) -> list[dict]:
    """Incidents with the Slack message that shows them (their own, else their grouped message)."""
    rows = ctx.store.query(
        "SELECT i.*, COALESCE(m.channel, g.channel) AS message_channel, COALESCE(m.ts, g.ts) AS message_ts "
        "FROM incidents i LEFT JOIN alert_messages m ON m.id = i.message_id "
        f"LEFT JOIN alert_messages g ON g.id = i.group_id WHERE i.kind = ? AND {where} ORDER BY i.id", [alerts.KIND, *params])
    return [{**r, "detail": json.loads(r["detail"] or "{}")} for r in rows]


def incident_view(row: dict, now: datetime) -> dict:
    since = parse_iso(row["failing_since"])
    end = parse_iso(row["resolved_at"]) if row["resolved_at"] else now
    return {"id": row["id"], "cluster": row["cluster"], "node": row["node"], "reason": row["reason"],
            "state": row["state"], "summary": row["detail"].get("summary", ""), "since": row["failing_since"],
            "age": alerts.humanize(end - since), "resolved_at": row["resolved_at"], "resolution": row["resolution"],
            "acked_by": row["acked_by"], "acked_at": row["acked_at"],
            "channel": row["message_channel"], "ts": row["message_ts"], "permalink": None}


# -- what the cluster says now ----------------------------------------------------------------------
def get_node(ctx, cluster: str, node: str) -> dict | None:
    """One Node by name through `list` with a field selector: deckhand's RBAC grants `list` on nodes
    (the scan needs it), not `get` (deploy/kubernetes/access/clusterrole.yaml). `node` is a checked
    DNS name, so it cannot widen the selector."""
    items = ctx.kube.list(cluster, NODES, field_selector=f"metadata.name={node}")
    return next((i for i in items if (i.get("metadata") or {}).get("name") == node), None)


def _list_nodes(ctx, cluster: str) -> tuple[list[dict] | None, str]:
    try:
        return ctx.kube.list(cluster, NODES), ""
    except KubeError as exc:
        return None, str(exc)


def overview(ctx) -> list[dict]:
    """One row per configured cluster: nodes now, joins in the last 24 h, open incidents."""
    now = ctx.now()
    clusters = [c.name for c in ctx.settings.clusters]
    with ThreadPoolExecutor(max_workers=min(8, len(clusters)) or 1, thread_name_prefix="nodes-cmd") as pool:
        listed = dict(zip(clusters, pool.map(lambda c: _list_nodes(ctx, c), clusters)))
    # Reports from 48 h back, so an attempt that began before the 24 h mark still has its start.
    reports = ctx.store.query("SELECT * FROM node_reports WHERE received_at >= ? ORDER BY cluster, node, id",
                              [iso(now - 2 * RECENT)])
    per_cluster: dict[str, list[dict]] = {}
    for row in reports:
        per_cluster.setdefault(row["cluster"], []).append(row)
    incidents: dict[str, int] = {}
    for row in alerts.open_incidents(ctx):
        incidents[row["cluster"]] = incidents.get(row["cluster"], 0) + 1
    out = []
    for cluster in clusters:
        nodes, error = listed[cluster]
        recent = [a for rows in _grouped(per_cluster.get(cluster, [])).values() for a in attempts_from(rows)
                  if now - a.last_at <= RECENT]
        outcomes = [a.outcome(now, ctx.settings.node_join.startup_timeout) for a in recent]
        row = {"cluster": cluster, "reachable": nodes is not None, "error": error,
               "joins_ok": outcomes.count(JOINED), "joins_failed": outcomes.count(FAILED),
               "joins_running": outcomes.count(RUNNING), "open_incidents": incidents.get(cluster, 0)}
        if nodes is not None:
            states = [node_state(n, now) for n in nodes]
            row.update(total=len(states), ready=sum(s.ready == "True" for s in states),
                       not_ready=sum(s.ready != "True" for s in states), cordoned=sum(s.cordoned for s in states))
        out.append(row)
    return out


def attempt_view(attempt: Attempt, now: datetime, stalled_after: timedelta, threshold: float | None) -> dict:
    phases = []
    for name in PHASES:
        run = attempt.phases.get(name)
        if run is None:
            continue
        phases.append({"phase": name, "status": run.status, "started_at": iso(run.started_at),
                       "ok_at": iso(run.ok_at), "failed_at": iso(run.failed_at), "seconds": run.seconds,
                       "duration": duration_text(run.seconds) if run.seconds is not None else None,
                       "failures": run.failures, "exit_code": run.exit_code, "message": run.message,
                       "log_tail": run.log_tail if run.failures else ""})
    return {"cluster": attempt.cluster, "node": attempt.node, "started_at": iso(attempt.started_at),
            "last_at": iso(attempt.last_at), "reached": attempt.reached, "last_phase": attempt.last_phase,
            "last_status": attempt.last_status, "outcome": attempt.outcome(now, stalled_after),
            "seconds": attempt.seconds, "duration": duration_text(attempt.seconds), "slow": attempt.slow,
            "slow_after": duration_text(threshold) if threshold else None,
            "script_version": attempt.script_version, "phases": phases}


def cluster_view(ctx, cluster: str, recent: int = 10) -> dict:
    """`/nodes <cluster>`: open incidents with age and message, the last `recent` join attempts."""
    now = ctx.now()
    stalled = ctx.settings.node_join.startup_timeout
    attempts = cluster_attempts(ctx, cluster)
    threshold = slow_after(attempts)
    mark_slow(attempts, threshold)
    attempts.sort(key=lambda a: a.last_at, reverse=True)
    incidents = [incident_view(r, now) for r in _incident_rows(ctx, "i.cluster = ? AND i.state = 'open'", [cluster])]
    return {"cluster": cluster, "now": iso(now), "incidents": incidents, "attempt_count": len(attempts),
            "attempts": [attempt_view(a, now, stalled, threshold) for a in attempts[:recent]],
            "slow_after": duration_text(threshold) if threshold else None,
            "retention": alerts.humanize(ctx.settings.node_join.retention)}


def clusters_knowing(ctx, node: str) -> tuple[list[str], list[str]]:
    """Configured clusters where `node` exists now or in deckhand's records, and clusters that did not answer."""
    configured = [c.name for c in ctx.settings.clusters]
    known = {r["cluster"] for r in ctx.store.query(
        "SELECT DISTINCT cluster FROM node_reports WHERE node = ? UNION "
        "SELECT DISTINCT cluster FROM incidents WHERE kind = ? AND node = ?", [node, alerts.KIND, node])}

    def lookup(cluster: str) -> tuple[bool, bool]:
        try:
            return get_node(ctx, cluster, node) is not None, True
        except KubeError:
            return False, False

    with ThreadPoolExecutor(max_workers=min(8, len(configured)) or 1, thread_name_prefix="nodes-cmd") as pool:
        found = dict(zip(configured, pool.map(lookup, configured)))
    return ([c for c in configured if c in known or found[c][0]], [c for c in configured if not found[c][1]])


def node_view(ctx, cluster: str, node: str) -> dict:
    """`/nodes <cluster> <node>`: every attempt, its incidents and who handled them, the Node now."""
    now = ctx.now()
    stalled = ctx.settings.node_join.startup_timeout
    # Reports filed under cluster "" are discovery failures from before the node knew its cluster.
    reports = ctx.store.query("SELECT * FROM node_reports WHERE cluster IN (?, '') AND node = ? ORDER BY id",
                              [cluster, node])
    attempts = attempts_from(reports)
    threshold = slow_after(cluster_attempts(ctx, cluster))  # compared with the whole cluster's joins
    mark_slow(attempts, threshold)
    incidents = [incident_view(r, now) for r in _incident_rows(ctx, "i.cluster IN (?, '') AND i.node = ?",
                                                                [cluster, node])]
    silences = [{"by": r["actor"], "at": r["at"], "until": json.loads(r["params"] or "{}").get("until"),
                 "scope": json.loads(r["params"] or "{}").get("scope", "node")}
                for r in ctx.store.query("SELECT * FROM audit WHERE action = 'alert.silence' AND result = 'ok' "
                                         "AND cluster = ? AND target IN (?, ?) ORDER BY id",
                                         [cluster, f"{cluster}/{node}", cluster])]
    view = {"cluster": cluster, "node": node, "now": iso(now), "reachable": True, "error": "", "exists": False,
            "attempts": [attempt_view(a, now, stalled, threshold) for a in reversed(attempts)],
            "incidents": list(reversed(incidents)), "silences": list(reversed(silences)),
            "slow_after": duration_text(threshold) if threshold else None,
            "retention": alerts.humanize(ctx.settings.node_join.retention)}
    try:
        obj = get_node(ctx, cluster, node)
    except KubeError as exc:
        return {**view, "reachable": False, "error": str(exc)}
    if obj is None:
        return view
    state = node_state(obj, now)
    status = obj.get("status") or {}
    conditions = [{"type": c.get("type") or "?", "status": c.get("status") or "Unknown", "reason": c.get("reason") or "",
                   "message": c.get("message") or "", "since": c.get("lastTransitionTime") or ""}
                  for c in status.get("conditions") or []]
    return {**view, "exists": True, "ready": state.ready, "cordoned": state.cordoned, "taints": state.taints,
            "conditions": conditions, "created": iso(state.created),
            "kubelet_version": (status.get("nodeInfo") or {}).get("kubeletVersion") or "unknown"}


# -- retention ----------------------------------------------------------------------------------------
def prune(ctx) -> dict[str, int]:
    """Forget join reports, attempts and resolved incidents older than `node_join.retention`."""
    cutoff = iso(ctx.now() - ctx.settings.node_join.retention)
    with ctx.store.tx() as db:
        return {
            "reports": db.execute("DELETE FROM node_reports WHERE received_at < ?", [cutoff]).rowcount,
            "joins": db.execute("DELETE FROM node_joins WHERE last_report_at < ?", [cutoff]).rowcount,
            "incidents": db.execute("DELETE FROM incidents WHERE kind = ? AND state = 'resolved' AND resolved_at < ?",
                                    [alerts.KIND, cutoff]).rowcount,
        }
