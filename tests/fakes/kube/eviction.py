"""The Eviction API with PodDisruptionBudget semantics, and a ReplicaSet stand-in that replaces evicted pods.

What the real API server does on `POST pods/<name>/eviction` (pkg/registry/core/pod/storage/eviction.go):
- a pod that already finished (Succeeded/Failed) is deleted without looking at budgets;
- more than one PodDisruptionBudget selecting the pod: 500, "This pod has more than one
  PodDisruptionBudget, which the eviction subresource does not support.";
- one budget: allowed disruptions = healthy pods - desired healthy (minAvailable, or expected -
  maxUnavailable; percentages round up). None allowed -> 429 TooManyRequests, "Cannot evict pod as it
  would violate the pod's disruption budget." with a DisruptionBudget cause. A pod that is not Ready
  may go while the budget is met (unhealthyPodEvictionPolicy IfHealthyBudget, the default).
The fake computes a budget's status from the pods it holds (the disruption controller's job in a real
cluster) and writes it back, so `kubectl get pdb` and deckhand's plan read realistic numbers.
"""
from __future__ import annotations

import copy
import math
import uuid
from typing import Any

from .errors import ApiError

PDB_MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."


def _ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _selects(pdb: dict, pod: dict) -> bool:
    selector = (pdb.get("spec") or {}).get("selector") or {}
    match = selector.get("matchLabels") or {}
    labels = pod["metadata"].get("labels") or {}
    if not match and not selector.get("matchExpressions"):
        return False
    for key, value in match.items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) or \
                (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def _scaled(value: Any, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(total * int(value[:-1]) / 100)
    return int(value)


def _selector_text(pdb: dict) -> str | None:
    """matchLabels as a label selector, to list only the pods a budget covers (None: list them all)."""
    selector = (pdb.get("spec") or {}).get("selector") or {}
    if selector.get("matchExpressions") or not selector.get("matchLabels"):
        return None
    return ",".join(f"{k}={v}" for k, v in sorted(selector["matchLabels"].items()))


def budget_status(pdb: dict, pods: list[dict]) -> dict:
    """What the disruption controller would write in .status for these pods."""
    namespace = pdb["metadata"].get("namespace")
    covered = [p for p in pods if p["metadata"].get("namespace") == namespace and _selects(pdb, p)
               and not _terminal(p) and not p["metadata"].get("deletionTimestamp")]
    expected, healthy = len(covered), sum(1 for p in covered if _ready(p))
    spec = pdb.get("spec") or {}
    if spec.get("minAvailable") is not None:
        desired = _scaled(spec["minAvailable"], expected)
    elif spec.get("maxUnavailable") is not None:
        desired = max(0, expected - _scaled(spec["maxUnavailable"], expected))
    else:
        desired = expected
    return {"currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": expected,
            "disruptionsAllowed": max(0, healthy - desired),
            "observedGeneration": pdb["metadata"].get("generation", 1)}


class EvictionMixin:
    """Mixed into `KubeFake`: `_check_eviction` runs before the pod is deleted."""

    replace_evicted: bool = False       # a ReplicaSet stand-in: evicted pods come back elsewhere
    replacement_ready: bool = False     # ... Ready at once, or NotReady until the test says so

    def simulate_replicasets(self, ready: bool = False) -> None:
        """Evicted pods owned by a ReplicaSet get a replacement on another schedulable, Ready node."""
        self.replace_evicted, self.replacement_ready = True, ready

    def refresh_budgets(self, pod: dict | None = None) -> None:
        """Recompute PodDisruptionBudgets' status from the pods (the disruption controller's job): every
        budget, or only those selecting `pod` (in its namespace)."""
        namespace = pod["metadata"].get("namespace") if pod else None
        budgets = [b for b in self.list("poddisruptionbudgets", namespace) if pod is None or _selects(b, pod)]
        for pdb in budgets:
            pods = self.list("pods", pdb["metadata"].get("namespace"), label_selector=_selector_text(pdb))
            status = budget_status(pdb, pods)
            if pdb.get("status") != status:
                self.add(dict(pdb, status=status))

    def _check_eviction(self, ns: str, name: str) -> None:
        pod = self.get("v1", "pods", ns, name)
        if pod is None or _terminal(pod):
            return  # a missing pod is answered 404 by the delete; a finished one goes without a budget check
        budgets = [b for b in self.list("poddisruptionbudgets", ns) if _selects(b, pod)]
        if len(budgets) > 1:
            raise ApiError(500, "This pod has more than one PodDisruptionBudget, which the eviction subresource "
                                "does not support.", "InternalError")
        if not budgets:
            return
        pdb = budgets[0]
        status = budget_status(pdb, self.list("pods", ns, label_selector=_selector_text(pdb)))
        if not _ready(pod) and status["currentHealthy"] >= status["desiredHealthy"]:
            return  # IfHealthyBudget: an unhealthy pod may go while the budget holds
        if status["disruptionsAllowed"] <= 0:
            cause = (f"The disruption budget {pdb['metadata']['name']} needs {status['desiredHealthy']} healthy pods "
                     f"and has {status['currentHealthy']} currently")
            raise ApiError(429, PDB_MESSAGE, "TooManyRequests",
                           details={"causes": [{"reason": "DisruptionBudget", "message": cause}]})

    def _after_eviction(self, pod: dict) -> None:
        self.refresh_budgets(pod)
        if not self.replace_evicted:
            return
        owner = next((r for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
        if not owner or owner.get("kind") != "ReplicaSet":
            return
        target = next((n for n in self.list("nodes") if not (n.get("spec") or {}).get("unschedulable")
                       and n["metadata"]["name"] != (pod.get("spec") or {}).get("nodeName")
                       and _ready(n)), None)
        if target is None:
            return  # nowhere to schedule: the replacement would stay Pending; the fake leaves it out
        fresh = copy.deepcopy(pod)
        fresh["metadata"] = {k: v for k, v in pod["metadata"].items()
                             if k in ("namespace", "labels", "annotations", "ownerReferences")}
        fresh["metadata"]["name"] = f"{owner['name']}-{uuid.uuid4().hex[:5]}"
        fresh["spec"]["nodeName"] = target["metadata"]["name"]
        ready = "True" if self.replacement_ready else "False"
        fresh["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": ready}]}
        self.add(fresh)
        self.refresh_budgets(fresh)
