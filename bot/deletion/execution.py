"""Carrying out an approved deletion: the plan's objects, phase by phase, each DELETE pinned to the
approved object, and the moves and messages every step of the state machine shares.

An object the API server only marks for deletion (deletionTimestamp: a finalizer, Foreground waiting on
dependents) is not "deleted" until a repeated DELETE answers 404: the next phase waits for it, and one still
Terminating after TERMINATING_WAIT stops the request as `failed`, naming the finalizers holding it.

`run_deletion` deletes with foreground propagation and `preconditions: {uid, resourceVersion}`, so the
API server deletes only the very object that was approved, unchanged since deckhand read it. Each
phase first reads its objects again (one list narrowed by name per object): one re-created under
the same name (another uid) is left in place, never deleted. A precondition 409 (changed or
re-created between that read and the DELETE) stops the run; Continue reads again. The state
machine that calls it is bot/deletion/lifecycle.py.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from bot.deletion.dependencies import WORKLOADS, DependencyReport
from bot.deletion.requests import TABLE, DeletionRequest, Step, get_request, notify_requester, publish, \
    refresh_pending_gauge
from bot.foundation.context import Context
from bot.foundation.kube import KubeError
from bot.foundation.store import Audit


@dataclass(frozen=True)
class Outcome:
    """What to tell the person who clicked: `ok` False means nothing (more) happened, and why."""

    ok: bool
    message: str


def move(ctx: Context, req: DeletionRequest, from_states: str | tuple[str, ...], to_state: str, actor: str,
         action: str, values: dict | None = None, params: dict | None = None) -> bool:
    """One compare-and-set move of the request, with its audit row in the same transaction."""
    values = {**(values or {}), "updated_at": ctx.store.now()}
    won = ctx.store.transition(
        TABLE, {"id": req.id}, from_states, to_state, values,
        audit=Audit(actor=actor, action=action, result=to_state, target=req.service, cluster=req.cluster,
                    params={"request": req.id, "namespace": req.namespace, **(params or {})}))
    refresh_pending_gauge(ctx)
    return won


def reload(ctx: Context, req: DeletionRequest) -> DeletionRequest:
    fresh = get_request(ctx, req.id)
    assert fresh is not None
    return fresh


def announce(ctx: Context, req: DeletionRequest, requester_text: str | None = None) -> DeletionRequest:
    req = reload(ctx, req)
    publish(ctx, req)
    if requester_text:
        notify_requester(ctx, req, requester_text)
    return req


# -- deletion ---------------------------------------------------------------------------------
def save_plan(ctx: Context, req: DeletionRequest) -> None:
    with ctx.store.tx() as db:
        db.execute(f"UPDATE {TABLE} SET plan = ?, updated_at = ? WHERE id = ? AND state = 'deleting'",
                   [json.dumps([asdict(s) for s in req.plan]), ctx.store.now(), req.id])


def run_deletion(ctx: Context, req: DeletionRequest, actor: str) -> Outcome:
    """Delete the plan's objects phase by phase (foreground propagation), saving each step's result.
    The lock on the request is held by the caller. Deleting what is already gone is a no-op, so a
    resumed run simply walks the plan again.

    At the start of each phase its remaining objects are read again: gone is done, another uid means
    it was re-created since the approval and it is left in place, and otherwise the resourceVersion
    just read goes with the approved uid into the DELETE's preconditions. Reading per phase matters:
    deleting one phase makes controllers touch the next (an HPA's status changes once its Deployment
    is gone), and the approval's read would be stale by then."""
    for phase in sorted({s.phase for s in req.plan}):
        steps = [s for s in req.plan if s.phase == phase and not s.done]
        for step in steps:
            try:
                _reread(ctx, req, step)
            except KubeError as exc:
                return _stop(ctx, req, actor, step, exc)
        for step in [s for s in steps if not s.done]:
            try:
                step.result = ctx.kube.delete(req.cluster, step.finding.resource, step.namespace, step.name,
                                              propagation="Foreground", uid=step.uid or None,
                                              resource_version=step.resource_version or None)
                step.detail = ""
            except KubeError as exc:
                return _stop(ctx, req, actor, step, exc)
        terminating = [s for s in req.plan if s.phase == phase and s.result == "terminating"]
        try:
            _await_terminating(ctx, req, terminating)
        except KubeError as exc:
            return _stopped_terminating(ctx, req, actor, terminating, str(exc))
        held = [s for s in terminating if s.result == "terminating"]
        if held:
            return _stopped_terminating(ctx, req, actor, held, None)
        save_plan(ctx, req)
        if phase == WORKLOADS:
            record_saving(ctx, req)
        publish(ctx, reload(ctx, req))
    record_saving(ctx, req)  # a plan without workloads still lands in the ledger (at zero)
    move(ctx, req, "deleting", "deleted", actor, "deletion.done",
         params={"cpu_cores": req.report.cpu_cores, "memory_bytes": req.report.memory_bytes})
    freed = freed_text(req.report)
    kept = [s for s in req.plan if s.result == "left in place"]
    left = (f" {', '.join(f'{s.kind} `{s.name}`' for s in kept)} {'was' if len(kept) == 1 else 'were'} re-created "
            "since the approval and left in place (never approved).") if kept else ""
    announce(ctx, req, f":wastebasket: `{req.service}` is deleted from `{req.cluster}`{freed}.{left}")
    return Outcome(True, f"Deleted `{req.service}` from `{req.cluster}`{freed}.{left}")


# How long one phase waits for its objects to finish terminating before the request stops as `failed`
# (and *Continue deletion* picks it up). With Foreground propagation the API server only marks an object
# (deletionTimestamp + the foregroundDeletion finalizer) and the garbage collector removes it once its
# dependents are gone, usually within seconds; a finalizer whose controller is down holds it forever.
TERMINATING_WAIT = 30.0
TERMINATING_POLL = 0.5


def _await_terminating(ctx: Context, req: DeletionRequest, steps: list[Step]) -> None:
    """Watch Terminating objects go: a repeated DELETE (pinned to the approved uid) answers 404 once the
    object is gone, or a precondition 409 once another object took its name. A step still held when the wait
    ends keeps the result "terminating" and names the finalizers in its detail."""
    deadline = time.monotonic() + TERMINATING_WAIT
    waiting = list(steps)
    while waiting:
        for step in list(waiting):
            try:
                state, finalizers = ctx.kube.delete_state(req.cluster, step.finding.resource, step.namespace,
                                                          step.name, uid=step.uid or None)
            except KubeError as exc:
                if not exc.precondition_failed:
                    raise
                state, finalizers = "deleted", []  # the approved object is gone; a new one has the name
            if state != "terminating":
                step.result, step.detail = "deleted", ""
                waiting.remove(step)
            else:
                step.detail = ("waiting for finalizers: " + ", ".join(finalizers)) if finalizers else \
                    "waiting for the API server to remove it"
        if not waiting or time.monotonic() >= deadline:
            return
        time.sleep(TERMINATING_POLL)


def _stopped_terminating(ctx: Context, req: DeletionRequest, actor: str, held: list[Step],
                         error: str | None) -> Outcome:
    """Objects still Terminating: do not call the service deleted, nor move on to the next phase."""
    names = "; ".join(f"{s.kind} {s.namespace}/{s.name} ({s.detail or 'terminating'})" for s in held)
    why = f"checking on them failed: {error}" if error else f"still terminating after {TERMINATING_WAIT:.0f}s"
    note = f"{len(held)} object{'s' if len(held) != 1 else ''} {why}: {names}"
    save_plan(ctx, req)
    move(ctx, req, "deleting", "failed", actor, "deletion.terminating", {"note": note},
         params={"terminating": [f"{s.kind}/{s.name}" for s in held]})
    announce(ctx, req, f":hourglass_flowing_sand: `{req.service}` is not fully deleted from `{req.cluster}` yet: "
                       f"{note}. Whatever owns those finalizers must finish; then DevOps can press *Continue "
                       "deletion* on the request.")
    return Outcome(False, f":hourglass_flowing_sand: *Not deleted yet* — {note}.\nOnce they are gone, press "
                          "*Continue deletion*: finished steps are skipped.")


def _reread(ctx: Context, req: DeletionRequest, step: Step) -> None:
    """Read the object again; settle the step when there is nothing to delete (already gone, or
    re-created and left in place), else refresh its resourceVersion. A list narrowed to the name, not
    a get: `list` is what deckhand's RBAC grants on every kind a plan holds."""
    if not step.uid:  # a plan stored before deckhand recorded identities: delete by name, as then
        return
    try:
        found = ctx.kube.list(req.cluster, step.finding.resource, namespace=step.namespace,
                              field_selector=f"metadata.name={step.name}")
    except KubeError as exc:
        if not exc.not_found:  # 404: the kind's CRD is gone, and its objects with it
            raise
        found = []
    current = next((o for o in found if (o.get("metadata") or {}).get("name") == step.name), None)
    if current is None:
        step.result, step.detail = "already gone", ""
        return
    meta = current.get("metadata") or {}
    if str(meta.get("uid") or "") != step.uid:
        step.result = "left in place"
        step.detail = "re-created since the approval (another uid): not the object that was approved"
        return
    step.resource_version = str(meta.get("resourceVersion") or "")


def _stop(ctx: Context, req: DeletionRequest, actor: str, step: Step, exc: KubeError) -> Outcome:
    if exc.precondition_failed:
        why = ("it changed since it was read: Kubernetes refused the delete because its uid or resourceVersion "
               "no longer matches what was approved")
        hint = ("Nothing more was deleted. Press *Continue deletion*: it reads the object again, deletes it if it "
                "is still the approved one, and leaves it in place if it was re-created.")
    else:
        why, hint = str(exc), "Fix the cause, then press *Continue deletion*: finished steps are skipped."
    step.result, step.detail = "failed", why
    save_plan(ctx, req)
    move(ctx, req, "deleting", "failed", actor, "deletion.step",
         {"note": f"{step.kind} {step.namespace}/{step.name}: {why}"},
         params={"step": f"{step.kind}/{step.name}", "error": str(exc)})
    announce(ctx, req, f":warning: Deleting `{req.service}` from `{req.cluster}` stopped at {step.kind} "
                       f"`{step.name}`: {why}. DevOps can press *Continue deletion* on the request.")
    return Outcome(False, f":warning: *Deletion stopped* at {step.kind} `{step.namespace}/{step.name}` — {why}\n{hint}")


def record_saving(ctx: Context, req: DeletionRequest) -> None:
    ctx.store.record_saving(cluster=req.cluster, service=req.service, cpu_cores=req.report.cpu_cores,
                            memory_bytes=req.report.memory_bytes, source="deletion", ref=f"deletion:{req.id}",
                            team=req.team, namespace=req.namespace)


def freed_text(report: DependencyReport) -> str:
    if not report.cpu_cores and not report.memory_bytes:
        return ""
    cores = f"{report.cpu_cores:.2f}".rstrip("0").rstrip(".")
    return f"; it frees {cores} CPU cores and {report.memory_bytes / 2**30:.1f} GiB of memory requests"
