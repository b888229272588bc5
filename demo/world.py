"""The demo's clusters: what lives in prod-a and prod-b, as Kubernetes objects on the HTTP fakes.

prod-a (teams payments and shop):
- payments/checkout: an Istio canary at 25% (v1 stable, v2 canary with 8% errors and a slow p99);
- shop/cart: an Argo Rollout paused at its first pause step (20%);
- payments/ledger: called by checkout (HTTP) and by orders/billing-worker (TCP);
- payments/vouchers: no callers, idle for weeks (reclaimable 2 x 500m / 512Mi);
- payments/invoices: no mesh traffic, but the monthly CronJob reports/monthly-invoices reads its
  address from the ConfigMap reports/monthly-invoices-settings;
- shop/gift-cards: idle (3 x 250m / 256Mi).
prod-b (team search and web):
- search/search-api: a forgotten Istio canary at 10%, untouched for 5 days (canary.stale_after is 72h);
- search/indexer-v1: an idle Argo Rollout (4 x 2 cores / 4Gi);
- web/storefront: busy, called by the ingress gateway.
The Prometheus data for all of it is in demo/mesh.py; nodes and join reports in demo/nodes.py.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

# Annotations deckhand writes when it steps a canary (bot/canary/model.py): who started it, when, and
# which canary images they describe (the sha256 of the images, one per line, first 12 hex digits).
STARTED_BY, STARTED_AT = "deckhand.io/canary-started-by", "deckhand.io/canary-started-at"
STEPPED_AT, REVISION = "deckhand.io/canary-stepped-at", "deckhand.io/canary-revision"


def stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def pod_template(app: str, image: str, cpu: str, memory: str, labels: dict | None = None) -> dict:
    return {"metadata": {"labels": {"app": app, **(labels or {})}},
            "spec": {"containers": [{"name": "app", "image": image,
                                     "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}


def deployment(name: str, ns: str, team: str, *, app: str | None = None, replicas: int = 2, cpu: str = "250m",
               memory: str = "256Mi", image: str | None = None, track: str | None = None, version: str = "v1",
               created: datetime | None = None) -> dict:
    app = app or name
    selector = {"app": app, **({"track": track} if track else {})}
    labels = {"app": app, "team": team, **({"track": track} if track else {})}
    obj = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name, "namespace": ns, "labels": labels},
           "spec": {"replicas": replicas, "selector": {"matchLabels": selector},
                    "template": pod_template(app, image or f"registry.demo/{app}:1.0.0", cpu, memory,
                                             {**selector, "version": version, "team": team})},
           "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                      "availableReplicas": replicas, "readyReplicas": replicas}}
    if created:
        obj["metadata"]["creationTimestamp"] = stamp(created)
    return obj


def service(name: str, ns: str, team: str | None, created: datetime, selector: dict | None = None) -> list[dict]:
    """A Service with ready endpoints (so the idle scan considers it live)."""
    labels = {"app": name, **({"team": team} if team else {})}
    address = [{"ip": "10.0.0.1", "targetRef": {"kind": "Pod", "name": f"{name}-0", "namespace": ns}}]
    return [{"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": name, "namespace": ns, "labels": labels, "creationTimestamp": stamp(created)},
             "spec": {"selector": selector or {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}},
            {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns},
             "subsets": [{"addresses": address, "ports": [{"port": 8080}]}]}]


def istio_canary(name: str, ns: str, team: str, weight: int, *, stable: str, canary: str, started_by: str,
                 started: datetime, stepped: datetime, now: datetime) -> list[dict]:
    """Deployments <svc> (track stable) and <svc>-canary, DestinationRule subsets, a weighted VirtualService."""
    image = f"registry.demo/{name}:"
    notes = {STARTED_BY: started_by, STARTED_AT: started.isoformat(), STEPPED_AT: stepped.isoformat(),
             REVISION: hashlib.sha256((image + canary).encode()).hexdigest()[:12]}
    return [
        *service(name, ns, team, now - timedelta(days=90)),
        deployment(name, ns, team, replicas=3, image=image + stable, track="stable", version=stable),
        deployment(f"{name}-canary", ns, team, app=name, replicas=1, image=image + canary, track="canary",
                   version=canary, created=started),
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": name, "namespace": ns},
         "spec": {"host": name, "subsets": [{"name": "stable", "labels": {"track": "stable"}},
                                            {"name": "canary", "labels": {"track": "canary"}}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": name, "namespace": ns, "labels": {"team": team}, "annotations": notes},
         "spec": {"hosts": [name], "http": [{"route": [
             {"destination": {"host": name, "subset": "stable"}, "weight": 100 - weight},
             {"destination": {"host": name, "subset": "canary"}, "weight": weight}]}]}},
    ]


def argo_rollout(name: str, ns: str, team: str, *, paused_since: datetime, weight: int = 20, replicas: int = 4,
                 cpu: str = "500m", memory: str = "1Gi", stable: str = "v7", canary: str = "v8") -> list[dict]:
    """A Rollout paused at its first pause step (`weight`% on the new version), with its stable ReplicaSet."""
    status = {"phase": "Paused", "stableRS": "6d4f8b9c7", "currentPodHash": "5c7d9f8b6", "currentStepIndex": 1,
              "replicas": replicas + 1, "updatedReplicas": 1, "availableReplicas": replicas + 1,
              "readyReplicas": replicas + 1,
              "canary": {"weights": {"canary": {"weight": weight, "podTemplateHash": "5c7d9f8b6"},
                                     "stable": {"weight": 100 - weight, "podTemplateHash": "6d4f8b9c7"}}},
              "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": stamp(paused_since)}]}
    steps = [{"setWeight": weight}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "10m"}}]
    return [
        *service(name, ns, team, paused_since - timedelta(days=60)),
        {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
         "metadata": {"name": name, "namespace": ns, "labels": {"app": name, "team": team}},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                  "strategy": {"canary": {"canaryService": f"{name}-canary", "stableService": f"{name}-stable",
                                          "steps": steps}},
                  "template": pod_template(name, f"registry.demo/{name}:2.1.0", cpu, memory, {"version": canary})},
         "status": status},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet",
         "metadata": {"name": f"{name}-6d4f8b9c7", "namespace": ns,
                      "labels": {"app": name, "rollouts-pod-template-hash": "6d4f8b9c7"},
                      "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": name}]},
         "spec": {"replicas": replicas, "template": pod_template(name, f"registry.demo/{name}:2.0.3", cpu, memory,
                                                                {"version": stable})}},
    ]


def workload_service(name: str, ns: str, team: str | None, now: datetime, *, replicas: int = 2, cpu: str = "250m",
                     memory: str = "256Mi", kind: str = "Deployment", age: timedelta = timedelta(days=120)) -> list[dict]:
    work = deployment(name, ns, team or "", replicas=replicas, cpu=cpu, memory=memory)
    if kind == "Rollout":
        work.update(apiVersion="argoproj.io/v1alpha1", kind="Rollout")
        work["spec"]["strategy"] = {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}
        work.pop("status")
    return [*service(name, ns, team, now - age), work]


def prod_a(now: datetime) -> list[dict]:
    return [
        *(namespace(ns) for ns in ("payments", "shop", "orders", "reports", "web")),
        *istio_canary("checkout", "payments", "payments", 25, stable="v1", canary="v2", started_by="U0PAYDEV",
                      started=now - timedelta(hours=3), stepped=now - timedelta(minutes=40), now=now),
        *argo_rollout("cart", "shop", "shop", paused_since=now - timedelta(hours=2)),
        *workload_service("ledger", "payments", "payments", now, replicas=2, cpu="500m", memory="1Gi"),
        *workload_service("billing-worker", "orders", "payments", now, replicas=1),
        *workload_service("frontend", "web", "shop", now, replicas=3),
        *workload_service("vouchers", "payments", "payments", now, replicas=2, cpu="500m", memory="512Mi"),
        *workload_service("invoices", "payments", "payments", now, replicas=2, cpu="250m", memory="512Mi"),
        *workload_service("gift-cards", "shop", "shop", now, replicas=3, cpu="250m", memory="256Mi"),
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "monthly-invoices-settings", "namespace": "reports", "labels": {"team": "payments"}},
         "data": {"INVOICES_URL": "http://invoices.payments.svc.cluster.local:8080", "FORMAT": "pdf"}},
        {"apiVersion": "batch/v1", "kind": "CronJob",
         "metadata": {"name": "monthly-invoices", "namespace": "reports", "labels": {"team": "payments"}},
         "spec": {"schedule": "0 3 1 * *", "jobTemplate": {"spec": {"template": {"spec": {
             "restartPolicy": "Never", "containers": [{
                 "name": "job", "image": "registry.demo/invoice-run:3.2.0",
                 "envFrom": [{"configMapRef": {"name": "monthly-invoices-settings"}}]}]}}}}}},
    ]


def prod_b(now: datetime) -> list[dict]:
    return [
        *(namespace(ns) for ns in ("search", "web")),
        *istio_canary("search-api", "search", "search", 10, stable="v3", canary="v4", started_by="U0SEARCHDEV",
                      started=now - timedelta(days=5, hours=2), stepped=now - timedelta(days=5), now=now),
        *workload_service("indexer-v1", "search", "search", now, kind="Rollout", replicas=4, cpu="2", memory="4Gi"),
        *workload_service("storefront", "web", "shop", now, replicas=3),
    ]


def play_controllers(fake) -> None:
    """Stand in for the Deployment and Argo controllers, so steps, promotes and aborts complete."""
    def hook(verb, rt, obj):
        meta = obj.get("metadata") or {}
        if rt.plural == "deployments" and verb != "delete":
            n = (obj.get("spec") or {}).get("replicas", 1)
            fake.set_status("apps/v1", "deployments", meta["namespace"], meta["name"], {
                "observedGeneration": meta.get("generation", 1), "replicas": n, "updatedReplicas": n,
                "availableReplicas": n, "readyReplicas": n})
        elif rt.plural == "rollouts" and verb == "patch_status" and (obj.get("status") or {}).get("promoteFull"):
            fake.patch("argoproj.io/v1alpha1", "rollouts", meta["namespace"], meta["name"],
                       {"status": {"promoteFull": None, "pauseConditions": None, "phase": "Healthy",
                                   "stableRS": obj["status"].get("currentPodHash"), "canary": {"weights": None}}})
    fake.on_write(hook)
