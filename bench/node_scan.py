"""Node scan across the fleet: 16 clusters × 500 nodes, 5% of them NotReady past `not_ready_after`
(some with pending kubelet CSRs), one Kubernetes fake per cluster.

The job runs as the scheduler runs it (jobs.run_now(ctx, "node-scan")) in an in-process bot
(tests/harness.start_bot, no HTTP server), then the outbox is flushed to the Slack fake (the
outbox sends asynchronously; in the harness nothing paces it). Reported: seconds of the job run,
Kubernetes calls per cluster (counted by the gateway per cluster name, and checked against each
fake's own request log), and the Slack calls the run caused. A second tick two minutes later (same
failing nodes, nothing new) shows the steady-state cost the scheduler pays every `interval`.
Targets: < 2 s per tick; one list per kind (Nodes, CSRs) per cluster.

Storm: the same fleet on a fresh bot while the Slack fake enforces Slack's pace for chat.postMessage
and chat.update (one per second per channel, 429 + Retry-After beyond it) and the outbox keeps the
production pacing (1 call/s per channel, as app.py builds it). Timed from the start of the scan to
the moment Slack holds the last message that shows an alert (every failing node is listed in its
(cluster, reason) reply, or counted in its "and N more"). Targets: under 60 Slack calls (429s
included) and every alert visible in < 60 s; the next tick, with nothing new, costs 0 calls.
"""
from __future__ import annotations

import re
import time

from bench._features import node_fleet_bot, node_tick, profile_call, slack_breakdown, wants_profile, warm
from bench.common import Backends, FakeClock, Options, Result, benchmark, in_process_bot, log

CLUSTERS = 16
NODES = 500
FAILING = 25  # 5% of NODES
CSR_PENDING = 10  # of the failing nodes, per cluster: attached to their NotReady alerts
APPROVED_CSRS = 100  # per cluster: approved kubelet CSRs, as every cluster keeps some
TARGET_SECONDS = 2.0
EXPECTED_PATHS = ["/api/v1/nodes", "/apis/certificates.k8s.io/v1/certificatesigningrequests"]
STORM_CALLS = 60
STORM_SECONDS = 60.0
STORM_LIMIT = 300.0  # give up waiting for the storm to be visible after this long


@benchmark("node-scan", order=50)
def node_scan(opts: Options) -> list[Result]:
    import jobs

    fleet = f"{CLUSTERS} clusters × {NODES} nodes, {FAILING / NODES:.0%} failing"
    with Backends(opts.workdir) as backends:
        backends.slack_fake()
        log(f"node-scan: seeding {fleet}")
        bot = node_fleet_bot(opts, backends, CLUSTERS, NODES, FAILING, CSR_PENDING, APPROVED_CSRS)
        seeded_at = bot.clock()
        interval = int(bot.ctx.settings.node_join.interval.total_seconds())
        try:
            first = node_tick(bot)
            log(f"node-scan: first tick {first['seconds']:.3f}s, Slack {first['slack']}")
            bot.clock.advance(seconds=interval)
            steady = node_tick(bot)
            log(f"node-scan: steady tick {steady['seconds']:.3f}s, Slack {steady['slack']}")
        finally:
            bot.stop()
        profile = None
        missed = first["seconds"] >= TARGET_SECONDS or steady["seconds"] >= TARGET_SECONDS
        if wants_profile(opts, missed):
            # A first tick again needs a fresh store: a second bot over the same fakes.
            again = fresh_bot(opts, backends, bot.kube, seeded_at)
            try:
                profile = profile_call(opts, "node-scan-first-tick",
                                       lambda: jobs.run_now(again.ctx, "node-scan", trigger="bench"))
            finally:
                again.stop()

    expected = CLUSTERS * FAILING
    rows = []
    for label, tick in (("first tick", first), (f"steady tick +{interval // 60} min", steady)):
        problems = []
        if not tick["ok"]:
            problems.append(tick["summary"])
        if tick["open_incidents"] != expected:
            problems.append(f"{tick['open_incidents']} incidents open, {expected} nodes are failing")
        row = Result.below(f"node scan, {label} ({fleet})", round(tick["seconds"], 4), "s", TARGET_SECONDS,
                           calls={"kubernetes": sum(tick["kube_calls"].values()), "slack": tick["slack"]["total"]},
                           details={"summary": tick["summary"][:500], "open_incidents": tick["open_incidents"],
                                    "slack": tick["slack"], "flush_seconds": tick["flush_seconds"]})
        if problems:
            row.met = False
            row.details["problem"] = "; ".join(problems)
        rows.append(row)

    per_cluster = first["kube_calls"]
    wrong = {f"{c} ({label})": paths for label, tick in (("first", first), ("steady", steady))
             for c, paths in tick["kube_paths"].items() if paths != EXPECTED_PATHS}
    calls_row = Result.at_most("node scan Kubernetes calls per cluster (max)", max(per_cluster.values()), "calls", 2,
                               calls={"clusters": len(per_cluster), "kubernetes": sum(per_cluster.values())},
                               details={"per_cluster": per_cluster, "expected_paths": EXPECTED_PATHS})
    calls_row.target = "1 list per kind (Nodes, CSRs)"
    if wrong or set(per_cluster.values()) | set(steady["kube_calls"].values()) != {2}:
        calls_row.met = False
        calls_row.details["problem"] = f"clusters whose requests were not one Node and one CSR list: {wrong}"
    rows.insert(1, calls_row)
    rows.insert(2, Result(f"node scan Slack calls, first tick ({expected} incidents)", first["slack"]["total"], "calls",
                          calls=first["slack"]["kinds"], details=first["slack"]))
    drain = steady["slack"]["drain_seconds_at_1_per_s"]
    rows.append(Result(f"node scan Slack calls, steady tick ({expected} incidents, none new)", steady["slack"]["total"], "calls",
                       calls=steady["slack"]["kinds"],
                       details={**steady["slack"], "scan_interval_seconds": interval,
                                "note": (f"at the outbox's production pacing (1 call/s per channel) this tick takes "
                                         f"{drain} s to reach Slack; the scan runs every {interval} s")}))
    if profile:
        rows[0].details["profile"] = profile
    with Backends(opts.workdir / "storm") as backends:
        rows += storm(opts, backends)
    return rows


def storm(opts: Options, backends) -> list[Result]:
    """The first tick of a storm paced like Slack paces it; then a steady tick."""
    import jobs

    slack = backends.slack_fake()
    log(f"node-scan storm: seeding {CLUSTERS} clusters × {NODES} nodes, {FAILING} failing each")
    bot = node_fleet_bot(opts, backends, CLUSTERS, NODES, FAILING, CSR_PENDING, APPROVED_CSRS, name="storm-bot")
    ctx = bot.ctx
    ctx.outbox.min_interval = 1.0  # production pacing (app.py: build_context's outbox_interval=1.0)
    for method in ("chat.postMessage", "chat.update"):
        slack.rate_limit(method, per_channel_per_second=1, retry_after=1)
    try:
        before = len(slack.calls)
        started_wall, started = time.time(), time.perf_counter()
        summary = jobs.run_now(ctx, "node-scan", trigger="bench")
        job_seconds = time.perf_counter() - started
        visible = _drain_until_visible(ctx, slack)
        calls = slack.calls[before:]
        done = [c for c in calls if c.ok]
        last_visible = (max(c.time for c in done) - started_wall) if done else None
        breakdown = slack_breakdown(calls)
        rejected = sum(1 for c in calls if c.status == 429)
        log(f"node-scan storm: {len(calls)} Slack calls ({rejected} answered 429), last alert visible after "
            f"{last_visible:.1f}s; {visible}")
        interval = int(ctx.settings.node_join.interval.total_seconds())
        bot.clock.advance(seconds=interval)
        steady_before = len(slack.calls)
        jobs.run_now(ctx, "node-scan", trigger="bench")
        _drain_until_visible(ctx, slack, limit=30)
        steady = slack.calls[steady_before:]
    finally:
        bot.stop()
    fleet = f"{CLUSTERS} × {NODES} nodes, {FAILING / NODES:.0%} failing"
    details = {"summary": summary[:300], "job_seconds": round(job_seconds, 3), "slack": breakdown,
               "answered_429": rejected, "visible": visible,
               "without_grouping": "416 calls (16 channel messages + 400 thread replies): at least 416 s at "
                                   "Slack's pace of one message per second per channel"}
    calls_row = Result.below(f"node storm Slack calls ({fleet}, Slack's pace enforced)", len(calls), "calls",
                             STORM_CALLS, calls=breakdown["kinds"], details=details)
    time_row = Result.below(f"node storm: every alert visible ({fleet})",
                            round(last_visible, 1) if last_visible is not None else None, "s", STORM_SECONDS,
                            calls={"slack": len(calls), "429": rejected}, details=details)
    if visible["problem"]:
        calls_row.met = time_row.met = False
        time_row.details["problem"] = visible["problem"]
    steady_row = Result.at_most("node storm: steady tick after it (nothing new)", len(steady), "calls", 0,
                                calls=slack_breakdown(steady)["kinds"])
    return [calls_row, time_row, steady_row]


def _drain_until_visible(ctx, slack, limit: float = STORM_LIMIT) -> dict:
    """Send what the outbox holds at its pacing until every alert message is on Slack and current;
    then check that Slack shows every failing node (listed, or counted in "and N more")."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        ctx.outbox.flush(max_seconds=max(0.1, deadline - time.monotonic()))
        behind = ctx.store.query("SELECT COUNT(*) AS n FROM alert_messages WHERE ts IS NULL OR synced_version < version")
        if not ctx.outbox.pending() and not behind[0]["n"]:
            break
        time.sleep(0.05)
    shown: dict[str, int] = {}
    for message in slack.messages("C0ALERTS").values():
        for reply in message.get("replies", []):
            text = " ".join([b.get("text", {}).get("text", "") for b in reply.get("blocks") or []]
                            + [e.get("text", "") for b in reply.get("blocks") or [] for e in b.get("elements", [])])
            cluster = re.search(r"in `(cluster-\d+)`", text)
            if not cluster:
                continue
            more = re.search(r"and (\d+) more", text)
            listed = len(re.findall(r":red_circle: `", text))
            shown[cluster.group(1)] = shown.get(cluster.group(1), 0) + listed + (int(more.group(1)) if more else 0)
    expected = {f"cluster-{i:02d}": FAILING for i in range(CLUSTERS)}
    problem = "" if shown == expected else f"Slack shows {shown}, failing nodes are {expected}"
    return {"failing_shown": sum(shown.values()), "failing": sum(expected.values()), "problem": problem}


def fresh_bot(opts: Options, backends, fakes: dict, at):
    """A bot with a new SQLite store (so its first tick opens every incident again) over `fakes`."""
    bot = in_process_bot(opts.workdir / "bot-profiled", backends.slack, fakes, serve=False, clock=FakeClock(at))
    for cluster in fakes:
        warm(bot.ctx, cluster)
    return bot
