"""Idle scan at fleet scale: seconds, PromQL queries and Kubernetes calls of bot.idle.scan_cluster,
and in the same run the naive scan (one PromQL query per service) for contrast.

Per `--sizes` value (default 50, 500, 5,000): a Kubernetes fake holding that many Services with
their Deployments and Endpoints (bench.fleet, 20 namespaces, 10 teams) and the real Prometheus
backfilled with 7 days of hourly Istio counters for 60% of them (the other 40% are idle). The bot
is built in-process (tests/harness.start_bot, no HTTP server) with its FakeClock at the data's
eval_time; its connections are opened before the timing, as a running bot's are. Targets: < 5 s
and <= 4 PromQL queries per cluster at every size; the naive scan must find the same idle set.
"""
from __future__ import annotations

from bench._features import profile_call, wants_profile, warm
from bench.common import Backends, FakeClock, Options, Result, Scaling, benchmark, in_process_bot, log
from bench.fleet import istio_traffic, seed_services

CLUSTER = "prod-a"
TARGET_SECONDS = 5.0
TARGET_QUERIES = 4
BUSY_RATIO = 0.6


@benchmark("idle-scan", order=30)
def idle_scan(opts: Options) -> list[Result]:
    from bot.idle.scan import scan_cluster, scan_cluster_naive

    batched = Scaling("idle scan", opts.sizes)
    naive = Scaling("idle scan, naive (1 query per service)", opts.sizes)
    problems: dict[int, list[str]] = {}
    profile: dict | None = None
    with Backends(opts.workdir) as backends:
        slack = backends.slack_fake()
        for size in batched.sizes:
            kube = backends.kube_fake()
            services = seed_services(kube, size)
            log(f"idle-scan: backfilling 7 days of hourly Istio counters for {size} services")
            prometheus = backends.prometheus(istio_traffic(services, busy_ratio=BUSY_RATIO))
            log(f"idle-scan: Prometheus ready (generate {prometheus.generate_seconds:.1f}s, "
                f"promtool {prometheus.backfill_seconds:.1f}s, startup {prometheus.startup_seconds:.1f}s)")
            at = prometheus.eval_time
            bot = in_process_bot(opts.workdir / f"bot{size}", slack, {CLUSTER: kube}, serve=False,
                                 prometheus={CLUSTER: prometheus.url}, clock=FakeClock(at))
            try:
                warm(bot.ctx, CLUSTER, at)
                with batched.measure(size) as step:
                    scan = scan_cluster(bot.ctx, CLUSTER, at)
                step.calls = {"promql": scan.queries, "kubernetes": scan.kube_calls}
                with naive.measure(size) as slow_step:
                    slow = scan_cluster_naive(bot.ctx, CLUSTER, at)
                slow_step.calls = {"promql": slow.queries, "kubernetes": slow.kube_calls}

                expected_idle = sum(1 for i in range(size) if i % 10 >= round(BUSY_RATIO * 10))
                found = sorted(s.key for s in scan.idle)
                issues = []
                if scan.skipped:
                    issues.append(f"scan skipped: {scan.skipped_reason}")
                if len(found) != expected_idle:
                    issues.append(f"found {len(found)} idle services, the data has {expected_idle}")
                if sorted(s.key for s in slow.idle) != found:
                    issues.append(f"the naive scan found {len(slow.idle)} idle services, the batched one {len(found)}")
                if issues:
                    problems[size] = issues
                    log(f"idle-scan @ {size}: " + "; ".join(issues))
                step.details = {"services": size, "idle_found": len(found), "idle_expected": expected_idle,
                                "verdicts": dict(scan.verdicts()),
                                "prometheus_series": prometheus.metrics.series_count(),
                                "backfill_seconds": round(prometheus.backfill_seconds, 1)}
                slow_step.details = {"idle_found": len(slow.idle)}

                missed = step.seconds >= TARGET_SECONDS or scan.queries > TARGET_QUERIES or bool(issues)
                if size == batched.sizes[-1] and wants_profile(opts, missed):
                    profile = profile_call(opts, f"idle-scan-{size}", lambda: scan_cluster(bot.ctx, CLUSTER, at))
            finally:
                bot.stop()
                prometheus.stop()
                kube.stop()
    log(batched.table())
    log(naive.table())
    return _rows(batched, naive, problems, profile)


def _rows(batched: Scaling, naive: Scaling, problems: dict[int, list[str]], profile: dict | None) -> list[Result]:
    growth = {row["size"]: row for row in batched.growth()}
    naive_growth = {row["size"]: row for row in naive.growth()}
    rows: list[Result] = []
    for step, slow in zip(batched.steps, naive.steps):
        queries = step.calls["promql"]
        met = step.seconds < TARGET_SECONDS and queries <= TARGET_QUERIES and step.size not in problems
        ratio = slow.seconds / step.seconds if step.seconds else None
        details = {**step.details, "growth": growth[step.size], "naive_seconds": round(slow.seconds, 4),
                   "naive_calls": slow.calls, "naive_over_batched": round(ratio, 1) if ratio else None}
        if step.size in problems:
            details["problem"] = "; ".join(problems[step.size])
        row = Result(f"idle scan @ {step.size}", round(step.seconds, 4), "s",
                     target=f"< {TARGET_SECONDS:g} s, <= {TARGET_QUERIES} PromQL", met=met, calls=step.calls,
                     details=details)
        if profile and step is batched.steps[-1]:
            row.details["profile"] = profile
        rows.append(row)
        rows.append(Result(f"idle scan naive (1 query/service) @ {slow.size}", round(slow.seconds, 4), "s",
                           calls=slow.calls, details={**slow.details, "growth": naive_growth[slow.size]}))
        rows.append(Result(f"idle scan naive / batched @ {step.size}", round(ratio, 1) if ratio else None, "x",
                           calls={"promql naive": slow.calls["promql"], "promql batched": queries},
                           details={"batched_seconds": round(step.seconds, 4), "naive_seconds": round(slow.seconds, 4),
                                    "extra_queries": slow.calls["promql"] - queries}))
    return rows
