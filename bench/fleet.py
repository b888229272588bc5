"""A synthetic fleet for benchmarks: Services with their Deployments (and CronJobs that call them)
seeded into a Kubernetes fake, and the Istio traffic that goes with them for the real Prometheus.

    services = seed_services(kube, 5000)                     # svc-0000 … in 20 namespaces, 10 teams
    metrics = istio_traffic(services, busy_ratio=0.6)        # 7 days, 1 h steps, counters only
    prometheus = backends.prometheus(metrics)                # query at prometheus.eval_time

Names, teams and namespaces are deterministic, so a benchmark can compute what it expects.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

from tests.fakes.istio_metrics import IstioMetrics

# Older than any idle window, so no service counts as "too young to judge".
CREATED = (datetime.now(timezone.utc) - timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
TEAMS = ("payments", "search", "checkout", "identity", "catalog", "ads", "billing", "growth", "data", "infra")


@dataclass(frozen=True)
class FleetService:
    name: str
    namespace: str
    team: str
    replicas: int
    cpu: str  # per pod, as the Deployment requests it
    memory: str


def service_objects(svc: FleetService, labels_app: str = "app", labels_team: str = "team") -> list[dict]:
    """The Service, the Deployment it selects and its ready Endpoints, shaped like the API returns them."""
    selector = {labels_app: svc.name}
    labels = {labels_app: svc.name, labels_team: svc.team}
    meta = {"name": svc.name, "namespace": svc.namespace, "labels": labels, "creationTimestamp": CREATED}
    n = zlib.crc32(f"{svc.namespace}/{svc.name}".encode())
    addresses = [{"ip": f"10.{n % 250}.{n // 250 % 250}.{i + 1}"} for i in range(svc.replicas)]
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": dict(meta),
         "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
                  "type": "ClusterIP"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": dict(meta),
         "spec": {"replicas": svc.replicas, "selector": {"matchLabels": selector},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"containers": [{"name": "app", "image": f"registry.local/{svc.name}:1.0",
                                                        "resources": {"requests": {"cpu": svc.cpu,
                                                                                   "memory": svc.memory}}}]}}},
         "status": {"replicas": svc.replicas, "readyReplicas": svc.replicas,
                    "availableReplicas": svc.replicas}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": dict(meta),
         "subsets": [{"addresses": addresses, "ports": [{"name": "http", "port": 8080}]}]},
    ]


def fleet(count: int, namespaces: int = 20, prefix: str = "svc") -> list[FleetService]:
    width = max(4, len(str(count - 1)))
    return [FleetService(name=f"{prefix}-{i:0{width}d}", namespace=f"ns-{i % namespaces:02d}",
                         team=TEAMS[i % len(TEAMS)], replicas=1 + i % 3, cpu=("100m", "250m", "500m")[i % 3],
                         memory=("128Mi", "256Mi", "512Mi")[i % 3])
            for i in range(count)]


def seed_services(kube, count: int, namespaces: int = 20, prefix: str = "svc") -> list[FleetService]:
    """Add `count` services (Service + Deployment + Endpoints) and their namespaces to a Kubernetes fake."""
    services = fleet(count, namespaces, prefix)
    names = sorted({s.namespace for s in services})
    kube.add_many([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns},
                    "status": {"phase": "Active"}} for ns in names])
    kube.add_many([obj for svc in services for obj in service_objects(svc)])
    return services


def seed_cronjobs(kube, count: int, calls: Iterable[FleetService], namespace: str = "batch") -> int:
    """`count` CronJobs in `namespace`, each calling one of `calls` (round robin) by its cluster DNS
    name in an env var, as batch jobs usually reach services."""
    targets = list(calls)
    objs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}, "status": {"phase": "Active"}}]
    for i in range(count):
        target = targets[i % len(targets)] if targets else None
        env = ([{"name": "TARGET_URL", "value": f"http://{target.name}.{target.namespace}.svc.cluster.local"}]
               if target else [])
        objs.append({"apiVersion": "batch/v1", "kind": "CronJob",
                     "metadata": {"name": f"job-{i:05d}", "namespace": namespace, "labels": {"team": TEAMS[i % len(TEAMS)]}},
                     "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                         "restartPolicy": "Never",
                         "containers": [{"name": "job", "image": "registry.local/batch:1.0", "env": env}]}}}}}})
    kube.add_many(objs)
    return count


def istio_traffic(services: Iterable[FleetService], busy_ratio: float = 0.6, window: timedelta = timedelta(days=7),
                  step: timedelta = timedelta(hours=1)) -> IstioMetrics:
    """Steady Istio HTTP traffic (counters only: histograms would make a 5,000-service week ~11 GB)
    for the first `busy_ratio` of every ten services; the rest have no series at all (idle).
    Team and busyness both follow `i % 10`, so the idle services are those of TEAMS[6:] (at the
    default ratio); bench/_features.py spreads idle services over every team when that matters."""
    metrics = IstioMetrics.recent(window, step=step)
    cutoff = round(busy_ratio * 10)
    for i, svc in enumerate(services):
        if i % 10 < cutoff:
            metrics.http(svc.name, svc.namespace, src_workload="frontend", src_namespace="web", rps=0.5,
                         histogram=False)
    return metrics


def slow_world(opts, backends, latency: float):
    """The ack and fairness benchmarks' world: every backend `latency` seconds slow, one cluster with 20
    services. Returns (the Slack fake, the config path)."""
    from bench.backends import cluster_entry, write_config

    slack = backends.slack_fake(latency=latency)
    kube = backends.kube_fake(latency=latency)
    seed_services(kube, 20)
    github = backends.github_fake(latency=latency)
    prometheus = backends.slow_prometheus(delay=latency)
    kubeconfig = backends.kubeconfig({"prod-a": kube})
    config = write_config(opts.workdir / "deckhand.yaml", [cluster_entry("prod-a", kubeconfig, prometheus.url)],
                          github.url)
    return slack, config
