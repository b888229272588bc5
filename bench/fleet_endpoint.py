"""One query endpoint for the fleet: 100 clusters × 500 services through one `prometheus:` endpoint, beside the
same fleet with one endpoint per cluster.

The fleet: one Kubernetes fake holding 500 Services (bench.fleet) behind 100 kubeconfig contexts, and the
real Prometheus backfilled with 8 days of Istio counters at a 6 h step (a 7-day increase() needs samples on
both window edges, not hourly ones) for every cluster, each series labelled `cluster`. In cluster c,
service i is busy when (i + c) % 10 < 6: every cluster has its own 200 idle services under the same names,
so a scan that mixed clusters up would find the wrong set.

Both variants run the idle scan (`bot.idle.scan.scan_fleet`, what the idle-scan job runs) in a child
process that holds only the bot (config, context, gateways), so its peak RSS (VmHWM) is the bot's own:

* shared: every cluster on `prometheus.url` with `cluster_label: cluster` — target <= 4 PromQL queries
  for the whole fleet per scan;
* per cluster: each cluster reaches the same Prometheus as an endpoint of its own (a distinct header per
  cluster), so it costs its own connection and two queries, each scoped to it — what 100 Prometheus
  servers would cost the bot (each real one would hold 1/100 of the data, so per-query work is overstated).

Reported: PromQL queries per scan, wall time of a warm scan (connections open, as in a running bot),
the first (cold) scan, and peak RSS; idle services found must equal the data's 100 × 200.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

from bench.common import ROOT, Backends, Options, Result, benchmark, log, write_config
from bench.fleet import seed_services

CLUSTERS = 100
SERVICES = 500
BUSY_OF_TEN = 6
TARGET_QUERIES = 4
LABEL = "cluster"


def cluster_name(c: int) -> str:
    return f"c-{c:03d}"


def fleet_metrics(services):
    from tests.fakes.istio_metrics import IstioMetrics

    metrics = IstioMetrics.recent(timedelta(days=8), step=timedelta(hours=6))
    for c in range(CLUSTERS):
        labels = {LABEL: cluster_name(c)}
        for i, svc in enumerate(services):
            if (i + c) % 10 < BUSY_OF_TEN:
                metrics.http(svc.name, svc.namespace, src_workload="frontend", src_namespace="web", rps=0.5,
                             histogram=False, labels=labels)
    return metrics


@benchmark("fleet-endpoint", order=35)
def fleet_endpoint(opts: Options) -> list[Result]:
    with Backends(opts.workdir) as backends:
        kube = backends.kube_fake()
        services = seed_services(kube, SERVICES)
        log(f"fleet-endpoint: backfilling {CLUSTERS} clusters × {SERVICES} services of Istio counters")
        prometheus = backends.prometheus(fleet_metrics(services))
        log(f"fleet-endpoint: Prometheus ready ({prometheus.metrics.series_count()} series; generate "
            f"{prometheus.generate_seconds:.1f}s, promtool {prometheus.backfill_seconds:.1f}s)")
        names = [cluster_name(c) for c in range(CLUSTERS)]
        kubeconfig = backends.kubeconfig({name: kube for name in names})
        shared = [{"name": n, "context": n, "kubeconfig": kubeconfig} for n in names]  # no prometheus_url
        own = [dict(entry, headers={"X-Bench-Cluster": entry["name"]}) for entry in shared]
        overrides = {"prometheus": {"url": prometheus.url, "cluster_label": LABEL}}
        runs = {}
        for variant, clusters in (("one endpoint", shared), ("one endpoint per cluster", own)):
            config = write_config(opts.workdir / f"{variant.replace(' ', '-')}.yaml", clusters, overrides=overrides)
            log(f"fleet-endpoint: scanning {CLUSTERS} clusters, {variant}")
            runs[variant] = _child(config, opts.workdir / f"{variant.replace(' ', '-')}.db", prometheus.eval_time)
            log(f"fleet-endpoint: {variant}: {runs[variant]}")
    return _rows(runs)


def _rows(runs: dict[str, dict]) -> list[Result]:
    expected = CLUSTERS * (SERVICES - SERVICES * BUSY_OF_TEN // 10)
    fleet = {"clusters": CLUSTERS, "services_per_cluster": SERVICES, "idle_expected": expected}
    rows = []
    for variant, run in runs.items():
        problem = None
        if run["idle"] != expected or run["skipped"] or run["misattributed"]:
            problem = (f"found {run['idle']} idle (expected {expected}), {run['skipped']} clusters skipped, "
                       f"{run['misattributed']} clusters with the wrong idle set")
        details = {**fleet, **run, **({"problem": problem} if problem else {})}
        calls = {"promql": run["queries"], "kubernetes": run["kube_calls"]}
        if variant == "one endpoint":
            rows.append(Result.at_most(f"fleet endpoint: PromQL per scan, {CLUSTERS} clusters, {variant}",
                                       run["queries"], "queries", TARGET_QUERIES, calls=calls, details=details))
            if problem:
                rows[-1].met = False
        else:
            rows.append(Result(f"fleet endpoint: PromQL per scan, {CLUSTERS} clusters, {variant}", run["queries"],
                               "queries", calls=calls, details=details))
        rows.append(Result(f"fleet endpoint: idle scan wall time, {variant}", run["seconds"], "s", calls=calls,
                           details={"cold_seconds": run["cold_seconds"], "prometheus_seconds": run["prometheus_seconds"],
                                    **fleet}))
        rows.append(Result(f"fleet endpoint: peak RSS of the bot, {variant}", run["vmhwm_mb"], "MB",
                           details={"rss_mb": run["vmrss_mb"], **fleet}))
    return rows


def _child(config: str, db: object, at: datetime) -> dict:
    """Scan in a fresh interpreter that holds only the bot, so VmHWM is the bot's peak."""
    result = subprocess.run([sys.executable, "-m", "bench.fleet_endpoint", config, str(db), at.isoformat()],
                            cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"the scan process failed (rc={result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _scan(config: str, db: str, at_text: str) -> dict:
    from bot.foundation.config import Secrets, load_settings
    from bot.foundation.context import build_context
    from bot.foundation.kube import NAMESPACES
    from bot.idle.scan import scan_fleet

    at = datetime.fromisoformat(at_text).astimezone(timezone.utc)
    settings = load_settings(config)
    ctx = build_context(settings, Secrets.from_env({}), db, clock=lambda: at, backend_timeout=120.0)
    names = [c.name for c in settings.clusters]
    started = time.perf_counter()
    scan_fleet(ctx, names, at)  # cold: kubeconfig parsed, connections opened
    cold = time.perf_counter() - started
    for name in names:
        ctx.kube.list(name, NAMESPACES)
    requests_before = sum(ctx.traffic.requests.values())
    calls_before = sum(ctx.kube.calls.values())
    waited = [0.0]
    ask = ctx.traffic.query_many

    def timed(*args, **kwargs):  # how much of the scan is Prometheus (the rest: Kubernetes lists, matching)
        t0 = time.perf_counter()
        try:
            return ask(*args, **kwargs)
        finally:
            waited[0] += time.perf_counter() - t0

    ctx.traffic.query_many = timed
    started = time.perf_counter()
    fleet = scan_fleet(ctx, names, at)
    seconds = time.perf_counter() - started
    misattributed = 0
    for scan in fleet.scans:
        c = int(scan.cluster.split("-")[1])
        expected = {f"svc-{i:04d}" for i in range(SERVICES) if (i + c) % 10 >= BUSY_OF_TEN}
        misattributed += {s.name for s in scan.idle} != expected
    memory = {}
    with open("/proc/self/status", encoding="utf-8") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                memory[key] = round(int(rest.split()[0]) / 1024, 1)
    ctx.store.close()
    ctx.outbox.stop()
    return {"queries": sum(ctx.traffic.requests.values()) - requests_before,
            "kube_calls": sum(ctx.kube.calls.values()) - calls_before,
            "seconds": round(seconds, 3), "cold_seconds": round(cold, 3), "prometheus_seconds": round(waited[0], 3),
            "idle": sum(len(s.idle) for s in fleet.scans), "skipped": sum(1 for s in fleet.scans if s.skipped),
            "kube_errors": len(fleet.kube_errors), "misattributed": misattributed,
            "vmhwm_mb": memory.get("VmHWM"), "vmrss_mb": memory.get("VmRSS")}


if __name__ == "__main__":
    print(json.dumps(_scan(*sys.argv[1:4])))
