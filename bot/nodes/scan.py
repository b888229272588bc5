"""The node-join scan: per cluster ONE list of Nodes and ONE of CSRs, then rules, then incidents.

Rules (durations from `node_join`):
- not-ready: Ready is False/Unknown for longer than `not_ready_after` (with the condition's reason
  and message, the taints and every other condition that is True — pressure conditions and
  node-problem-detector ones such as KernelDeadlock or ReadonlyFilesystem);
- startup-timeout: created `startup_timeout` ago and never Ready. A new node is left alone until
  then, even when `not_ready_after` is shorter: joining takes a while;
- never-joined: the join script reported `started`/`ok` but no Node object exists
  `startup_timeout` after the attempt began;
- csr-pending: kubelet CSRs for `system:node:<name>` pending longer than `csr_pending_after`; they
  are attached to the node's other alert, or raise their own when there is none.
Storm breaker: when more than `max_unhealthy` of a cluster's nodes (and at least STORM_MIN) are
not Ready, that is a network or control-plane problem, not a join problem: one cluster-level
incident replaces the per-node ones. A cluster whose API server does not answer is one
"unreachable" incident; what we knew about its nodes is left as it was.
"""
from __future__ import annotations

import base64
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.nodes import alerts, posting
from bot.nodes.alerts import CLUSTER_WIDE, Finding
from bot.foundation.context import JobFailed
from bot.foundation.kube import CSRS, NODES, KubeError
from bot.foundation.store import iso, parse_iso

log = logging.getLogger("deckhand.nodes")

STORM_MIN = 3  # below this many unhealthy nodes there is no flood to prevent
# A node whose Ready condition last changed this soon after creation has never been Ready: the
# kubelet posts Ready=False (KubeletNotReady) right after it registers.
NEVER_READY_SLACK = timedelta(minutes=2)
ATTEMPT_TTL = timedelta(days=7)  # a join attempt not heard of for this long is no longer tracked
BASE_CONDITIONS = {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable"}
KUBELET_SIGNERS = {"kubernetes.io/kube-apiserver-client-kubelet", "kubernetes.io/kubelet-serving",
                   "kubernetes.io/legacy-unknown"}
_CN_OID = bytes.fromhex("0603550403")  # DER: OBJECT IDENTIFIER 2.5.4.3 (commonName)


@dataclass
class NodeState:
    name: str
    created: datetime
    ready: str  # "True", "False", "Unknown"
    ready_since: datetime
    ready_reason: str
    ready_message: str
    never_ready: bool
    conditions: list[dict]
    taints: list[str]
    cordoned: bool


@dataclass
class ClusterScan:
    cluster: str
    reachable: bool = True
    error: str = ""
    csr_error: str = ""
    nodes: dict[str, NodeState] = field(default_factory=dict)
    csrs: dict[str, list[dict]] = field(default_factory=dict)  # node -> pending CSRs past the limit
    findings: list[Finding] = field(default_factory=list)
    unhealthy: int = 0
    storm: bool = False
    tracked: set[str] = field(default_factory=set)  # nodes with a join attempt within ATTEMPT_TTL


def scan(ctx) -> str:
    alerts.attach(ctx)
    posting.reconcile(ctx)
    clusters = [c.name for c in ctx.settings.clusters]
    with ThreadPoolExecutor(max_workers=min(8, len(clusters)) or 1, thread_name_prefix="node-scan") as pool:
        fetched = dict(zip(clusters, pool.map(lambda c: fetch(ctx, c), clusters)))
    lines = []
    for cluster in clusters:
        nodes, csrs, error, csr_error = fetched[cluster]
        now = ctx.now()
        joins = _joins(ctx, cluster, nodes, now)
        result = evaluate(cluster, nodes, csrs, joins, now, ctx.settings.node_join, error=error, csr_error=csr_error)
        counts = alerts.sync_cluster(ctx, cluster, result.findings, lambda row, r=result: resolution(r, row))
        lines.append(_summary(result, counts))
    if clusters and all(fetched[c][2] for c in clusters):
        raise JobFailed("; ".join(lines) + " — no cluster answered, so no node was checked")
    return "; ".join(lines)


def fetch(ctx, cluster: str) -> tuple[list[dict], list[dict] | None, str, str]:
    """One list per kind. A failed CSR list still lets the node rules run."""
    try:
        nodes = ctx.kube.list(cluster, NODES)
    except KubeError as exc:
        log.warning("node scan: %s", exc)
        return [], None, str(exc), ""
    try:
        return nodes, ctx.kube.list(cluster, CSRS), "", ""
    except KubeError as exc:
        log.warning("%s", exc)
        return nodes, None, "", str(exc)


def evaluate(cluster: str, nodes: list[dict], csrs: list[dict] | None, joins: list[dict], now: datetime, cfg,
             error: str = "", csr_error: str = "") -> ClusterScan:
    result = ClusterScan(cluster, csr_error=csr_error)
    if error:
        result.reachable, result.error = False, error
        result.findings.append(Finding(cluster, CLUSTER_WIDE, "unreachable", now, {
            "error": error, "summary": "deckhand cannot list this cluster's nodes, so it cannot tell how they are"}))
        return result
    result.nodes = {s.name: s for s in (node_state(n, now) for n in nodes)}
    result.csrs = pending_csrs(csrs or [], now, cfg.csr_pending_after)
    per_node: list[Finding] = []
    unhealthy: list[NodeState] = []
    for state in result.nodes.values():
        finding = node_finding(cluster, state, now, cfg)
        starting = state.never_ready and now - state.created < cfg.startup_timeout
        if state.ready != "True" and not starting:
            unhealthy.append(state)
        if finding is None and result.csrs.get(state.name):
            finding = csr_finding(cluster, state.name, result.csrs[state.name])
        if finding is not None:
            finding.detail["csrs"] = result.csrs.get(state.name, [])
            join = next((j for j in joins if j["node"] == state.name), None)
            if join:  # what the join script last said about this node
                finding.detail.update(last_phase=join["last_phase"], last_status=join["last_status"])
            per_node.append(finding)
    for join in joins:
        result.tracked.add(join["node"])
        if join["joined_at"] or join["node"] in result.nodes or join["last_status"] == "failed":
            continue
        started = parse_iso(join["started_at"])
        if now - started >= cfg.startup_timeout:
            per_node.append(Finding(cluster, join["node"], "never-joined", started, {
                "summary": f"the join script reported `{join['last_phase']}` {join['last_status']}, but no Node "
                           f"object appeared within {alerts.humanize(cfg.startup_timeout)} of the join",
                "last_phase": join["last_phase"], "last_status": join["last_status"],
                "last_report_at": join["last_report_at"], "csrs": result.csrs.get(join["node"], [])}))
    result.unhealthy = len(unhealthy)
    total = len(result.nodes)
    result.storm = len(unhealthy) >= STORM_MIN and total > 0 and len(unhealthy) / total > cfg.max_unhealthy
    if not result.storm:
        result.findings = per_node
    elif any(f.reason in ("not-ready", "startup-timeout") for f in per_node):
        result.findings = [storm_finding(cluster, unhealthy, total, per_node, cfg.max_unhealthy)]
    return result


def node_state(node: dict, now: datetime) -> NodeState:
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    created = parse_iso(meta.get("creationTimestamp")) or now
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None) or {}
    since = parse_iso(ready.get("lastTransitionTime")) or created
    status = ready.get("status") or "Unknown"
    never = (not ready or ready.get("reason") == "NodeStatusNeverUpdated"
             or (status != "True" and since - created <= NEVER_READY_SLACK))
    problems = [{"type": c.get("type"), "reason": c.get("reason") or "", "message": c.get("message") or "",
                 "npd": c.get("type") not in BASE_CONDITIONS}
                for c in conditions if c.get("type") != "Ready" and c.get("status") == "True"]
    taints = [f"{t.get('key')}{'=' + t['value'] if t.get('value') else ''}:{t.get('effect')}"
              for t in spec.get("taints") or []]
    return NodeState(name=meta.get("name", "?"), created=created, ready=status, ready_since=since,
                     ready_reason=ready.get("reason") or "", ready_message=ready.get("message") or "",
                     never_ready=never, conditions=problems, taints=taints, cordoned=bool(spec.get("unschedulable")))


def node_finding(cluster: str, state: NodeState, now: datetime, cfg) -> Finding | None:
    if state.ready == "True":
        return None
    age = now - state.created
    detail = {"ready": state.ready, "condition_reason": state.ready_reason, "condition_message": state.ready_message,
              "taints": state.taints, "conditions": state.conditions, "cordoned": state.cordoned,
              "created": iso(state.created)}
    if state.never_ready:
        if age < cfg.startup_timeout:
            return None
        detail["summary"] = f"never became Ready within {alerts.humanize(cfg.startup_timeout)} of joining"
        return Finding(cluster, state.name, "startup-timeout", state.created, detail)
    if now - state.ready_since < cfg.not_ready_after:
        return None
    # No ages in the text: they change every tick and would force an edit of every open alert
    # (the message shows "failing since" as a Slack date that the client renders).
    detail["summary"] = (f"Ready is {state.ready} for longer than {alerts.humanize(cfg.not_ready_after)}"
                         + (f" ({state.ready_reason})" if state.ready_reason else ""))
    return Finding(cluster, state.name, "not-ready", state.ready_since, detail)


def csr_finding(cluster: str, node: str, csrs: list[dict]) -> Finding:
    oldest = min(parse_iso(c["created"]) for c in csrs)
    return Finding(cluster, node, "csr-pending", oldest, {
        "summary": f"{len(csrs)} kubelet certificate request(s) waiting for approval",
        "csrs": csrs})


def storm_finding(cluster: str, unhealthy: list[NodeState], total: int, per_node: list[Finding],
                  limit: float) -> Finding:
    reasons: dict[str, int] = {}
    for state in unhealthy:
        key = state.ready_reason or f"Ready={state.ready}"
        reasons[key] = reasons.get(key, 0) + 1
    sample = sorted(unhealthy, key=lambda s: s.name)
    return Finding(cluster, CLUSTER_WIDE, "degraded", min(s.ready_since for s in unhealthy), {
        "summary": f"{len(unhealthy)} of {total} nodes are not Ready (more than {round(limit * 100)}%): "
                   "likely a network or control-plane problem, not a join problem",
        "unhealthy": len(unhealthy), "total": total, "limit_percent": round(limit * 100),
        "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "nodes": [{"name": s.name, "ready": s.ready, "reason": s.ready_reason} for s in sample],
        "never_joined": sum(1 for f in per_node if f.reason == "never-joined")})


def resolution(result: ClusterScan, incident: dict) -> str | None:
    """Why an open incident that this tick did not find again is over, or None to keep it open."""
    reason, node = incident["reason"], incident["node"]
    if not result.reachable:
        return None  # we know nothing new
    if reason == "unreachable":
        return "the API server answers again"
    if reason == "degraded":
        return None if result.storm else f"{result.unhealthy} of {len(result.nodes)} nodes are not Ready now"
    state = result.nodes.get(node)
    if reason == "csr-pending":
        if result.csr_error:
            return None
        return None if result.csrs.get(node) else "no kubelet certificate request is pending any more"
    if state is not None and state.ready == "True":
        return "the node is Ready"
    if state is None and reason in ("not-ready", "startup-timeout"):
        return "the Node object was deleted"
    if reason == "never-joined" and node not in result.tracked:
        return f"no join report for {alerts.humanize(ATTEMPT_TTL)}; deckhand stopped tracking this join"
    return None


def pending_csrs(csrs: list[dict], now: datetime, older_than: timedelta) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for csr in csrs:
        spec = csr.get("spec") or {}
        conditions = (csr.get("status") or {}).get("conditions") or []
        if spec.get("signerName") not in KUBELET_SIGNERS or conditions:
            continue  # Approved, Denied and Failed are all conditions; pending has none
        node = csr_node(spec)
        created = parse_iso((csr.get("metadata") or {}).get("creationTimestamp"))
        if node is None or created is None or now - created < older_than:
            continue
        out.setdefault(node, []).append({"name": csr["metadata"]["name"], "signer": spec.get("signerName"),
                                         "requestor": spec.get("username") or "", "created": iso(created),
                                         "created_unix": int(created.timestamp())})
    return out


def csr_node(spec: dict) -> str | None:
    """The node a kubelet CSR is for: its requestor, or for a bootstrap CSR (requested by
    `system:bootstrap:<token id>`) the CN of the request itself."""
    username = spec.get("username") or ""
    if username.startswith("system:node:"):
        return username[len("system:node:"):]
    common_name = request_common_name(spec.get("request") or "")
    if common_name and common_name.startswith("system:node:"):
        return common_name[len("system:node:"):]
    return None


def request_common_name(request_b64: str) -> str | None:
    """CN of a PKCS#10 request (base64 of PEM, as in `spec.request`), read straight from the DER:
    the subject's commonName is the first 2.5.4.3 OID, followed by a string."""
    try:
        pem = base64.b64decode(request_b64).decode("ascii", "replace")
        body = re.sub(r"-----[^-]+-----|\s", "", pem)
        der = base64.b64decode(body)
    except (ValueError, TypeError):
        return None
    at = der.find(_CN_OID)
    if at < 0 or at + 7 > len(der):
        return None
    length = der[at + 6]
    start = at + 7
    if length & 0x80:  # long form: the next (length & 0x7f) bytes hold it
        count = length & 0x7F
        length = int.from_bytes(der[start:start + count], "big")
        start += count
    return der[start:start + length].decode("utf-8", "replace") or None


def _joins(ctx, cluster: str, nodes: list[dict], now: datetime) -> list[dict]:
    """Join attempts heard of within ATTEMPT_TTL; the ones whose Node now exists are marked joined."""
    present = [(n.get("metadata") or {}).get("name") for n in nodes]
    with ctx.store.tx() as db:
        if present:
            db.execute(f"UPDATE node_joins SET joined_at = ? WHERE cluster = ? AND joined_at IS NULL AND node IN "
                       f"({', '.join('?' for _ in present)})", [iso(now), cluster, *present])
        return list(db.query("SELECT * FROM node_joins WHERE cluster = ? AND last_report_at > ?",
                             [cluster, iso(now - ATTEMPT_TTL)]))


def _summary(result: ClusterScan, counts: dict[str, int]) -> str:
    if not result.reachable:
        return f"{result.cluster}: unreachable"
    text = f"{result.cluster}: {_count(len(result.nodes), 'node')}, {_count(counts['open'], 'problem')}"
    if result.storm:
        text += f" (storm: {result.unhealthy} not Ready)"
    extra = [f"{counts[k]} {k}" for k in ("posted", "resolved", "held") if counts.get(k)]
    if result.csr_error:
        extra.append("CSRs not listed")
    return text + (f" — {', '.join(extra)}" if extra else "")


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
