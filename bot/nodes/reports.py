"""Node-join reports: the join script POSTs each phase to /hooks/node-join.

Authentication (the join script, deploy/node-join/join-node.sh, does exactly this):

    X-Deckhand-Timestamp: <unix seconds>
    X-Deckhand-Signature: sha256=<64 lowercase hex: HMAC-SHA256(secret, "<timestamp>.<raw body>")>

Both headers must have exactly that shape (anything else is 401, before any arithmetic). The
secret is DECKHAND_HOOK_SECRET, or a cluster's own DECKHAND_HOOK_SECRET_<CLUSTER>: when a cluster
has one, its reports are accepted only with it, so a node holding one cluster's secret cannot
report for another (a discovery failure, which names no cluster, is accepted with any of them).

A timestamp more than 5 minutes from the bot's clock (either way) is rejected, and a report whose
computed signature was accepted before answers "duplicate" without storing anything, so a captured
report cannot be replayed and a curl retry of a delivered report does not count twice.

A `failed` report is stored, turned into an incident and queued for Slack in one transaction
(the outbox drainer posts it within a second); a later `ok` for the same or a later phase
resolves it. The scan (bot/nodes/scan.py) does the rest from the cluster's own state.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from bot.nodes import alerts
from bot.foundation.config import HOOK_SECRET_PREFIX, Secrets, hook_secret_env
from bot.foundation.context import Context
from bot.foundation.doors import header, unix_seconds
from bot.foundation.store import iso

PHASES = ("discovery", "config", "join", "ready")
STATUSES = ("started", "ok", "failed")
MAX_BODY = 64 * 1024
MAX_LOG_TAIL = 4 * 1024
MAX_SKEW_SECONDS = 300
TIMESTAMP_HEADER = "X-Deckhand-Timestamp"
SIGNATURE_HEADER = "X-Deckhand-Signature"
REQUIRED = ("cluster", "node", "phase", "status", "message", "log_tail", "script_version", "timestamp")
_NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")  # fullmatch: `$` allows "\n"


class Rejected(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class JoinReport:
    cluster: str  # "" when discovery itself failed: the node does not know its cluster
    node: str
    phase: str
    status: str
    message: str
    log_tail: str
    script_version: str
    timestamp: datetime
    exit_code: int | None = None


def handle_report(ctx: Context, body: bytes, headers) -> tuple[int, dict]:
    if not ctx.is_leader():  # only the acting instance writes; curl --retry tries again on 503
        return 503, {"error": "this deckhand instance is standing by for another; retry in a few seconds"}
    try:
        digest, signers = verify(ctx.secrets, body, headers, ctx.now())
        report = parse(body, [c.name for c in ctx.settings.clusters])
        authorize(ctx.secrets, report, signers)
    except Rejected as exc:
        return exc.status, {"error": exc.reason}
    with ctx.store.tx():
        if not ctx.store.once(f"node-report:{digest}", "accepted"):
            return 200, {"status": "duplicate", "detail": "this exact report was already accepted"}
        report_id = record(ctx, report)
    return 202, {"status": "accepted", "id": report_id}


# -- authentication ---------------------------------------------------------------------------------
_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")
GLOBAL = ""  # the signer name of DECKHAND_HOOK_SECRET; a cluster's own secret signs as the cluster's name


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(secrets: Secrets, body: bytes, headers, now: datetime) -> tuple[str, set[str]]:
    """Check the headers' shape, the clock and the HMAC on the raw body; return the signature and who
    could have made it (GLOBAL and/or the env suffixes of the cluster secrets that match)."""
    keys = {GLOBAL: secrets.hook_secret} if secrets.hook_secret else {}
    keys.update(secrets.cluster_hook_secrets)
    if not keys:
        raise Rejected(503, "node-join reports are disabled: DECKHAND_HOOK_SECRET is not set on the bot")
    if len(body) > MAX_BODY:
        raise Rejected(413, f"report body is {len(body)} bytes; the limit is {MAX_BODY} (64 KiB)")
    stamp = header(headers, TIMESTAMP_HEADER)
    given = header(headers, SIGNATURE_HEADER)
    if not stamp or not given:
        raise Rejected(401, f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    seconds = unix_seconds(stamp)
    if seconds is None:
        raise Rejected(401, f"{TIMESTAMP_HEADER} must be Unix seconds (ASCII digits only)")
    skew = now.timestamp() - seconds
    if abs(skew) > MAX_SKEW_SECONDS:
        when = "old" if skew > 0 else "in the future"
        raise Rejected(401, f"report timestamp is {int(abs(skew))}s {when} (limit {MAX_SKEW_SECONDS}s); "
                            "check the node's clock (NTP)")
    if not _SIGNATURE.fullmatch(given):
        raise Rejected(401, f"{SIGNATURE_HEADER} must be exactly sha256=<64 lowercase hex digits>")
    signers = {name for name, secret in keys.items() if hmac.compare_digest(sign(secret, stamp, body), given)}
    if not signers:
        raise Rejected(401, "signature does not match: the node and the bot must share DECKHAND_HOOK_SECRET "
                            "(or the cluster's DECKHAND_HOOK_SECRET_<CLUSTER>), and the HMAC covers "
                            "'<timestamp>.<raw body>'")
    return given, signers


def authorize(secrets: Secrets, report: "JoinReport", signers: set[str]) -> None:
    """A cluster with its own secret takes reports signed with it only; others take the shared one."""
    if report.cluster == "":
        return  # discovery failed: the node does not know its cluster, so any of our secrets will do
    variable = hook_secret_env(report.cluster)
    if secrets.cluster_hook_secret(report.cluster):
        if variable[len(HOOK_SECRET_PREFIX):] not in signers:
            raise Rejected(401, f"a report for cluster {report.cluster} must be signed with {variable}")
    elif GLOBAL not in signers:
        raise Rejected(401, f"cluster {report.cluster} has no {variable}; its reports must be signed with "
                            "DECKHAND_HOOK_SECRET")


# -- validation -----------------------------------------------------------------------------------
def parse(body: bytes, clusters: list[str]) -> JoinReport:
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise Rejected(400, "body is not UTF-8") from None
    except ValueError as exc:
        raise Rejected(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Rejected(400, "body must be a JSON object")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise Rejected(400, f"missing field(s): {', '.join(missing)}")
    for key in REQUIRED:
        if not isinstance(data[key], str):
            raise Rejected(400, f"{key} must be a string")
    if data["phase"] not in PHASES:
        raise Rejected(400, f"unknown phase {data['phase'][:40]!r}; expected one of {', '.join(PHASES)}")
    if data["status"] not in STATUSES:
        raise Rejected(400, f"unknown status {data['status'][:40]!r}; expected one of {', '.join(STATUSES)}")
    size = len(data["log_tail"].encode("utf-8"))
    if size > MAX_LOG_TAIL:
        raise Rejected(400, f"log_tail is {size} bytes; send at most the last {MAX_LOG_TAIL} (4 KiB)")
    if len(data["message"]) > 2000:
        raise Rejected(400, "message is longer than 2000 characters")
    node = data["node"]
    if not _NODE_NAME.fullmatch(node) or len(node) > 253:
        raise Rejected(400, f"node {node[:80]!r} is not a valid node name (lowercase DNS name)")
    cluster = data["cluster"]
    if cluster not in clusters and not (cluster == "" and data["phase"] == "discovery"):
        raise Rejected(400, f"unknown cluster {cluster[:80]!r}; configured: {', '.join(clusters)}")
    exit_code = data.get("exit_code")
    if exit_code is not None and (isinstance(exit_code, bool) or not isinstance(exit_code, int)
                                  or not -2**31 <= exit_code < 2**31):  # SQLite stores at most 64 bits
        raise Rejected(400, "exit_code must be an integer (the script's exit status)")
    try:
        moment = datetime.fromisoformat(data["timestamp"])
    except ValueError:
        raise Rejected(400, f"timestamp {data['timestamp'][:40]!r} is not ISO-8601 (e.g. 2026-11-20T12:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        moment = moment.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise Rejected(400, f"timestamp {data['timestamp'][:40]!r} is out of range") from None
    return JoinReport(cluster=cluster, node=node, phase=data["phase"], status=data["status"],
                      message=data["message"], log_tail=data["log_tail"],
                      script_version=data["script_version"][:40], timestamp=moment, exit_code=exit_code)


# -- recording --------------------------------------------------------------------------------------
def record(ctx: Context, report: JoinReport) -> int:
    """Store the report, track the join attempt, raise or resolve its incident: one transaction."""
    now = ctx.now()
    with ctx.store.tx() as db:
        cursor = db.execute(
            "INSERT INTO node_reports(received_at, cluster, node, phase, status, message, log_tail, exit_code, "
            "script_version, reported_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [iso(now), report.cluster, report.node, report.phase, report.status, report.message, report.log_tail,
             report.exit_code, report.script_version, iso(report.timestamp)])
        # A discovery report after any later phase starts a new attempt (a re-run or a reprovisioned
        # machine). The first report may come without a cluster, so `ok` counts as well as `started`.
        new_attempt = report.phase == "discovery" and report.status != "failed"
        db.execute(
            "INSERT INTO node_joins(cluster, node, started_at, last_phase, last_status, last_report_at) "
            "VALUES(?, ?, ?, ?, ?, ?) ON CONFLICT(cluster, node) DO UPDATE SET "
            "started_at = CASE WHEN ? AND node_joins.last_phase != 'discovery' THEN excluded.started_at "
            "ELSE node_joins.started_at END, "
            "joined_at = CASE WHEN ? AND node_joins.last_phase != 'discovery' THEN NULL ELSE node_joins.joined_at END, "
            "last_phase = excluded.last_phase, last_status = excluded.last_status, "
            "last_report_at = excluded.last_report_at",
            [report.cluster, report.node, iso(now), report.phase, report.status, iso(now), new_attempt, new_attempt])
        if report.status == "failed":
            alerts.raise_now(ctx, failure_finding(ctx, report, now))
        elif report.status == "ok":
            # An ok for the phase that failed, or a later one, means the retry got past it.
            passed = PHASES[: PHASES.index(report.phase) + 1]
            # A discovery failure was filed under cluster "" (the node did not know it yet).
            for cluster in {report.cluster, ""}:
                if any(row["node"] == report.node and row["reason"] == "join-failed"
                       and row["detail"].get("phase") in passed for row in alerts.open_incidents(ctx, cluster)):
                    alerts.resolve(ctx, cluster, report.node, ["join-failed"],
                                   f"the join script reported `{report.phase}` ok")
        return cursor.lastrowid


def failure_finding(ctx: Context, report: JoinReport, now: datetime) -> alerts.Finding:
    failures = ctx.store.query(
        "SELECT COUNT(*) AS n FROM node_reports WHERE cluster = ? AND node = ? AND status = 'failed' AND received_at >= "
        "COALESCE((SELECT first_seen FROM incidents WHERE kind = ? AND cluster = ? AND node = ? "
        "AND reason = 'join-failed' AND state = 'open'), ?)",
        [report.cluster, report.node, alerts.KIND, report.cluster, report.node, iso(now)])[0]["n"]
    detail: dict[str, Any] = {
        "phase": report.phase, "message": report.message, "log_tail": report.log_tail,
        "exit_code": report.exit_code, "script_version": report.script_version, "failures": failures,
        "summary": f"`{report.phase}` failed" + (f" (exit code {report.exit_code})" if report.exit_code is not None
                                                  else "") + (f": {report.message}" if report.message else ""),
    }
    return alerts.Finding(cluster=report.cluster, node=report.node, reason="join-failed", since=now, detail=detail)
