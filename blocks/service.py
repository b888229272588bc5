"""Block Kit for /service: the dependency report, the approval message in each state, the override modal.

Pure functions of plain data (a DependencyReport or DeletionRequest in, a dict out); every list is
capped so a service with hundreds of callers or objects still fits one message.
"""
from __future__ import annotations

import json
from datetime import datetime

from blocks.common import (actions, button, confirm, context, cores, divider, escape, fields, gib, header, link,
                           mention, message, modal, section, text_input)

ACTION_REQUEST = "service_delete_request"
ACTION_OVERRIDE = "service_delete_override"
ACTION_APPROVE = "service_delete_approve"
ACTION_REJECT = "service_delete_reject"
ACTION_RESUME = "service_delete_resume"
VIEW_OVERRIDE = "service_delete_override"
REASON_BLOCK = "reason"
UNKNOWN_CALLER = "_unknown caller_ (no sidecar, or plain TCP without mTLS)"
MAX_LINES = 12  # per list; the rest becomes "and N more" so a section stays well under 3,000 chars
PHASES = {1: "Stop routing", 2: "Workloads and batches", 3: "Service and the rest"}
STEP_ICONS = {"deleted": ":white_check_mark:", "already gone": ":heavy_minus_sign:", "failed": ":x:",
              "left in place": ":leftwards_arrow_with_hook:", "terminating": ":hourglass_flowing_sand:",
              "": ":white_small_square:"}


def target_value(report, source: str) -> str:
    return json.dumps({"c": report.cluster, "n": report.namespace, "s": report.service, "src": source},
                      separators=(",", ":"))


def _channel(channel: str) -> str:
    return f"<#{channel}>" if str(channel).isalnum() and str(channel).isascii() else escape(channel)


def _when(moment: datetime) -> str:
    """Slack renders the date in the reader's time zone; the fallback is UTC."""
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} at {{time}}|{moment:%Y-%m-%d %H:%M} UTC>"


def _capped(lines: list[str], limit: int = MAX_LINES) -> str:
    shown = lines[:limit]
    if len(lines) > limit:
        shown.append(f"_…and {len(lines) - limit} more_")
    return "\n".join(shown)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# -- the report ---------------------------------------------------------------------------------
def verdict_text(report, overridden: bool = False) -> str:
    blockers = report.blockers_beyond(overridden)
    if not blockers and report.traffic_unknown:
        return (f":warning: *Nothing else depends on `{escape(report.service)}`* as far as deckhand can see, but who calls "
                "it is unknown; DevOps overrode that with the reason below.")
    if not blockers:
        return (f":white_check_mark: *Nothing depends on `{escape(report.service)}`* — no callers in the last "
                f"{escape(report.window)}, and no other team's batches or routes point at it.")
    kinds = {"protected": "a protected namespace", "traffic": "unknown traffic", "caller": "caller",
             "batch": "batch", "route": "route", "shared": "shared workload", "plan": "changed object"}
    counts: dict[str, int] = {}
    for b in blockers:
        counts[b.kind] = counts.get(b.kind, 0) + 1
    summary = ", ".join(kinds.get(k, escape(k)) if k in ("traffic", "protected") else _count(n, kinds.get(k) or escape(k))
                        for k, n in counts.items())
    return f":no_entry: *Deletion is blocked* by {summary}. Each needs to go (or be confirmed) first."


def report_blocks(report, overridden_by: str | None = None, override_reason: str | None = None,
                  with_deleted: bool = True) -> list[dict]:
    """The evidence: facts, traffic, batches, routes, shared workloads, what would be deleted."""
    blocks = [fields([("Cluster", f"`{escape(report.cluster)}`"), ("Namespace", f"`{escape(report.namespace)}`"),
                      ("Team", escape(report.team) if report.team else "_no team label_"),
                      ("Frees (requests × replicas)", f"{cores(report.cpu_cores)}, {gib(report.memory_bytes)}")]),
              section(verdict_text(report, overridden=bool(override_reason)))]
    if report.protected:
        blocks.append(section(f":lock: *Protected namespace* — {escape(report.protected)}."))
    if report.traffic_unknown:
        text = f":grey_question: *Inbound traffic: unknown* — {escape(report.traffic_unknown)}."
        if override_reason:
            text += f"\n:warning: Overridden by {mention(overridden_by)}: _{escape(override_reason)}_"
        blocks.append(section(text))
    if report.callers:
        lines = [f"• {UNKNOWN_CALLER if c.unknown else f'`{escape(c.namespace)}/{escape(c.workload)}`'} — "
                 f"{escape(c.evidence)}"
                 for c in report.callers]
        blocks.append(section(f"*Callers in the last {escape(report.window)}* (Istio, reporter=destination):\n"
                              + _capped(lines)))
    elif not report.traffic_unknown:
        blocks.append(section(f"*Callers in the last {escape(report.window)}*: none (Istio, reporter=destination)."))
    for title, items in (("Batches that mention its host", report.batches),
                         ("Routes of others that send traffic to it", report.routes),
                         ("Workloads other Services also use", report.shared)):
        if items:
            lines = [f"• {escape(f.kind)} `{escape(f.namespace)}/{escape(f.name)}` — {escape(f.evidence)}" for f in items]
            blocks.append(section(f"*{title}* ({len(items)}):\n" + _capped(lines)))
    if with_deleted:
        blocks.append(section(deleted_text(report.deleted)))
        if report.gitops_files:
            files = [f"`{escape(p)}`" for p in report.gitops_files]
            blocks.append(section(f"*GitOps*: its pipeline is in `{escape(report.gitops_folder or '')}/`; approval opens "
                                  f"a pull request removing exactly these {_count(len(files), 'file')}: "
                                  + ", ".join(files[:MAX_LINES])
                                  + (f" and {len(files) - MAX_LINES} more" if len(files) > MAX_LINES else "")))
    if report.notes:
        blocks.append(context(*(escape(n) for n in report.notes[:3])))
    return blocks


def deleted_text(findings) -> str:
    if not findings:
        return "*Would delete*: nothing."
    parts = []
    for phase, title in PHASES.items():
        mine = [f for f in findings if f.phase == phase]
        if not mine:
            continue
        names = [f"{escape(f.kind)} `{escape(f.name)}`" for f in mine]
        shown = ", ".join(names[:MAX_LINES]) + (f" and {len(names) - MAX_LINES} more" if len(names) > MAX_LINES else "")
        parts.append(f"{phase}. _{title}_ ({len(mine)}): {shown}")
    return f"*Would delete* {_count(len(findings), 'object')}, in this order:\n" + "\n".join(parts)


def report_message(report, *, mode: str = "deps", source: str = "command", can_request: bool = False,
                   can_override: bool = False, denial: str | None = None, notice: str | None = None) -> dict:
    """The ephemeral report. mode "delete" adds Request deletion (nothing blocks) or, for DevOps when
    only unknown traffic blocks, Override and request."""
    title = f"Dependency check: {report.service}"
    blocks = [header(title)]
    if notice:
        blocks.append(section(notice))
    blocks += report_blocks(report)
    if mode == "delete":
        value = target_value(report, source)
        if not report.blocked and can_request:
            blocks.append(actions(button("Request deletion", ACTION_REQUEST, value, style="primary"),
                                  block_id="deletion_request"))
        elif report.only_traffic_unknown and can_override:
            blocks.append(actions(button("Override and request deletion", ACTION_OVERRIDE, value, style="danger"),
                                  block_id="deletion_override"))
        if denial:
            blocks.append(context(f":lock: {escape(denial)}"))
        elif report.blocked and not (report.only_traffic_unknown and can_override):
            hint = ("DevOps can override unknown traffic with a written reason." if report.only_traffic_unknown
                    else "Run `/service delete` again once the blockers are gone.")
            blocks.append(context(hint))
    else:
        blocks.append(context(f"To delete it: `/service delete {escape(report.service)} {escape(report.cluster)}`"))
    blocks.append(context(f"Checked {escape(report.checked_at[:16].replace('T', ' '))} UTC · callers from Istio over "
                          f"{escape(report.window)} · batches, routes and objects read from `{escape(report.cluster)}`"))
    verdict = "blocked" if report.blocked else "nothing depends on it"
    return message(f"{escape(title)}: {verdict}", blocks)


def loading_text(service: str, cluster: str | None) -> str:
    where = f" in `{escape(cluster)}`" if cluster else ""
    return f":mag: Checking what depends on `{escape(service)}`{where} (callers, batches, routes)…"


def requested_text(req, created: bool, channel: str) -> str:
    if not created:
        return (f":information_source: There is already an open deletion request for `{escape(req.service)}` in "
                f"`{escape(req.cluster)}` (#{req.id}, by {mention(req.requester)}, {escape(req.state.replace('_', ' '))}). "
                f"See {_channel(channel)}.")
    return (f":inbox_tray: Requested the deletion of `{escape(req.service)}` from `{escape(req.cluster)}` (#{req.id}). "
            f"It waits in {_channel(channel)} for a DevOps approver other than you; it expires {_when(req.expires_at)}. "
            "I'll message you when it is decided.")


# -- the approval message -----------------------------------------------------------------------
def _status(req) -> str:
    by = mention(req.decided_by) if req.decided_by else "someone"
    pr = link(req.pr_url, f"PR #{req.pr_number}")
    return {
        "pending": f":hourglass_flowing_sand: *Waiting for approval* by DevOps (not the requester). "
                   f"Expires {_when(req.expires_at)}.",
        "approved": f":mag: *Approved by {by}* — re-checking dependencies before deleting…",
        "deleting": f":wastebasket: *Approved by {by}* — deleting from `{escape(req.cluster)}`…",
        "deleted": f":white_check_mark: *Deleted* — approved by {by}. Freed {cores(req.report.cpu_cores)}, "
                   f"{gib(req.report.memory_bytes)} (recorded in `/ops savings`).",
        "failed": f":warning: *Deletion stopped* — {escape(req.note or 'a step failed')}. Fix the cause and press "
                  "*Continue deletion*; finished steps are skipped.",
        "rejected": f":x: *Rejected* by {by}. Nothing was deleted.",
        "expired": ":hourglass: *Expired* — nobody approved it in time. Nothing was deleted.",
        "refused": f":no_entry: *Refused* when {by} approved: {escape(req.note or 'the re-check found a change')}. "
                   "Nothing was deleted; request it again once that is resolved.",
        "awaiting_merge": f":arrows_counterclockwise: *Approved by {by}*. Its pipeline lives in GitOps, so "
                          f"{pr} removes its folder; the deletion from "
                          f"`{escape(req.cluster)}` follows the merge.",
        "cancelled": f":leftwards_arrow_with_hook: *Cancelled* — {pr} was closed "
                     "without merging. Nothing was deleted.",
    }.get(req.state) or escape(req.state)


def steps_text(plan) -> str:
    parts = []
    for phase, title in PHASES.items():
        mine = [s for s in plan if s.phase == phase]
        if not mine:
            continue
        lines = [f"{STEP_ICONS.get(s.result, '')} {escape(s.kind)} `{escape(s.name)}`"
                 + (f" {escape(s.result)}" if s.result and s.result != "failed" else "")
                 + (f" — {escape(s.detail)}" if s.result in ("failed", "left in place", "terminating") and s.detail
                    else "") for s in mine]
        parts.append(f"*{phase}. {title}*\n" + _capped(lines, 15))
    return "\n".join(parts) or "Nothing to delete."


def request_message(req, settings=None) -> dict:
    """The message in the approvals channel, for every state of the request."""
    title = f"Delete {req.service} from {req.cluster}?"
    blocks = [header(title),
              context(f"Request #{req.id} by {mention(req.requester)} via {escape(req.source)} · "
                      f"{_when(req.created_at)}")]
    blocks.append(section(_status(req)))
    if req.changes:
        lines = [f"• {escape(b.subject)} — {escape(b.evidence)}" for b in req.changes]
        blocks.append(section("*What changed since the request:*\n" + _capped(lines)))
    if req.state in ("deleting", "deleted", "failed"):
        blocks.append(section(steps_text(req.plan)))
    blocks.append(divider())
    blocks += report_blocks(req.report, overridden_by=req.requester, override_reason=req.override_reason,
                            with_deleted=req.state not in ("deleting", "deleted", "failed"))
    if req.state == "pending":
        n = len(req.report.deleted)
        blocks.append(actions(
            button("Approve", ACTION_APPROVE, str(req.id), style="primary", confirm_dialog=confirm(
                f"Delete {req.service}?", f"deckhand re-checks the dependencies, then deletes {_count(n, 'object')} "
                f"from *{escape(req.cluster)}/{escape(req.namespace)}* in a safe order. This cannot be undone.",
                yes="Delete")),
            button("Reject", ACTION_REJECT, str(req.id), confirm_dialog=confirm(
                "Reject this request?", f"`{escape(req.service)}` stays. {mention(req.requester)} is told.",
                yes="Reject")),
            block_id=f"deletion_{req.id}"))
        blocks.append(context("Approve: DevOps only, never the requester. Reject: DevOps or the requester."))
    elif req.state == "failed":
        blocks.append(actions(button("Continue deletion", ACTION_RESUME, str(req.id), style="primary",
                                     confirm_dialog=confirm(f"Continue deleting {req.service}?",
                                                            "Steps that finished are skipped; the rest run in order.",
                                                            yes="Continue")),
                              block_id=f"deletion_{req.id}"))
    return message(escape(f"{title} ({req.state.replace('_', ' ')})"), blocks)


# -- the override modal -------------------------------------------------------------------------
def override_modal(service: str, cluster: str, private_metadata: str) -> dict:
    blocks = [section(f":grey_question: Prometheus can't tell who calls `{escape(service)}` in `{escape(cluster)}`, "
                      "so the dependency check is blocked on unknown traffic."),
              section("If you know it is unused (e.g. you checked its access logs), say how you know. "
                      "The approver sees the reason, and it is kept in the audit log."),
              text_input(REASON_BLOCK, "Why is it safe to delete?", multiline=True, max_length=1000,
                         placeholder="e.g. access logs for 30 days show no requests; owners confirmed in #payments")]
    return modal("Override unknown traffic", blocks, VIEW_OVERRIDE, submit="Request deletion",
                 private_metadata=private_metadata)
