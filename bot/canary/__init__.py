"""Canaries: discovery across the fleet and the step / promote / abort state machine.

One interface over two backends — Istio-native Deployments + VirtualService weights
(bot/canary/istio.py) and Argo Rollouts (bot/canary/argo.py); Slack code never knows which one
it talks to. Shared types and the "who started it" convention live in bot/canary/model.py.

Every operation:
- runs under `store.locked("canary:<cluster>/<ns>/<svc>")`, so a double click, a Slack retry or
  two people at once run it once, and the second one is told what is already happening;
- re-reads the cluster first (weights may have been changed by hand) — a Next step whose button
  showed another state than the cluster's does nothing and says so;
- is resumable: each write is one audited step, the first failure stops the run and names the
  step, and running it again continues from what the cluster now shows;
- never touches a protected namespace (`protected_namespaces`), whoever asks.

Who may operate a canary is decided on its owner: the team label of the stable workload (the
stable Deployment, else the VirtualService; the Rollout for Argo), never the canary Deployment's
own label alone.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bot.canary import argo, istio
from bot.canary.model import (ARGO, ISTIO, Canary, CanaryRef, Outcome, Progress, Refused, Run,  # noqa: F401
                              StepFailed)
from bot.foundation.kube import KubeError

BACKENDS = {ISTIO: istio, ARGO: argo}
ACTIONS = {"step": "Next step", "promote": "Promote", "abort": "Abort"}


@dataclass
class Discovery:
    canaries: list[Canary] = field(default_factory=list)
    errors: list[KubeError] = field(default_factory=list)

    def answered(self, cluster: str) -> bool:
        return not any(e.cluster == cluster for e in self.errors)


def discover(ctx, clusters: list[str] | None = None) -> Discovery:
    """Live canaries of every backend in the given clusters (all by default), clusters in parallel."""
    names = clusters or [c.name for c in ctx.settings.clusters]
    found = Discovery()
    if not names:
        return found
    with ThreadPoolExecutor(max_workers=min(8, len(names)), thread_name_prefix="canary-scan") as pool:
        for canaries, errors in pool.map(lambda name: _discover_cluster(ctx, name), names):
            found.canaries.extend(canaries)
            found.errors.extend(errors)
    found.canaries.sort(key=lambda c: (c.ref.service, c.ref.cluster, c.ref.namespace))
    for canary in found.canaries:
        fill_started_by(ctx, canary)
    return found


def _discover_cluster(ctx, cluster: str) -> tuple[list[Canary], list[KubeError]]:
    canaries, errors = [], []
    for backend in BACKENDS.values():
        try:
            canaries.extend(backend.discover(ctx, cluster))
        except KubeError as exc:
            errors.append(exc)
    return canaries, errors[:1]  # one unreachable API server is one problem, not two


def find(ctx, service: str, cluster: str | None = None) -> Discovery:
    found = discover(ctx, [cluster] if cluster else None)
    found.canaries = [c for c in found.canaries if c.ref.service == service]
    return found


def read(ctx, ref: CanaryRef) -> Canary | None:
    """The canary as the cluster shows it now (ended ones included: `.live` tells)."""
    canary = BACKENDS[ref.backend].read(ctx, ref)
    if canary is not None:
        fill_started_by(ctx, canary)
    return canary


def fill_started_by(ctx, canary: Canary) -> None:
    """No annotation: whoever made the first Next step of this revision through deckhand, if anyone."""
    if canary.started_by:
        return
    rows = ctx.store.query(
        "SELECT actor FROM audit WHERE action = 'canary.step' AND target = ? AND cluster = ? AND result = 'ok' "
        "AND json_extract(params, '$.namespace') = ? AND json_extract(params, '$.revision') = ? ORDER BY id LIMIT 1",
        [canary.ref.service, canary.ref.cluster, canary.ref.namespace, canary.revision])
    if rows:
        canary.started_by = rows[0]["actor"]


def operate(ctx, ref: CanaryRef, action: str, actor: str, seen: dict | None = None,
            progress: Progress = lambda text: None) -> Outcome:
    """Run step / promote / abort once, under the canary's lock; never raises for cluster trouble."""
    label = ACTIONS[action]
    backend = BACKENDS[ref.backend]
    ttl = ctx.settings.canary.rollout_timeout.total_seconds() + 300  # a crashed holder frees it eventually
    with ctx.store.locked(ref.lock_name, f"{label} by <@{actor}>", ttl_seconds=ttl) as busy:
        if busy is not None:
            _audit(ctx, actor, action, ref, f"busy: {busy.get('op')}")
            return Outcome(action, "busy", f"{busy.get('op')} is already running on `{ref.service}` in "
                                           f"`{ref.cluster}/{ref.namespace}` (since "
                                           f"{str(busy.get('acquired_at'))[:19].replace('T', ' ')} UTC). "
                                           "Its result will show on the message.", actor=actor)
        try:
            canary = read(ctx, ref)
        except KubeError as exc:
            _audit(ctx, actor, action, ref, f"failed: {exc}")
            return Outcome(action, "failed", f"{label} could not start", failed_step="read the canary",
                           error=str(exc), next_hint="Nothing was changed. Try again in a minute.", actor=actor)
        if canary is None or not canary.live:
            _audit(ctx, actor, action, ref, "gone")
            return Outcome(action, "gone", f"There is no canary of `{ref.service}` in `{ref.cluster}/{ref.namespace}` "
                                           "any more; nothing was changed.", canary=canary, actor=actor)
        if ctx.settings.is_protected(ref.namespace):
            _audit(ctx, actor, action, ref, "refused: protected namespace")
            return Outcome(action, "refused", f"{label} refused: `{ref.namespace}` is a protected namespace "
                                              "(`protected_namespaces` in deckhand's config), so deckhand changes "
                                              "nothing there, whoever asks. Nothing was changed.",
                           canary=canary, actor=actor)
        if action == "step" and seen and seen != canary.seen:
            _audit(ctx, actor, action, ref, f"moved: now {canary.canary_weight}%")
            return Outcome(action, "moved", f"The canary changed since that message: it now gets "
                                            f"{canary.canary_weight}% ({canary.step_label}). Nothing was changed; "
                                            "check the fresh numbers and click again if you still want to.",
                           canary=canary, actor=actor)
        progress(f"{label} started by <@{actor}>")
        run = Run(ctx, canary, actor, action, progress)
        try:
            summary = getattr(backend, action)(ctx, canary, run)
            outcome = Outcome(action, "done", summary, steps=run.steps, actor=actor)
        except Refused as exc:
            outcome = Outcome(action, "refused", f"{label} refused: {exc}. Nothing was changed.", steps=run.steps,
                              actor=actor)
        except StepFailed as exc:
            outcome = Outcome(action, "failed", f"{label} stopped", steps=run.steps, failed_step=exc.step,
                              error=exc.why, next_hint=backend.resume_hint(action, canary), actor=actor)
        _audit(ctx, actor, action, ref, outcome.status if outcome.ok else f"{outcome.status}: "
               f"{outcome.failed_step + ': ' + (outcome.error or '') if outcome.failed_step else outcome.summary}")
        try:
            outcome.canary = read(ctx, ref)
        except KubeError:
            outcome.canary = None
        return outcome


def _audit(ctx, actor: str, action: str, ref: CanaryRef, result: str) -> None:
    ctx.audit(actor, f"canary.{action}", result[:500], target=ref.service, cluster=ref.cluster,
              params={"namespace": ref.namespace, "backend": ref.backend, "step": "outcome"})
