"""Memory: peak RSS of `python app.py` with 16 clusters configured, after startup and after an
idle scan of the whole fleet run through `/ops run idle-scan` by a devops user.

The 16 clusters are one Kubernetes fake behind 16 kubeconfig contexts (each cluster lists the
same services, so the bot really holds 16 clusters' worth of objects) and one real Prometheus
behind 16 prometheus_urls, backfilled with a week of Istio traffic for those services (60% busy,
40% idle). The fleet is the largest `--sizes` value split over the clusters: 5,000 by default.
Peak RSS is VmHWM from /proc/<pid>/status; the target is < 200 MB.
"""
from __future__ import annotations

import time

from bench.common import (
    DEVOPS, Backends, BotProcess, Options, Result, benchmark, cluster_entry, log, wait_quiet, write_config,
)
from bench.fleet import istio_traffic, seed_services

CLUSTERS = 16
TARGET_MB = 200.0
SCAN_TIMEOUT = 180.0


@benchmark("memory", order=90)
def memory(opts: Options) -> list[Result]:
    per_cluster = max(1, max(opts.sizes) // CLUSTERS)
    with Backends(opts.workdir) as backends:
        slack = backends.slack_fake()
        kube = backends.kube_fake()
        services = seed_services(kube, per_cluster)
        log(f"memory: backfilling a week of Istio traffic for {per_cluster} services into Prometheus")
        prometheus = backends.prometheus(istio_traffic(services))
        names = [f"cluster-{i:02d}" for i in range(CLUSTERS)]
        kubeconfig = backends.kubeconfig({name: kube for name in names})
        config = write_config(opts.workdir / "deckhand.yaml",
                              [cluster_entry(name, kubeconfig, prometheus.url) for name in names])
        with BotProcess(opts.workdir / "bot", config, slack) as bot:
            time.sleep(1.0)  # let startup's background threads (scheduler, outbox) settle before reading
            startup = bot.memory()
            log(f"memory: bot pid {bot.pid} up with {CLUSTERS} clusters: {startup}")
            url = slack.response_url("C0OPS", None, DEVOPS)
            before = backends.request_counts()
            started = time.perf_counter()
            answer = bot.sender.command("/ops", "run idle-scan", user_id=DEVOPS, channel_id="C0OPS", response_url=url)
            replies = []
            deadline = time.monotonic() + SCAN_TIMEOUT
            while time.monotonic() < deadline and len(replies) < 2:  # "Running…", then the outcome
                replies = slack.responses_to(url)
                time.sleep(0.1)
            scan_seconds = time.perf_counter() - started
            wait_quiet(backends.request_counts, quiet=1.5, limit=30)  # the digests the scan queued
            after = bot.memory()
            calls = {k: v - before.get(k, 0) for k, v in backends.request_counts().items()}
            outcome = replies[-1].get("text", "") if len(replies) >= 2 else f"no outcome within {SCAN_TIMEOUT:.0f}s"
            log(f"memory: idle scan answered {answer.status_code}, took {scan_seconds:.1f}s: {outcome[:300]}")
            log(f"memory: after the scan: {after}")

    fleet = {"clusters": CLUSTERS, "services_per_cluster": per_cluster, "services": per_cluster * CLUSTERS}
    scan_row = Result("memory: idle scan wall time (16 clusters)", round(scan_seconds, 2), "s", calls=calls,
                      details={"outcome": outcome, **fleet})
    rows = [
        Result.below("memory: peak RSS after startup (16 clusters)", startup.get("VmHWM"), "MB", TARGET_MB,
                     details={"rss_mb": startup.get("VmRSS"), **fleet}),
        Result.below("memory: peak RSS after idle scan (16 clusters)", after.get("VmHWM"), "MB", TARGET_MB,
                     calls=calls, details={"rss_mb": after.get("VmRSS"), "scan_seconds": round(scan_seconds, 2),
                                           "scan_outcome": outcome, **fleet}),
        scan_row,
    ]
    if answer.status_code != 200 or len(replies) < 2 or " ok:" not in outcome:
        rows[1].met = False
        rows[1].details["problem"] = "the idle scan did not finish ok; the peak may not include its work"
    return rows
