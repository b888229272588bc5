"""Incidents: one per (cluster, node, reason), stored in SQLite, shown in Slack and kept current.

A feature reports what it sees (`Finding`s); this module turns that into incident rows and
messages in `channels.alerts`:

- the first occurrence posts; later observations update the same message in place;
- a storm is grouped like Alertmanager's `group_by: [cluster, reason]`: when GROUP_AT or more new
  incidents of one cluster arrive in one tick, the cluster gets ONE channel message (counts per
  reason, Acknowledge all, Silence cluster) and in its thread ONE reply per reason listing the
  nodes (per-node Acknowledge/Silence in each line's menu). While that group has open incidents,
  new incidents of the cluster join it: a node that comes or goes edits the reason reply and the
  group message in place, it never posts. Slack takes about one message per second per channel
  (https://api.slack.com/methods/chat.postMessage#rate_limiting), so 400 NotReady nodes over 16
  clusters are 32 posts (visible in ~32 s), not 416 (7 minutes, and a wall nobody reads);
- a standalone incident's resolution turns its message resolved and adds a thread reply with how
  long it took; a grouped one turns its line resolved;
- acknowledgements and silences (per node or per cluster) are compare-and-set rows with an
  audit row in the same transaction; a silenced incident is still tracked and kept current
  but nothing new is posted for it.

Cluster-wide incidents (unreachable API server, the storm breaker's "degraded") are never grouped:
they are the headline, not a line in a list.

The Block Kit lives in blocks/ (bot/ must not import it): `attach(ctx, renderer)` is called at
wiring time with an object that has `incident(view)`, `group(view)`, `reason_reply(view)` and
`resolved_reply(view)`, each returning `{"text", "blocks"}`. Views are plain dicts built here.
A grouped incident's `group_id` is its group message and its `message_id` the reason reply it is
listed in (shared by every incident of that reason in the group).
"""
from __future__ import annotations

import json
import re
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

from bot.nodes import posting
from bot.foundation.store import Audit, iso, parse_iso

log = logging.getLogger("deckhand.alerts")

KIND = "node"
CLUSTER_WIDE = "*"
GROUP_AT = 3  # new incidents of one cluster in one tick from which they share a grouped message


@dataclass
class Finding:
    """Something wrong right now: `node` is CLUSTER_WIDE for cluster-level problems."""

    cluster: str
    node: str
    reason: str
    since: datetime
    detail: dict[str, Any] = field(default_factory=dict)


def attach(ctx, renderer=None) -> None:
    if renderer is not None:
        ctx.extras["node_alert_renderer"] = renderer
    if not ctx.extras.get("node_alert_posting_attached"):
        posting.attach(ctx)
        _gauge(ctx)  # right after a restart, /metrics shows the incidents still open


# -- what features call ---------------------------------------------------------------------------
def sync_cluster(ctx, cluster: str, findings: Iterable[Finding],
                 resolution_for: Callable[[dict], str | None]) -> dict[str, int]:
    """One scan tick for one cluster: open or refresh an incident per finding; for every other open
    incident of the cluster ask `resolution_for(incident)` (why it is over, or None to keep it)."""
    findings = list(findings)
    with ctx.store.tx() as db:
        current = {(r["node"], r["reason"]): r for r in _open(db, cluster)}
        seen = {(f.node, f.reason) for f in findings}
        fresh, changed, ended = [], [], []
        for finding in findings:
            row = current.get((finding.node, finding.reason))
            if row is None:
                fresh.append(_open_incident(ctx, db, finding))
            else:
                changed.append(_observe(ctx, db, row, finding))
        for key, row in current.items():
            if key in seen:
                continue
            why = resolution_for(row)
            if why:
                ended.append(_resolve(ctx, db, row, why))
            else:
                changed.append(row)
        # Incidents opened while silenced are announced once the silence is over.
        over = {r["id"] for r in ended}
        waiting = [r for r in current.values() if not r["message_id"] and r["id"] not in over]
        counts = _show(ctx, db, cluster, fresh + waiting, changed, ended)
    _gauge(ctx)
    return {"opened": len(fresh), "open": len(findings), "resolved": len(ended), **counts}


def raise_now(ctx, finding: Finding) -> int:
    """Open or refresh one incident and post it at once (e.g. a `failed` join report).
    Call inside the caller's `store.tx()` so the incident and its post commit with the report."""
    with ctx.store.tx() as db:
        rows = [r for r in _open(db, finding.cluster) if r["node"] == finding.node and r["reason"] == finding.reason]
        if rows:
            row = _observe(ctx, db, rows[0], finding)
            _show(ctx, db, finding.cluster, [] if row["message_id"] else [row], [row] if row["message_id"] else [], [])
        else:
            row = _open_incident(ctx, db, finding)
            _show(ctx, db, finding.cluster, [row], [], [])
    _gauge(ctx)
    return row["id"]


def resolve(ctx, cluster: str, node: str, reasons: Iterable[str], why: str) -> int:
    """Resolve the open incidents of a node with one of `reasons` (e.g. a later `ok` report)."""
    reasons = set(reasons)
    with ctx.store.tx() as db:
        rows = [r for r in _open(db, cluster) if r["node"] == node and r["reason"] in reasons]
        ended = [_resolve(ctx, db, row, why) for row in rows]
        _show(ctx, db, cluster, [], [], ended)
    _gauge(ctx)
    return len(ended)


def open_incidents(ctx, cluster: str | None = None) -> list[dict]:
    sql = "SELECT * FROM incidents WHERE kind = ? AND state = 'open'"
    params: list[Any] = [KIND]
    if cluster is not None:
        sql += " AND cluster = ?"
        params.append(cluster)
    return [_decoded(r) for r in ctx.store.query(sql + " ORDER BY id", params)]


# -- buttons --------------------------------------------------------------------------------------
# A button names what it acts on: "<incident id>" for one incident, "group:<incident id>" for every
# incident of that incident's grouped message.
def incidents_of(ctx, target: str) -> list[dict]:
    return [_decoded(r) for r in _targets(ctx.store.db, target)]


def acknowledge(ctx, target: str, user: str) -> tuple[int, str | None]:
    """Record who acknowledged. Returns (newly acknowledged, who had already, if nobody new)."""
    now = ctx.store.now()
    with ctx.store.tx() as db:
        rows = [r for r in _targets(db, target) if r["state"] == "open"]
        won = db.execute(
            f"UPDATE incidents SET acked_by = ?, acked_at = ? WHERE id IN ({_marks(rows)}) "
            "AND state = 'open' AND acked_by IS NULL", [user, now, *[r["id"] for r in rows]]).rowcount if rows else 0
        if not won:
            acked = [r["acked_by"] for r in rows if r["acked_by"]]
            return 0, acked[0] if acked else None
        targets = sorted({_target(r) for r in rows})
        ctx.store.audit(Audit(actor=user, action="alert.ack", result="ok", target=", ".join(targets)[:200],
                              cluster=rows[0]["cluster"], params={"incidents": [r["id"] for r in rows]}))
        _rerender(ctx, db, [r["id"] for r in rows])
    return won, None


def silence(ctx, target: str, user: str, scope: str, duration: timedelta) -> dict | None:
    """Silence the node (scope 'node') or the whole cluster of a button's incidents. Extending is
    allowed, shortening is not (a second click never cuts someone's silence short)."""
    now = ctx.now()
    until = iso(now + duration)
    with ctx.store.tx() as db:
        rows = _targets(db, target)
        if not rows:
            return None
        cluster = rows[0]["cluster"]
        node = CLUSTER_WIDE if scope == "cluster" else rows[0]["node"]
        changed = db.execute(
            "INSERT INTO alert_silences(kind, cluster, node, until, created_by, created_at) VALUES(?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(kind, cluster, node) DO UPDATE SET until = excluded.until, created_by = excluded.created_by, "
            "created_at = excluded.created_at WHERE excluded.until > alert_silences.until",
            [KIND, cluster, node, until, user, iso(now)]).rowcount == 1
        effective = _silence(db, cluster, node, now)
        # A double click or a second person at once changes nothing: audited (and told) as such, so
        # the audit trail has one "ok" per silence that took effect.
        ctx.store.audit(Audit(actor=user, action="alert.silence",
                              result="ok" if changed else f"not applied: already silenced by {effective['created_by']}",
                              target=cluster if node == CLUSTER_WIDE else f"{cluster}/{node}", cluster=cluster,
                              params={"until": effective["until"], "scope": scope}))
        if changed:
            affected = [r["id"] for r in _open(db, cluster) if node == CLUSTER_WIDE or r["node"] == node]
            _rerender(ctx, db, affected)
    return {"cluster": cluster, "node": node, "until": effective["until"], "by": effective["created_by"],
            "until_unix": int(parse_iso(effective["until"]).timestamp()), "changed": changed}


# -- incident rows --------------------------------------------------------------------------------
def _open_incident(ctx, db, finding: Finding) -> dict:
    now = ctx.store.now()
    cursor = db.execute(
        "INSERT INTO incidents(kind, cluster, node, reason, detail, first_seen, last_seen, failing_since) "
        "VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
        [KIND, finding.cluster, finding.node, finding.reason, json.dumps(finding.detail, sort_keys=True, default=str),
         now, now, iso(finding.since)])
    row = _incident(db, cursor.lastrowid)
    ctx.store.audit(Audit(actor="deckhand", action="alert.open", result=finding.reason, target=_target(row),
                          cluster=finding.cluster, params={"incident": row["id"]}))
    return row


def _observe(ctx, db, row: dict, finding: Finding) -> dict:
    since = min(parse_iso(row["failing_since"]), finding.since)
    db.execute("UPDATE incidents SET detail = ?, last_seen = ?, failing_since = ? WHERE id = ?",
               [json.dumps(finding.detail, sort_keys=True, default=str), ctx.store.now(), iso(since), row["id"]])
    return _incident(db, row["id"])


def _resolve(ctx, db, row: dict, why: str) -> dict:
    db.execute("UPDATE incidents SET state = 'resolved', resolved_at = ?, resolution = ? WHERE id = ? AND state = 'open'",
               [ctx.store.now(), why, row["id"]])
    ctx.store.audit(Audit(actor="deckhand", action="alert.resolve", result=row["reason"], target=_target(row),
                          cluster=row["cluster"], params={"incident": row["id"], "why": why}))
    return _incident(db, row["id"])


def _open(db, cluster: str) -> list[dict]:
    return list(db.query("SELECT * FROM incidents WHERE kind = ? AND cluster = ? AND state = 'open' ORDER BY id",
                         [KIND, cluster]))


def _targets(db, target: str) -> list[dict]:
    whole_group, _, number = target.rpartition(":")
    if not re.fullmatch(r"[0-9]{1,18}", number):  # button values are untrusted: "²".isdigit() is True
        return []
    if whole_group == "group":
        return list(db.query("SELECT * FROM incidents WHERE group_id = (SELECT group_id FROM incidents WHERE id = ?) "
                             "AND group_id IS NOT NULL ORDER BY id", [int(number)]))
    return list(db.query("SELECT * FROM incidents WHERE id = ? AND kind = ?", [int(number), KIND]))


def _incident(db, incident_id: int) -> dict:
    return list(db.query("SELECT * FROM incidents WHERE id = ?", [incident_id]))[0]


def _silence(db, cluster: str, node: str, now: datetime) -> dict | None:
    rows = list(db.query("SELECT * FROM alert_silences WHERE kind = ? AND cluster = ? AND node IN (?, ?) AND until > ? "
                         "ORDER BY until DESC LIMIT 1", [KIND, cluster, node, CLUSTER_WIDE, iso(now)]))
    return rows[0] if rows else None


# -- messages -------------------------------------------------------------------------------------
def _show(ctx, db, cluster: str, announce: list[dict], changed: list[dict], ended: list[dict]) -> dict[str, int]:
    """Post the new, update the changed and the resolved, reply in threads about resolutions."""
    now = ctx.now()
    postable = [r for r in announce if not _silence(db, cluster, r["node"], now)]
    held = len(announce) - len(postable)
    groupable = [r for r in postable if r["node"] != CLUSTER_WIDE]
    group_id = _open_group(db, cluster)
    if group_id is None and len(groupable) >= GROUP_AT:
        group_id = posting.create(ctx, db, "group", cluster, _render_group(ctx, db, groupable, now))
    groups: set[int] = set()
    reasons: set[tuple[int, str]] = set()  # (group message, reason) whose reply lists changed
    for row in postable:
        ctx.metrics.alerts.labels(kind=KIND, event="posted").inc()
        if group_id is not None and row["node"] != CLUSTER_WIDE:
            reply = _reason_message(db, group_id, row["reason"])
            if reply is None:  # first of its reason in this group: the reply is posted once the group has a ts
                db.execute("UPDATE incidents SET group_id = ? WHERE id = ?", [group_id, row["id"]])
                reply = posting.create(ctx, db, "reason", cluster,
                                       _render_reason(ctx, db, group_id, row["reason"], now), parent_id=group_id)
            db.execute("UPDATE incidents SET group_id = ?, message_id = ? WHERE id = ?", [group_id, reply, row["id"]])
            groups.add(group_id)
            reasons.add((group_id, row["reason"]))
            continue
        message_id = posting.create(ctx, db, "incident", cluster, _render(ctx, db, _incident(db, row["id"]), now))
        db.execute("UPDATE incidents SET message_id = ? WHERE id = ?", [message_id, row["id"]])
    updated = 0
    for row in changed + ended:
        row = _incident(db, row["id"])
        if row["group_id"] and _is_reason_reply(db, row["message_id"]):
            groups.add(row["group_id"])
            reasons.add((row["group_id"], row["reason"]))
            continue
        if row["message_id"] and posting.refresh(ctx, db, row["message_id"], _render(ctx, db, row, now)):
            updated += 1
            if row["state"] == "open":
                ctx.metrics.alerts.labels(kind=KIND, event="updated").inc()
        if row["group_id"]:  # a message from before grouping by reason: one per node in the group's thread
            groups.add(row["group_id"])
    for row in ended:
        row = _incident(db, row["id"])
        ctx.metrics.alerts.labels(kind=KIND, event="resolved").inc()
        if row["message_id"] and not _is_reason_reply(db, row["message_id"]) \
                and not _silence(db, cluster, row["node"], now):
            reply = _renderer(ctx, "resolved_reply", _view(db, row, now))
            posting.create(ctx, db, "reply", cluster, reply, parent_id=row["group_id"] or row["message_id"])
    for group, reason in sorted(reasons):
        reply = _reason_message(db, group, reason)
        if reply and posting.refresh(ctx, db, reply, _render_reason(ctx, db, group, reason, now)):
            updated += 1
    for group in sorted(groups):
        members = [_incident(db, r["id"]) for r in db.query("SELECT id FROM incidents WHERE group_id = ?", [group])]
        if posting.refresh(ctx, db, group, _render_group(ctx, db, members, now)):
            updated += 1
    return {"posted": len(postable), "held": held, "updated": updated}


def _open_group(db, cluster: str) -> int | None:
    """The cluster's group message while it still lists an open incident (new ones join it)."""
    rows = list(db.query("SELECT MAX(group_id) AS g FROM incidents WHERE kind = ? AND cluster = ? AND state = 'open' "
                         "AND group_id IS NOT NULL", [KIND, cluster]))
    return rows[0]["g"] if rows and rows[0]["g"] is not None else None


def _reason_message(db, group_id: int, reason: str) -> int | None:
    rows = list(db.query("SELECT i.message_id FROM incidents i JOIN alert_messages m ON m.id = i.message_id "
                         "WHERE i.group_id = ? AND i.reason = ? AND m.kind = 'reason' LIMIT 1", [group_id, reason]))
    return rows[0]["message_id"] if rows else None


def _is_reason_reply(db, message_id: int | None) -> bool:
    row = posting.message(db, message_id)
    return bool(row) and row["kind"] == "reason"


def _rerender(ctx, db, incident_ids: list[int]) -> None:
    rows = [_incident(db, i) for i in incident_ids]
    if rows:
        _show(ctx, db, rows[0]["cluster"], [], rows, [])


def _render(ctx, db, row: dict, now: datetime) -> dict:
    return _renderer(ctx, "incident", _view(db, row, now))


def _render_group(ctx, db, rows: list[dict], now: datetime) -> dict:
    views = [_view(db, r, now) for r in rows]
    opened = [v for v in views if v["state"] == "open"]
    view = {"cluster": rows[0]["cluster"], "target": f"group:{rows[0]['id']}", "incidents": views,
            "open": len(opened), "total": len(views), "state": "open" if opened else "resolved",
            "silenced": _silence_view(_silence(db, rows[0]["cluster"], CLUSTER_WIDE, now)),
            "acked_by": sorted({v["acked_by"] for v in views if v["acked_by"]})}
    return _renderer(ctx, "group", view)


def _render_reason(ctx, db, group_id: int, reason: str, now: datetime) -> dict:
    rows = list(db.query("SELECT * FROM incidents WHERE group_id = ? AND reason = ? ORDER BY node, id",
                         [group_id, reason]))
    first = list(db.query("SELECT MIN(id) AS id FROM incidents WHERE group_id = ?", [group_id]))[0]["id"]
    views = [_view(db, r, now) for r in rows]
    opened = [v for v in views if v["state"] == "open"]
    view = {"cluster": rows[0]["cluster"], "reason": reason, "target": f"group:{first}",
            "incidents": opened + [v for v in views if v["state"] != "open"], "open": len(opened), "total": len(views),
            "state": "open" if opened else "resolved"}
    return _renderer(ctx, "reason_reply", view)


def _view(db, row: dict, now: datetime) -> dict:
    """Everything a message shows about one incident, as plain data."""
    since = parse_iso(row["failing_since"])
    end = parse_iso(row["resolved_at"]) if row["resolved_at"] else now
    return {
        "id": row["id"], "target": str(row["id"]), "cluster": row["cluster"], "node": row["node"],
        "reason": row["reason"],
        "state": row["state"], "detail": json.loads(row["detail"] or "{}"),
        "failing_since": row["failing_since"], "failing_since_unix": int(since.timestamp()),
        "failing_for": humanize(end - since), "first_seen": row["first_seen"],
        "resolved_at": row["resolved_at"], "resolution": row["resolution"],
        "acked_by": row["acked_by"], "acked_at": row["acked_at"],
        "message_id": row["message_id"], "in_group": bool(row["group_id"]),
        "silenced": _silence_view(_silence(db, row["cluster"], row["node"], now)),
    }


def _silence_view(silence: dict | None) -> dict | None:
    if not silence:
        return None
    until = parse_iso(silence["until"])
    return {"until": silence["until"], "until_unix": int(until.timestamp()), "by": silence["created_by"],
            "cluster_wide": silence["node"] == CLUSTER_WIDE}


def _renderer(ctx, name: str, view: dict) -> dict:
    renderer = ctx.extras.get("node_alert_renderer")
    if renderer is None:  # wiring forgot attach(ctx, renderer): still say something useful
        log.warning("no alert renderer attached; posting plain text")
        where = view["cluster"] if view.get("node") in (None, CLUSTER_WIDE) else f"{view['cluster']}/{view['node']}"
        return {"text": f"{where}: {view.get('reason', 'incidents')} ({view.get('state')})"}
    return getattr(renderer, name)(view)


def _gauge(ctx) -> None:
    count = ctx.store.query("SELECT COUNT(*) AS n FROM incidents WHERE kind = ? AND state = 'open'", [KIND])[0]["n"]
    ctx.metrics.open_incidents.set(count)


def _decoded(row: dict) -> dict:
    return {**row, "detail": json.loads(row["detail"] or "{}")}


def _target(row: dict) -> str:
    return row["cluster"] if row["node"] == CLUSTER_WIDE else f"{row['cluster']}/{row['node']}"


def _marks(rows: list) -> str:
    return ", ".join("?" for _ in rows)


def humanize(delta: timedelta) -> str:
    """Coarser as it grows, so a long-open alert is not edited every tick: 7m, 3h20m, 2d4h."""
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 1:
        return "<1m"
    if minutes < 60:
        return f"{minutes}m"
    if minutes < 24 * 60:
        hours, rest = divmod(minutes, 60)
        rest -= rest % 10
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    days, rest = divmod(minutes, 24 * 60)
    hours = rest // 60
    return f"{days}d{hours}h" if hours else f"{days}d"
