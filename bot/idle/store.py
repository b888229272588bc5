"""What deckhand remembers about idle services: reports, decisions, digest messages, metrics outages.

One row per service in `idle_services`; its `state` moves only by compare-and-set, so a scan and
two people clicking at once each do one thing:

    (new) ──report──> open ──Snooze──> snoozed ──snooze ends, still idle──> open
                       │  ──Keep────> kept ──Un-keep──> open
                       │  ──Request deletion──> deletion_requested
                       └──traffic again / gone──> cleared ──idle again──> open

A service is reported again when `idle.repeat_interval` has passed since its last report (open,
deletion_requested) or its snooze has ended; kept services never, until un-kept.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from slack_sdk.errors import SlackApiError

from bot.foundation.context import Context
from bot.idle.scan import (BUSY, EXCLUDED, IDLE, NO_ENDPOINTS, NO_WORKLOADS, OPTED_OUT, OUTSIDE_MESH, SCALED_TO_ZERO,
                      SHARED, YOUNG, ClusterScan, ScannedService)
from bot.foundation.store import Audit, iso, parse_iso

OPEN, SNOOZED, KEPT, DELETION_REQUESTED, CLEARED = "open", "snoozed", "kept", "deletion_requested", "cleared"
log = logging.getLogger("deckhand.idle")
LISTED = (OPEN, SNOOZED, KEPT, DELETION_REQUESTED)
DIGEST_REF = "idle-digest:"
UNOWNED = "unowned"

LEFT_BECAUSE = {
    BUSY: "got traffic again", YOUNG: "was recreated", OPTED_OUT: "was opted out",
    EXCLUDED: "is in an excluded namespace", NO_WORKLOADS: "has no workloads any more",
    SCALED_TO_ZERO: "was scaled to zero", OUTSIDE_MESH: "left the mesh", SHARED: "its pods now serve another service",
}


def split_key(key: str) -> tuple[str, str, str]:
    """`cluster/namespace/service` -> parts; ValueError for anything else (button values are untrusted)."""
    parts = key.split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{key!r} is not cluster/namespace/service")
    return parts[0], parts[1], parts[2]


def snapshot(service: ScannedService) -> dict:
    return {"team": service.team, "cpu_cores": round(service.reclaimable_cpu, 3),
            "memory_bytes": service.reclaimable_memory, "replicas": service.replicas,
            "workloads": [{"kind": w.kind, "name": w.name, "replicas": w.replicas} for w in service.workloads],
            "created": iso(service.created), "finding": service.verdict}


# -- planning a run -------------------------------------------------------------------------------
@dataclass
class Plan:
    report: list[tuple[ScannedService, dict | None]] = field(default_factory=list)  # (service, row seen)
    leave: list[tuple[dict, str]] = field(default_factory=list)  # (row, why it left the list)


def _due(row: dict | None, service: ScannedService, now: datetime, ctx: Context) -> bool:
    if row is None or row["state"] == CLEARED:
        return True
    if row["state"] == KEPT:
        return False
    if row["finding"] != service.verdict:  # idle <-> no endpoints: news either way
        return True
    if row["state"] == SNOOZED:
        return now >= (parse_iso(row["snoozed_until"]) or now)
    last = parse_iso(row["last_reported_at"])
    return last is None or now >= last + ctx.settings.idle.repeat_interval


def plan(ctx: Context, scans: list[ClusterScan], now: datetime) -> Plan:
    """Which findings this run reports, and which earlier ones leave the list. Skipped clusters prove nothing."""
    result = Plan()
    for scan in scans:
        if scan.skipped:
            continue
        rows = {f"{r['cluster']}/{r['namespace']}/{r['service']}": r for r in ctx.store.query(
            "SELECT * FROM idle_services WHERE cluster = ?", [scan.cluster])}
        present = {s.key: s for s in scan.services}
        for service in scan.services:
            if service.verdict in (IDLE, NO_ENDPOINTS) and _due(rows.get(service.key), service, now, ctx):
                result.report.append((service, rows.get(service.key)))
        for key, row in rows.items():
            service = present.get(key)
            if row["state"] not in LISTED:
                continue
            if service is None:
                result.leave.append((row, "no longer exists"))
            elif service.verdict not in (IDLE, NO_ENDPOINTS) and row["state"] != KEPT:
                result.leave.append((row, LEFT_BECAUSE.get(service.verdict, service.verdict)))
    return result


def record_reports(ctx: Context, found: list[tuple[ScannedService, dict | None]], now: datetime) -> list[ScannedService]:
    """Mark the services reported now, except those whose row someone changed since the plan read it
    (a click, another replica's run); returns the ones marked.

    One transaction holding SQLite's write lock: the rows are read back once and compared with what
    the plan saw, and the winners are written in two batches — 8,000 findings of a team cost two
    statements, not 8,000, and nobody can change a row between the comparison and the write.
    """
    if not found:
        return []
    with ctx.store.tx() as db:
        clusters = sorted({service.cluster for service, _ in found})
        current = {(r[0], r[1], r[2]): (r[3], r[4] or "") for r in db.conn.execute(
            "SELECT cluster, namespace, service, state, last_reported_at FROM idle_services "
            f"WHERE cluster IN ({', '.join('?' * len(clusters))})", clusters)}
        stamp = iso(now)
        inserts, updates, won = [], [], []
        for service, seen in found:
            row = current.get((service.cluster, service.namespace, service.name))
            if (row is None) != (seen is None) or (row and row != (seen["state"], seen["last_reported_at"] or "")):
                continue
            values = (service.team, service.verdict, OPEN, service.reclaimable_cpu, service.reclaimable_memory,
                      json.dumps(snapshot(service), sort_keys=True), stamp, stamp,
                      service.cluster, service.namespace, service.name)
            (inserts if row is None else updates).append(values)
            won.append(service)
        db.conn.executemany(
            "INSERT INTO idle_services(team, finding, state, cpu_cores, memory_bytes, detail, last_reported_at, "
            "first_reported_at, cluster, namespace, service) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", inserts)
        db.conn.executemany(
            "UPDATE idle_services SET team = ?, finding = ?, state = ?, cpu_cores = ?, memory_bytes = ?, "
            "detail = ?, last_reported_at = ?, first_reported_at = COALESCE(first_reported_at, ?), "
            "snoozed_until = NULL, decided_by = NULL, decided_at = NULL, reason = NULL, cleared_reason = NULL "
            "WHERE cluster = ? AND namespace = ? AND service = ?", updates)
    return won


def record_leave(ctx: Context, row: dict, why: str) -> bool:
    return ctx.store.transition(
        "idle_services", {"cluster": row["cluster"], "namespace": row["namespace"], "service": row["service"]},
        row["state"], CLEARED, {"cleared_reason": why},
        audit=Audit(actor="deckhand", action="idle.left_list", result=why,
                    target=f"{row['namespace']}/{row['service']}", cluster=row["cluster"]))


# -- digests ----------------------------------------------------------------------------------------
def create_digest(ctx: Context, *, team: str | None, channel: str, now: datetime, idle: list[ScannedService],
                  no_endpoints: list[ScannedService], skipped: list[tuple[str, str]], first_part: int,
                  per_part: int) -> int:
    """Store one team's digest split into parts (the parent holds `first_part` services, each thread
    reply `per_part`). Returns the parent's id."""
    idle = sorted(idle, key=lambda s: (-s.reclaimable_cpu, -s.reclaimable_memory, s.key))
    chunks = [idle[:first_part]] + [idle[i:i + per_part] for i in range(first_part, len(idle), per_part)]
    unique: dict[tuple, tuple[float, int]] = {}
    for service in idle:  # two idle Services over one Deployment free its resources once
        for w in service.workloads:
            unique[(service.cluster, service.namespace, w.ref)] = (w.cpu_cores, w.memory_bytes)
    summary = {
        "team": team or UNOWNED, "count": len(idle), "window": ctx.settings.idle.window.total_seconds(),
        "snooze": ctx.settings.idle.snooze.total_seconds(),
        "cpu_cores": round(sum(c for c, _ in unique.values()), 3), "memory_bytes": sum(m for _, m in unique.values()),
        "clusters": sorted({s.cluster for s in idle + no_endpoints}), "skipped": [list(s) for s in skipped],
        "no_endpoints": [{"key": s.key, "replicas": s.replicas} for s in sorted(no_endpoints, key=lambda s: s.key)],
    }
    parent_id = None
    with ctx.store.tx() as db:
        for number, chunk in enumerate(chunks):
            digest_id = db.execute(
                "INSERT INTO idle_digests(run_at, team, channel, part, parts, parent_id, summary) "
                "VALUES(?, ?, ?, ?, ?, ?, ?)",
                [iso(now), team, channel, number, len(chunks), parent_id,
                 json.dumps(summary if number == 0 else {"team": summary["team"], "snooze": summary["snooze"]},
                            sort_keys=True)]).lastrowid
            parent_id = parent_id or digest_id
            db.conn.executemany(
                "INSERT INTO idle_digest_items(digest_id, position, cluster, namespace, service, snapshot) "
                "VALUES(?, ?, ?, ?, ?, ?)", [(digest_id, position, service.cluster, service.namespace, service.name,
                                              json.dumps(snapshot(service), sort_keys=True))
                                             for position, service in enumerate(chunk)])
    return parent_id


def digest_view(ctx: Context, digest_id: int) -> dict | None:
    """A digest part with its services' current decisions: everything a renderer needs."""
    rows = ctx.store.query("SELECT * FROM idle_digests WHERE id = ?", [digest_id])
    if not rows:
        return None
    digest = dict(rows[0])
    digest["summary"] = json.loads(digest["summary"])
    items = ctx.store.query(
        "SELECT i.cluster, i.namespace, i.service, i.snapshot, s.state, s.decided_by, s.decided_at, s.reason, "
        "s.snoozed_until, s.cleared_reason FROM idle_digest_items i LEFT JOIN idle_services s "
        "ON s.cluster = i.cluster AND s.namespace = i.namespace AND s.service = i.service "
        "WHERE i.digest_id = ? ORDER BY i.position", [digest_id])
    digest["items"] = [{**{k: v for k, v in item.items() if k != "snapshot"}, **json.loads(item["snapshot"]),
                        "key": f"{item['cluster']}/{item['namespace']}/{item['service']}",
                        "state": item["state"] or CLEARED} for item in items]
    return digest


def digest_at(ctx: Context, channel: str | None, ts: str | None) -> int | None:
    if not channel or not ts:
        return None
    rows = ctx.store.query("SELECT id FROM idle_digests WHERE channel = ? AND ts = ?", [channel, ts])
    return rows[0]["id"] if rows else None


def digests_listing(ctx: Context, key: str, also: int | None = None, recent: int = 3) -> list[dict]:
    """The latest digest parts listing `key` (older ones have scrolled away), plus part `also` (the one
    clicked), so a decision shows where people look without rewriting months of history."""
    cluster, namespace, service = split_key(key)
    rows = ctx.store.query(
        "SELECT DISTINCT d.id, d.channel, d.ts FROM idle_digests d JOIN idle_digest_items i ON i.digest_id = d.id "
        "WHERE i.cluster = ? AND i.namespace = ? AND i.service = ? ORDER BY d.id DESC", [cluster, namespace, service])
    return [row for number, row in enumerate(rows) if number < recent or row["id"] == also]


Render = Callable[[dict], dict]  # digest_view -> {"text", "blocks"}; blocks/idle.py supplies it


def refresh_digests(ctx: Context, key: str, render: Render, client=None, clicked: int | None = None) -> None:
    """Re-render the digest parts that list `key`: at once through `client` after a click (queued in
    the outbox if Slack refuses), queued when a scan changed something."""
    for digest in digests_listing(ctx, key, also=clicked):
        message = render(digest_view(ctx, digest["id"]))
        if not digest["ts"]:
            ctx.outbox.replace_pending(f"{DIGEST_REF}{digest['id']}", message["text"], message["blocks"])
            continue
        if client is not None:
            try:
                client.chat_update(channel=digest["channel"], ts=digest["ts"], text=message["text"],
                                   blocks=message["blocks"])
                continue
            except SlackApiError as exc:
                log.info("chat.update of idle digest %s failed (%s); queued", digest["id"], exc)
        ctx.outbox.update(digest["channel"], digest["ts"], message["text"], message["blocks"],
                          ref=f"idle-update:{digest['id']}")


def watch_digest_posts(ctx: Context, render: Render) -> None:
    """When Slack accepts a digest part, remember its ts; once the parent's ts is known, post the
    thread replies (rendered now, so they show decisions made meanwhile)."""

    def sent(ref: str, channel: str, ts: str) -> None:
        digest_id = int(ref[len(DIGEST_REF):])
        with ctx.store.tx() as db:
            db.execute("UPDATE idle_digests SET ts = ? WHERE id = ?", [ts, digest_id])
        post_thread_parts(ctx, digest_id, render)

    ctx.outbox.on_sent(DIGEST_REF, sent)


def post_thread_parts(ctx: Context, parent_id: int, render: Render) -> int:
    parent = ctx.store.query("SELECT channel, ts FROM idle_digests WHERE id = ? AND part = 0", [parent_id])
    if not parent or not parent[0]["ts"]:
        return 0
    posted = 0
    for row in ctx.store.query("SELECT id FROM idle_digests WHERE parent_id = ? AND posted = 0 ORDER BY part",
                               [parent_id]):
        with ctx.store.tx() as db:  # claim, then enqueue, in one transaction: never posted twice
            if db.execute("UPDATE idle_digests SET posted = 1 WHERE id = ? AND posted = 0", [row["id"]]).rowcount:
                message = render(digest_view(ctx, row["id"]))
                ctx.outbox.post(parent[0]["channel"], message["text"], message["blocks"],
                                thread_ts=parent[0]["ts"], ref=f"{DIGEST_REF}{row['id']}")
                posted += 1
    return posted


def unposted_parents(ctx: Context) -> list[int]:
    """Parents that went out but whose thread replies did not (a crash between the two)."""
    return [r["parent_id"] for r in ctx.store.query(
        "SELECT DISTINCT c.parent_id FROM idle_digests c JOIN idle_digests p ON p.id = c.parent_id "
        "WHERE c.posted = 0 AND p.ts IS NOT NULL")]


# -- decisions --------------------------------------------------------------------------------------
def service_row(ctx: Context, key: str) -> dict | None:
    cluster, namespace, service = split_key(key)
    rows = ctx.store.query("SELECT * FROM idle_services WHERE cluster = ? AND namespace = ? AND service = ?",
                           [cluster, namespace, service])
    return rows[0] if rows else None


def decide(ctx: Context, key: str, user: str, action: str, from_states: tuple[str, ...], to_state: str,
           values: dict | None = None, params: dict | None = None) -> bool:
    """Compare-and-set a decision; the audit row is written only by the click that won."""
    cluster, namespace, service = split_key(key)
    now = ctx.now()
    return ctx.store.transition(
        "idle_services", {"cluster": cluster, "namespace": namespace, "service": service}, from_states, to_state,
        {"decided_by": user, "decided_at": iso(now), **(values or {})},
        audit=Audit(actor=user, action=action, result="ok", target=f"{namespace}/{service}", cluster=cluster,
                    params=params or {}))


def kept_services(ctx: Context, team: str | None) -> list[dict]:
    if team in (None, UNOWNED):
        return ctx.store.query("SELECT * FROM idle_services WHERE state = ? AND team IS NULL "
                               "ORDER BY decided_at DESC", [KEPT])
    return ctx.store.query("SELECT * FROM idle_services WHERE state = ? AND team = ? ORDER BY decided_at DESC",
                           [KEPT, team])


# -- metrics outages --------------------------------------------------------------------------------
def outage_started(ctx: Context, cluster: str, reason: str) -> bool:
    """True only for the first skipped scan of an outage (call inside the tx that posts the alert)."""
    with ctx.store.tx() as db:
        return db.execute("INSERT INTO idle_outages(cluster, since, reason) VALUES(?, ?, ?) "
                          "ON CONFLICT(cluster) DO NOTHING", [cluster, ctx.store.now(), reason]).rowcount == 1


def outage_ended(ctx: Context, cluster: str) -> dict | None:
    with ctx.store.tx() as db:
        rows = list(db.query("SELECT * FROM idle_outages WHERE cluster = ?", [cluster]))
        db.execute("DELETE FROM idle_outages WHERE cluster = ?", [cluster])
    return rows[0] if rows else None
