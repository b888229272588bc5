"""Argo Rollouts canaries: a `Rollout` with a canary strategy, driven the way its own CLI drives it.

deckhand writes exactly what `kubectl argo rollouts` writes — merge patches, status through the
status subresource, the status patch before the spec patch — so the Argo controller sees nothing
it would not see from its own tool. Source: argoproj/argo-rollouts,
pkg/kubectl-argo-rollouts/cmd/promote/promote.go (`getPatches`: promote clears
`status.pauseConditions`, or when there are none bumps `status.currentStepIndex`, and sends
`{"spec":{"paused":false}}` only when `spec.paused`; `--full` sends `{"status":{"promoteFull":true}}`
only when currentPodHash != stableRS), cmd/abort/abort.go (`{"status":{"abort":true}}`) and
cmd/retry/retry.go (`{"status":{"abort":false}}`, which is how an aborted rollout is resumed).
Argo itself then moves traffic and scales ReplicaSets in a safe order.
"""
from __future__ import annotations

import time

from bot.foundation.config import format_duration
from bot.canary.model import (ARGO, Canary, CanaryRef, MetricsSplit, Refused, Run, StepFailed,
                              annotations_for_step, containers_images, parse_time, read_annotations)
from bot.foundation.kube import ROLLOUTS, KubeError, Resource, annotations, labels, meta
from bot.foundation.resources import pod_requests

REPLICASETS = Resource("apps", "v1", "replicasets", "ReplicaSet")
HASH_LABEL = "rollouts-pod-template-hash"  # Argo labels every ReplicaSet it owns with its template hash
ROLLOUT_POLL_SECONDS = 2.0


def _list(ctx, cluster: str, resource, label_selector: str | None = None) -> list[dict]:
    try:
        return ctx.kube.list(cluster, resource, label_selector=label_selector)
    except KubeError as exc:
        if exc.not_found:  # Argo Rollouts is not installed there
            return []
        raise


def _canary_strategy(rollout: dict) -> dict | None:
    return (((rollout.get("spec") or {}).get("strategy") or {}).get("canary"))


def _live(rollout: dict) -> bool:
    status = rollout.get("status") or {}
    return (_canary_strategy(rollout) is not None and bool(status.get("stableRS"))
            and status.get("currentPodHash") != status.get("stableRS"))


def discover(ctx, cluster: str) -> list[Canary]:
    rollouts = [r for r in _list(ctx, cluster, ROLLOUTS) if _live(r)]
    if not rollouts:
        return []
    # The stable version's images live only on its ReplicaSet: one list of Argo's ReplicaSets.
    sets = _list(ctx, cluster, REPLICASETS, label_selector=HASH_LABEL)
    return [parse(ctx, cluster, r, sets) for r in rollouts]


def read(ctx, ref: CanaryRef) -> Canary | None:
    rollout = ctx.kube.get(ref.cluster, ROLLOUTS, ref.namespace, ref.service)
    if rollout is None or _canary_strategy(rollout) is None:
        return None
    stable_hash = (rollout.get("status") or {}).get("stableRS")
    stable_set = ctx.kube.get(ref.cluster, REPLICASETS, ref.namespace, f"{ref.service}-{stable_hash}") \
        if stable_hash else None
    return parse(ctx, ref.cluster, rollout, [stable_set] if stable_set else [])


def _weight_from_steps(steps: list[dict], index: int) -> int:
    weight = 0
    for step in steps[: index + 1]:
        if "setWeight" in step:
            weight = int(step["setWeight"])
    return weight


def parse(ctx, cluster: str, rollout: dict, sets: list[dict]) -> Canary:
    settings = ctx.settings
    spec, status = rollout.get("spec") or {}, rollout.get("status") or {}
    namespace, name = meta(rollout).get("namespace", "default"), meta(rollout)["name"]
    steps = _canary_strategy(rollout).get("steps") or []
    index = int(status.get("currentStepIndex") or 0)
    aborted = bool(status.get("abort"))
    live = _live(rollout)
    weights = ((status.get("canary") or {}).get("weights") or {})
    if "canary" in weights:
        weight = int((weights.get("canary") or {}).get("weight") or 0)
    elif aborted or not live:
        weight = 0
    else:
        weight = 100 if index >= len(steps) else _weight_from_steps(steps, index)
    stable_set = next((s for s in sets if meta(s).get("namespace") == namespace
                       and labels(s).get(HASH_LABEL) == status.get("stableRS")
                       and any(o.get("name") == name for o in meta(s).get("ownerReferences") or [{"name": name}])),
                      None)
    template = spec.get("template") or {}
    stable_template = ((stable_set or {}).get("spec") or {}).get("template") or {}
    upcoming = [int(s["setWeight"]) for s in steps[index + 1:] if "setWeight" in s]
    if aborted:
        next_weight = next((int(s["setWeight"]) for s in steps if "setWeight" in s), 100)
    else:
        next_weight = upcoming[0] if upcoming else (100 if index < len(steps) else None)
    paused = bool(spec.get("paused")) or bool(status.get("pauseConditions"))
    phase = ("Ended" if not live else "Aborted" if aborted else "Paused" if paused
             else status.get("phase") or "Progressing")
    replicas = int(spec.get("replicas", 1))
    extra = max(0, int(status.get("replicas") or 0) - replicas)
    cpu, memory = pod_requests(template.get("spec") or {})
    pauses = [parse_time(p.get("startTime")) for p in status.get("pauseConditions") or []]
    updated = int(status.get("updatedReplicas") or 0)
    canary = Canary(
        ref=CanaryRef(ARGO, cluster, namespace, name),
        team=labels(rollout).get(settings.labels.team),
        canary_weight=weight,
        stable_images=containers_images(stable_template.get("spec") or {}) or ["(stable ReplicaSet not found)"],
        canary_images=containers_images(template.get("spec") or {}),
        next_weight=next_weight,
        step_label=("done" if not live else f"aborted at step {min(index + 1, len(steps))} of {len(steps)}" if aborted
                    else f"step {min(index + 1, len(steps))} of {len(steps)}" if steps else "no steps"),
        phase=phase,
        revision=str(status.get("currentPodHash") or "none"),
        started_at=min((p for p in pauses if p), default=None),
        canary_pods=f"{updated}",
        stable_pods=f"{max(0, int(status.get('replicas') or 0) - updated)}",
        reserved_cpu=cpu * extra, reserved_memory=memory * extra,
        seen={"i": index, "a": aborted},
        objects={"rollout": rollout, "live": live, "steps": steps, "index": index, "aborted": aborted},
    )
    if status.get("message") and phase in ("Degraded", "Aborted"):
        canary.warnings.append(f"Argo says: {status['message']}")
    read_annotations(canary, annotations(rollout))
    canary.split = _split(settings, namespace, name, template, stable_template, stable_set is not None)
    return canary


def _split(settings, namespace: str, name: str, template: dict, stable_template: dict, found: bool) -> MetricsSplit:
    # Istio names an Argo pod's workload after the Rollout (its ReplicaSet minus the hash), so the
    # two versions differ only by their `version` label.
    selector = f'reporter="destination",destination_workload_namespace="{namespace}",destination_workload="{name}"'
    key = settings.labels.version
    canary_version = (template.get("metadata", {}).get("labels") or {}).get(key)
    stable_version = (stable_template.get("metadata", {}).get("labels") or {}).get(key)
    if not canary_version:
        return MetricsSplit(selector, unknown=f"the canary's pods carry no `{key}` label, so Istio cannot tell "
                                              "the versions apart")
    if stable_version == canary_version:
        return MetricsSplit(selector, unknown=f"stable and canary pods carry the same `{key}` label "
                                              f"({canary_version}), so Istio cannot tell them apart")
    roles = {canary_version: "canary"}
    if stable_version:
        roles[stable_version] = "stable"
    return MetricsSplit(selector, "destination_version", roles, default=None if found else "stable")


# -- writing -------------------------------------------------------------------------------------
def _patch_status(ctx, canary: Canary, status: dict) -> dict:
    ref = canary.ref
    return ctx.kube.patch(ref.cluster, ROLLOUTS, ref.namespace, ref.service, {"status": status}, subresource="status")


def _patch_rollout(ctx, canary: Canary, body: dict) -> dict:
    ref = canary.ref
    return ctx.kube.patch(ref.cluster, ROLLOUTS, ref.namespace, ref.service, body)


def step(ctx, canary: Canary, run: Run) -> str:
    rollout, steps, index = canary.objects["rollout"], canary.objects["steps"], canary.objects["index"]
    notes = annotations_for_step(canary, run.actor, ctx.now())
    if canary.objects["aborted"]:
        run.step("clear status.abort (retry)", lambda: _patch_status(ctx, canary, {"abort": False}))
        run.step("record who stepped", lambda: _patch_rollout(ctx, canary, {"metadata": {"annotations": notes}}))
        return "Retried: Argo restarts the canary from its first step."
    if not canary.objects["live"]:
        raise Refused("this Rollout has no canary in progress")
    if index >= len(steps):
        raise Refused("the Rollout has finished its steps and Argo is completing it; use Promote to finish now")
    status = rollout.get("status") or {}
    if status.get("pauseConditions"):
        run.step("clear status.pauseConditions", lambda: _patch_status(ctx, canary, {"pauseConditions": None}))
    else:  # running an analysis or a timed pause: move to the next step, as the CLI does
        run.step(f"advance status.currentStepIndex to {index + 1}",
                 lambda: _patch_status(ctx, canary, {"pauseConditions": None, "currentStepIndex": index + 1}))
    body: dict = {"metadata": {"annotations": notes}}
    if (rollout.get("spec") or {}).get("paused"):
        body["spec"] = {"paused": False}
    run.step("unpause spec.paused" if "spec" in body else "record who stepped", lambda: _patch_rollout(ctx, canary, body))
    target = f"setWeight {canary.next_weight}%" if canary.next_weight is not None else "the end of its steps"
    return f"Argo continues to the next step ({target})."


def promote(ctx, canary: Canary, run: Run) -> str:
    rollout = canary.objects["rollout"]
    status = rollout.get("status") or {}
    if canary.objects["aborted"]:
        run.step("clear status.abort (retry)", lambda: _patch_status(ctx, canary, {"abort": False}))
    if status.get("currentPodHash") != status.get("stableRS"):
        if status.get("promoteFull"):
            run.skip("set status.promoteFull", "already set")
        else:
            run.step("set status.promoteFull", lambda: _patch_status(ctx, canary, {"promoteFull": True}))
    # promoteFull does not lift a manual pause; the Slack Promote means "finish now", so unpause too.
    if (rollout.get("spec") or {}).get("paused"):
        run.step("unpause spec.paused", lambda: _patch_rollout(ctx, canary, {"spec": {"paused": False}}))
    run.step("wait for Argo to finish the promotion", lambda: wait_until_healthy(ctx, canary.ref, run.progress))
    _record_saving(ctx, canary, "promote")
    return f"Promoted: Argo reports the Rollout Healthy on {', '.join(f'`{i}`' for i in canary.canary_images)}."


def abort(ctx, canary: Canary, run: Run) -> str:
    if canary.objects["aborted"]:
        run.skip("set status.abort", "the Rollout is already aborted")
        return "Already aborted: Argo keeps all traffic on the stable version."
    if not canary.objects["live"]:
        raise Refused("this Rollout has no canary in progress")
    run.step("set status.abort", lambda: _patch_status(ctx, canary, {"abort": True}))
    _record_saving(ctx, canary, "abort")
    return ("Aborted: Argo sends all traffic back to the stable version and scales the canary down. "
            "The Rollout's spec still names the new version; change it in Git, or click Promote to retry.")


def _record_saving(ctx, canary: Canary, how: str) -> None:
    ref = canary.ref
    if canary.reserved_cpu or canary.reserved_memory:
        ctx.store.record_saving(cluster=ref.cluster, service=ref.service, cpu_cores=canary.reserved_cpu,
                                memory_bytes=canary.reserved_memory, source="canary", team=canary.team,
                                namespace=ref.namespace, ref=f"{ref.key}:{canary.revision}:{how}")


def wait_until_healthy(ctx, ref: CanaryRef, progress) -> str:
    deadline = time.monotonic() + ctx.settings.canary.rollout_timeout.total_seconds()
    text = "not read yet"
    while True:
        try:
            rollout = ctx.kube.get(ref.cluster, ROLLOUTS, ref.namespace, ref.service) or {}
        except KubeError as exc:
            rollout, text = {}, f"last read failed: {exc}"
        status = rollout.get("status") or {}
        if rollout:
            text = f"phase {status.get('phase') or '?'}" + (f": {status['message']}" if status.get("message") else "")
            if status.get("phase") == "Healthy" and status.get("stableRS") == status.get("currentPodHash"):
                return text
        left = deadline - time.monotonic()
        if left <= 0:
            raise StepFailed("wait for Argo to finish the promotion",
                             f"Argo had not finished within {format_duration(ctx.settings.canary.rollout_timeout)} ({text}); "
                             "it keeps going on its own — click Refresh to watch it")
        progress(f"waiting for Argo: {text}")
        time.sleep(min(ROLLOUT_POLL_SECONDS, max(left, 0.01)))


def resume_hint(action: str, canary: Canary) -> str:
    return (f"Click *{action.capitalize()}* again once the cause is fixed: deckhand re-reads the Rollout and "
            "only sends what is still missing.")
