"""Who still depends on a service, with evidence, and what deleting it would remove.

`check(ctx, cluster, namespace, service)` makes one list call per kind per cluster (never a get
per object), so its cost does not grow with the number of CronJobs, routes or ConfigMaps, plus
one Prometheus query for callers (and one more to tell "no callers" from "no Istio data").

Unknowns are blockers: when Prometheus cannot answer, or holds no Istio data for the cluster,
or the service's pods run without a sidecar, traffic is unknown and the report is blocked
(DevOps may override with a written reason; bot/deletion/lifecycle.py keeps that decision).
A Service in a protected namespace (`protected_namespaces` in the config) is blocked outright:
deckhand never deletes anything there, whoever asks, and no override waives it.

Every object it would delete is recorded with its identity (uid and resourceVersion as read), so
a request stores exactly what the approver is shown and approval can compare identities.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta

from bot.foundation.context import Context
from bot.foundation.kube import (CONFIGMAPS, CRONJOBS, DEPLOYMENTS, HPAS, HTTPROUTES, INGRESSES, JOBS, PDBS, ROLLOUTS,
                      SECRETS, SERVICES, STATEFULSETS, KubeError, Resource, annotations, labels, meta,
                      selector_matches)
from bot.deletion.references import (configmap_refs, dns_searches_reach, host_forms, httproute_backends, ingress_backends,
                            mention_in_pod, pod_spec, vs_destinations)
from bot.foundation.resources import workload_reserved
from bot.foundation.traffic import MetricsUnavailable, promql_duration

# Deletion order: stop routing first, then what runs, then the Service and what only it used.
ROUTING, WORKLOADS, REST = 1, 2, 3
PHASES = {ROUTING: "Stop routing", WORKLOADS: "Workloads and batches", REST: "Service and the rest"}
COUNTERS = (("requests", "istio_requests_total"), ("tcp_connections", "istio_tcp_connections_opened_total"),
            ("tcp_bytes", "istio_tcp_received_bytes_total"))
# If the newest Istio sample is older than this, scraping is broken and "no callers" means nothing.
MESH_FRESHNESS = timedelta(days=1)


class ServiceMissing(Exception):
    """The Service is not (or no longer) in the cluster; `str()` is fit for Slack."""


@dataclass(frozen=True)
class Caller:
    workload: str
    namespace: str
    requests: float = 0.0
    tcp_connections: float = 0.0
    tcp_bytes: float = 0.0
    born: bool = False  # its series appeared inside the window: it called, increase() just can't count it

    @property
    def unknown(self) -> bool:
        return self.workload in ("", "unknown")

    @property
    def key(self) -> str:
        return f"caller:{self.namespace}/{self.workload}"

    @property
    def evidence(self) -> str:
        parts = []
        if self.requests >= 0.5:
            parts.append(f"{round(self.requests):,} requests")
        if self.tcp_connections >= 0.5:
            parts.append(f"{round(self.tcp_connections):,} TCP connections ({_size(self.tcp_bytes)} received)")
        elif self.tcp_bytes >= 1:
            parts.append(f"{_size(self.tcp_bytes)} received over TCP")
        return ", ".join(parts) or ("first called inside the window (a new Istio series; increase() can't count "
                                    "its first requests)")


@dataclass(frozen=True)
class Finding:
    """A Kubernetes object that matters to the deletion, and why."""

    kind: str
    namespace: str
    name: str
    evidence: str = ""
    api: str = ""  # group/version/plural, so a stored plan can be deleted after a restart
    phase: int = 0
    uid: str = ""               # identity as read: a re-created object of the same name has another uid
    resource_version: str = ""

    @property
    def subject(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.namespace}/{self.name}"

    @property
    def resource(self) -> Resource:
        group, version, plural = self.api.split("/")
        return Resource(group, version, plural, self.kind)


@dataclass(frozen=True)
class Blocker:
    kind: str  # caller | traffic | batch | route | shared | protected | plan
    key: str
    subject: str
    evidence: str


@dataclass
class DependencyReport:
    cluster: str
    namespace: str
    service: str
    team: str | None
    app: str
    window: str
    checked_at: str
    callers: list[Caller] = field(default_factory=list)
    traffic_unknown: str | None = None
    batches: list[Finding] = field(default_factory=list)
    routes: list[Finding] = field(default_factory=list)
    shared: list[Finding] = field(default_factory=list)
    deleted: list[Finding] = field(default_factory=list)
    cpu_cores: float = 0.0
    memory_bytes: int = 0
    notes: list[str] = field(default_factory=list)
    protected: str | None = None      # why nothing in this namespace may be deleted, when it is protected
    # The GitOps folder and files a removal PR would delete, recorded when the deletion is requested
    # (None: not looked up, e.g. a request stored before deckhand recorded them).
    gitops_folder: str | None = None
    gitops_files: list[str] | None = None

    @property
    def blockers(self) -> list[Blocker]:
        out = [Blocker("protected", f"protected:{self.namespace}", f"Namespace {self.namespace}", self.protected)] \
            if self.protected else []
        out += [Blocker("traffic", "traffic:unknown", "Inbound traffic unknown", self.traffic_unknown)] \
            if self.traffic_unknown else []
        out += [Blocker("caller", c.key, f"{c.namespace}/{c.workload}" if not c.unknown else "unknown caller",
                        c.evidence) for c in self.callers]
        out += [Blocker("batch", f.key, f"{f.kind} {f.namespace}/{f.name}", f.evidence) for f in self.batches]
        out += [Blocker("route", f.key, f"{f.kind} {f.namespace}/{f.name}", f.evidence) for f in self.routes]
        out += [Blocker("shared", f.key, f"{f.kind} {f.namespace}/{f.name}", f.evidence) for f in self.shared]
        return out

    def blockers_beyond(self, overridden: bool) -> list[Blocker]:
        """Blockers that still count: an override only ever waives unknown traffic."""
        return [b for b in self.blockers if not (overridden and b.kind == "traffic")]

    @property
    def blocked(self) -> bool:
        return bool(self.blockers)

    @property
    def only_traffic_unknown(self) -> bool:
        return bool(self.traffic_unknown) and all(b.kind == "traffic" for b in self.blockers)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DependencyReport":
        data = dict(data)
        data["callers"] = [Caller(**c) for c in data.get("callers") or []]
        for name in ("batches", "routes", "shared", "deleted"):
            data[name] = [Finding(**f) for f in data.get(name) or []]
        return cls(**data)


def _api(resource: Resource) -> str:
    return f"{resource.group}/{resource.version}/{resource.plural}"


def _finding(resource: Resource, obj: dict, evidence: str = "", phase: int = 0) -> Finding:
    m = meta(obj)
    return Finding(resource.kind, m.get("namespace", ""), m.get("name", ""), evidence, _api(resource), phase,
                   str(m.get("uid") or ""), str(m.get("resourceVersion") or ""))


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _list_optional(ctx: Context, cluster: str, resource: Resource, notes: list[str], **kwargs) -> list[dict]:
    """CRDs (Istio, Gateway API, Argo Rollouts) may not be installed: a 404 means 'none here'."""
    try:
        return ctx.kube.list(cluster, resource, **kwargs)
    except KubeError as exc:
        if exc.status == 404:
            notes.append(f"{resource.kind} API ({resource.group}/{resource.version}) is not installed in {cluster}.")
            return []
        raise


# -- the check --------------------------------------------------------------------------------
def check(ctx: Context, cluster: str, namespace: str, service: str) -> DependencyReport:
    """The full dependency report. Raises ServiceMissing, or KubeError when the cluster can't be read."""
    settings = ctx.settings
    app_key, team_key = settings.labels.app, settings.labels.team
    services = ctx.kube.list(cluster, SERVICES, namespace=namespace)
    svc = next((s for s in services if meta(s).get("name") == service), None)
    if svc is None:
        raise ServiceMissing(f"There is no Service `{service}` in `{cluster}/{namespace}` any more.")
    selector = (svc.get("spec") or {}).get("selector") or {}
    app = labels(svc).get(app_key) or selector.get(app_key) or service
    window = settings.idle.window
    report = DependencyReport(cluster=cluster, namespace=namespace, service=service,
                              team=labels(svc).get(team_key), app=app, window=promql_duration(window),
                              checked_at=ctx.store.now())
    if settings.is_protected(namespace):
        report.protected = (f"`{namespace}` is a protected namespace (`protected_namespaces` in deckhand's config): "
                            "deckhand never deletes or changes anything there, whoever asks")
    notes = report.notes
    deleted: list[Finding] = []

    # Workloads the selector matches; another Service selecting the same pods keeps them in use.
    workloads: list[tuple[Resource, dict]] = []
    for resource in (DEPLOYMENTS, STATEFULSETS, ROLLOUTS):
        for obj in _list_optional(ctx, cluster, resource, notes, namespace=namespace):
            if selector_matches(selector, _template_labels(obj)):
                workloads.append((resource, obj))
    for resource, obj in workloads:
        pod_labels = _template_labels(obj)
        others = [meta(s).get("name") for s in services
                  if meta(s).get("name") != service and selector_matches((s.get("spec") or {}).get("selector"), pod_labels)]
        if others:
            report.shared.append(_finding(resource, obj, "also selected by Service " + ", ".join(sorted(others))))
        cpu, memory = workload_reserved(obj)
        report.cpu_cores += cpu
        report.memory_bytes += memory
        deleted.append(_finding(resource, obj, _replicas_text(obj), WORKLOADS))
    workload_names = {meta(o).get("name") for _, o in workloads}

    configmaps = _check_batches(ctx, cluster, namespace, service, app, report, deleted)
    _check_routes(ctx, cluster, namespace, service, report, deleted)
    deleted.append(_finding(SERVICES, svc, "", REST))
    _deleted_along(ctx, cluster, namespace, app, workloads, configmaps, deleted)
    report.deleted = sorted(deleted, key=lambda f: f.phase)  # stable: keeps discovery order per phase

    no_sidecar = [meta(o).get("name") for _, o in workloads
                  if str(annotations((o.get("spec") or {}).get("template") or {})
                         .get("sidecar.istio.io/inject", "")).lower() == "false"]
    _check_traffic(ctx, cluster, namespace, service, window, workload_names, no_sidecar, report)
    return report


def _template_labels(obj: dict) -> dict:
    return (((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def _replicas_text(obj: dict) -> str:
    replicas = (obj.get("spec") or {}).get("replicas")
    return f"{1 if replicas is None else replicas} replicas"


def _check_batches(ctx: Context, cluster: str, namespace: str, service: str, app: str,
                   report: DependencyReport, deleted: list[Finding]) -> list[dict]:
    """Owned batches go along; others that mention the host block. Returns the ConfigMaps read."""
    app_key = ctx.settings.labels.app
    cronjobs = ctx.kube.list(cluster, CRONJOBS)
    jobs = ctx.kube.list(cluster, JOBS)
    cronjob_keys = {(meta(c).get("namespace"), meta(c).get("name")) for c in cronjobs}
    batches: list[tuple[Resource, dict]] = [(CRONJOBS, c) for c in cronjobs]
    for job in jobs:
        owners = meta(job).get("ownerReferences") or []
        # A CronJob's Jobs go with it (foreground deletion) and run its template: judge the CronJob.
        if any(o.get("kind") == "CronJob" and (meta(job).get("namespace"), o.get("name")) in cronjob_keys for o in owners):
            continue
        batches.append((JOBS, job))

    owned, foreign = [], []
    for resource, obj in batches:
        is_owned = meta(obj).get("namespace") == namespace and labels(obj).get(app_key) == app
        (owned if is_owned else foreign).append((resource, obj))
    for resource, obj in owned:
        deleted.append(_finding(resource, obj, "labelled with the service's app", WORKLOADS))

    wanted: set[tuple[str, str]] = set()
    for resource, obj in foreign:
        for ref in configmap_refs(pod_spec(resource.kind, obj)):
            wanted.add((meta(obj).get("namespace"), ref[0]))
    # One ConfigMap list per check: cluster-wide when a batch needs one read, else only this namespace.
    if wanted:
        configmaps = ctx.kube.list(cluster, CONFIGMAPS)
    else:
        configmaps = ctx.kube.list(cluster, CONFIGMAPS, namespace=namespace, label_selector=f"{app_key}={app}")
    by_key = {(meta(c).get("namespace"), meta(c).get("name")): c for c in configmaps}
    for resource, obj in foreign:
        ns = meta(obj).get("namespace")
        pod = pod_spec(resource.kind, obj)
        forms = host_forms(service, namespace, bare=ns == namespace or dns_searches_reach(pod, namespace))
        evidence = mention_in_pod(pod, forms, ns, by_key)
        if evidence:
            report.batches.append(_finding(resource, obj, evidence))
    return configmaps


def _check_routes(ctx: Context, cluster: str, namespace: str, service: str,
                  report: DependencyReport, deleted: list[Finding]) -> None:
    """Routes that send traffic to the service: its own (same namespace, routing only to it) go
    with it; any route that also sends elsewhere, or lives in another namespace, blocks."""
    notes = report.notes
    virtualservices = ctx.kube.istio(cluster, "virtualservices")
    for vs in _list_optional(ctx, cluster, virtualservices, notes):
        ns = meta(vs).get("namespace")
        forms = host_forms(service, namespace, bare=ns == namespace)
        hosts = vs_destinations(vs)
        ours = [h for h in hosts if h.lower().rstrip(".") in forms]
        if ours:
            _route(report, deleted, virtualservices, vs, ns == namespace and len(ours) == len(hosts),
                   f"routes to `{ours[0]}`" + _others(len(hosts) - len(ours), "destination"))
    for route in _list_optional(ctx, cluster, HTTPROUTES, notes):
        ns = meta(route).get("namespace")
        refs = httproute_backends(route)
        ours = [r for r in refs if r == (namespace, service)]
        if ours:
            _route(report, deleted, HTTPROUTES, route, ns == namespace and len(ours) == len(refs),
                   f"backendRef `{service}`" + _others(len(refs) - len(ours), "backend"))
    for ingress in ctx.kube.list(cluster, INGRESSES, namespace=namespace):
        backends = ingress_backends(ingress)
        ours = [b for b in backends if b == service]
        if ours:
            hosts = [r.get("host") for r in (ingress.get("spec") or {}).get("rules") or [] if r.get("host")]
            where = f" for host `{hosts[0]}`" if hosts else ""
            _route(report, deleted, INGRESSES, ingress, len(ours) == len(backends),
                   f"backend `{service}`{where}" + _others(len(backends) - len(ours), "backend"))
    destinationrules = ctx.kube.istio(cluster, "destinationrules")
    forms = host_forms(service, namespace, bare=True)
    for dr in _list_optional(ctx, cluster, destinationrules, notes, namespace=namespace):
        host = str((dr.get("spec") or {}).get("host") or "").lower().rstrip(".")
        if host in forms:
            deleted.append(_finding(destinationrules, dr, f"host `{host}`", ROUTING))


def _others(n: int, what: str) -> str:
    return f" and {n} other {what}{'' if n == 1 else 's'}" if n > 0 else ""


def _route(report: DependencyReport, deleted: list[Finding], resource: Resource, obj: dict, own: bool,
           evidence: str) -> None:
    if own:
        deleted.append(_finding(resource, obj, evidence, ROUTING))
    else:
        report.routes.append(_finding(resource, obj, evidence))


def _deleted_along(ctx: Context, cluster: str, namespace: str, app: str, workloads: list[tuple[Resource, dict]],
                   configmaps: list[dict], deleted: list[Finding]) -> None:
    """HPA and PDB of its workloads, and ConfigMaps/Secrets labelled with its app (never unlabelled ones)."""
    app_key = ctx.settings.labels.app
    names = {(r.kind, meta(o).get("name")) for r, o in workloads}
    for hpa in ctx.kube.list(cluster, HPAS, namespace=namespace):
        target = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if (target.get("kind"), target.get("name")) in names:
            deleted.append(_finding(HPAS, hpa, f"scales {target.get('kind')} `{target.get('name')}`", REST))
    pod_labels = [_template_labels(o) for _, o in workloads]
    for pdb in ctx.kube.list(cluster, PDBS, namespace=namespace):
        match = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if pod_labels and any(selector_matches(match, pl) for pl in pod_labels):
            deleted.append(_finding(PDBS, pdb, "covers its pods", REST))
    for cm in configmaps:
        if meta(cm).get("namespace") == namespace and labels(cm).get(app_key) == app:
            deleted.append(_finding(CONFIGMAPS, cm, f"labelled {app_key}={app}", REST))
    for secret in ctx.kube.list(cluster, SECRETS, namespace=namespace, label_selector=f"{app_key}={app}"):
        deleted.append(_finding(SECRETS, secret, f"labelled {app_key}={app}", REST))


def _check_traffic(ctx: Context, cluster: str, namespace: str, service: str, window: timedelta,
                   own_workloads: set[str], no_sidecar: list[str], report: DependencyReport) -> None:
    """Callers from Istio's destination-side metrics (the source side would count each request twice).
    Same rules as the idle scan (bot/idle/scan.py), so a service the digest calls idle has no callers here."""
    selector = (f'reporter="destination",destination_service_name="{service}",'
                f'destination_service_namespace="{namespace}"')
    by = "source_workload, source_workload_namespace"
    rng = promql_duration(window)
    parts = {signal: f"sum by ({by}) (increase({metric}{{{selector}}}[{rng}]))" for signal, metric in COUNTERS}
    # Envoy creates a series at a caller's first request and increase() has no earlier sample to
    # subtract it from, so it reads 0. A series present now but absent when the window began was
    # born of traffic inside the window; one that was already there and stayed flat was not.
    for signal, metric in (("born_http", "istio_requests_total"), ("born_tcp", "istio_tcp_connections_opened_total")):
        parts[signal] = (f"count by ({by}) (last_over_time({metric}{{{selector}}}[{rng}]) "
                         f"unless last_over_time({metric}{{{selector}}}[1h] offset {rng}))")
    # label_replace with an empty source stamps a constant label, so one `or` query carries every
    # signal without identical label sets colliding.
    query = " or ".join(f'label_replace({q}, "deckhand_signal", "{name}", "", "")' for name, q in parts.items())
    at = ctx.now()
    try:
        totals: dict[tuple[str, str], dict[str, float]] = {}
        for sample in ctx.traffic.query(cluster, query, at):
            who = (sample.labels.get("source_workload") or "unknown",
                   sample.labels.get("source_workload_namespace") or "unknown")
            totals.setdefault(who, {})[sample.labels.get("deckhand_signal", "")] = sample.value
        for (workload, ns), values in sorted(totals.items()):
            if ns == namespace and workload in own_workloads:
                continue  # its own pods calling themselves go with it
            caller = Caller(workload, ns, values.get("requests", 0.0), values.get("tcp_connections", 0.0),
                            values.get("tcp_bytes", 0.0), born=bool(values.get("born_http") or values.get("born_tcp")))
            if caller.requests > 0 or caller.tcp_connections > 0 or caller.tcp_bytes > 0 or caller.born:
                report.callers.append(caller)
        report.callers.sort(key=lambda c: (c.unknown, -(c.requests + c.tcp_connections)))
        if no_sidecar:
            report.traffic_unknown = (f"{', '.join(sorted(no_sidecar))} run without an Istio sidecar "
                                      "(sidecar.istio.io/inject: \"false\"), so Istio cannot see its callers")
        elif not report.callers:
            fresh = promql_duration(min(window, MESH_FRESHNESS))
            health = ctx.traffic.query(cluster, f"count(last_over_time(istio_requests_total[{fresh}])) or "
                                                f"count(last_over_time(istio_tcp_connections_opened_total[{fresh}]))", at)
            if not health or health[0].value <= 0:
                report.traffic_unknown = (f"{ctx.traffic.route(cluster).where} has no Istio series from the last "
                                          f"{fresh}, so seeing no callers proves nothing")
    except MetricsUnavailable as exc:
        report.traffic_unknown = f"{exc}; callers over the last {rng} are unknown"
