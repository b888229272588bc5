"""The world the idle-service tests share: one Istio mesh backfilled into the real Prometheus and the
Kubernetes objects behind it. Helpers only (no tests here); datasets are built by functions so every
test gets the same fingerprint and Prometheus starts once per session."""
from __future__ import annotations

from datetime import datetime, timedelta

from tests.fakes.istio_metrics import IstioMetrics
from tests.harness import FakeClock

CLUSTER = "prod-a"


def mesh() -> IstioMetrics:
    """8 days of hourly samples, so a 7-day window has history before it starts."""
    m = IstioMetrics.recent(timedelta(days=8), step=timedelta(hours=1))
    m.http("checkout", "shop", rps=1.0, histogram=False)                                    # busy HTTP
    m.tcp("ledger-db", "shop", src_workload="checkout", conn_per_min=2, bytes_per_conn=512)  # TCP only
    m.first_request_only("coupons", "shop", at=m.end - timedelta(days=2), histogram=False)   # only its first
    m.first_request_only("old-reports", "shop", at=m.start, histogram=False)                 # one call 8d ago
    m.http("promo", "shop", rps=0.5, start=m.end - timedelta(hours=2), histogram=False)      # wakes up at the end
    m.http("search-api", "search", rps=2.0, histogram=False)                                 # busy, other team
    return m


def workload(name: str, namespace: str, *, kind: str = "Deployment", replicas: int = 2, cpu: str = "500m",
             memory: str = "512Mi", labels: dict | None = None, template_annotations: dict | None = None) -> dict:
    api = "argoproj.io/v1alpha1" if kind == "Rollout" else "apps/v1"
    pod_labels = {"app": name, **(labels or {})}
    template = {"metadata": {"labels": pod_labels, "annotations": template_annotations or {}},
                "spec": {"containers": [{"name": "app", "image": f"registry.local/{name}:1",
                                         "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": namespace, "labels": pod_labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template}}


def add_service(fake, name: str, namespace: str, now: datetime, *, team: str | None = "payments",
                age: timedelta = timedelta(days=30), replicas: int = 2, cpu: str = "500m", memory: str = "512Mi",
                ready: bool = True, annotations: dict | None = None, kind: str = "Deployment",
                selector: dict | None = None, template_annotations: dict | None = None, with_workload: bool = True):
    labels = {"team": team} if team else {}
    created = (now - age).strftime("%Y-%m-%dT%H:%M:%SZ")
    fake.add({"apiVersion": "v1", "kind": "Service",
              "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations or {},
                           "creationTimestamp": created},
              "spec": {"selector": selector or {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}})
    if with_workload:
        fake.add(workload(name, namespace, kind=kind, replicas=replicas, cpu=cpu, memory=memory, labels=labels,
                          template_annotations=template_annotations))
    address = [{"ip": "10.0.0.1", "targetRef": {"kind": "Pod", "name": f"{name}-0", "namespace": namespace}}]
    subset = {"addresses": address} if ready else {"notReadyAddresses": address}
    fake.add({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": namespace},
              "subsets": [dict(subset, ports=[{"port": 8080}])]})


# Idle at the data's end. shop/promo is idle too until its traffic starts, 2 h before the end.
IDLE_KEYS = {f"{CLUSTER}/shop/old-reports", f"{CLUSTER}/shop/gift-cards", f"{CLUSTER}/search/indexer-v1",
             f"{CLUSTER}/misc/orphan"}


def seed(fake, now: datetime) -> None:
    """Every kind of service the detection must tell apart (see IDLE_KEYS)."""
    add_service(fake, "checkout", "shop", now, replicas=3, cpu="1", memory="1Gi")                 # busy HTTP
    add_service(fake, "ledger-db", "shop", now, kind="StatefulSet", replicas=1, cpu="2", memory="4Gi")  # TCP only
    add_service(fake, "ledger-db-headless", "shop", now, selector={"app": "ledger-db"}, with_workload=False)
    add_service(fake, "coupons", "shop", now)                                                     # first request only
    add_service(fake, "fresh", "shop", now, age=timedelta(days=2))                                # young
    add_service(fake, "legacy-export", "shop", now, annotations={"deckhand.io/idle-alert": "false"})  # opted out
    add_service(fake, "broken", "shop", now, ready=False)                                         # no endpoints
    add_service(fake, "batch-runner", "shop", now, replicas=0)                                    # scaled to zero
    add_service(fake, "no-sidecar", "shop", now, template_annotations={"sidecar.istio.io/inject": "false"})
    add_service(fake, "metrics-proxy", "kube-system", now, team=None)                             # excluded namespace
    add_service(fake, "old-reports", "shop", now, replicas=2, cpu="1", memory="2Gi")              # idle, flat series
    add_service(fake, "gift-cards", "shop", now, replicas=3, cpu="250m", memory="256Mi")          # idle, no series
    add_service(fake, "promo", "shop", now, replicas=1, cpu="100m", memory="128Mi")               # idle until 2h ago
    add_service(fake, "search-api", "search", now, team="search", cpu="1", memory="1Gi")          # busy, search
    add_service(fake, "indexer-v1", "search", now, team="search", kind="Rollout", replicas=4, cpu="2", memory="4Gi")
    add_service(fake, "orphan", "misc", now, team=None, replicas=1, cpu="100m", memory="64Mi")    # idle, no owner


def idle_bot(bot_factory, prometheus_factory, *, config: dict | None = None, at: timedelta = timedelta(0)):
    """A bot over the shared mesh and seeded cluster, its clock at the data's end (+ `at`)."""
    server = prometheus_factory(mesh())
    clock = FakeClock(server.eval_time + at)
    bot = bot_factory(prometheus={CLUSTER: server.url}, clock=clock, config=config or {})
    seed(bot.kube[CLUSTER], server.eval_time)
    bot.extra["prometheus"] = server
    return bot


def digest_messages(bot, channel: str) -> list[dict]:
    return [m for m in bot.slack.messages(channel).values() if "Idle services" in m.get("text", "")]


def service_names(message: dict) -> list[str]:
    """Services listed in a digest message and its thread, in order."""
    names = []
    for msg in [message, *message.get("replies", [])]:
        for block in msg.get("blocks", []):
            if str(block.get("block_id", "")).startswith("idle:"):
                names.append(block["block_id"].split("/")[-1])
    return names
