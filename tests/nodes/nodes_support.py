"""Helpers for the node-join tests: signed reports, Node and CSR objects, reading the alerts channel."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import requests

from bot.nodes.reports import sign
from tests.fakes.kube.samples import KUBELET_CSR_NODE_9
from tests.harness import HOOK_SECRET

ALERTS = "C0ALERTS"


def stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def report(**overrides) -> dict:
    body = {"cluster": "prod-a", "node": "node-7", "phase": "join", "status": "failed",
            "message": "kubeadm join exited with 1", "log_tail": "[preflight] Running pre-flight checks\n"
            "error execution phase preflight: couldn't validate the identity of the API Server: connection refused",
            "script_version": "1.0.0", "timestamp": "2026-11-20T12:00:00Z", "exit_code": 1}
    body.update(overrides)
    return body


def post_report(bot, body: dict | bytes | str, *, timestamp: int | None = None, secret: str = HOOK_SECRET,
                signature: str | None = None, headers: dict | None = None) -> requests.Response:
    raw = body if isinstance(body, bytes) else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
    ts = int(bot.clock().timestamp()) if timestamp is None else timestamp
    sent = {"Content-Type": "application/json", "X-Deckhand-Timestamp": str(ts),
            "X-Deckhand-Signature": signature or sign(secret, ts, raw)}
    sent.update(headers or {})
    return requests.post(bot.url + "/hooks/node-join", data=raw, headers=sent, timeout=10)


def node(name: str, now: datetime, *, ready: str = "True", age: timedelta = timedelta(days=30),
         ready_for: timedelta | None = None, reason: str = "KubeletReady", message: str = "kubelet is posting ready status",
         taints: list[dict] | None = None, conditions: list[dict] | None = None, unschedulable: bool = False) -> dict:
    created = now - age
    since = now - ready_for if ready_for is not None else created + timedelta(seconds=20)
    obj = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "creationTimestamp": stamp(created), "labels": {"kubernetes.io/hostname": name}},
        "spec": {"taints": taints or []},
        "status": {"conditions": [
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
             "lastTransitionTime": stamp(created)},
            {"type": "Ready", "status": ready, "reason": reason, "message": message,
             "lastHeartbeatTime": stamp(now), "lastTransitionTime": stamp(since)},
            *(conditions or []),
        ]},
    }
    if unschedulable:
        obj["spec"]["unschedulable"] = True
    return obj


def not_ready(name: str, now: datetime, *, down_for: timedelta, status: str = "False", **kwargs) -> dict:
    kwargs.setdefault("reason", "KubeletNotReady" if status == "False" else "NodeStatusUnknown")
    kwargs.setdefault("message", "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady"
                      if status == "False" else "Kubelet stopped posting node status.")
    kwargs.setdefault("taints", [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}])
    return node(name, now, ready=status, ready_for=down_for, **kwargs)


def starting(name: str, now: datetime, *, age: timedelta) -> dict:
    """A node that registered `age` ago and never became Ready."""
    return node(name, now, ready="False", age=age, ready_for=age - timedelta(seconds=5), reason="KubeletNotReady",
                message="PLEG is not healthy: pleg has yet to be successful",
                taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}])


BOOTSTRAP_REQUEST_PEM = KUBELET_CSR_NODE_9  # a real kubelet bootstrap request for node-9


def csr(name: str, now: datetime, *, node_name: str, age: timedelta, signer: str = "kubernetes.io/kubelet-serving",
        bootstrap: bool = False, approved: bool = False, request_pem: str | None = None) -> dict:
    spec = {"signerName": signer, "usages": ["digital signature", "server auth"],
            "username": "system:bootstrap:abcdef" if bootstrap else f"system:node:{node_name}",
            "groups": ["system:bootstrappers"] if bootstrap else ["system:nodes"],
            "request": base64.b64encode((request_pem or "").encode()).decode()}
    obj = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
           "metadata": {"name": name, "creationTimestamp": stamp(now - age)}, "spec": spec, "status": {}}
    if approved:
        obj["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "AutoApproved"}]}
    return obj


def alert_messages(bot) -> list[dict]:
    return list(bot.slack.messages(ALERTS).values())


def text_of(message: dict) -> str:
    return message.get("text", "") + json.dumps(message.get("blocks") or [], ensure_ascii=False)


def open_incidents(bot) -> list[dict]:
    return bot.ctx.store.query("SELECT * FROM incidents WHERE state = 'open' ORDER BY id")
