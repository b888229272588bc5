"""Deleting a service: requests, four-eyes approval, re-check, deletion in a safe order, savings.

States (every move is a compare-and-set with its audit row in the same transaction):

    pending ──approve──▶ approved ──re-check ok──▶ deleting ──▶ deleted
       │                    │  │                      │
       │                    │  └─GitOps──▶ awaiting_merge ──merged──▶ deleting
       │                    │                   └──closed unmerged──▶ cancelled
       │                    ├─new blocker──▶ refused
       │                    └─backend down──▶ pending (approve again later)
       ├─reject──▶ rejected            deleting ──step failed──▶ failed ──continue──▶ deleting
       └─ttl──▶ expired

Everything that acts on one request runs under the lock `deletion:<id>`, taken BEFORE the state is
read: double clicks, two approvers, Slack retries and a resumed run all serialize there, and the
CAS makes the loser see what the winner did. The lock is in SQLite and names its process: after a
crash mid-run the new writer drops it, and the deletion-expiry job (recover_interrupted) moves the
request to `failed` (`pending` if it died during the re-check), where a button resumes it.

What is deleted is exactly what the approver was shown: the request stores its plan as object
identities (kind, namespace, name, uid, resourceVersion) and, when the service's pipeline lives in
GitOps, the files a removal PR would delete. Approval re-checks and refuses when anything is new
or has another uid; every DELETE carries the uid (and the resourceVersion last read) as a
precondition, so an object re-created under the same name is never deleted by an old approval:
each phase reads its objects again first and leaves a re-created one in place, and a precondition
409 stops the run; *Continue deletion* reads again.

Carrying out the plan (preconditions, re-reads, stopping on a 409) is bot/deletion/execution.py.
The request records, their storage and their Slack message are in bot/deletion/requests.py;
the names other modules use are re-exported here.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict

from bot.foundation.context import Context
from bot.deletion.requests import (FINAL, OPEN, RENDERER, TABLE, DeletionRequest, Step, get_request,  # noqa: F401
                                   message_of, notify_requester, open_request_for, plan_changes, plan_of, publish,
                                   refresh_pending_gauge, set_renderer)
from bot.deletion.dependencies import PHASES, Blocker, DependencyReport, ServiceMissing, check
from bot.deletion.execution import Outcome, announce as _announce, move as _move, reload as _reload, \
    run_deletion as _run_deletion
from bot.foundation.gitops import GitOpsError, markdown_text
from bot.foundation.kube import KubeError
from bot.foundation.store import Audit, iso

log = logging.getLogger(__name__)

BRANCH_PREFIX = "deckhand/delete/"


# -- request ----------------------------------------------------------------------------------
def create_request(ctx: Context, report: DependencyReport, requester: str, source: str = "command",
                   override_reason: str | None = None) -> tuple[DeletionRequest, bool]:
    """Record a request and queue its approval message. Returns (request, created); when an open
    request for the service exists already, that one and False. Raises GitOpsError when the GitOps
    repository cannot be read (the files a removal PR would delete are part of what is approved)."""
    found = gitops_folder(ctx, report.service, report.team)
    report.gitops_folder, report.gitops_files = found if found is not None else (None, [])
    now = ctx.now()
    expires = now + ctx.settings.deletion.request_ttl
    with ctx.store.tx() as db:
        cursor = db.execute(
            f"INSERT INTO {TABLE} (cluster, namespace, service, team, requester, source, state, override_reason, "
            "report, plan, created_at, expires_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            [report.cluster, report.namespace, report.service, report.team, requester, source, override_reason,
             json.dumps(report.to_dict()), json.dumps([asdict(s) for s in plan_of(report)]), iso(now), iso(expires),
             iso(now)])
        if cursor.rowcount != 1:
            existing = open_request_for(ctx, report.cluster, report.namespace, report.service)
            if existing is not None:
                return existing, False
            raise RuntimeError("deletion request insert was ignored but no open request exists")
        req = get_request(ctx, cursor.lastrowid)
        params = {"request": req.id, "namespace": req.namespace, "source": source,
                  "cpu_cores": report.cpu_cores, "memory_bytes": report.memory_bytes}
        if override_reason:
            ctx.store.audit(Audit(requester, "deletion.override", "overridden", target=req.service, cluster=req.cluster,
                                  params={**params, "reason": override_reason, "why": report.traffic_unknown}))
        ctx.store.audit(Audit(requester, "deletion.request", "pending", target=req.service, cluster=req.cluster,
                              params=params))
        publish(ctx, req)
    refresh_pending_gauge(ctx)
    return req, True


# -- approve / reject / expire ----------------------------------------------------------------
def describe_state(req: DeletionRequest) -> str:
    who = f" by <@{req.decided_by}>" if req.decided_by else ""
    return {
        "pending": "It is waiting for approval.",
        "approved": f"It was approved{who} and is being re-checked.",
        "deleting": f"It was approved{who} and is being deleted.",
        "awaiting_merge": f"It was approved{who}; the deletion follows the merge of PR #{req.pr_number}.",
        "deleted": f"It was approved{who} and `{req.service}` is deleted.",
        "failed": f"Its deletion failed part-way ({req.note}); DevOps can press *Continue deletion*.",
        "rejected": f"It was rejected{who}.",
        "expired": "It expired without approval; request the deletion again if it is still wanted.",
        "refused": f"It was refused at approval ({req.note or 'the re-check found a new dependency'}).",
        "cancelled": f"Its pull request #{req.pr_number} was closed without merging, so nothing was deleted.",
    }.get(req.state, req.state)


def _expired(ctx: Context, req: DeletionRequest) -> bool:
    return req.state == "pending" and ctx.now() >= req.expires_at


def expire(ctx: Context, req: DeletionRequest, actor: str = "deckhand") -> bool:
    if not _move(ctx, req, "pending", "expired", actor, "deletion.expire"):
        return False
    ttl = ctx.settings.deletion.request_ttl
    _announce(ctx, req, f":hourglass: Your request to delete `{req.service}` from `{req.cluster}` expired: nobody "
                        f"approved it within {_hours(ttl)}. Run `/service delete {req.service} {req.cluster}` "
                        "to ask again.")
    return True


def expire_due(ctx: Context) -> int:
    rows = ctx.store.query(f"SELECT * FROM {TABLE} WHERE state = 'pending' AND expires_at <= ?", [ctx.store.now()])
    expired = sum(1 for row in rows if expire(ctx, DeletionRequest.from_row(row)))
    refresh_pending_gauge(ctx)
    return expired


def reject(ctx: Context, request_id: int, user: str) -> Outcome:
    with ctx.store.locked(f"deletion:{request_id}", "reject") as busy:
        req = get_request(ctx, request_id)
        if req is None:
            return Outcome(False, "This deletion request no longer exists.")
        if busy:
            return Outcome(False, f"This request is being handled right now. {describe_state(req)}")
        if _expired(ctx, req):
            expire(ctx, req)
            return Outcome(False, "This request had already expired; nothing to reject.")
        if not _move(ctx, req, "pending", "rejected", user, "deletion.reject",
                     {"decided_by": user, "decided_at": ctx.store.now()}):
            return Outcome(False, f"Nothing to reject. {describe_state(_reload(ctx, req))}")
        text = None if user == req.requester else (
            f":x: <@{user}> rejected your request to delete `{req.service}` from `{req.cluster}`.")
        _announce(ctx, req, text)
        return Outcome(True, f"Rejected the deletion of `{req.service}`.")


def approve(ctx: Context, request_id: int, user: str) -> Outcome:
    """Approve (or continue) a deletion. The caller has checked the four-eyes rule."""
    with ctx.store.locked(f"deletion:{request_id}", "approve", ttl_seconds=900) as busy:
        req = get_request(ctx, request_id)
        if req is None:
            return Outcome(False, "This deletion request no longer exists.")
        if busy:
            return Outcome(False, f"Someone else is acting on this request right now. {describe_state(req)}")
        if _expired(ctx, req):
            expire(ctx, req)
            return Outcome(False, f"This request expired at {req.expires_at:%Y-%m-%d %H:%M} UTC before it was approved; "
                                  f"ask <@{req.requester}> to request it again if it is still wanted.")
        if req.state == "pending":
            if not _move(ctx, req, "pending", "approved", user, "deletion.approve",
                         {"decided_by": user, "decided_at": ctx.store.now()}):
                return Outcome(False, describe_state(_reload(ctx, req)))
            return _recheck_and_delete(ctx, _announce(ctx, req), user)
        if req.state == "approved":  # a crash during the re-check left it here; the lock is ours now
            return _recheck_and_delete(ctx, req, user)
        if req.state == "failed":
            if not _move(ctx, req, "failed", "deleting", user, "deletion.resume"):
                return Outcome(False, describe_state(_reload(ctx, req)))
            return _run_deletion(ctx, _reload(ctx, req), user)
        if req.state == "deleting":  # a crash mid-deletion: continue where it stopped
            return _run_deletion(ctx, req, user)
        return Outcome(False, f"Nothing to approve. {describe_state(req)}")


def _back_to_pending(ctx: Context, req: DeletionRequest, user: str, what: str, exc: Exception) -> Outcome:
    _move(ctx, req, "approved", "pending", user, "deletion.recheck", {"decided_by": None, "decided_at": None},
          params={"error": str(exc)})
    _announce(ctx, req)
    return Outcome(False, f":warning: *Could not {what}* — {exc}\nNothing was deleted and the request is pending "
                          "again; press *Approve* once that works again.")


def _recheck_and_delete(ctx: Context, req: DeletionRequest, user: str) -> Outcome:
    try:
        fresh = check(ctx, req.cluster, req.namespace, req.service)
    except ServiceMissing as exc:
        _move(ctx, req, "approved", "refused", user, "deletion.recheck", {"note": str(exc)})
        _announce(ctx, req, f":no_entry: The deletion of `{req.service}` was not carried out: {exc}")
        return Outcome(False, f"Refused: {exc}")
    except KubeError as exc:
        return _back_to_pending(ctx, req, user, "re-check the dependencies", exc)
    new = fresh.blockers_beyond(bool(req.override_reason))
    changed = plan_changes(req.plan, fresh)
    try:
        folder = gitops_folder(ctx, req.service, req.team)
    except GitOpsError as exc:
        return _back_to_pending(ctx, req, user, "check the GitOps repository for its pipeline", exc)
    approved_files = req.report.gitops_files
    if folder is not None and approved_files is not None:
        changed += [Blocker("plan", f"file:{path}", f"GitOps file {path}",
                            "new since the request: the approval message did not list it")
                    for path in folder[1] if path not in approved_files]
        # The PR removes exactly the approved files that are still there.
        folder = (folder[0], [path for path in folder[1] if path in approved_files])
    if new or changed:
        return _refuse(ctx, req, user, fresh, new, changed)
    fresh.gitops_folder, fresh.gitops_files = req.report.gitops_folder, approved_files
    plan = [asdict(s) for s in plan_of(fresh)]
    if folder is not None and folder[1]:
        return _open_removal_pr(ctx, req, user, fresh, plan, *folder)
    if not _move(ctx, req, "approved", "deleting", user, "deletion.start",
                 {"report": fresh.to_dict(), "plan": plan}):
        return Outcome(False, describe_state(_reload(ctx, req)))
    return _run_deletion(ctx, _reload(ctx, req), user)


def _refuse(ctx: Context, req: DeletionRequest, user: str, fresh: DependencyReport, blockers: list[Blocker],
            changed: list[Blocker]) -> Outcome:
    """Refuse the approval, naming what is new. The requester can request again; a second person
    approves the new plan."""
    parts = []
    if blockers:
        parts.append(f"the re-check found {len(blockers)} new blocker{'' if len(blockers) == 1 else 's'}")
    if changed:
        parts.append(f"{len(changed)} object{'' if len(changed) == 1 else 's'} to delete changed since the request "
                     "(not in the approved plan)")
    note = " and ".join(parts)
    everything = blockers + changed
    fresh.gitops_folder, fresh.gitops_files = req.report.gitops_folder, req.report.gitops_files
    _move(ctx, req, "approved", "refused", user, "deletion.recheck",
          {"report": fresh.to_dict(), "changes": [asdict(b) for b in everything], "note": note},
          params={"blockers": [b.key for b in everything]})
    what = "; ".join(f"{b.subject} ({b.evidence})" for b in everything[:5])
    what += f"; and {len(everything) - 5} more" if len(everything) > 5 else ""
    why = ("something new depends on it" if blockers and not changed else
           "what it would delete is no longer what was approved" if not blockers else
           "something new depends on it and what it would delete is no longer what was approved")
    _announce(ctx, req, f":no_entry: The deletion of `{req.service}` was refused at approval: since you "
                        f"requested it, {why}: {what}. Request it again to have the new plan approved.")
    return Outcome(False, f":no_entry: Refused — the re-check found what changed since the request: {what}. "
                          "Nothing was deleted.")


# -- GitOps -----------------------------------------------------------------------------------
def gitops_folder(ctx: Context, service: str, team: str | None) -> tuple[str, list[str]] | None:
    """(folder, files) when the service's pipeline lives in the GitOps repo (a deckhand.yaml under
    pipelines.path), else None. GitOps would re-create what we delete, so the repo goes first."""
    if ctx.gitops is None:
        return None
    pattern = ctx.settings.pipelines.path
    prefix = pattern.split("{", 1)[0]
    marker = "\x00team\x00"
    regex = re.escape(pattern.replace("{team}", marker).replace("{service}", service)).replace(
        re.escape(marker), "(?P<team>[^/]+)") + "/deckhand.yaml"
    files = ctx.gitops.files_under(prefix)
    found = [(m.group("team") if "team" in m.groupdict() else None, path[: -len("/deckhand.yaml")])
             for path in files for m in [re.fullmatch(regex, path)] if m]
    if not found:
        return None
    mine = [folder for owner, folder in found if owner == team] or [folder for _, folder in found]
    if len(mine) > 1:
        raise GitOpsError("find the service's folder", 0, f"several folders hold a deckhand.yaml for "
                                                         f"{service} ({', '.join(mine)}) and none is team {team}")
    folder = mine[0]
    return folder, sorted(p for p in files if p.startswith(folder + "/"))


def _open_removal_pr(ctx: Context, req: DeletionRequest, user: str, fresh: DependencyReport, plan: list[dict],
                     folder: str, files: list[str]) -> Outcome:
    branch = f"{BRANCH_PREFIX}{req.service}"
    md = markdown_text
    body = (f"Deletion request #{req.id}: delete {md(req.service)} ({md(req.namespace)}) from {md(req.cluster)}.\n\n"
            f"Requested by Slack user {md(req.requester)}, approved by {md(user)} after a dependency re-check found "
            f"nothing that depends on it and nothing to delete that the approval did not show.\n\n"
            f"This removes exactly the {len(files)} approved files of {md(folder + '/')}:\n\n"
            + "".join(f"- {md(path)}\n" for path in files)
            + f"\nOnce it is merged, deckhand deletes the approved objects from {md(req.cluster)} in a safe order: "
            + ", ".join(f"{len([s for s in plan if s['phase'] == p])} in '{name}'" for p, name in PHASES.items())
            + ".\nClose this PR without merging to cancel the deletion.")
    try:
        pr = ctx.gitops.propose(branch, {path: None for path in files},
                                title=f"Delete {req.service} ({req.team or 'no team'})", body=body)
    except GitOpsError as exc:
        return _back_to_pending(ctx, req, user, "open the pull request removing its pipeline", exc)
    _move(ctx, req, "approved", "awaiting_merge", user, "deletion.pr",
          {"report": fresh.to_dict(), "plan": plan, "branch": branch, "pr_number": pr.number, "pr_url": pr.url},
          params={"pr": pr.number, "folder": folder})
    # GitHub refused a configured reviewer (422): say so where the approver and the requester look.
    reviewers = f"\n:warning: {pr.review_problem}" if pr.review_problem else ""
    _announce(ctx, req, f":arrows_counterclockwise: <@{user}> approved deleting `{req.service}`. Its pipeline is in "
                        f"GitOps, so I opened <{pr.url}|PR #{pr.number}> removing `{folder}/`; the deletion from "
                        f"`{req.cluster}` follows the merge.{reviewers}")
    return Outcome(True, f"Approved. Opened <{pr.url}|PR #{pr.number}> removing `{folder}/`; the cluster-side "
                         f"deletion follows its merge.{reviewers}")


def on_pull_request_closed(ctx: Context, branch: str, number: int, merged: bool) -> str:
    """The pipelines webhook/poller calls this for closed PRs on `deckhand/delete/…` branches.
    Merged: delete from the cluster. Closed unmerged: cancel. Redeliveries do nothing."""
    rows = ctx.store.query(f"SELECT id FROM {TABLE} WHERE branch = ? AND pr_number = ?", [branch, number])
    if not rows:
        return f"no deletion request is waiting for PR #{number}"
    request_id = rows[0]["id"]
    # The approval that opened the PR may still be finishing; queue behind it rather than drop the event.
    with ctx.store.locked(f"deletion:{request_id}", "merge", wait=30) as busy:
        req = get_request(ctx, request_id)
        if busy or req is None or req.state != "awaiting_merge":
            return f"deletion request #{request_id} is {req.state if req else 'gone'}; nothing to do"
        if not merged:
            _move(ctx, req, "awaiting_merge", "cancelled", "github", "deletion.cancel", params={"pr": number})
            _announce(ctx, req, f":leftwards_arrow_with_hook: <{req.pr_url}|PR #{number}> was closed without "
                                f"merging, so `{req.service}` was not deleted from `{req.cluster}`.")
            return f"deletion request #{req.id} cancelled"
        if not _move(ctx, req, "awaiting_merge", "deleting", "github", "deletion.merged", params={"pr": number}):
            return f"deletion request #{req.id} moved meanwhile"
        outcome = _run_deletion(ctx, _reload(ctx, req), "github")  # each phase reads its objects again
        return f"deletion request #{req.id}: {outcome.message}"


# -- recovery after a crash ---------------------------------------------------------------------
INTERRUPTED = "deckhand stopped part-way (a restart or a crash) and nothing is running it now"


def recover_interrupted(ctx: Context) -> int:
    """Requests a killed process left `approved` or `deleting`. approve() and the merge path hold
    `deletion:<id>` for their whole run, and the process that becomes the writer drops the locks a
    dead one held, so a free lock means nobody works on the request. Without this its message would
    say "deleting…" forever with no button: put it back where a button continues it."""
    recovered = 0
    for row in ctx.store.query(f"SELECT id FROM {TABLE} WHERE state IN ('approved', 'deleting')"):
        with ctx.store.locked(f"deletion:{row['id']}", "recover") as busy:
            req = get_request(ctx, row["id"])
            if busy or req is None:
                continue
            if req.state == "deleting" and _move(ctx, req, "deleting", "failed", "deckhand", "deletion.interrupted",
                                                 {"note": INTERRUPTED}):
                _announce(ctx, req, f":warning: Deleting `{req.service}` from `{req.cluster}` was interrupted: "
                                    f"{INTERRUPTED}. DevOps can press *Continue deletion* on the request.")
                recovered += 1
            elif req.state == "approved" and _move(ctx, req, "approved", "pending", "deckhand", "deletion.interrupted",
                                                   {"decided_by": None, "decided_at": None}):
                _announce(ctx, req)  # nothing was deleted yet: the re-check runs again on the next Approve
                recovered += 1
    return recovered


def _hours(delta) -> str:
    hours = int(delta.total_seconds() // 3600)
    return f"{hours // 24} days" if hours % 24 == 0 and hours >= 48 else f"{hours} hours"
