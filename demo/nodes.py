"""The demo's nodes: healthy ones, and each kind of trouble the node-join scan and reports know.

- prod-a/node-7: the join script reported `join` failed (kubeadm's log tail attached), signed with
  DECKHAND_HOOK_SECRET and handed to the same handler as POST /hooks/node-join;
- prod-a/node-9: registered, but its kubelet-serving CSR has been pending for 40 minutes;
- prod-b/node-4: NotReady for 25 minutes (the CNI is not ready);
- prod-b/gpu-3: the join script reported `discovery` started 20 minutes ago and no Node ever appeared.
"""
from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from typing import Callable

from demo.world import stamp
from tests.fakes.kube.samples import KUBELET_CSR_NODE_9


JOIN_LOG_TAIL = """[preflight] Running pre-flight checks
[preflight] Reading configuration from the cluster...
[kubelet-start] Writing kubelet configuration to file "/var/lib/kubelet/config.yaml"
[kubelet-start] Starting the kubelet
[kubelet-check] Waiting for a healthy kubelet. This can take up to 4m0s
[kubelet-check] The kubelet is not healthy after 4m0s
error execution phase kubelet-start: timed out waiting for the condition: the kubelet on node-7 did not start
(container runtime: failed to pull image registry.k8s.io/pause:3.9: dial tcp: lookup registry.k8s.io: i/o timeout)
"""


def node(name: str, now: datetime, *, ready: str = "True", age: timedelta = timedelta(days=40),
         down_for: timedelta | None = None, reason: str = "KubeletReady",
         message: str = "kubelet is posting ready status") -> dict:
    created = now - age
    since = now - down_for if down_for is not None else created + timedelta(seconds=30)
    taints = [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}] if ready != "True" else []
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "creationTimestamp": stamp(created),
                         "labels": {"kubernetes.io/hostname": name, "node-role.kubernetes.io/worker": ""}},
            "spec": {"taints": taints},
            "status": {"conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
                 "lastTransitionTime": stamp(created)},
                {"type": "Ready", "status": ready, "reason": reason, "message": message,
                 "lastHeartbeatTime": stamp(now), "lastTransitionTime": stamp(since)}]}}


def prod_a(now: datetime) -> list[dict]:
    return [
        *(node(f"node-{i}", now) for i in (1, 2, 3)),
        node("node-9", now, age=timedelta(minutes=45)),
        {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
         "metadata": {"name": "csr-node-9-serving", "creationTimestamp": stamp(now - timedelta(minutes=40))},
         "spec": {"signerName": "kubernetes.io/kubelet-serving", "usages": ["digital signature", "server auth"],
                  "username": "system:node:node-9", "groups": ["system:nodes"],
                  "request": base64.b64encode(KUBELET_CSR_NODE_9.encode()).decode()},
         "status": {}},
    ]


def prod_b(now: datetime) -> list[dict]:
    return [
        *(node(f"node-{i}", now) for i in (1, 2, 3)),
        node("node-4", now, ready="False", down_for=timedelta(minutes=25), reason="KubeletNotReady",
             message="container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady"),
    ]


def report(cluster: str, node_name: str, phase: str, status: str, message: str, at: datetime,
           log_tail: str = "", exit_code: int | None = None) -> dict:
    body = {"cluster": cluster, "node": node_name, "phase": phase, "status": status, "message": message,
            "log_tail": log_tail, "script_version": "1.0.0", "timestamp": stamp(at)}
    if exit_code is not None:
        body["exit_code"] = exit_code
    return body


# (cluster, node, phase, status, message, log tail, exit code), in the order the join script sent them.
EARLIER = [("prod-b", "gpu-3", "discovery", "started", "join-node.sh started", "", None)]
NOW = [("prod-a", "node-7", "discovery", "ok", "found the API server", "", None),
       ("prod-a", "node-7", "join", "failed", "kubeadm join exited with 1", JOIN_LOG_TAIL, 1)]


def send_reports(post: Callable[[bytes, dict], tuple[int, dict]], sign: Callable[[int, str | bytes], str],
                 now: datetime, sent: list[tuple]) -> list[str]:
    """Send reports as the join script does (signed, timestamped `now`); the refusals, if any."""
    problems = []
    timestamp = int(now.astimezone(timezone.utc).timestamp())
    for cluster, node_name, phase, status, message, tail, exit_code in sent:
        raw = json.dumps(report(cluster, node_name, phase, status, message, now, tail, exit_code)).encode()
        code, answer = post(raw, {"Content-Type": "application/json", "X-Deckhand-Timestamp": str(timestamp),
                                  "X-Deckhand-Signature": sign(timestamp, raw)})
        if code >= 300:
            problems.append(f"{node_name} {phase} {status}: {code} {answer}")
    return problems
