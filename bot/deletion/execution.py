"""Carrying out an approved deletion: the plan's objects, phase by phase, each DELETE pinned to the
approved object, and the moves and messages every step of the state machine shares.

`run_deletion` deletes with foreground propagation and `preconditions: {uid, resourceVersion}`, so the
API server deletes only the very object that was approved. A precondition 409 stops the run; a run
that starts later than the approval's re-check (Continue, a resumed run, a removal PR's merge) reads
each remaining object again first and leaves one with another uid in place. The state machine that
calls it is bot/deletion/lifecycle.py.
"""
from __future__ import annotations

import json
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


def run_deletion(ctx: Context, req: DeletionRequest, actor: str, reread: bool = False) -> Outcome:
    """Delete the plan's objects phase by phase (foreground propagation), saving each step's result.
    The lock on the request is held by the caller. Deleting what is already gone is a no-op, so a
    resumed run simply walks the plan again.

    Every DELETE carries the approved uid and the resourceVersion last read as preconditions. Right
    after the approval's re-check those come from that read; `reread` (Continue, a resumed run, the
    merge of a removal PR, all later than the re-check) reads each remaining object again first: gone
    is done, another uid means it was re-created since the approval and it is left in place."""
    for phase in sorted({s.phase for s in req.plan}):
        for step in [s for s in req.plan if s.phase == phase and not s.done]:
            try:
                if reread and step.uid and _reread(ctx, req, step):
                    continue
                gone_now = ctx.kube.delete(req.cluster, step.finding.resource, step.namespace, step.name,
                                           propagation="Foreground", uid=step.uid or None,
                                           resource_version=step.resource_version or None)
                step.result, step.detail = ("deleted" if gone_now else "already gone"), ""
            except KubeError as exc:
                return _stop(ctx, req, actor, step, exc)
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


def _reread(ctx: Context, req: DeletionRequest, step: Step) -> bool:
    """Read the object again before deleting it. True when there is nothing to delete (the step is
    settled: already gone, or re-created and left in place); otherwise its resourceVersion is fresh."""
    current = ctx.kube.get(req.cluster, step.finding.resource, step.namespace, step.name)
    if current is None:
        step.result, step.detail = "already gone", ""
        return True
    meta = current.get("metadata") or {}
    if str(meta.get("uid") or "") != step.uid:
        step.result = "left in place"
        step.detail = "re-created since the approval (another uid): not the object that was approved"
        return True
    step.resource_version = str(meta.get("resourceVersion") or "")
    return False


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
