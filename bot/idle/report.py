"""The read side of idle services: what `/idle` shows, from what the latest scans stored.

    current(ctx, teams, cluster)  the idle list (open, snoozed, kept, deletion requested) per team, with
                                  totals per team and for the fleet, and when the latest scan ran
    savings(ctx, teams)           the savings ledger by month and team beside what is still idle

Nothing here asks Prometheus or Kubernetes: `/idle` answers from SQLite within Slack's 3 s, and a
fresh scan is the idle-scan job itself (its metrics health guard included), run on request.
"""
from __future__ import annotations

import json
from datetime import datetime

from bot.foundation.context import Context
from bot.foundation.store import iso, parse_iso
from bot.idle.scan import IDLE
from bot.idle.store import KEPT, LISTED, UNOWNED

JOB = "idle-scan"


def _team(row: dict) -> str:
    return row["team"] or UNOWNED


def _item(row: dict, now: datetime, window) -> dict:
    detail = json.loads(row["detail"] or "{}")
    first = parse_iso(row["first_reported_at"]) or now
    return {"key": f"{row['cluster']}/{row['namespace']}/{row['service']}", "cluster": row["cluster"],
            "namespace": row["namespace"], "service": row["service"], "team": _team(row), "state": row["state"],
            "decided_by": row["decided_by"], "decided_at": row["decided_at"], "reason": row["reason"],
            "snoozed_until": row["snoozed_until"], "cpu_cores": row["cpu_cores"] or 0,
            "memory_bytes": row["memory_bytes"] or 0, "workloads": detail.get("workloads", []),
            "created": detail.get("created"),
            # It had no traffic for a whole window before it was first reported.
            "idle_seconds": (now - first + window).total_seconds()}


def _totals(items: list[dict]) -> dict:
    """Reclaimable = everything listed except what someone chose to keep. Two idle Services over the
    same workloads free them once."""
    counted: dict[tuple, tuple[float, int]] = {}
    for item in items:
        if item["state"] == KEPT:
            continue
        refs = tuple(sorted(f"{w.get('kind')}/{w.get('name')}" for w in item["workloads"])) or (item["service"],)
        counted[(item["cluster"], item["namespace"], refs)] = (item["cpu_cores"], item["memory_bytes"])
    return {"count": len(items), "kept": sum(1 for i in items if i["state"] == KEPT),
            "cpu_cores": round(sum(c for c, _ in counted.values()), 3),
            "memory_bytes": sum(m for _, m in counted.values())}


def last_scan(ctx: Context) -> dict | None:
    rows = ctx.store.query("SELECT * FROM job_runs WHERE job = ? AND ended_at IS NOT NULL ORDER BY id DESC LIMIT 1",
                           [JOB])
    if not rows:
        return None
    return {"at": rows[0]["ended_at"], "outcome": rows[0]["outcome"], "detail": rows[0]["detail"] or ""}


def current(ctx: Context, teams: list[str] | None, cluster: str | None = None) -> dict:
    """`teams` None = every team (DevOps); otherwise only those teams' services are listed."""
    now = ctx.now()
    sql = (f"SELECT * FROM idle_services WHERE finding = ? AND state IN ({', '.join('?' for _ in LISTED)})"
           + (" AND cluster = ?" if cluster else "") + " ORDER BY cpu_cores DESC, memory_bytes DESC, cluster, "
           "namespace, service")
    rows = ctx.store.query(sql, [IDLE, *LISTED, *([cluster] if cluster else [])])
    items = [_item(r, now, ctx.settings.idle.window) for r in rows]
    shown = [i for i in items if teams is None or i["team"] in teams]
    by_team: dict[str, list[dict]] = {}
    for item in shown:
        by_team.setdefault(item["team"], []).append(item)
    order = sorted(by_team, key=lambda t: (-_totals(by_team[t])["cpu_cores"], t))
    outages = ctx.store.query("SELECT * FROM idle_outages ORDER BY cluster")
    return {"now": iso(now), "scan": last_scan(ctx), "window": ctx.settings.idle.window.total_seconds(),
            "snooze": ctx.settings.idle.snooze.total_seconds(), "cluster": cluster,
            "teams": [{"team": t, "items": by_team[t], "totals": _totals(by_team[t])} for t in order],
            "fleet": _totals(items), "shown": _totals(shown), "scope": sorted(teams) if teams is not None else None,
            "outages": [{"cluster": o["cluster"], "since": o["since"], "reason": o["reason"]} for o in outages
                        if not cluster or o["cluster"] == cluster]}


def savings(ctx: Context, teams: list[str] | None) -> dict:
    """Reclaimed per month and team (the savings ledger) beside what is still idle per team."""
    ledger = [r for r in ctx.store.savings_by_team_month() if teams is None or r["team"] in teams]
    months: dict[str, list[dict]] = {}
    for row in ledger:
        months.setdefault(row["month"], []).append({"team": row["team"], "cpu_cores": row["cpu_cores"] or 0,
                                                    "memory_bytes": row["memory_bytes"] or 0,
                                                    "actions": row["actions"]})
    still = current(ctx, teams)
    return {"now": iso(ctx.now()), "scan": still["scan"], "scope": still["scope"],
            "months": [{"month": m, "teams": months[m]} for m in sorted(months, reverse=True)],
            "reclaimed": {"cpu_cores": round(sum(r["cpu_cores"] or 0 for r in ledger), 3),
                          "memory_bytes": sum(r["memory_bytes"] or 0 for r in ledger),
                          "actions": sum(r["actions"] for r in ledger)},
            "idle": [{"team": t["team"], **t["totals"]} for t in still["teams"]],
            "idle_total": _totals([i for t in still["teams"] for i in t["items"]])}
