"""What the feature benchmarks share (idle_scan, dependency_check, node_scan, fanout).

The leading underscore keeps bench/run.py from treating this module as a benchmark. It holds:
warming a bot's connections before a timed call, a pyinstrument profile of one call written to
bench/profiles/, a breakdown of the Slack fake's calls (channel posts vs thread replies vs
updates), a node fleet for the Kubernetes fake, and Istio traffic whose idle services are spread
over every team (bench.fleet.istio_traffic makes idle exactly the services of teams 7-10, since
team and busyness both follow `i % 10`).
"""
from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

from bench.common import ROOT, Options, log
from bench.fleet import TEAMS, FleetService
from tests.fakes.istio_metrics import IstioMetrics

PROFILE_LINES = 40


def warm(ctx, cluster: str, at: datetime | None = None) -> None:
    """Load the kubeconfig and open the HTTP connections a long-running bot already has, so the
    timed call measures the feature, not the first TLS-less handshake and client construction."""
    from bot.foundation import kube

    ctx.kube.list(cluster, kube.NAMESPACES)
    if at is not None:
        ctx.traffic.query(cluster, "vector(1)", at)


def wants_profile(opts: Options, missed: bool) -> bool:
    return opts.profile == "always" or (opts.profile == "auto" and missed)


def profile_call(opts: Options, name: str, fn: Callable[[], Any]) -> dict[str, Any]:
    """Run `fn` once under pyinstrument (main thread, 1 ms samples); keep the text report in
    bench/profiles/<name>.txt and return where it is, the profiled seconds and its top lines."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001)
    started = time.perf_counter()
    profiler.start()
    try:
        fn()
    finally:
        profiler.stop()
    seconds = time.perf_counter() - started
    text = profiler.output_text(unicode=True, color=False, show_all=False)
    opts.profile_dir.mkdir(parents=True, exist_ok=True)
    dest = opts.profile_dir / f"{name}.txt"
    dest.write_text(text, encoding="utf-8")
    top = "\n".join(text.splitlines()[:PROFILE_LINES])
    log(f"{name}: profile ({seconds:.2f}s under pyinstrument) in {dest}:\n{top}")
    try:
        shown = str(dest.relative_to(ROOT))
    except ValueError:
        shown = str(dest)
    return {"file": shown, "profiled_seconds": round(seconds, 3), "top": top}


# -- Slack -----------------------------------------------------------------------------------------
def slack_breakdown(calls: Iterable[Any]) -> dict[str, Any]:
    """Slack Web API calls by what a person sees: channel messages (a notification each), thread
    replies, edits in place, anything else; plus channel messages per channel."""
    kinds: Counter = Counter()
    per_channel: Counter = Counter()
    all_per_channel: Counter = Counter()
    failed = 0
    for call in calls:
        if not call.ok:
            failed += 1
        all_per_channel[call.args.get("channel", "?")] += 1
        if call.method == "chat.postMessage":
            if call.args.get("thread_ts"):
                kinds["thread replies"] += 1
            else:
                kinds["channel messages"] += 1
                per_channel[call.args.get("channel", "?")] += 1
        elif call.method == "chat.update":
            kinds["updates"] += 1
        else:
            kinds[call.method] += 1
    total = sum(kinds.values())
    # The outbox keeps to about one call per second per channel in production (app.py builds it
    # with min_interval=1.0, Slack's chat.postMessage pacing), so the busiest channel sets how long
    # a batch takes to reach Slack; the harness drains with no pacing.
    busiest = max(all_per_channel.values(), default=0)
    return {"total": total, "kinds": dict(kinds), "channel_messages_per_channel": dict(per_channel),
            "calls_per_channel": dict(all_per_channel), "drain_seconds_at_1_per_s": busiest, "failed": failed}


def flush_outbox(ctx, limit: float = 60.0) -> tuple[int, float]:
    """Send everything the outbox holds, thread replies released by their parents' ts included.
    Returns (messages sent, seconds). Bounded by `limit`."""
    started = time.perf_counter()
    sent = 0
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        sent += ctx.outbox.flush(max_seconds=max(0.1, deadline - time.monotonic()))
        if not ctx.outbox.pending():
            break
    return sent, time.perf_counter() - started


def team_config(teams: Iterable[str] = TEAMS) -> dict[str, Any]:
    """Config overrides giving every fleet team a user group and its own channel (C0T<n>)."""
    return {"teams": {team: {"usergroup": f"S0T{i:02d}", "channel": f"C0T{i:02d}"} for i, team in enumerate(teams)}}


# -- Istio traffic ---------------------------------------------------------------------------------
def traffic_idle_in_every_team(services: list[FleetService], window: timedelta = timedelta(days=7),
                               step: timedelta = timedelta(hours=1)) -> tuple[IstioMetrics, list[FleetService]]:
    """Busy and idle services in alternating runs of ten, so each team (team = i % 10) has as many
    idle services as busy ones. Counters only, hourly: see bench.fleet.istio_traffic."""
    metrics = IstioMetrics.recent(window, step=step)
    idle = []
    for i, svc in enumerate(services):
        if (i // 10) % 2 == 0:
            metrics.http(svc.name, svc.namespace, src_workload="frontend", src_namespace="web", rps=0.5,
                         histogram=False)
        else:
            idle.append(svc)
    return metrics, idle


# -- nodes -----------------------------------------------------------------------------------------
def seed_nodes(kube, now: datetime, count: int, failing: int, csr_pending: int, approved_csrs: int,
               down_for: timedelta = timedelta(minutes=30)) -> dict[str, Any]:
    """`count` Nodes, the first `failing` NotReady for `down_for`; pending kubelet-serving CSRs for
    the first `csr_pending` failing nodes (older than csr_pending_after), approved ones for
    `approved_csrs` healthy nodes (history every cluster has). Returns what the scan should find."""
    from tests.nodes.nodes_support import csr, node, not_ready

    names = [f"worker-{i:04d}" for i in range(count)]
    objs = [not_ready(n, now, down_for=down_for) if i < failing else node(n, now) for i, n in enumerate(names)]
    objs += [csr(f"csr-pending-{i:04d}", now, node_name=names[i], age=timedelta(minutes=20))
             for i in range(min(csr_pending, failing))]
    objs += [csr(f"csr-ok-{i:04d}", now, node_name=names[failing + i], age=timedelta(days=3), approved=True)
             for i in range(min(approved_csrs, count - failing))]
    kube.add_many(objs)
    return {"nodes": count, "failing": failing, "csr_pending": min(csr_pending, failing)}


def node_fleet_bot(opts: Options, backends, clusters: int, nodes: int, failing: int, csr_pending: int,
                   approved_csrs: int, name: str = "bot"):
    """A bot (in-process, no HTTP server) over `clusters` Kubernetes fakes, one per cluster, each
    seeded by seed_nodes; its FakeClock is the moment the nodes were stamped against. The
    connections are opened and the fakes' request logs cleared before returning."""
    from bench.common import FakeClock, in_process_bot

    clock = FakeClock()
    fakes = {f"cluster-{i:02d}": backends.kube_fake() for i in range(clusters)}
    for fake in fakes.values():
        seed_nodes(fake, clock(), nodes, failing, csr_pending, approved_csrs)
    bot = in_process_bot(opts.workdir / name, backends.slack, fakes, serve=False, clock=clock)
    for cluster in fakes:
        warm(bot.ctx, cluster)
    for fake in fakes.values():
        fake.clear_requests()
    return bot


def node_tick(bot) -> dict[str, Any]:
    """One node-scan job run (jobs.run_now, as the scheduler runs it), then the outbox flushed:
    seconds of the run, Kubernetes calls and request paths per cluster, Slack calls it caused."""
    import jobs

    ctx = bot.ctx
    kube_before = {c: ctx.kube.calls[c] for c in bot.kube}
    for fake in bot.kube.values():
        fake.clear_requests()
    slack_before = len(bot.slack.calls)
    started = time.perf_counter()
    summary = jobs.run_now(ctx, "node-scan", trigger="bench")
    seconds = time.perf_counter() - started
    sent, flush_seconds = flush_outbox(ctx)
    return {
        "seconds": seconds, "summary": summary, "ok": "node-scan` ok" in summary,
        "kube_calls": {c: ctx.kube.calls[c] - kube_before[c] for c in bot.kube},
        "kube_paths": {c: sorted(r.path for r in fake.requests) for c, fake in bot.kube.items()},
        "slack": slack_breakdown(bot.slack.calls[slack_before:]),
        "flush_seconds": round(flush_seconds, 3), "outbox_sent": sent,
        "open_incidents": ctx.store.query("SELECT COUNT(*) AS n FROM incidents WHERE state = 'open'")[0]["n"],
    }
