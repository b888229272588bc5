"""Alert fan-out: how many Slack API calls a big batch of findings becomes.

Idle digest: 1,000 Services in one cluster, busy and idle in alternating runs of ten, so 500 are
idle and every one of the 10 teams owns 50 of them; every team has its own channel. The real
Prometheus holds 7 days of hourly Istio counters for the busy half. The idle-scan job runs as
the scheduler runs it (jobs.run_now), then the outbox is flushed. Target: one digest per team,
i.e. exactly one channel message in each team's channel; the services that do not fit in a
digest (Slack's 50-block limit) go to thread replies under it.

Node alerts: 8 clusters × 500 nodes with 25 NotReady each (200 incidents), one node-scan run.
Target: grouped per cluster, i.e. one channel message per cluster and the incidents in its thread.

The bot is in-process (tests/harness.start_bot, no HTTP server); its FakeClock is the Prometheus
data's eval_time for the digest and the nodes' reference time for the alerts.
"""
from __future__ import annotations

import math
import time

from bench._features import flush_outbox, node_fleet_bot, node_tick, slack_breakdown, team_config, \
    traffic_idle_in_every_team, warm
from bench.common import Backends, FakeClock, Options, Result, benchmark, in_process_bot, log
from bench.fleet import TEAMS, seed_services

CLUSTER = "prod-a"
SERVICES = 1000  # half of them idle
NODE_CLUSTERS = 8
NODES = 500
FAILING = 25  # per cluster: 200 incidents in all


@benchmark("fanout", order=60)
def fanout(opts: Options) -> list[Result]:
    with Backends(opts.workdir) as backends:
        slack = backends.slack_fake()
        digest = _idle_digest(opts, backends, slack)
        nodes = _node_alerts(opts, backends)
    return [digest, nodes]


def _idle_digest(opts: Options, backends: Backends, slack) -> Result:
    import jobs
    from blocks.idle import PARENT_SERVICES, THREAD_SERVICES

    kube = backends.kube_fake()
    services = seed_services(kube, SERVICES)
    metrics, idle = traffic_idle_in_every_team(services)
    log(f"fanout: backfilling 7 days of hourly Istio counters for {SERVICES - len(idle)} busy services")
    prometheus = backends.prometheus(metrics)
    config = team_config()
    channels = {team: spec["channel"] for team, spec in config["teams"].items()}
    bot = in_process_bot(opts.workdir / "idle-bot", slack, {CLUSTER: kube}, serve=False, config=config,
                         prometheus={CLUSTER: prometheus.url}, clock=FakeClock(prometheus.eval_time))
    try:
        warm(bot.ctx, CLUSTER, prometheus.eval_time)
        before = len(slack.calls)
        started = time.perf_counter()
        summary = jobs.run_now(bot.ctx, "idle-scan", trigger="bench")
        job_seconds = time.perf_counter() - started
        sent, flush_seconds = flush_outbox(bot.ctx)
        calls = slack_breakdown(slack.calls[before:])
    finally:
        bot.stop()
        prometheus.stop()
        kube.stop()

    per_team = {team: sum(1 for s in idle if s.team == team) for team in TEAMS}
    thread_parts = {team: math.ceil(max(0, n - PARENT_SERVICES) / THREAD_SERVICES) for team, n in per_team.items()}
    posted = calls["channel_messages_per_channel"]
    digests = {team: posted.get(channels[team], 0) for team in TEAMS}
    problems = []
    if "idle-scan` ok" not in summary:
        problems.append(summary[:300])
    if any(n != 1 for n in digests.values()):
        problems.append(f"channel messages per team: {digests}")
    if sum(posted.values()) != len(TEAMS):
        problems.append(f"{sum(posted.values())} channel messages for {len(TEAMS)} teams")
    if calls["kinds"].get("thread replies", 0) != sum(thread_parts.values()):
        problems.append(f"{calls['kinds'].get('thread replies', 0)} thread replies, "
                        f"{sum(thread_parts.values())} expected ({PARENT_SERVICES} services in a digest, "
                        f"{THREAD_SERVICES} per reply)")
    log(f"fanout: idle digest: {calls}")
    row = Result(f"alert fan-out: idle digest ({len(idle)} idle services, {len(TEAMS)} teams)", calls["total"],
                 "calls", target="one digest per team", met=not problems, calls=calls["kinds"],
                 details={"summary": summary[:500], "digests_per_team": digests, "idle_per_team": per_team,
                          "expected_thread_replies": thread_parts, "slack": calls,
                          "job_seconds": round(job_seconds, 3), "flush_seconds": round(flush_seconds, 3),
                          "without_digest": f"{len(idle)} messages, one per idle service"})
    if problems:
        row.details["problem"] = "; ".join(problems)
    return row


def _node_alerts(opts: Options, backends: Backends) -> Result:
    incidents = NODE_CLUSTERS * FAILING
    log(f"fanout: seeding {NODE_CLUSTERS} clusters × {NODES} nodes, {FAILING} NotReady each")
    bot = node_fleet_bot(opts, backends, NODE_CLUSTERS, NODES, FAILING, csr_pending=0, approved_csrs=0,
                         name="node-bot")
    try:
        tick = node_tick(bot)
    finally:
        bot.stop()
    calls = tick["slack"]
    channel_messages = calls["kinds"].get("channel messages", 0)
    problems = []
    if not tick["ok"]:
        problems.append(tick["summary"][:300])
    if tick["open_incidents"] != incidents:
        problems.append(f"{tick['open_incidents']} incidents open, {incidents} expected")
    if channel_messages != NODE_CLUSTERS:
        problems.append(f"{channel_messages} channel messages for {NODE_CLUSTERS} clusters")
    log(f"fanout: node alerts: {calls}")
    row = Result(f"alert fan-out: node alerts ({incidents} incidents, {NODE_CLUSTERS} clusters)", calls["total"],
                 "calls", target="grouped per cluster", met=not problems, calls=calls["kinds"],
                 details={"summary": tick["summary"][:500], "slack": calls, "job_seconds": round(tick["seconds"], 3),
                          "flush_seconds": tick["flush_seconds"],
                          "without_grouping": f"{incidents} channel messages, one per incident"})
    if problems:
        row.details["problem"] = "; ".join(problems)
    return row
