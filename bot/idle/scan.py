"""Idle-service detection: Services whose workloads reserve CPU and memory but saw no Istio traffic.

A scan costs the same however many services there are: one list per resource kind and cluster
(Services, Endpoints, Deployments, StatefulSets, Rollouts) and two PromQL queries per query endpoint —
mesh health, then every traffic signal of every service at once. Clusters behind one shared endpoint
(Thanos, Mimir...) share those two queries: the answers are grouped by the cluster label
(bot/foundation/traffic.py), so 100 clusters cost 2 queries, not 200. `scan_cluster_naive` asks
Prometheus once per service instead; it exists so the benchmark can report the ratio, and it must
find the same idle set.

Absence of data is never evidence of idleness: when Prometheus cannot answer, answers in part, or
holds no fresh Istio series for the cluster, that cluster is skipped and nothing in it is flagged.
"""
from __future__ import annotations

import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable

from bot.foundation.context import Context
from bot.foundation.decoding import collector_paused
from bot.foundation.kube import (DEPLOYMENTS, ENDPOINTS, ROLLOUTS, SERVICES, STATEFULSETS, KubeError, annotations, labels,
                      meta, parse_time, selector_matches)
from bot.foundation.resources import pod_requests
from bot.foundation.traffic import MetricsUnavailable, Sample, promql_duration

OPT_OUT_ANNOTATION = "deckhand.io/idle-alert"
SIDECAR_INJECT = "sidecar.istio.io/inject"

# Verdicts, one per scanned Service.
IDLE = "idle"
NO_ENDPOINTS = "no endpoints"
BUSY = "busy"
YOUNG = "younger than the window"
OPTED_OUT = "opted out"
EXCLUDED = "excluded namespace"
NO_WORKLOADS = "no workloads"
SCALED_TO_ZERO = "scaled to zero"
OUTSIDE_MESH = "outside the mesh"
SHARED = "workloads serve another service"

# Istio counters reported by the destination's sidecar; the source side would count a call twice.
COUNTERS = (("requests", "istio_requests_total"),
            ("tcp_connections", "istio_tcp_connections_opened_total"),
            ("tcp_bytes", "istio_tcp_received_bytes_total"))
BORN_SERIES = (("new_request_series", "istio_requests_total"),
               ("new_tcp_series", "istio_tcp_connections_opened_total"))
BY_SERVICE = "destination_service_namespace, destination_service_name"
# How far before the window's start a series may last have been sampled and still count as "already
# there": covers scrape gaps and backfilled data with hourly samples.
BORN_LOOKBACK = timedelta(hours=1)
# The health guard wants Istio samples this recent: if scraping broke days ago, "no traffic" means nothing.
FRESHNESS = timedelta(days=1)
# Clusters listed at once by a fleet scan. Each holds one decoded list at a time (~30 MB for 5,000
# Deployments): 6 keep a 16 × 5,000 scan under 250 MB peak RSS, 8 went past 300 MB for no gain in time
# (bench/idle_fleet.py: 8.2 s with 6, 9.6 s with 8, 9.8 s with 4).
INVENTORY_WORKERS = 6


@dataclass(frozen=True, slots=True)
class Workload:
    kind: str
    name: str
    replicas: int
    cpu_cores: float  # requests × replicas
    memory_bytes: int

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(slots=True)  # a fleet scan holds 80,000 of these
class ScannedService:
    """One Service with the workloads its selector matches and what the scan concluded about it."""

    cluster: str
    namespace: str
    name: str
    team: str | None
    created: datetime | None
    workloads: tuple[Workload, ...] = ()
    ready_endpoints: bool = False
    verdict: str = BUSY
    traffic: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.namespace}/{self.name}"

    @property
    def replicas(self) -> int:
        return sum(w.replicas for w in self.workloads)

    @property
    def reclaimable_cpu(self) -> float:
        return sum(w.cpu_cores for w in self.workloads)

    @property
    def reclaimable_memory(self) -> int:
        return sum(w.memory_bytes for w in self.workloads)


@dataclass
class ClusterScan:
    cluster: str
    at: datetime
    window: timedelta
    services: list[ScannedService] = field(default_factory=list)
    skipped_reason: str | None = None  # set when metrics were unavailable: nothing is concluded
    queries: int = 0
    kube_calls: int = 0
    seconds: float = 0.0  # in a fleet scan, this cluster's inventory only (FleetScan.seconds: the run)

    @property
    def skipped(self) -> bool:
        return self.skipped_reason is not None

    @property
    def idle(self) -> list[ScannedService]:
        return [s for s in self.services if s.verdict == IDLE]

    @property
    def no_endpoints(self) -> list[ScannedService]:
        return [s for s in self.services if s.verdict == NO_ENDPOINTS]

    def verdicts(self) -> Counter:
        return Counter(s.verdict for s in self.services)

    def summary(self) -> str:
        if self.skipped:
            return f"{self.cluster}: skipped: metrics unavailable ({self.skipped_reason})"
        counts = self.verdicts()
        return (f"{self.cluster}: {counts[IDLE]} idle, {counts[NO_ENDPOINTS]} without endpoints, "
                f"{len(self.services)} services scanned")


# -- PromQL ---------------------------------------------------------------------------------------
def _tagged(expr: str, signal: str) -> str:
    # label_replace with an empty source label stamps a constant label, so `or` can carry several
    # aggregations in one answer without their identical label sets colliding.
    return f'label_replace({expr}, "signal", "{signal}", "", "")'


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def traffic_query(window: timedelta, service: tuple[str, str] | None = None) -> str:
    """Every traffic signal over `window`, per service (or for one `(namespace, name)`)."""
    match = 'reporter="destination"'
    if service:
        match += (f',destination_service_namespace="{_quote(service[0])}"'
                  f',destination_service_name="{_quote(service[1])}"')
    span, lookback = promql_duration(window), promql_duration(BORN_LOOKBACK)
    parts = [_tagged(f"sum by ({BY_SERVICE}) (increase({metric}{{{match}}}[{span}]))", signal)
             for signal, metric in COUNTERS]
    # Envoy creates a series at a service's first request, and increase() has no earlier sample to
    # subtract that request from: it reads 0. A series present in the window but absent when the
    # window began was therefore born of traffic inside the window.
    parts += [_tagged(f"count by ({BY_SERVICE}) (last_over_time({metric}{{{match}}}[{span}]) "
                      f"unless last_over_time({metric}{{{match}}}[{lookback}] offset {span}))", signal)
              for signal, metric in BORN_SERIES]
    return "\nor ".join(parts)


def health_query(window: timedelta) -> str:
    span = promql_duration(min(window, FRESHNESS))
    return (f"count(last_over_time(istio_requests_total[{span}])) "
            f"or count(last_over_time(istio_tcp_connections_opened_total[{span}]))")


def signals_by_service(samples: Iterable[Sample]) -> dict[tuple[str, str], dict[str, float]]:
    out: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for sample in samples:
        key = (sample.labels.get("destination_service_namespace", ""),
               sample.labels.get("destination_service_name", ""))
        signal = sample.labels.get("signal", "?")
        out[key][signal] = out[key].get(signal, 0.0) + sample.value
    return out


# -- inventory ------------------------------------------------------------------------------------
def _list_optional(ctx: Context, cluster: str, resource) -> list[dict]:
    """A CRD that is not installed (no Argo Rollouts here) lists as nothing, not as a failure."""
    try:
        return ctx.kube.list(cluster, resource)
    except KubeError as exc:
        if exc.not_found:
            return []
        raise


@dataclass(frozen=True, slots=True)
class _PodTemplate:
    workload: Workload
    namespace: str
    labels: dict
    outside_mesh: bool


def _templates(ctx: Context, cluster: str) -> list[_PodTemplate]:
    """The pod template of every Deployment, StatefulSet and Rollout, one kind at a time: a cluster's
    raw lists are dropped as soon as they are read, so a fleet scan listing several clusters at once
    holds one list per cluster, not three."""
    out = []
    deployment_templates: dict[tuple[str, str], dict] = {}
    for kind, resource in (("Deployment", DEPLOYMENTS), ("StatefulSet", STATEFULSETS), ("Rollout", ROLLOUTS)):
        items = _list_optional(ctx, cluster, resource) if resource is ROLLOUTS else ctx.kube.list(cluster, resource)
        for item in items:
            spec = item.get("spec") or {}
            namespace, name = meta(item).get("namespace", "default"), meta(item).get("name", "?")
            template = spec.get("template")
            ref = spec.get("workloadRef") or {}
            if template is None and ref.get("kind") == "Deployment":
                # Argo Rollouts `workloadRef`: the pod template lives in a Deployment kept at 0 replicas.
                template = deployment_templates.get((namespace, ref.get("name")))
            template = template or {}
            if kind == "Deployment":
                deployment_templates[(namespace, name)] = template
            replicas = spec.get("replicas")
            replicas = 1 if replicas is None else int(replicas)
            cpu, memory = pod_requests(template.get("spec") or {})
            pod_meta = template.get("metadata") or {}
            pod_labels = pod_meta.get("labels") or {}
            inject = str(pod_labels.get(SIDECAR_INJECT, (pod_meta.get("annotations") or {}).get(SIDECAR_INJECT, "")))
            out.append(_PodTemplate(
                workload=Workload(kind, name, replicas, cpu * replicas, memory * replicas),
                namespace=namespace, labels=pod_labels, outside_mesh=inject.lower() == "false"))
        del items
    return out


def inventory(ctx: Context, cluster: str) -> list[ScannedService]:
    """Every Service with the workloads behind it: one list call per resource kind."""
    ready = set()
    for endpoints in ctx.kube.list(cluster, ENDPOINTS):
        if any(subset.get("addresses") for subset in endpoints.get("subsets") or []):
            ready.add((meta(endpoints).get("namespace"), meta(endpoints).get("name")))
    # Index pod templates by (namespace, label, value): matching 5,000 selectors against 5,000
    # templates pairwise would be 25 million comparisons.
    index: dict[tuple[str, str, str], list[_PodTemplate]] = defaultdict(list)
    for template in _templates(ctx, cluster):
        for key, value in template.labels.items():
            index[(template.namespace, key, str(value))].append(template)
    services = ctx.kube.list(cluster, SERVICES)
    team_label = ctx.settings.labels.team
    scanned = []
    for item in services:
        namespace, name = meta(item).get("namespace", "default"), meta(item).get("name", "?")
        selector = (item.get("spec") or {}).get("selector") or {}
        matched: list[_PodTemplate] = []
        if selector:
            buckets = [index.get((namespace, k, str(v)), []) for k, v in selector.items()]
            matched = [t for t in min(buckets, key=len) if selector_matches(selector, t.labels)]
        team = labels(item).get(team_label) or next(
            (t.labels.get(team_label) for t in matched if t.labels.get(team_label)), None)
        service = ScannedService(cluster=cluster, namespace=namespace, name=name, team=team,
                                 created=parse_time(meta(item).get("creationTimestamp")),
                                 workloads=tuple(t.workload for t in matched),
                                 ready_endpoints=(namespace, name) in ready)
        service.verdict = _static_verdict(ctx, item, service, matched)
        scanned.append(service)
    return scanned


def _static_verdict(ctx: Context, item: dict, service: ScannedService, matched: list[_PodTemplate]) -> str:
    """What can be decided without traffic; BUSY here means "ask Prometheus"."""
    if service.namespace in ctx.settings.idle.exclude_namespaces:
        return EXCLUDED
    if str(annotations(item).get(OPT_OUT_ANNOTATION, "")).strip().lower() == "false":
        return OPTED_OUT
    if not matched:
        return NO_WORKLOADS
    if service.replicas <= 0:
        return SCALED_TO_ZERO
    if all(t.outside_mesh for t in matched):
        return OUTSIDE_MESH  # no sidecar, so no destination metrics: silence would prove nothing
    return BUSY


def _conclude(services: list[ScannedService], signals: dict, at: datetime, window: timedelta) -> None:
    born_after = at - window
    for service in services:
        if service.verdict != BUSY:
            continue
        service.traffic = dict(signals.get((service.namespace, service.name), {}))
        if any(value > 0 for value in service.traffic.values()):
            continue
        if service.created is None or service.created > born_after:
            service.verdict = YOUNG
        elif not service.ready_endpoints:
            service.verdict = NO_ENDPOINTS
        else:
            service.verdict = IDLE
    # Deleting an idle Service frees nothing while its pods also serve a Service that is in use
    # (a StatefulSet's headless Service beside its client-facing one, for instance).
    in_use: dict[tuple[str, str], str] = {}
    for service in services:
        if service.verdict not in (IDLE, NO_ENDPOINTS, EXCLUDED, NO_WORKLOADS, SCALED_TO_ZERO):
            for workload in service.workloads:
                in_use[(service.namespace, workload.ref)] = service.name
    for service in services:
        if service.verdict == IDLE and any((service.namespace, w.ref) in in_use for w in service.workloads):
            service.verdict = SHARED


# -- scans ----------------------------------------------------------------------------------------
@dataclass
class FleetScan:
    """Every cluster's scan, the clusters Kubernetes could not list, and what the whole run cost."""

    scans: list[ClusterScan] = field(default_factory=list)
    kube_errors: dict[str, KubeError] = field(default_factory=dict)
    queries: int = 0   # HTTP queries sent to all endpoints together
    seconds: float = 0.0


def scan_fleet(ctx: Context, clusters: Iterable[str], at: datetime) -> FleetScan:
    """Classify every Service of every cluster: two PromQL queries per query endpoint, however many
    clusters share it (health, then every signal of every service of all of them, grouped by the
    cluster label), and five list calls per cluster.

    A cluster whose endpoint cannot answer, answered in part, or holds no fresh Istio series under its
    label is skipped (`skipped_reason`), the others are unaffected. Kubernetes failures are collected
    per cluster in `kube_errors`.
    """
    names = list(dict.fromkeys(clusters))
    window = ctx.settings.idle.window
    started = time.perf_counter()
    requests_before = sum(ctx.traffic.requests.values())
    fleet = FleetScan()
    scans = {name: ClusterScan(cluster=name, at=at, window=window) for name in names}
    before = {name: (ctx.traffic.queries[name], ctx.kube.calls[name]) for name in names}
    clock = {name: 0.0 for name in names}

    healthy = []
    for name, reason in mesh_reporting(ctx, names, at, window).items():
        scans[name].skipped_reason = reason
        if reason is None:
            healthy.append(name)
    def take_inventory(name: str) -> None:
        t0 = time.perf_counter()
        try:
            # Half a million short-lived, cycle-free objects per cluster: see bot/foundation/decoding.py.
            with collector_paused():
                scans[name].services = inventory(ctx, name)
        except KubeError as exc:
            fleet.kube_errors[name] = exc
        clock[name] += time.perf_counter() - t0

    # Clusters are listed side by side: each waits on its own API server (and a 5,000-item list takes
    # that server a while to serialize), so one slow cluster does not add its time to every other's.
    with ThreadPoolExecutor(max_workers=min(INVENTORY_WORKERS, len(healthy)) or 1,
                            thread_name_prefix="idle-inventory") as pool:
        list(pool.map(take_inventory, healthy))
    listed = [name for name in healthy if name not in fleet.kube_errors]
    answers = ctx.traffic.query_many(listed, traffic_query(window), at) if listed else {}
    for name in listed:
        answer, scan = answers[name], scans[name]
        if isinstance(answer, MetricsUnavailable):
            scan.skipped_reason, scan.services = answer.reason, []
        else:
            _conclude(scan.services, signals_by_service(answer), at, window)
    for name in names:
        scan = scans[name]
        scan.queries = ctx.traffic.queries[name] - before[name][0]
        scan.kube_calls = ctx.kube.calls[name] - before[name][1]
        scan.seconds = clock[name] if len(names) > 1 else time.perf_counter() - started
        if name not in fleet.kube_errors:
            fleet.scans.append(scan)
    fleet.queries = sum(ctx.traffic.requests.values()) - requests_before
    fleet.seconds = time.perf_counter() - started
    return fleet


def mesh_reporting(ctx: Context, clusters: list[str], at: datetime, window: timedelta) -> dict[str, str | None]:
    """Per cluster: None when its endpoint holds fresh Istio series for it, else why not."""
    span = promql_duration(min(window, FRESHNESS))
    out: dict[str, str | None] = {}
    for name, answer in ctx.traffic.query_many(clusters, health_query(window), at).items():
        if isinstance(answer, MetricsUnavailable):
            out[name] = answer.reason
        elif not answer or answer[0].value <= 0:
            route = ctx.traffic.route(name)
            out[name] = (f"no Istio series under {route.label}=\"{route.label_value}\" in the last {span}"
                         f" at {route.endpoint.display} (is its Prometheus federated there, is cluster_label_value"
                         " right?)" if route.shared else f"no Istio series in Prometheus in the last {span}")
        else:
            out[name] = None
    return out


def scan_cluster(ctx: Context, cluster: str, at: datetime) -> ClusterScan:
    """Classify every Service of `cluster` at `at`: two PromQL queries and five list calls in all.

    Raises KubeError when Kubernetes cannot be listed; metrics trouble sets `skipped_reason` instead.
    """
    fleet = scan_fleet(ctx, [cluster], at)
    if cluster in fleet.kube_errors:
        raise fleet.kube_errors[cluster]
    return fleet.scans[0]


def scan_cluster_naive(ctx: Context, cluster: str, at: datetime) -> ClusterScan:
    """The same classification with one traffic query per candidate service (benchmark baseline)."""
    window = ctx.settings.idle.window
    started = time.perf_counter()
    queries_before, calls_before = ctx.traffic.queries[cluster], ctx.kube.calls[cluster]
    scan = ClusterScan(cluster=cluster, at=at, window=window)
    try:
        scan.skipped_reason = mesh_reporting(ctx, [cluster], at, window)[cluster]
        if not scan.skipped:
            scan.services = inventory(ctx, cluster)
            signals = {}
            for service in scan.services:
                if service.verdict == BUSY:
                    samples = ctx.traffic.query(cluster, traffic_query(window, (service.namespace, service.name)), at)
                    signals.update(signals_by_service(samples))
            _conclude(scan.services, signals, at, window)
    except MetricsUnavailable as exc:
        scan.skipped_reason, scan.services = exc.reason, []
    finally:
        scan.queries = ctx.traffic.queries[cluster] - queries_before
        scan.kube_calls = ctx.kube.calls[cluster] - calls_before
        scan.seconds = time.perf_counter() - started
    return scan
