"""Pipeline requests in SQLite: one row per PR key, moved between states by compare-and-set.

    key "pipeline:<service>"   branch deckhand/pipeline/<service>     (create and edit)
    key "batch-image:<image>"  branch deckhand/batch-image/<slug>     (pointer bumps)

    proposing -> open -> merged | closed          the PR was opened and then settled
    proposing -> failed | rejected | noop         GitHub failed / the name exists / nothing to change

A key has at most one live request. A second submit while the first is `proposing` (a double
click, a Slack retry) is refused; a submit while `open` updates the same branch and PR; a submit
after a terminal state recycles the row. Merge notifications move `open` -> `merged` once, so the
webhook and the poller can both see the merge and only one of them tells Slack.

Whoever moves a request to `proposing` takes the lock `pipeline-request:<id>` in the same
transaction, and leaving `proposing` releases it in the same transaction, so a `proposing` row
without its lock belongs to a worker that died (locks name their process, and the process that
becomes the writer drops a dead one's locks). Such an orphan is taken over at once by a resubmit
or Try again (same branch, PR and Slack message: GitOps.propose is idempotent), and the pr-poll
job (recover_interrupted) turns it into `failed` with Try again on its message.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot.foundation.context import Context
from bot.pipelines.spec import PipelineSpec, summary
from bot.foundation.store import Audit, iso

log = logging.getLogger(__name__)

TABLE = "pipeline_requests"
LIVE = ("proposing", "open")
# How long a worker may hold a request in `proposing`. One that holds it longer is presumed wedged:
# its lock lapses and the request counts as orphaned (GitHub calls time out long before this).
STALE_PROPOSING = timedelta(minutes=10)
PIPELINE_BRANCH = "deckhand/pipeline/"
BUMP_BRANCH = "deckhand/batch-image/"


def pipeline_key(service: str) -> str:
    return f"pipeline:{service}"


def bump_key(image: str) -> str:
    return f"batch-image:{image}"


def branch_for(action: str, target: str) -> str:
    if action == "bump":
        return BUMP_BRANCH + re.sub(r"[^A-Za-z0-9._-]+", "-", target).strip("-.")
    return PIPELINE_BRANCH + target


def get(ctx: Context, request_id: int) -> dict | None:
    return ctx.store.get(TABLE, int(request_id))


def by_key(ctx: Context, key: str) -> dict | None:
    rows = ctx.store.query(f"SELECT * FROM {TABLE} WHERE key = ?", [key])
    return rows[0] if rows else None


def live(ctx: Context) -> list[dict]:
    return ctx.store.query(f"SELECT * FROM {TABLE} WHERE state IN ('proposing', 'open') ORDER BY id")


def lock_name(request_id: int) -> str:
    return f"pipeline-request:{request_id}"


def worker_of(ctx: Context, request_id: int) -> dict | None:
    """The lock of whoever is proposing this request right now; None if nobody is."""
    rows = ctx.store.query("SELECT * FROM locks WHERE name = ? AND expires_at > ?",
                           [lock_name(request_id), ctx.store.now()])
    return rows[0] if rows else None


def orphaned(ctx: Context, row: dict) -> bool:
    """`proposing`, but no live worker holds it: the process that was proposing it died."""
    return row["state"] == "proposing" and worker_of(ctx, row["id"]) is None


def pending(ctx: Context, row: dict) -> bool:
    """A pull request is open for this request, or is being opened right now."""
    return row["state"] == "open" or (row["state"] == "proposing" and (bool(row["pr_number"])
                                                                       or not orphaned(ctx, row)))


def _take(ctx: Context, row_id: int, action: str, user: str) -> None:
    """The lock that says "a live worker proposes this"; the caller is inside the transaction that
    moves the row to `proposing` and has seen the lock free."""
    if ctx.store.acquire(lock_name(row_id), f"{action} by {user}",
                         ttl_seconds=STALE_PROPOSING.total_seconds()) is not None:
        raise RuntimeError(f"pipeline request {row_id} was taken meanwhile")  # rolls the claim back


def open_pulls(ctx: Context) -> list[dict]:
    return ctx.store.query(f"SELECT * FROM {TABLE} WHERE state = 'open' AND pr_number IS NOT NULL ORDER BY id")


@dataclass(frozen=True)
class Claim:
    row: dict | None          # the request this caller now works on (state proposing)
    busy: dict | None = None  # someone else is proposing this key right now
    reused: bool = False      # an open PR and its Slack message are being updated
    taken: dict | None = None  # a create whose name a pending PR took after this submit's ack checked it


def claim(ctx: Context, *, action: str, target: str, team: str | None, spec: dict, user: str,
          channel: str | None) -> Claim:
    """Take the key for one proposal. Exactly one of concurrent callers gets a row back."""
    key = bump_key(target) if action == "bump" else pipeline_key(target)
    now = ctx.now()
    with ctx.store.tx() as db:
        rows = list(db.query(f"SELECT * FROM {TABLE} WHERE key = ?", [key]))
        row = rows[0] if rows else None
        payload = json.dumps(spec, sort_keys=True)
        if row is None:
            cursor = db.execute(
                f"INSERT INTO {TABLE} (key, action, target, team, spec, state, requester, editor, channel, branch, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'proposing', ?, ?, ?, ?, ?, ?)",
                [key, action, target, team, payload, user, user, channel, branch_for(action, target),
                 iso(now), iso(now)])
            _take(ctx, cursor.lastrowid, action, user)
            reused = False
        elif worker_of(ctx, row["id"]) is not None:
            return Claim(None, busy=row)
        elif row["state"] == "proposing" or (row["pr_number"] and row["state"] not in ("merged", "closed")):
            if action == "create" and row["pr_number"]:
                return Claim(None, taken=row)  # two creates raced past the ack's check: never rewrite another's PR
            # An open PR, or a proposal whose worker died (its PR may exist on GitHub without our knowing):
            # the new proposal goes onto the same branch, PR and Slack message.
            # An edit of a not-yet-merged create is still a create (the base branch lacks the service).
            keep = row["action"] if row["action"] == "create" and action == "edit" else action
            cursor = db.execute(
                f"UPDATE {TABLE} SET action = ?, spec = ?, team = ?, editor = ?, state = 'proposing', error = NULL, "
                "updated_at = ? WHERE id = ? AND state = ?",
                [keep, payload, team, user, iso(now), row["id"], row["state"]])
            if cursor.rowcount != 1:
                return Claim(None, busy=row)
            _take(ctx, row["id"], action, user)
            reused = bool(row["ts"])
        else:
            cursor = db.execute(
                f"UPDATE {TABLE} SET action = ?, target = ?, team = ?, spec = ?, state = 'proposing', requester = ?, "
                "editor = ?, channel = ?, ts = NULL, permalink = NULL, pr_number = NULL, pr_url = NULL, files = '[]', "
                "detail = '{}', error = NULL, created_at = ?, updated_at = ?, settled_at = NULL "
                "WHERE id = ? AND state = ?",
                [action, target, team, payload, user, user, channel, iso(now), iso(now), row["id"], row["state"]])
            if cursor.rowcount != 1:
                return Claim(None, busy=row)
            _take(ctx, row["id"], action, user)
            reused = False
        fresh = list(db.query(f"SELECT * FROM {TABLE} WHERE key = ?", [key]))[0]
    return Claim(fresh, reused=reused)


def retry(ctx: Context, request_id: int, user: str) -> dict | None:
    """Move a failed (or failed-while-open, or orphaned) request back to proposing under a live worker;
    None if it is not retryable now."""
    with ctx.store.tx() as db:
        row = get(ctx, request_id)
        if row is None or worker_of(ctx, row["id"]) is not None:
            return None
        if not (row["state"] in ("failed", "proposing") or (row["state"] == "open" and row["error"])):
            return None
        cursor = db.execute(f"UPDATE {TABLE} SET state = 'proposing', editor = ?, error = NULL, updated_at = ? "
                            "WHERE id = ? AND state = ?", [user, ctx.store.now(), row["id"], row["state"]])
        if cursor.rowcount != 1:
            return None
        _take(ctx, row["id"], row["action"], user)
    return get(ctx, request_id)


def attach_message(ctx: Context, request_id: int, channel: str, ts: str, permalink: str | None) -> None:
    with ctx.store.tx() as db:
        db.execute(f"UPDATE {TABLE} SET channel = ?, ts = ?, permalink = ? WHERE id = ?",
                   [channel, ts, permalink, request_id])


def finish(ctx: Context, row: dict, state: str, values: dict[str, Any], result: str, actor: str) -> dict:
    """proposing -> state, with the audit row in the same transaction."""
    values = {**values, "updated_at": ctx.now()}
    for key in ("files", "detail"):
        if key in values and not isinstance(values[key], str):
            values[key] = json.dumps(values[key], sort_keys=True)
    spec = json.loads(row["spec"])
    with ctx.store.tx():
        won = ctx.store.transition(
            TABLE, {"id": row["id"]}, "proposing", state, values,
            audit=Audit(actor=actor, action=f"pipeline.{row['action']}", result=result, target=row["target"],
                        params={"team": row["team"], "branch": row["branch"],
                                "pr": values.get("pr_number") or row["pr_number"],
                                **({"version": spec.get("version")} if row["action"] == "bump" else {})},
                        channel=row["channel"], ts=row["ts"]))
        if won:
            ctx.store.release(lock_name(row["id"]))
    return get(ctx, row["id"])


# -- recovery after a crash ----------------------------------------------------------------------------


def recover_interrupted(ctx: Context) -> int:
    """Requests a killed worker left `proposing`: back to `failed` (or `open` with an error, when they
    were updating a PR we track), with Try again on their message. Returns how many."""
    recovered = 0
    for candidate in ctx.store.query(f"SELECT id FROM {TABLE} WHERE state = 'proposing' ORDER BY id"):
        # One transaction (BEGIN IMMEDIATE) from the lock check to the move: a resubmit or Try again
        # cannot take the request over in between.
        with ctx.store.tx():
            row = get(ctx, candidate["id"])
            if row is None or not orphaned(ctx, row):
                continue
            number = row["pr_number"]
            doing = f"updating pull request #{number}" if number else "opening the pull request"
            error = (f"deckhand restarted while {doing}, so it may be half-made. Press *Try again*: it reuses the "
                     "same branch and pull request.")
            row = finish(ctx, row, "open" if number else "failed", {"error": error},
                         "failed: interrupted by a restart", "deckhand")
            if row["channel"] and row["ts"]:
                message = render_message(ctx, row)
                ctx.outbox.update(row["channel"], row["ts"], message["text"], message.get("blocks"),
                                  ref=f"pipeline:{row['id']}:interrupted")
            else:  # it died before its message was posted: tell the requester directly
                ctx.outbox.post(row["requester"], f"<@{row['requester']}> deckhand restarted while {doing} for "
                                f"`{row['target']}`. Run {again_command(row)} again: it reuses the same branch and "
                                "pull request.", ref=f"pipeline:{row['id']}:interrupted")
            recovered += 1
    return recovered


# -- merge tracking ----------------------------------------------------------------------------------


def settle(ctx: Context, branch: str, number: int, merged: bool, actor: str, source: str) -> str:
    """A PR of ours was merged or closed: mark it once and tell Slack once. Returns what happened."""
    rows = ctx.store.query(f"SELECT * FROM {TABLE} WHERE branch = ? AND pr_number = ?", [branch, number])
    if not rows:
        return "not a pipeline request"
    row = rows[0]
    state = "merged" if merged else "closed"
    won = ctx.store.transition(
        TABLE, {"id": row["id"], "pr_number": number}, "open", state,
        {"settled_at": ctx.now(), "updated_at": ctx.now(), "error": None},
        audit=Audit(actor=actor, action=f"pipeline.{state}", result=f"#{number} {state} (seen by {source})",
                    target=row["target"], params={"branch": branch, "pr": number, "request": row["action"]},
                    channel=row["channel"], ts=row["ts"]))
    if not won:
        return f"already {row['state']}"
    notify_settled(ctx, get(ctx, row["id"]))
    return state


def render_message(ctx: Context, row: dict) -> dict:
    """The requester's message for this request. bot/ cannot import blocks/, so commands/pipeline.py
    registers the Block Kit renderer as ctx.extras["pipeline_message"]; without it (e.g. a job run
    before the listeners are registered) the message falls back to plain text."""
    renderer = ctx.extras.get("pipeline_message")
    card = request_card(row)
    if renderer is not None:
        return renderer(card)
    return {"text": f"Pipeline request for {row['target']}: {row['state']}", "blocks": None}


def again_command(row: dict) -> str:
    if row["action"] == "bump":
        return "`/pipeline batch-image bump`"
    return "`/pipeline create`" if row["action"] == "create" else f"`/pipeline edit {row['target']}`"


def notify_settled(ctx: Context, row: dict) -> None:
    """Update the original message and tell the requester in its thread, through the outbox (durable)."""
    number, url, target = row["pr_number"], row["pr_url"], row["target"]
    link = f"<{url}|#{number}>" if url else f"#{number}"
    if row["state"] == "merged":
        if row["action"] == "bump":
            detail = json.loads(row["detail"] or "{}")
            after = (f"Batches tracking `{target}` now run {detail.get('version')}: "
                     f"{', '.join(detail.get('affected') or []) or 'none yet'}.")
        else:
            spec = json.loads(row["spec"])
            after = f"The GitOps sync rolls it out to {', '.join(spec.get('clusters') or [])}."
        text = f"<@{row['requester']}> :tada: Pull request {link} for `{target}` was merged. {after}"
    else:
        text = (f"<@{row['requester']}> Pull request {link} for `{target}` was closed without merging, so nothing "
                f"changes. Run {again_command(row)} again if you still need it.")
    if row["channel"] and row["ts"]:
        message = render_message(ctx, row)
        ctx.outbox.update(row["channel"], row["ts"], message["text"], message.get("blocks"),
                          ref=f"pipeline:{row['id']}:settled")
        ctx.outbox.post(row["channel"], text, thread_ts=row["ts"], ref=f"pipeline:{row['id']}:thread")
    else:
        ctx.outbox.post(row["requester"], text, ref=f"pipeline:{row['id']}:dm")


# -- what Slack shows -------------------------------------------------------------------------------


def request_card(row: dict) -> dict:
    """Plain data for blocks.pipeline.request_message."""
    spec = json.loads(row["spec"] or "{}")
    detail = json.loads(row.get("detail") or "{}")
    card: dict[str, Any] = {
        "id": row["id"], "action": row["action"], "target": row["target"], "team": row["team"],
        "state": row["state"], "requester": row["requester"], "editor": row.get("editor"),
        "pr_number": row["pr_number"], "pr_url": row["pr_url"], "error": row.get("error"),
        "files": json.loads(row.get("files") or "[]"), "note": detail.get("note"),
        "review_problem": detail.get("review_problem"),
    }
    if row["action"] == "bump":
        card["summary"] = [("Base image", row["target"]),
                           ("Version", f"{detail.get('previous') or '?'} → {spec.get('version')}")]
        card["affected"] = detail.get("affected") or []
    else:
        card["summary"] = [list(pair) for pair in summary(PipelineSpec.from_dict(spec), detail.get("image"))]
    return card
