"""Golden files for the node-join alert messages (tests/golden/nodes_*.json) and Slack's limits."""
from __future__ import annotations

import pytest

from blocks import nodes
from tests.fakes.slack import validate_message_blocks
from tests.golden import assert_golden

UNIX = 1795176000  # 2026-11-20 12:00 UTC


def view(**overrides) -> dict:
    base = {
        "id": 12, "target": "12", "cluster": "prod-a", "node": "node-7", "reason": "join-failed", "state": "open",
        "detail": {"phase": "join", "message": "kubeadm join exited with 1", "exit_code": 1, "failures": 2,
                   "script_version": "1.0.0", "summary": "`join` failed (exit code 1): kubeadm join exited with 1",
                   "log_tail": "[preflight] Running pre-flight checks\nerror execution phase preflight: couldn't "
                               "validate the identity of the API Server: Get \"https://10.0.0.1:6443\": connection refused"},
        "failing_since": "2026-11-20T12:00:00+00:00", "failing_since_unix": UNIX, "failing_for": "17m",
        "first_seen": "2026-11-20T12:00:00+00:00", "resolved_at": None, "resolution": None,
        "acked_by": None, "acked_at": None, "message_id": 3, "in_group": False, "silenced": None,
    }
    base.update(overrides)
    return base


NOT_READY = {
    "summary": "Ready is False for longer than 10m (KubeletNotReady)", "ready": "False", "condition_reason": "KubeletNotReady",
    "condition_message": "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady",
    "taints": ["node.kubernetes.io/not-ready:NoSchedule", "node.kubernetes.io/unreachable:NoExecute"],
    "conditions": [{"type": "KernelDeadlock", "reason": "DockerHung", "message": "task docker:7 blocked", "npd": True},
                   {"type": "DiskPressure", "reason": "KubeletHasDiskPressure", "message": "", "npd": False}],
    "cordoned": True, "created": "2026-10-01T08:00:00+00:00",
    "csrs": [{"name": "csr-7x2kq", "signer": "kubernetes.io/kubelet-serving", "requestor": "system:node:worker-3",
              "created": "2026-11-20T11:40:00+00:00", "created_unix": 1795174800}],
}


def test_join_failed_golden():
    assert_golden("nodes_incident_join_failed", nodes.incident(view()))


def test_not_ready_acknowledged_and_silenced_golden():
    silenced = {"until": "2026-11-20T16:00:00+00:00", "until_unix": UNIX + 4 * 3600, "by": "U0DEVOPS1",
                "cluster_wide": False}
    assert_golden("nodes_incident_not_ready", nodes.incident(view(
        node="worker-3", reason="not-ready", detail=NOT_READY, acked_by="U0PAYDEV", silenced=silenced, failing_for="25m")))


def test_resolved_golden():
    assert_golden("nodes_incident_resolved", nodes.incident(view(
        state="resolved", resolution="the join script reported `join` ok", resolved_at="2026-11-20T12:23:00+00:00",
        failing_for="23m")))


def test_never_joined_golden():
    detail = {"summary": "the join script reported `join` ok, but no Node object exists 16m after the join began",
              "last_phase": "join", "last_status": "ok", "last_report_at": "2026-11-20T12:01:00+00:00",
              "csrs": [{"name": "csr-boot", "signer": "kubernetes.io/kube-apiserver-client-kubelet",
                        "requestor": "system:bootstrap:abcdef", "created": "2026-11-20T12:01:00+00:00", "created_unix": 1795176060}]}
    assert_golden("nodes_incident_never_joined", nodes.incident(view(node="node-9", reason="never-joined", detail=detail)))


def test_cluster_unreachable_golden():
    detail = {"error": "prod-b: list nodes failed: the API server had an internal error (503: etcdserver: request timed out)",
              "summary": "deckhand cannot list this cluster's nodes, so it cannot tell how they are"}
    assert_golden("nodes_incident_unreachable", nodes.incident(view(
        cluster="prod-b", node="*", reason="unreachable", detail=detail, failing_for="4m")))


def test_storm_golden():
    detail = {"summary": "6 of 11 nodes are not Ready (more than 40%): likely a network or control-plane problem, "
                         "not a join problem", "unhealthy": 6, "total": 11, "limit_percent": 40,
              "reasons": {"NodeStatusUnknown": 5, "KubeletNotReady": 1},
              "nodes": [{"name": f"down-{n}", "ready": "Unknown", "reason": "NodeStatusUnknown"} for n in range(6)], "never_joined": 1}
    assert_golden("nodes_incident_degraded", nodes.incident(view(node="*", reason="degraded", detail=detail)))


def group_view(count: int, resolved: int = 0) -> dict:
    items = [view(id=20 + n, target=str(20 + n), node=f"worker-{n}", reason="not-ready", in_group=True,
                  detail={"summary": "Ready is False for longer than 10m (KubeletNotReady)"}, failing_for="15m",
                  state="resolved" if n < resolved else "open") for n in range(count)]
    opened = count - resolved
    return {"cluster": "prod-a", "target": "group:20", "incidents": items, "open": opened, "total": count,
            "state": "open" if opened else "resolved", "silenced": None, "acked_by": ["U0DEVOPS1"]}


def test_group_golden():
    assert_golden("nodes_group", nodes.group(group_view(4, resolved=1)))


def test_group_all_resolved_golden():
    assert_golden("nodes_group_resolved", nodes.group(group_view(3, resolved=3)))


def reason_view(count: int, resolved: int = 0, acked: int = 0) -> dict:
    items = [view(id=20 + n, target=str(20 + n), node=f"worker-{n:02d}", reason="not-ready", in_group=True,
                  detail={**NOT_READY, "csrs": NOT_READY["csrs"] if n == 0 else []},
                  failing_for="15m", acked_by="U0PAYDEV" if n < acked else None,
                  state="resolved" if n >= count - resolved else "open",
                  resolution="the node is Ready" if n >= count - resolved else None) for n in range(count)]
    opened = count - resolved
    return {"cluster": "prod-a", "reason": "not-ready", "target": "group:20", "incidents": items, "open": opened,
            "total": count, "state": "open" if opened else "resolved"}


def test_reason_reply_golden():
    built = nodes.reason_reply(reason_view(4, resolved=1, acked=1))
    built["silenced_line"] = nodes.reason_reply({**reason_view(1), "incidents": [
        view(reason="not-ready", detail={"summary": "Ready is Unknown"}, silenced={
            "until": "2026-11-20T16:00:00+00:00", "until_unix": UNIX + 4 * 3600, "by": "U0DEVOPS1",
            "cluster_wide": False})]})["blocks"][1]
    assert_golden("nodes_reason_reply", built)


def test_reason_reply_over_20_nodes_golden():
    assert_golden("nodes_reason_reply_more", nodes.reason_reply(reason_view(26, resolved=2)))


def test_resolved_reply_golden():
    assert_golden("nodes_resolved_reply", nodes.resolved_reply(view(
        state="resolved", resolution="the node is Ready", failing_for="17m")))


def test_notices_golden():
    assert_golden("nodes_notices", {
        "acknowledged": nodes.acknowledged_notice(3, None),
        "already": nodes.acknowledged_notice(0, "U0PAYDEV"),
        "resolved": nodes.acknowledged_notice(0, None),
        "silenced_node": nodes.silenced_notice({"cluster": "prod-a", "node": "worker-3", "until": "2026-11-20T16:00:00+00:00",
                                                "until_unix": UNIX + 4 * 3600, "by": "U0DEVOPS1"}),
        "silenced_cluster": nodes.silenced_notice({"cluster": "prod-a", "node": "*", "until": "2026-11-21T12:00:00+00:00",
                                                   "until_unix": UNIX + 86400, "by": "U0DEVOPS1"}),
    })


@pytest.mark.parametrize("built", [
    nodes.incident(view(detail={**view()["detail"], "log_tail": "x" * 4000 + "\nTHE ERROR AT THE END",
                                "message": "m" * 2500})),
    nodes.incident(view(node="*", reason="degraded", detail={
        "summary": "s", "unhealthy": 500, "total": 600, "limit_percent": 40, "reasons": {f"R{n}": 1 for n in range(300)},
        "nodes": [{"name": f"node-{n:04d}-with-a-long-name-for-the-limit", "ready": "Unknown", "reason": "NodeStatusUnknown"}
                  for n in range(500)]})),
    nodes.group(group_view(300, resolved=120)),
    nodes.reason_reply(reason_view(500, resolved=120, acked=40)),
], ids=["long log", "huge storm", "huge group", "huge reason reply"])
def test_messages_stay_within_slack_limits(built):
    assert validate_message_blocks(built["blocks"]) == []
    assert len(built["blocks"]) <= 50
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in built["blocks"])


def test_a_long_log_keeps_its_end():
    built = nodes.incident(view(detail={**view()["detail"], "log_tail": "x" * 4000 + "\nTHE ERROR AT THE END"}))
    log_block = [b for b in built["blocks"] if "Log tail" in b.get("text", {}).get("text", "")][0]
    assert log_block["text"]["text"].endswith("THE ERROR AT THE END```")
