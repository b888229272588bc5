"""Idle-service scan and per-team digest (`idle.schedule`, or `/ops run idle-scan`).

Scans every cluster, posts one digest per owner team to the team's channel (fallback: the alerts
channel), updates earlier digests whose services got traffic again, and announces a metrics outage
once per outage in the alerts channel. Messages go through the outbox in the same transaction as
the state they announce.
"""
from __future__ import annotations

import logging
from collections import defaultdict

from blocks.idle import PARENT_SERVICES, THREAD_SERVICES, digest_message, outage_alert
from bot.idle import store as idle_store
from bot.foundation.context import Context
from bot.idle.scan import IDLE, NO_ENDPOINTS, ClusterScan, ScannedService, scan_fleet
from jobs.schedule import crontab

NAME = "idle-scan"
log = logging.getLogger("deckhand.jobs.idle")


def trigger(settings):
    return crontab(settings.idle.schedule)  # crontab's weekdays, not APScheduler's (jobs/schedule.py)


render = digest_message


def watch(ctx: Context) -> None:
    """Post thread replies once Slack gave the parent its ts (commands/idle also does at startup)."""
    idle_store.watch_digest_posts(ctx, render)


def channel_for(ctx: Context, team: str | None) -> str:
    spec = ctx.settings.teams.get(team or "")
    return (spec.channel if spec and spec.channel else None) or ctx.settings.channels.alerts


def _track_outage(ctx: Context, scan: ClusterScan) -> None:
    if not scan.skipped:
        if idle_store.outage_ended(ctx, scan.cluster):
            log.info("idle scan: metrics for %s are back", scan.cluster)
        return
    with ctx.store.tx():
        if idle_store.outage_started(ctx, scan.cluster, scan.skipped_reason):
            alert = outage_alert(scan.cluster, scan.skipped_reason, ctx.settings.idle.window.total_seconds())
            ctx.outbox.post(ctx.settings.channels.alerts, alert["text"], alert["blocks"],
                            ref=f"idle-outage:{scan.cluster}")


def _post_digest(ctx: Context, team: str | None, found: list[tuple[ScannedService, dict | None]],
                 skipped: list[tuple[str, str]]) -> int:
    """Record the team's reports and queue its digest in one transaction; returns services reported."""
    now = ctx.now()
    with ctx.store.tx():
        won = idle_store.record_reports(ctx, found, now)
        if not won:
            return 0
        channel = channel_for(ctx, team)
        parent = idle_store.create_digest(
            ctx, team=team, channel=channel, now=now, idle=[s for s in won if s.verdict == IDLE],
            no_endpoints=[s for s in won if s.verdict == NO_ENDPOINTS], skipped=skipped,
            first_part=PARENT_SERVICES, per_part=THREAD_SERVICES)
        message = render(idle_store.digest_view(ctx, parent))
        ctx.outbox.post(channel, message["text"], message["blocks"], ref=f"{idle_store.DIGEST_REF}{parent}")
    return len(won)


def run(ctx: Context) -> str:
    watch(ctx)
    for parent in idle_store.unposted_parents(ctx):
        idle_store.post_thread_parts(ctx, parent, render)
    at = ctx.now()
    scans: list[ClusterScan] = []
    lines: list[str] = []
    not_scanned: list[tuple[str, str]] = []
    fleet = scan_fleet(ctx, [c.name for c in ctx.settings.clusters], at)
    by_cluster = {scan.cluster: scan for scan in fleet.scans}
    for cluster in ctx.settings.clusters:
        if cluster.name in fleet.kube_errors:
            lines.append(f"{cluster.name}: failed: {fleet.kube_errors[cluster.name]}")
            not_scanned.append((cluster.name, "Kubernetes did not answer"))
            continue
        scan = by_cluster[cluster.name]
        scans.append(scan)
        lines.append(scan.summary())
        _track_outage(ctx, scan)
        if scan.skipped:
            not_scanned.append((cluster.name, f"metrics unavailable: {scan.skipped_reason}"))

    plan = idle_store.plan(ctx, scans, at)
    left = 0
    for row, why in plan.leave:
        if idle_store.record_leave(ctx, row, why):
            left += 1
            idle_store.refresh_digests(ctx, f"{row['cluster']}/{row['namespace']}/{row['service']}", render)

    by_team: dict[str | None, list] = defaultdict(list)
    for service, seen in plan.report:
        by_team[service.team].append((service, seen))
    digests = reported = 0
    for team in sorted(by_team, key=lambda t: t or ""):
        count = _post_digest(ctx, team, by_team[team], not_scanned)
        digests += 1 if count else 0
        reported += count

    kept = ctx.store.query("SELECT COUNT(*) AS n FROM idle_services WHERE state = ?", [idle_store.KEPT])[0]["n"]
    lines.append(f"{digests} digest{'s' if digests != 1 else ''} posted ({reported} services reported, "
                 f"{left} left the list)")
    if kept:
        lines.append(f"{kept} kept (un-keep from a digest's *Kept services* button)")
    return "; ".join(lines)
