"""Istio-native canaries: two Deployments, a DestinationRule with subsets, a weighted VirtualService.

Conventions (DESIGN.md; label keys come from `labels:` in the config): Deployments `<svc>`
(`track: stable`) and `<svc>-canary` (`track: canary`), DestinationRule subsets `stable`/`canary`
(or any subset whose labels carry that `track`), and a VirtualService whose http routes split
weight between the two subsets. The weights are the truth; deckhand never caches them.

Safety order (the whole point of doing this from a bot):
- Abort: weights 100/0 first, then scale the canary to 0 — a subset is never scaled to zero
  while it still has weight.
- Promote: copy the canary's pod template onto the stable Deployment, wait until that rollout
  is complete, only then weights 100/0, then scale the canary to 0. If the stable rollout does
  not complete, stop: traffic must not leave the only copy known to be healthy.
"""
from __future__ import annotations

import copy
import hashlib
import time

from bot.canary.model import (ANNOTATIONS, ISTIO, Canary, CanaryRef, MetricsSplit, Refused, Run, StepFailed,
                              annotations_for_step, containers_images, parse_time, pods_text, read_annotations)
from bot.foundation.kube import DEPLOYMENTS, KubeError, annotations, labels, meta
from bot.foundation.resources import workload_reserved

# Real time, not the injected clock: the Deployment controller works in real time. Tests lower it.
ROLLOUT_POLL_SECONDS = 2.0
ROLES = ("stable", "canary")
# What "the canary's pod template" means when it is copied onto stable. Labels stay stable's:
# they are what the stable subset and the Deployment's selector match, so changing them would
# take the stable pods out of their own subset.
COPIED_FIELDS = ("image", "command", "args", "env", "envFrom", "resources")


# -- reading -------------------------------------------------------------------------------------
def _list(ctx, cluster: str, resource, namespace: str | None = None, label_selector: str | None = None) -> list[dict]:
    try:
        return ctx.kube.list(cluster, resource, namespace=namespace, label_selector=label_selector)
    except KubeError as exc:
        if exc.not_found:  # Istio's CRDs are not installed there: no Istio canaries, not an error
            return []
        raise


def discover(ctx, cluster: str) -> list[Canary]:
    """Live Istio canaries of one cluster: one list per kind, whatever the number of services."""
    services = _list(ctx, cluster, ctx.kube.istio(cluster, "virtualservices"))
    if not any(_may_split(vs) for vs in services):
        return []
    rules = _list(ctx, cluster, ctx.kube.istio(cluster, "destinationrules"))
    deployments = _list(ctx, cluster, DEPLOYMENTS, label_selector=ctx.settings.labels.track)
    return [c for c in parse(ctx, cluster, services, rules, deployments) if c.objects["live"]]


def read(ctx, ref: CanaryRef) -> Canary | None:
    """Re-read one canary (live or ended) from its namespace, for an operation."""
    ns = ref.namespace
    services = _list(ctx, ref.cluster, ctx.kube.istio(ref.cluster, "virtualservices"), namespace=ns)
    rules = _list(ctx, ref.cluster, ctx.kube.istio(ref.cluster, "destinationrules"), namespace=ns)
    deployments = _list(ctx, ref.cluster, DEPLOYMENTS, namespace=ns, label_selector=ctx.settings.labels.track)
    return next((c for c in parse(ctx, ref.cluster, services, rules, deployments) if c.ref == ref), None)


def _may_split(vs: dict) -> bool:
    return any(len((h or {}).get("route") or []) >= 2 for h in (vs.get("spec") or {}).get("http") or [])


def _short(host: str) -> str:
    return (host or "").split(".")[0]


def parse(ctx, cluster: str, services: list[dict], rules: list[dict], deployments: list[dict]) -> list[Canary]:
    track = ctx.settings.labels.track
    subsets: dict[tuple[str, str], dict[str, dict]] = {}
    for rule in rules:
        key = (meta(rule).get("namespace", "default"), _short((rule.get("spec") or {}).get("host", "")))
        for subset in (rule.get("spec") or {}).get("subsets") or []:
            subsets.setdefault(key, {})[subset.get("name", "")] = subset.get("labels") or {}
    canaries = []
    for vs in services:
        namespace = meta(vs).get("namespace", "default")
        routes, host = [], None
        for i, http in enumerate((vs.get("spec") or {}).get("http") or []):
            dests = (http or {}).get("route") or []
            roles = [_role(d, subsets, namespace, track) for d in dests]
            if len(dests) == 2 and sorted(r or "" for r in roles) == ["canary", "stable"]:
                routes.append((i, roles.index("stable"), roles.index("canary")))
                host = host or _short((dests[roles.index("stable")].get("destination") or {}).get("host", ""))
        if routes:
            mine = [d for d in deployments if meta(d).get("namespace", "default") == namespace]
            canaries.append(_build(ctx, cluster, namespace, host or meta(vs)["name"], vs, routes, mine))
    return canaries


def _role(dest: dict, subsets: dict, namespace: str, track: str) -> str | None:
    destination = dest.get("destination") or {}
    name = destination.get("subset")
    value = subsets.get((namespace, _short(destination.get("host", ""))), {}).get(name, {}).get(track)
    if value in ROLES:
        return value
    return name if name in ROLES else None


def _template(dep: dict | None) -> dict:
    return ((dep or {}).get("spec") or {}).get("template") or {}


def _workloads(ctx, service: str, deployments: list[dict]) -> dict[str, dict]:
    app, track = ctx.settings.labels.app, ctx.settings.labels.track
    found: dict[str, dict] = {}
    # Exact conventional names first, so `<svc>` wins over some other Deployment of the same app.
    ordered = sorted(deployments, key=lambda d: meta(d)["name"] not in (service, f"{service}-canary"))
    for dep in ordered:
        pod_labels = _template(dep).get("metadata", {}).get("labels") or {}
        mine = labels(dep).get(app) == service or pod_labels.get(app) == service or \
            meta(dep)["name"] in (service, f"{service}-canary")
        role = pod_labels.get(track) or labels(dep).get(track)
        if mine and role in ROLES:
            found.setdefault(role, dep)
    return found


def _build(ctx, cluster, namespace, service, vs, routes, deployments) -> Canary:
    settings = ctx.settings
    found = _workloads(ctx, service, deployments)
    stable, canary_dep = found.get("stable"), found.get("canary")
    http = vs["spec"]["http"]
    weights = [int(http[i]["route"][c].get("weight") or 0) for i, _, c in routes]
    weight = max(weights)
    steps = settings.canary.steps
    canary_images = containers_images(_template(canary_dep).get("spec") or {})
    replicas = int(((canary_dep or {}).get("spec") or {}).get("replicas", 1)) if canary_dep else 0
    cpu, memory = workload_reserved(canary_dep) if canary_dep else (0.0, 0)
    live = weight > 0 or replicas > 0
    # The owner is whoever owns what the canary takes traffic from: the stable Deployment, else the
    # VirtualService. Anyone who may create a Deployment in a shared namespace can label a
    # `<svc>-canary` with their own team; that label alone must not hand them the service's traffic.
    team_key = settings.labels.team
    owner = next((labels(o).get(team_key) for o in (stable, vs) if o and labels(o).get(team_key)), None)
    claimed = labels(canary_dep).get(team_key) if canary_dep else None
    canary = Canary(
        ref=CanaryRef(ISTIO, cluster, namespace, service),
        team=owner,
        canary_weight=weight,
        stable_images=containers_images(_template(stable).get("spec") or {}),
        canary_images=canary_images,
        next_weight=next((s for s in steps if s > weight), None),
        step_label=("done" if not live else f"step {steps.index(weight) + 1} of {len(steps)}" if weight in steps
                    else "not started" if weight == 0 else f"{weight}% (set by hand)"),
        phase=("Ended" if not live else "Not started" if weight == 0 else "Fully shifted" if weight == 100
               else "In progress"),
        revision=hashlib.sha256("\n".join(canary_images).encode()).hexdigest()[:12] if canary_dep else "none",
        started_at=parse_time(meta(canary_dep).get("creationTimestamp")) if canary_dep else None,
        canary_pods=pods_text(((canary_dep or {}).get("status") or {}).get("availableReplicas"), replicas),
        stable_pods=pods_text(((stable or {}).get("status") or {}).get("availableReplicas"),
                              ((stable or {}).get("spec") or {}).get("replicas", 1) if stable else 0),
        reserved_cpu=cpu, reserved_memory=memory,
        seen={"w": weight},
        objects={"vs": vs, "routes": routes, "stable": stable, "canary": canary_dep,
                 "live": live},
    )
    read_annotations(canary, annotations(vs))
    if len(set(weights)) > 1:
        canary.warnings.append(f"the VirtualService's routes disagree on the canary weight ({weights}); "
                               f"the highest is shown and every step sets them all")
    if claimed and claimed != owner:
        canary.warnings.append(f"the canary Deployment is labelled {team_key}={claimed}, but the stable workload and "
                               f"route belong to {owner or 'no team'}; only they (or DevOps) may operate it")
    if canary_dep is None:
        canary.warnings.append(f"no canary Deployment found (`{service}-canary` with `{settings.labels.track}: canary`)")
    if stable is None:
        canary.warnings.append(f"no stable Deployment found (`{service}` with `{settings.labels.track}: stable`)")
    canary.split = _split(ctx, namespace, service, stable, canary_dep)
    return canary


def _split(ctx, namespace, service, stable, canary_dep) -> MetricsSplit:
    selector = (f'reporter="destination",destination_service_namespace="{namespace}",'
                f'destination_service_name="{service}"')
    key = ctx.settings.labels.version
    versions = {role: (_template(dep).get("metadata", {}).get("labels") or {}).get(key)
                for role, dep in (("stable", stable), ("canary", canary_dep))}
    if versions["stable"] and versions["canary"] and versions["stable"] != versions["canary"]:
        return MetricsSplit(selector, "destination_version", {versions["stable"]: "stable", versions["canary"]: "canary"})
    # Same or missing `version` labels: Istio's destination_workload is the Deployment's name.
    return MetricsSplit(selector, "destination_workload",
                        {meta(d)["name"]: role for role, d in (("stable", stable), ("canary", canary_dep)) if d})


def _available(dep: dict | None) -> int:
    return int(((dep or {}).get("status") or {}).get("availableReplicas") or 0)


# -- writing -------------------------------------------------------------------------------------
def _set_weights(ctx, canary: Canary, weight: int, notes: dict[str, str | None]) -> dict:
    vs = canary.objects["vs"]
    http = copy.deepcopy(vs["spec"]["http"])
    for i, s, c in canary.objects["routes"]:
        http[i]["route"][s]["weight"] = 100 - weight
        http[i]["route"][c]["weight"] = weight
    # A merge patch replaces the whole `http` list, so it carries the resourceVersion we read:
    # a weight changed by hand meanwhile makes this a 409 instead of being silently overwritten.
    body = {"metadata": {"resourceVersion": meta(vs).get("resourceVersion"), "annotations": notes},
            "spec": {"http": http}}
    ref = canary.ref
    return ctx.kube.patch(ref.cluster, ctx.kube.istio(ref.cluster, "virtualservices"), ref.namespace,
                          meta(vs)["name"], body)


def _final_weights(ctx, canary: Canary) -> dict:
    return _set_weights(ctx, canary, 0, {key: None for key in ANNOTATIONS})


def _scale_canary_to_zero(ctx, canary: Canary) -> None:
    ref, dep = canary.ref, canary.objects["canary"]
    # The Deployment itself, not its /scale subresource: deckhand's ClusterRole grants patch on
    # deployments (deploy/kubernetes/access), and a merge patch of replicas is the same change.
    ctx.kube.patch(ref.cluster, DEPLOYMENTS, ref.namespace, meta(dep)["name"], {"spec": {"replicas": 0}})
    # Once per scale-down: the resourceVersion we read identifies this canary's last life.
    ctx.store.record_saving(cluster=ref.cluster, service=ref.service, cpu_cores=canary.reserved_cpu,
                            memory_bytes=canary.reserved_memory, source="canary", team=canary.team,
                            namespace=ref.namespace,
                            ref=f"{ref.key}:{meta(dep).get('uid')}:{meta(dep).get('resourceVersion')}")


def _canary_replicas(canary: Canary) -> int:
    dep = canary.objects["canary"]
    return int((dep.get("spec") or {}).get("replicas", 1)) if dep else 0


def step(ctx, canary: Canary, run: Run) -> str:
    target = canary.next_weight
    if target is None:
        raise Refused(f"the canary already gets {canary.canary_weight}% — there is no next step; use Promote")
    if _available(canary.objects["canary"]) == 0:
        raise Refused("the canary Deployment has no available pods, so it must not get more traffic; "
                      f"check `kubectl -n {canary.ref.namespace} get pods` and try again once they are ready")
    notes = annotations_for_step(canary, run.actor, ctx.now())
    run.step(f"set weights {100 - target}/{target}", lambda: _set_weights(ctx, canary, target, notes), weight=target)
    return f"The canary now gets {target}% of traffic (was {canary.canary_weight}%)."


def abort(ctx, canary: Canary, run: Run) -> str:
    ref = canary.ref
    if canary.canary_weight > 0:
        if _available(canary.objects["stable"]) == 0:
            raise Refused("the stable Deployment has no available pods, so sending all traffic to it would take "
                          f"{ref.service} down; fix the stable Deployment first (`kubectl -n {ref.namespace} "
                          f"rollout status deploy/{ref.service}`)")
        run.step("set weights 100/0", lambda: _final_weights(ctx, canary), weight=0)
    else:
        run.skip("set weights 100/0", "the canary gets no traffic")
    freed = ""
    if _canary_replicas(canary) > 0:
        run.step("scale the canary to 0", lambda: _scale_canary_to_zero(ctx, canary))
        freed = f" (reserved {canary.reserved_cpu:g} cores, {canary.reserved_memory / 2**30:.1f} GiB)"
    elif canary.objects["canary"] is not None:
        run.skip("scale the canary to 0", "it has no replicas")
    return f"Aborted: all traffic on stable, canary scaled to 0{freed}."


def promote(ctx, canary: Canary, run: Run) -> str:
    ref, stable, canary_dep = canary.ref, canary.objects["stable"], canary.objects["canary"]
    if stable is None or canary_dep is None:
        raise Refused("promotion needs both the stable and the canary Deployment; " + "; ".join(canary.warnings))
    template = copied_template(stable, canary_dep)
    if template is not None:
        if _available(canary_dep) == 0:
            raise Refused("the canary has no available pods, so its version is unproven; "
                          "it must run healthy before it replaces stable")
        run.step("copy the canary's pod template onto the stable Deployment",
                 lambda: ctx.kube.patch(ref.cluster, DEPLOYMENTS, ref.namespace, meta(stable)["name"], {
                     "metadata": {"resourceVersion": meta(stable).get("resourceVersion")},
                     "spec": {"template": {"spec": template}}}),
                 images=canary.canary_images)
    else:
        run.skip("copy the canary's pod template onto the stable Deployment", "stable already runs it")
    run.step("wait for the stable rollout", lambda: wait_for_rollout(ctx, ref, meta(stable)["name"], run.progress))
    if canary.canary_weight > 0:
        run.step("set weights 100/0", lambda: _final_weights(ctx, canary), weight=0)
    else:
        run.skip("set weights 100/0", "the canary gets no traffic")
    if _canary_replicas(canary) > 0:
        run.step("scale the canary to 0", lambda: _scale_canary_to_zero(ctx, canary))
    else:
        run.skip("scale the canary to 0", "it has no replicas")
    return (f"Promoted: stable runs {', '.join(f'`{i}`' for i in canary.canary_images)}, gets all traffic, "
            "and the canary is scaled to 0.")


def resume_hint(action: str, canary: Canary) -> str:
    if action == "promote":
        return (f"Traffic was not moved off the canary (it still gets {canary.canary_weight}%) unless listed above. "
                "Once the cause is fixed, click *Promote* again: it continues from the cluster's current state. "
                f"To go back instead, `kubectl -n {canary.ref.namespace} rollout undo deploy/{canary.ref.service}` "
                "and click *Abort*.")
    return f"Click *{action.capitalize()}* again: it re-reads the cluster and continues from where it stopped."


def copied_template(stable: dict, canary_dep: dict) -> dict | None:
    """The stable pod spec's container lists with the canary's fields; None when already equal."""
    stable_spec, canary_spec = _template(stable).get("spec") or {}, _template(canary_dep).get("spec") or {}
    changed: dict = {}
    for kind in ("containers", "initContainers"):
        theirs = {c.get("name"): c for c in canary_spec.get(kind) or []}
        ours = copy.deepcopy(stable_spec.get(kind) or [])
        for container in ours:
            source = theirs.pop(container.get("name"), None)
            if source is None:
                continue
            for key in COPIED_FIELDS:
                if key in source:
                    container[key] = copy.deepcopy(source[key])
                else:
                    container.pop(key, None)
        ours.extend(copy.deepcopy(list(theirs.values())))  # containers new in this version
        if ours != (stable_spec.get(kind) or []):
            changed[kind] = ours
    return changed or None


def rollout_state(dep: dict) -> tuple[bool, str | None, str]:
    """(complete, failure reason, progress text) the way `kubectl rollout status` judges a Deployment."""
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    want = int(spec.get("replicas", 1))
    updated, available, total = (int(status.get(k) or 0) for k in ("updatedReplicas", "availableReplicas", "replicas"))
    text = f"{updated}/{want} updated, {available} available"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return False, f"the Deployment exceeded its progress deadline ({cond.get('message', '')})", text
    if int(status.get("observedGeneration") or 0) < int(meta(dep).get("generation") or 0):
        return False, None, "waiting for the Deployment controller to see the change"
    return updated == want and total == updated and available == updated, None, text


def wait_for_rollout(ctx, ref: CanaryRef, name: str, progress) -> str:
    timeout = ctx.settings.canary.rollout_timeout.total_seconds()
    deadline = time.monotonic() + timeout
    text, last_error = "not read yet", None
    while True:
        try:
            dep = ctx.kube.get(ref.cluster, DEPLOYMENTS, ref.namespace, name)
            last_error = None
        except KubeError as exc:  # a blip while polling is not a failed rollout; the deadline bounds it
            dep, last_error = None, exc
        if dep is None and last_error is None:
            raise StepFailed("wait for the stable rollout", f"the Deployment {ref.namespace}/{name} is gone")
        if dep is not None:
            complete, failure, text = rollout_state(dep)
            if complete:
                return text
            if failure:
                raise StepFailed("wait for the stable rollout", failure + f" ({text})")
        left = deadline - time.monotonic()
        if left <= 0:
            why = f"it did not complete within {_seconds(timeout)} ({text})"
            raise StepFailed("wait for the stable rollout", why + (f"; last error: {last_error}" if last_error else ""))
        progress(f"waiting for the stable rollout: {text} ({_seconds(left)} left)")
        time.sleep(min(ROLLOUT_POLL_SECONDS, max(left, 0.01)))


def _seconds(value: float) -> str:
    value = int(round(value))
    return f"{value // 60}m{value % 60:02d}s" if value >= 60 else f"{value}s"
