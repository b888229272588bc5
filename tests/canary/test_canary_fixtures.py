"""Shared builders for the canary tests: Istio and Argo objects on the Kubernetes fake, a Deployment
and an Argo controller played through `on_write`, the Prometheus dataset, clicks and card reads.
(No tests here; the name keeps it among the canary test files.)"""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest

from tests.fakes.istio_metrics import IstioMetrics
from tests.harness import PAY_DEV

CHANNEL = "C0PAY"
STABLE_IMAGE = "registry.example/checkout:1.4.2"
CANARY_IMAGE = "registry.example/checkout:1.5.0"


def stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def deployment(name: str, namespace: str, track: str, version: str, image: str, replicas: int,
               team: str = "payments", service: str = "checkout", created: datetime | None = None,
               env: list | None = None) -> dict:
    pod_labels = {"app": service, "track": track, "version": version}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": service, "team": team, "track": track},
                     "creationTimestamp": stamp(created or datetime(2026, 11, 18, 9, 0, tzinfo=timezone.utc))},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": service, "track": track}},
            "template": {"metadata": {"labels": pod_labels}, "spec": {"containers": [{
                "name": "app", "image": image, "env": env or [{"name": "MODE", "value": track}],
                "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}}}]}},
        },
        "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                   "availableReplicas": replicas, "readyReplicas": replicas},
    }


def istio_canary(fake, service: str = "checkout", namespace: str = "payments", weight: int = 10,
                 team: str = "payments", canary_replicas: int = 2, stable_replicas: int = 3,
                 created: datetime | None = None, vs_annotations: dict | None = None) -> None:
    """Deployments <svc> and <svc>-canary, DestinationRule subsets, VirtualService at `weight`."""
    fake.add(deployment(service, namespace, "stable", "v1", STABLE_IMAGE.replace("checkout", service),
                        stable_replicas, team, service))
    fake.add(deployment(f"{service}-canary", namespace, "canary", "v2", CANARY_IMAGE.replace("checkout", service),
                        canary_replicas, team, service, created=created,
                        env=[{"name": "MODE", "value": "canary"}, {"name": "NEW_FLAG", "value": "on"}]))
    fake.add({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
              "metadata": {"name": service, "namespace": namespace},
              "spec": {"host": service, "subsets": [{"name": "stable", "labels": {"track": "stable"}},
                                                    {"name": "canary", "labels": {"track": "canary"}}]}})
    fake.add({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
              "metadata": {"name": service, "namespace": namespace, "labels": {"team": team},
                           "annotations": vs_annotations or {}},
              "spec": {"hosts": [service], "http": [{"route": [
                  {"destination": {"host": service, "subset": "stable"}, "weight": 100 - weight},
                  {"destination": {"host": f"{service}.{namespace}.svc.cluster.local", "subset": "canary"},
                   "weight": weight}]}]}})


def weights(fake, service: str = "checkout", namespace: str = "payments") -> tuple[int, int]:
    route = fake.get("networking.istio.io/v1", "virtualservices", namespace, service)["spec"]["http"][0]["route"]
    return route[0]["weight"], route[1]["weight"]


def deployment_controller(fake, after: float = 0.0):
    """Play the Deployment controller: `after` seconds after a write, the rollout is complete."""
    def complete(namespace, name):
        obj = fake.get("apps/v1", "deployments", namespace, name)
        n = obj["spec"].get("replicas", 1)
        fake.set_status("apps/v1", "deployments", namespace, name, {
            "observedGeneration": obj["metadata"]["generation"], "replicas": n, "updatedReplicas": n,
            "availableReplicas": n, "readyReplicas": n})

    def hook(verb, rt, obj):
        if rt.plural != "deployments" or verb == "delete":
            return
        args = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if after:  # the controller's own pace, not the test waiting for work
            threading.Timer(after, complete, args).start()
        else:
            complete(*args)
    return fake.on_write(hook)


def rollout(name: str = "cart", namespace: str = "shop", index: int = 1, weight: int | None = 20,
            paused: bool = True, spec_paused: bool = False, aborted: bool = False, team: str = "payments",
            replicas: int = 4, canary_pods: int = 1, pause_started: datetime | None = None) -> dict:
    status = {"phase": "Paused" if paused else "Progressing", "stableRS": "6d4f8b9c7", "currentPodHash": "5c7d9f8b6",
              "currentStepIndex": index, "replicas": replicas + canary_pods, "updatedReplicas": canary_pods,
              "availableReplicas": replicas + canary_pods, "readyReplicas": replicas + canary_pods}
    if weight is not None:
        status["canary"] = {"weights": {"canary": {"weight": weight, "podTemplateHash": "5c7d9f8b6"},
                                        "stable": {"weight": 100 - weight, "podTemplateHash": "6d4f8b9c7"}}}
    if paused:
        status["pauseConditions"] = [{"reason": "CanaryPauseStep", "startTime": stamp(
            pause_started or datetime(2026, 11, 19, 8, 0, tzinfo=timezone.utc))}]
    if aborted:
        status.update(abort=True, phase="Degraded", message="RolloutAborted: Rollout aborted update to revision 2")
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name, "team": team}},
        "spec": {"replicas": replicas, "paused": spec_paused,
                 "selector": {"matchLabels": {"app": name}},
                 "strategy": {"canary": {"canaryService": f"{name}-canary", "stableService": f"{name}-stable",
                                         "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50},
                                                   {"pause": {"duration": "10m"}}]}},
                 "template": {"metadata": {"labels": {"app": name, "version": "v8"}},
                              "spec": {"containers": [{"name": "app", "image": f"registry.example/{name}:2.1.0",
                                                       "resources": {"requests": {"cpu": "500m",
                                                                                  "memory": "1Gi"}}}]}}},
        "status": status,
    }


def stable_replicaset(name: str = "cart", namespace: str = "shop") -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{name}-6d4f8b9c7", "namespace": namespace,
                         "labels": {"app": name, "rollouts-pod-template-hash": "6d4f8b9c7"},
                         "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": name}]},
            "spec": {"replicas": 4, "template": {"metadata": {"labels": {"app": name, "version": "v7"}},
                                                 "spec": {"containers": [{"name": "app",
                                                                          "image": f"registry.example/{name}:2.0.3"}]}}}}


def argo_canary(fake, **kwargs) -> None:
    fake.add(rollout(**kwargs))
    fake.add(stable_replicaset(kwargs.get("name", "cart"), kwargs.get("namespace", "shop")))


def argo_controller(fake):
    """Play the Argo controller for promoteFull: the canary becomes stable and the Rollout Healthy."""
    def hook(verb, rt, obj):
        status = obj.get("status") or {}
        if rt.plural == "rollouts" and verb == "patch_status" and status.get("promoteFull"):
            fake.patch("argoproj.io/v1alpha1", "rollouts", obj["metadata"]["namespace"], obj["metadata"]["name"],
                       {"status": {"promoteFull": None, "pauseConditions": None, "phase": "Healthy",
                                   "stableRS": status["currentPodHash"], "canary": {"weights": None},
                                   "replicas": obj["spec"]["replicas"]}})
    return fake.on_write(hook)


def checkout_metrics() -> IstioMetrics:
    """Two hours at a 5 min step: checkout v1 (stable) healthy, v2 (canary) with 20% errors and slow;
    cart v7/v8 for the Argo canary. Built by a function so every test shares one Prometheus."""
    m = IstioMetrics.recent(timedelta(hours=2), step=timedelta(minutes=5))
    m.http("checkout", "payments", src_workload="frontend", version="v1", rps=9.0, latency_ms=120)
    m.http("checkout", "payments", src_workload="frontend", version="v2", rps=1.0, error_ratio=0.2, latency_ms=800)
    m.http("cart", "shop", src_workload="frontend", version="v7", rps=4.0, latency_ms=50,
           labels={"destination_workload": "cart"})
    m.http("cart", "shop", src_workload="frontend", version="v8", rps=1.0, latency_ms=60,
           labels={"destination_workload": "cart"})
    return m


@pytest.fixture
def fast(monkeypatch):
    """Real-time waits and Slack progress throttling made short for tests."""
    from bot.canary import argo as canary_argo, istio as canary_istio
    from commands import canary as canary_command

    monkeypatch.setattr(canary_istio, "ROLLOUT_POLL_SECONDS", 0.01)
    monkeypatch.setattr(canary_argo, "ROLLOUT_POLL_SECONDS", 0.01)
    monkeypatch.setattr(canary_command, "PROGRESS_INTERVAL", 0.0)


# -- Slack side ---------------------------------------------------------------------------------------
def post_card(bot, text: str, user: str = PAY_DEV, channel: str = CHANNEL) -> dict:
    """`/canary <text>` and the card it posts in the channel."""
    before = set(bot.slack.messages(channel))
    bot.sender.command("/canary", text, user_id=user, channel_id=channel)
    return bot.slack.wait_for(lambda: next((m for ts, m in bot.slack.messages(channel).items() if ts not in before),
                                           None), timeout=15)


def click(bot, card: dict, action_id: str, user: str = PAY_DEV, channel: str = CHANNEL, **kwargs):
    return bot.sender.block_actions(action_id, user_id=user, channel_id=channel, message_ts=card["ts"], **kwargs)


def card_json(bot, card: dict, channel: str = CHANNEL) -> str:
    return json.dumps(bot.slack.message(channel, card["ts"]).get("blocks"), ensure_ascii=False)


def wait_card(bot, card: dict, *needles: str, channel: str = CHANNEL, timeout: float = 15) -> str:
    """Wait until the card shows every needle and is no longer working; return its blocks as JSON."""
    def done():
        text = card_json(bot, card, channel)
        return text if all(n in text for n in needles) and "Working" not in text else None
    return bot.slack.wait_for(done, timeout=timeout)


def outcome_rows(bot, action: str) -> list[dict]:
    return [r for r in bot.ctx.store.audit_log(limit=500)
            if r["action"] == f"canary.{action}" and json.loads(r["params"]).get("step") == "outcome"]


def wait_outcome(bot, action: str, count: int = 1, timeout: float = 15) -> list[dict]:
    return bot.slack.wait_for(lambda: (rows := outcome_rows(bot, action)) and len(rows) >= count and rows,
                              timeout=timeout)


def writes(fake) -> list[tuple[str, str]]:
    """(method, path) of every write, in arrival order — the order is the safety property."""
    return [(r.method, r.path.split("?")[0]) for r in fake.writes()]
