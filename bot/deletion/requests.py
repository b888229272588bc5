"""Deletion requests as records: the SQLite row, its plan of steps, and its Slack message.

The approvals-channel message is rendered by a function the Slack layer registers with
`set_renderer` (bot/ knows nothing of Block Kit) and goes through the outbox under ref
`deletion:<id>`, so it survives Slack outages and restarts and is updated in place.
The state machine that moves these records lives in bot/deletion/lifecycle.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from bot.foundation.context import Context
from bot.deletion.dependencies import Blocker, DependencyReport, Finding
from bot.foundation.store import parse_iso

TABLE = "deletion_requests"
OPEN = ("pending", "approved", "deleting", "failed", "awaiting_merge")
FINAL = ("deleted", "rejected", "expired", "refused", "cancelled")
RENDERER = "deletion.render"


@dataclass
class Step:
    phase: int
    kind: str
    namespace: str
    name: str
    api: str
    result: str = ""  # "" not yet | deleted | already gone | left in place | failed
    detail: str = ""
    uid: str = ""               # the approved object's identity; every DELETE carries it as a precondition
    resource_version: str = ""  # as last read (the approval's re-check, or a re-read before a resumed delete)

    @property
    def done(self) -> bool:
        return self.result in ("deleted", "already gone", "left in place")

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.namespace}/{self.name}"

    @property
    def subject(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def finding(self) -> Finding:
        return Finding(self.kind, self.namespace, self.name, "", self.api, self.phase, self.uid,
                       self.resource_version)


@dataclass
class DeletionRequest:
    id: int
    cluster: str
    namespace: str
    service: str
    team: str | None
    requester: str
    source: str
    state: str
    report: DependencyReport
    created_at: datetime
    expires_at: datetime
    override_reason: str | None = None
    plan: list[Step] = field(default_factory=list)
    changes: list[Blocker] = field(default_factory=list)
    decided_by: str | None = None
    decided_at: datetime | None = None
    note: str | None = None
    branch: str | None = None
    pr_number: int | None = None
    pr_url: str | None = None

    @property
    def ref(self) -> str:
        return f"deletion:{self.id}"

    @property
    def target(self) -> str:
        return f"{self.namespace}/{self.service}"

    @classmethod
    def from_row(cls, row: dict) -> "DeletionRequest":
        return cls(
            id=row["id"], cluster=row["cluster"], namespace=row["namespace"], service=row["service"],
            team=row["team"], requester=row["requester"], source=row["source"], state=row["state"],
            report=DependencyReport.from_dict(json.loads(row["report"])),
            created_at=parse_iso(row["created_at"]), expires_at=parse_iso(row["expires_at"]),
            override_reason=row["override_reason"], plan=[Step(**s) for s in json.loads(row["plan"] or "[]")],
            changes=[Blocker(**b) for b in json.loads(row["changes"] or "[]")], decided_by=row["decided_by"],
            decided_at=parse_iso(row["decided_at"]), note=row["note"], branch=row["branch"],
            pr_number=row["pr_number"], pr_url=row["pr_url"],
        )


Renderer = Callable[[DeletionRequest, Any], dict]


# -- storage ----------------------------------------------------------------------------------
def get_request(ctx: Context, request_id: int) -> DeletionRequest | None:
    rows = ctx.store.query(f"SELECT * FROM {TABLE} WHERE id = ?", [request_id])
    return DeletionRequest.from_row(rows[0]) if rows else None


def open_request_for(ctx: Context, cluster: str, namespace: str, service: str) -> DeletionRequest | None:
    rows = ctx.store.query(
        f"SELECT * FROM {TABLE} WHERE cluster = ? AND namespace = ? AND service = ? AND state IN "
        f"({', '.join('?' for _ in OPEN)})", [cluster, namespace, service, *OPEN])
    return DeletionRequest.from_row(rows[0]) if rows else None


def refresh_pending_gauge(ctx: Context) -> int:
    count = ctx.store.query(f"SELECT COUNT(*) AS n FROM {TABLE} WHERE state = 'pending' AND expires_at > ?",
                            [ctx.store.now()])[0]["n"]
    ctx.metrics.pending_approvals.set(count)
    return count


# -- Slack messages through the outbox ---------------------------------------------------------
def set_renderer(ctx: Context, render: Renderer) -> None:
    ctx.extras[RENDERER] = render


def _render(ctx: Context, req: DeletionRequest) -> dict:
    render = ctx.extras.get(RENDERER)
    if render is not None:
        return render(req, ctx.settings)
    return {"text": f"Deletion request #{req.id} for {req.service} in {req.cluster}: {req.state}"}


def publish(ctx: Context, req: DeletionRequest) -> None:
    """Post the approval message, or update it in place (or the queued post, if not sent yet)."""
    body = _render(ctx, req)
    channel = ctx.settings.channels.approvals
    for _ in range(3):
        rows = ctx.store.query("SELECT state, ts, channel FROM outbox WHERE ref = ? AND method = 'chat.postMessage' "
                               "ORDER BY id DESC LIMIT 1", [req.ref])
        if not rows or rows[0]["state"] == "failed":
            ctx.outbox.post(channel, body["text"], body.get("blocks"), ref=req.ref)
            return
        if rows[0]["state"] == "sent" and rows[0]["ts"]:
            ctx.outbox.update(rows[0]["channel"], rows[0]["ts"], body["text"], body.get("blocks"),
                              ref=f"{req.ref}:update")
            return
        if ctx.outbox.replace_pending(req.ref, body["text"], body.get("blocks")):
            return
        # it was sent between our read and the replace: read again and update it


def message_of(ctx: Context, request_id: int) -> tuple[str, str] | None:
    """(channel, ts) of the approval message once Slack accepted it."""
    rows = ctx.store.query("SELECT channel, ts FROM outbox WHERE ref = ? AND method = 'chat.postMessage' "
                           "AND state = 'sent' ORDER BY id DESC LIMIT 1", [f"deletion:{request_id}"])
    return (rows[0]["channel"], rows[0]["ts"]) if rows and rows[0]["ts"] else None


def notify_requester(ctx: Context, req: DeletionRequest, text: str) -> None:
    ctx.outbox.post(req.requester, text, ref=f"{req.ref}:notify:{req.state}")


def plan_of(report: DependencyReport) -> list[Step]:
    return [Step(f.phase, f.kind, f.namespace, f.name, f.api, uid=f.uid, resource_version=f.resource_version)
            for f in report.deleted]


def plan_changes(approved: list[Step], fresh: DependencyReport) -> list[Blocker]:
    """What the fresh check would delete that the approver was not shown: an object new to the plan,
    or one whose uid differs (deleted and re-created under the same name since the request).
    Objects that left the plan (gone, or no longer the service's) are simply not deleted."""
    shown = {s.key: s for s in approved}
    changes = []
    for f in fresh.deleted:
        step = shown.get(f.key)
        if step is None:
            changes.append(Blocker("plan", f"plan:{f.key}", f.subject,
                                   "new since the request: the approval message did not list it"))
        elif step.uid and f.uid and step.uid != f.uid:
            changes.append(Blocker("plan", f"plan:{f.key}", f.subject,
                                   f"re-created since the request (uid {step.uid[:8]}… is now {f.uid[:8]}…)"))
    return changes
