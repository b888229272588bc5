"""Pipelines: the modal's fast checks, GitHub's pull_request webhook and the polling fallback.

Public here: `check_submission`, `handle_github_webhook`, `on_closed`, `poll`. The pieces:
    spec      the spec, field-by-field validation, deckhand.yaml
    form      the modal's fields <-> a spec
    render    Jinja2 templates (templates/) -> files; the batch image pointer
    catalog   what the repo and clusters hold (cached names for the ack)
    requests  request rows, compare-and-set states, merge notifications
    prs       re-check, render, diff, ONE pull request
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import timedelta
from typing import Any, Mapping

from bot.foundation.context import Context, JobFailed
from bot.foundation.gitops import GitOpsError
from bot.pipelines.catalog import catalog
from bot.pipelines.requests import (BUMP_BRANCH, PIPELINE_BRANCH, by_key, open_pulls, pending, pipeline_key,
                                   recover_interrupted, settle)
from bot.pipelines.form import Known, check_form
from bot.pipelines.spec import PipelineSpec

log = logging.getLogger(__name__)


def check_submission(ctx: Context, form: dict[str, Any], mode: str) -> tuple[PipelineSpec | None, dict[str, str]]:
    """The view_submission ack's validation: pure checks plus the cached names and SQLite, no network."""
    names = catalog(ctx)

    def existing(name: str) -> str | None:
        where = names.existing(name)
        if where:
            return where
        row = by_key(ctx, pipeline_key(name))
        # A create whose worker died is not pending: submitting again takes it over.
        if row and row["action"] == "create" and pending(ctx, row):
            return f"as a pending pull request{' #' + str(row['pr_number']) if row['pr_number'] else ''}"
        return None

    return check_form(form, ctx.settings, Known(existing=existing, base_images=names.base_images), mode)


# -- GitHub webhook ---------------------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def handle_github_webhook(ctx: Context, body: bytes, headers) -> tuple[int, dict]:
    """POST /hooks/github: verify the HMAC, then settle closed pull requests of ours."""
    secret = ctx.secrets.github_webhook_secret
    if not secret:
        return 503, {"error": "GITHUB_WEBHOOK_SECRET is not set, so webhooks cannot be verified and are refused; "
                              "set it to the webhook's secret (the pr-poll job tracks merges meanwhile)"}
    signature = _header(headers, "X-Hub-Signature-256") or ""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return 401, {"error": "missing or wrong X-Hub-Signature-256; check the webhook's secret"}
    event = _header(headers, "X-GitHub-Event") or ""
    if event == "ping":
        return 200, {"ok": True, "pong": True}
    if event != "pull_request":
        return 200, {"ok": True, "ignored": f"event {event or '(none)'} is not handled"}
    try:
        payload = json.loads(body)
        action = payload.get("action")
        pull = payload.get("pull_request") or {}
        repo = str((payload.get("repository") or {}).get("full_name") or "")
        number = int(pull.get("number") or payload.get("number"))
        login = str(((pull.get("merged_by") or payload.get("sender") or {}).get("login")) or "unknown")
    except (ValueError, TypeError, AttributeError, OverflowError):
        return 400, {"error": "not a pull_request event payload"}
    if not 0 < number < 2**63:  # SQLite's INTEGER; GitHub numbers pull requests from 1
        return 400, {"error": f"pull request number {number} is out of range"}
    if ctx.settings.github is None or repo.lower() != ctx.settings.github.repo.lower():
        return 200, {"ok": True, "ignored": "not the GitOps repository"}
    if action != "closed":
        return 200, {"ok": True, "ignored": f"action {action}"}
    return _closed(ctx, number, _header(headers, "X-GitHub-Delivery"), f"github:{login}")


def _closed(ctx: Context, number: int, delivery: str | None, actor: str) -> tuple[int, dict]:
    """A signed `closed` event is news, not proof: before a merge can delete anything, GitHub's API
    says whether the pull request is closed and merged, and at which merge commit. The pull request
    and that commit are the dedupe key, so a resend under a new delivery id does nothing twice."""
    if ctx.gitops is None:
        return 503, {"error": "the github: section is not configured, so a closed pull request cannot be "
                              "confirmed with GitHub's API; configure it (the webhook is refused meanwhile)"}
    try:
        pull = ctx.gitops.pull(number)
    except GitOpsError as exc:  # not the sender's fault, and nothing recorded: the poller settles it
        return 202, {"ok": True, "deferred": f"could not confirm pull request #{number} with GitHub ({exc}); "
                                             "the pr-poll job settles it, or redeliver the webhook"}
    if pull.state != "closed":
        return 200, {"ok": True, "ignored": f"GitHub says #{number} is {pull.state}, not closed"}
    outcome = f"merged:{pull.merge_sha}" if pull.merged else f"closed:{pull.head_sha}"
    keys = [f"github-pr:{number}:{outcome}"] + ([f"github-delivery:{delivery}"] if delivery else [])
    # Recorded only for a delivery we act on, so a rejected one leaves nothing behind.
    with ctx.store.tx():
        fresh = [ctx.store.once(key) for key in keys]
    if not all(fresh):
        with ctx.store.tx() as db:  # a key this delivery just added must not outlive the duplicate
            for key, new in zip(keys, fresh):
                if new:
                    db.execute("DELETE FROM processed WHERE key = ?", [key])
        return 200, {"ok": True, "duplicate": True}
    try:
        result = on_closed(ctx, pull.branch, pull.number, pull.merged, actor=actor, source="webhook")
    except Exception:
        with ctx.store.tx() as db:  # let a redelivery (or the poller) try again
            for key in keys:
                db.execute("DELETE FROM processed WHERE key = ?", [key])
        raise
    return 200, {"ok": True, "result": result}


def on_closed(ctx: Context, branch: str, number: int, merged: bool, actor: str, source: str) -> str:
    """A closed pull request, from the webhook or the poller: route it to whoever owns the branch."""
    if branch.startswith((PIPELINE_BRANCH, BUMP_BRANCH)):
        return settle(ctx, branch, number, merged, actor, source)
    for prefix, (feature, handler) in ctx.pull_request_handlers.items():
        if branch.startswith(prefix):
            return _hand_over(ctx, feature, handler, branch, number, merged)
    if branch.startswith("deckhand/"):
        return f"ignored: no handler for {branch.rsplit('/', 1)[0]}/ branches"
    return "ignored: not a deckhand branch"


def _hand_over(ctx: Context, feature: str, handler, branch: str, number: int, merged: bool) -> str:
    """Another feature's PR (app.py registers it in ctx.pull_request_handlers), handed over once."""
    key = f"deletion-pr-closed:{number}"  # the key predates other features; kept so old rows still dedupe
    if not ctx.store.once(key):
        return "already handled"
    try:
        outcome = handler(ctx, branch, number, merged)
    except Exception:
        with ctx.store.tx() as db:  # let the next poll (or a redelivery) try again
            db.execute("DELETE FROM processed WHERE key = ?", [key])
        raise
    return f"dispatched to {feature}" + (f": {outcome}" if isinstance(outcome, str) and outcome else "")


def poll(ctx: Context) -> str:
    """Check every open pipeline PR (and recently closed deletion PRs) for merge or close; give requests
    a killed worker left half-proposed their Try again back."""
    if ctx.gitops is None:
        return "GitHub is not configured; nothing to poll"
    interrupted = recover_interrupted(ctx)
    checked, settled, failures = 0, [], []
    for row in open_pulls(ctx):
        try:
            pull = ctx.gitops.pull(row["pr_number"])
        except GitOpsError as exc:
            failures.append(str(exc))
            continue
        checked += 1
        if pull.state == "closed":
            result = settle(ctx, row["branch"], pull.number, pull.merged, actor="github", source="poll")
            if result in ("merged", "closed"):
                settled.append(f"#{pull.number} {result}")
    deletions = 0
    since = ctx.now() - max(timedelta(days=1), 3 * ctx.settings.pipelines.poll_interval)
    for prefix in ctx.pull_request_handlers:
        try:
            for pull in ctx.gitops.closed_since(prefix, since):
                if on_closed(ctx, pull.branch, pull.number, pull.merged, "github", "poll").startswith("dispatched"):
                    deletions += 1
        except GitOpsError as exc:
            failures.append(str(exc))
    summary = f"checked {checked} open pipeline PRs"
    summary += f"; settled {', '.join(settled)}" if settled else "; none closed"
    if deletions:
        summary += f"; {deletions} deletion PRs handed over"
    if interrupted:
        summary += f"; {interrupted} interrupted by a restart, waiting for Try again"
    if failures:
        summary += f"; {len(failures)} failed: {failures[0]}"
        if not checked and not settled:
            raise JobFailed(summary)
    return summary
