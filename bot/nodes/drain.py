"""The cluster side of a maintenance wave: cordon, evict, uncordon. One node at a time, never forcing.

Cordon and uncordon patch `spec.unschedulable` (what `kubectl cordon` does). Pods go through the
Eviction API (`POST pods/<name>/eviction`, policy/v1), never a DELETE, so PodDisruptionBudgets are
honoured by the API server itself: it answers 429 TooManyRequests while a budget allows no disruption
(https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/), and the drain retries with
backoff. DaemonSet and mirror pods are skipped, as `kubectl drain --ignore-daemonsets` does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.foundation.kube import NODES, PODS, KubeError, meta
from bot.nodes.wave_plan import pod_ref, skipped_by_drain

BACKOFF_START = timedelta(seconds=10)
BACKOFF_MAX = timedelta(minutes=2)


def cordon(ctx, cluster: str, node: str, unschedulable: bool = True) -> None:
    ctx.kube.patch(cluster, NODES, None, node, {"spec": {"unschedulable": True if unschedulable else None}})


def uncordon(ctx, cluster: str, node: str) -> None:
    cordon(ctx, cluster, node, unschedulable=False)


def evictable(pods: list[dict]) -> list[dict]:
    return [p for p in pods if not skipped_by_drain(p)]


@dataclass
class DrainStep:
    """What one pass over a node's pods did: evicted, still waiting (and why), failed outright."""

    evicted: list[str] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)   # pod -> the budget's (or server's) reason
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def left(self) -> int:
        return len(self.waiting) + len(self.errors)


def evict(ctx, cluster: str, pod: dict) -> None:
    namespace, name = meta(pod)["namespace"], meta(pod)["name"]
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace}}
    ctx.kube.request(cluster, "POST", PODS.path(namespace, name, "eviction"), body=body,
                     action=f"evict pod {namespace}/{name}")


def drain_pass(ctx, cluster: str, pods: list[dict], retry_after: dict[str, str], now: datetime) -> DrainStep:
    """Evict every evictable pod whose backoff has passed. `retry_after` (pod -> ISO time) is updated."""
    step = DrainStep()
    for pod in evictable(pods):
        ref = pod_ref(pod)
        due = retry_after.get(ref)
        if due and due > now.isoformat():
            step.waiting[ref] = "backing off after a refused eviction"
            continue
        try:
            evict(ctx, cluster, pod)
            step.evicted.append(ref)
            retry_after.pop(ref, None)
        except KubeError as exc:
            if exc.not_found:           # already gone
                continue
            if exc.status == 429:       # a PodDisruptionBudget says not now
                tries = int(retry_after.get(f"{ref}#tries", "0")) + 1
                retry_after[f"{ref}#tries"] = str(tries)
                wait = min(BACKOFF_START * (2 ** (tries - 1)), BACKOFF_MAX)
                retry_after[ref] = (now + wait).isoformat()
                step.waiting[ref] = exc.message or "the PodDisruptionBudget allows no disruption now"
            else:
                step.errors[ref] = str(exc)
    return step
