"""Dependency check for one service (what `/service deps` and `/service delete` run after ack):
seconds and Kubernetes calls, in a cluster holding `--sizes` Services (each with a Deployment
and Endpoints) and 1.5x as many CronJobs that call them by their cluster DNS names.

The timed part is the command's own path: bot.services.find_service (which cluster and namespace
hold the name) then bot.dependencies.check. The real Prometheus answers the callers query; it
holds hourly Istio counters for the first 50 services of the fleet over 7 days, the same data at
every size (the caller query selects one service by label, so Prometheus's size is not what
this measures). The checked service has a caller (frontend in namespace web) and two CronJobs
that call it, so the report is a full one with blockers. Targets: < 1 s at every size, and the
same number of Kubernetes list calls at every size. Each size is checked REPEATS times on the same
warm bot; the row shows the median, details the fastest and slowest.

Then the same at fleet scale: 16 clusters of `--sizes` Services each. The checked service lives in
cluster-00 (its own fake); the other 15 clusters are one fake behind 15 kubeconfig contexts holding
as many Services of other names, so `find_service` asks all 16 (one field-selector list each) and
finds exactly one. Targets: < 1 s, and the same list calls at every size.
"""
from __future__ import annotations

import statistics
import time

from bench._features import profile_call, wants_profile, warm
from bench.common import Backends, FakeClock, Options, Result, Scaling, Step, benchmark, in_process_bot, log
from bench.fleet import fleet, istio_traffic, seed_cronjobs, seed_services

CLUSTER = "prod-a"
TARGET_SECONDS = 1.0
REPEATS = 5  # one check takes ~1 s at 5,000: the median of a few is a steadier number than one sample
CRONJOBS_PER_SERVICE = 1.5
TRAFFIC_SERVICES = 50
CHECKED = 3  # fleet index of the checked service: busy in istio_traffic (i % 10 < 6)
FLEET_CLUSTERS = 16


@benchmark("dependency-check", order=40)
def dependency_check(opts: Options) -> list[Result]:
    with Backends(opts.workdir) as backends:
        backends.slack_fake()
        log(f"dependency-check: backfilling 7 days of hourly Istio counters for {TRAFFIC_SERVICES} services")
        prometheus = backends.prometheus(istio_traffic(fleet(TRAFFIC_SERVICES)))
        rows = []
        for clusters in (1, FLEET_CLUSTERS):
            rows += _sizes(opts, backends, prometheus, clusters)
    return rows


def _sizes(opts: Options, backends: Backends, prometheus, clusters: int) -> list[Result]:
    from bot.deletion.dependencies import check
    from bot.foundation.services import find_service

    label = "dependency check" if clusters == 1 else f"dependency check, {clusters} clusters"
    scaling = Scaling(label, opts.sizes)
    problems: dict[int, list[str]] = {}
    profile: dict | None = None
    at = prometheus.eval_time
    slack = backends.slack
    for size in scaling.sizes:
        kube = backends.kube_fake()
        services = seed_services(kube, size)
        cronjobs = seed_cronjobs(kube, round(CRONJOBS_PER_SERVICE * size), services)
        target = services[min(CHECKED, size - 1)]
        expected_batches = sum(1 for i in range(cronjobs) if i % size == services.index(target))
        fakes = {CLUSTER if clusters == 1 else "cluster-00": kube}
        others = None
        if clusters > 1:  # the rest of the fleet: as many Services of other names, behind one fake
            others = backends.kube_fake()
            seed_cronjobs(others, round(CRONJOBS_PER_SERVICE * size), seed_services(others, size, prefix="other"))
            fakes.update({f"cluster-{i:02d}": others for i in range(1, clusters)})
        checked_cluster = next(iter(fakes))
        bot = in_process_bot(opts.workdir / f"bot{clusters}x{size}", slack, fakes, serve=False,
                             prometheus={name: prometheus.url for name in fakes}, clock=FakeClock(at))
        ctx = bot.ctx

        def run_check():
            found, errors = find_service(ctx, target.name)
            if errors or len(found) != 1:
                raise RuntimeError(f"find_service({target.name!r}) gave {found} / {errors}")
            return check(ctx, found[0].cluster, found[0].namespace, found[0].name)

        try:
            for name in fakes:
                warm(ctx, name, at)
            samples, costs = [], []
            fake_list = [kube] + ([others] if others else [])
            for _ in range(REPEATS):
                for fake in fake_list:
                    fake.clear_requests()
                kube_before = sum(ctx.kube.calls[name] for name in fakes)
                queries_before = ctx.traffic.queries[checked_cluster]
                started = time.perf_counter()
                report = run_check()
                samples.append(time.perf_counter() - started)
                requests = [r for fake in fake_list for r in fake.requests]
                # A list longer than the gateway's page (limit=5000) takes one more request per
                # page, each carrying the `continue` token: count lists and pages apart.
                lists = sum(1 for r in requests if r.method == "GET" and not r.query.get("continue"))
                costs.append({"kubernetes": sum(ctx.kube.calls[name] for name in fakes) - kube_before, "lists": lists,
                              "promql": ctx.traffic.queries[checked_cluster] - queries_before})
            step = Step(size, seconds=statistics.median(samples), calls=costs[0])
            scaling.steps.append(step)
            issues = []
            if any(c != costs[0] for c in costs):
                issues.append(f"calls differ between repeats: {costs}")
            if not report.callers:
                issues.append("no Istio callers found; the data has frontend/web calling it")
            if len(report.batches) != expected_batches:
                issues.append(f"{len(report.batches)} CronJobs reported, {expected_batches} call it")
            if issues:
                problems[size] = issues
                log(f"{label} @ {size}: " + "; ".join(issues))
            step.details = {"clusters": clusters, "services_per_cluster": size, "cronjobs": cronjobs,
                            "checked": f"{checked_cluster}/{target.namespace}/{target.name}",
                            "repeats": REPEATS, "seconds_min": round(min(samples), 4),
                            "seconds_max": round(max(samples), 4),
                            "callers": len(report.callers), "batches": len(report.batches),
                            "blockers": len(report.blockers), "deleted_along": len(report.deleted),
                            "notes": report.notes,
                            "requests": [r.path + (" (next page)" if r.query.get("continue") else "")
                                         for r in requests]}
            grew = scaling.steps[0].calls["lists"] != step.calls["lists"]
            missed = step.seconds >= TARGET_SECONDS or bool(issues) or grew
            if size == scaling.sizes[-1] and wants_profile(opts, missed):
                profile = profile_call(opts, f"dependency-check-{clusters}x{size}", run_check)
        finally:
            bot.stop()
            kube.stop()
            if others is not None:
                others.stop()
    log(scaling.table())

    rows = scaling.results(unit="s")
    base = scaling.steps[0].calls if scaling.steps else {}
    for row, step in zip(rows, scaling.steps):
        same = all(step.calls[k] == base[k] for k in ("lists", "promql"))
        row.target = f"< {TARGET_SECONDS:g} s, same lists at every size"
        row.met = step.seconds < TARGET_SECONDS and same and step.size not in problems
        if not same:
            row.details["problem"] = f"calls {step.calls} differ from {base} at size {scaling.steps[0].size}"
        if step.size in problems:
            row.details["problem"] = "; ".join(problems[step.size])
    if profile and rows:
        rows[-1].details["profile"] = profile
    return rows
