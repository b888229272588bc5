"""The world of the wave tests: a three-role cluster on the Kubernetes fake, and Slack steps.

Roles: control-plane (3 nodes), worker (6), infra (2). No tests here; tests/nodes/test_waves*.py use it."""
from __future__ import annotations

import json

from blocks import waves as wave_blocks
from tests.harness import DEVOPS, DEVOPS2
from tests.nodes.nodes_support import ALERTS, node

ROLES = {"control-plane": 3, "worker": 6, "infra": 2}


def role_node(name: str, role: str, now, *, ready: str = "True", kubelet: str = "v1.29.4") -> dict:
    obj = node(name, now, ready=ready)
    obj["metadata"]["labels"][f"node-role.kubernetes.io/{role}"] = ""
    obj["status"]["nodeInfo"] = {"kubeletVersion": kubelet}
    return obj


def seed_fleet(fake, now, roles: dict[str, int] = ROLES) -> list[str]:
    names = []
    for role, count in roles.items():
        for i in range(1, count + 1):
            name = f"{role[:5]}-{i}"
            fake.add(role_node(name, role, now))
            names.append(name)
    return names


def pod(name: str, node_name: str, *, app: str = "web", ns: str = "default", owner: str | None = "ReplicaSet",
        ready: bool = True, extra_spec: dict | None = None) -> dict:
    meta: dict = {"name": name, "namespace": ns, "labels": {"app": app}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner, "name": f"{app}-rs", "uid": f"uid-{app}",
                                    "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": node_name, "containers": [{"name": "app", "image": "registry/web:1"}],
                     **(extra_spec or {})},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pdb(name: str, app: str, min_available: int | str, ns: str = "default") -> dict:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name, "namespace": ns},
            "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": app}}}}


def form(cluster: str = "prod-a", *, kind: str = "labels", selector: str = "node-role.kubernetes.io/worker",
         max_unavailable: str = "2", floor: str = "50%", procedure: str = "drain", timeout: str = "45m",
         window: str = "", guard: str = "", role_label: str = "node-role.kubernetes.io/*") -> dict:
    """Slack's view.state.values for the planning modal."""
    def text(value):
        return {"value": {"type": "plain_text_input", "value": value or None}}

    def choice(value):
        return {"value": {"type": "static_select", "selected_option": {"value": value}}}
    return {"cluster": choice(cluster), "selector_kind": choice(kind), "selector": text(selector),
            "role_label": text(role_label), "max_unavailable": text(max_unavailable), "floor": text(floor),
            "procedure": choice(procedure), "node_timeout": text(timeout), "window": text(window),
            "traffic_guard": text(guard)}


def plan_wave(bot, user: str = DEVOPS, **fields) -> int:
    """`/nodes wave`, then submit the modal; returns the planned wave's id once its card is in #alerts."""
    answer = bot.sender.command("/nodes", "wave", user_id=user, channel_id="C0OPS")
    assert answer.status_code == 200
    bot.slack.wait_for(lambda: [v for v in bot.slack.views.values() if v.get("callback_id") == wave_blocks.PLAN_CALLBACK],
                       timeout=20)
    before = _wave_ids(bot)
    response = bot.sender.view_submission(wave_blocks.PLAN_CALLBACK, form(**fields), user_id=user)
    assert response.status_code == 200 and not response.content, response.text
    new = bot.slack.wait_for(lambda: sorted(set(_wave_ids(bot)) - set(before)), timeout=20)
    # The planner tells the user last (a DM through the outbox): then the card is queued too.
    bot.slack.wait_for(lambda: bot.ctx.store.query(
        "SELECT id FROM outbox WHERE channel = ? AND payload LIKE ?", [user, f'%Wave #{new[0]} %']), timeout=20)
    bot.flush()
    return new[0]


def _wave_ids(bot) -> list[int]:
    return [r["id"] for r in bot.ctx.store.query("SELECT id FROM waves")]


def card(bot, wave_id: int) -> dict:
    bot.flush()
    for message in bot.slack.messages(ALERTS).values():
        if any((b.get("block_id") or "") == f"wave:{wave_id}" for b in message.get("blocks") or []) or \
                f"Node wave #{wave_id} " in (message.get("text") or ""):
            return message
    raise AssertionError(f"no card for wave {wave_id} in {ALERTS}: {bot.slack.describe()}")


def card_text(bot, wave_id: int) -> str:
    return json.dumps(card(bot, wave_id).get("blocks"), ensure_ascii=False)


def click(bot, wave_id: int, action: str, user: str = DEVOPS2, value: str | None = None) -> dict:
    """Press a button on the wave card and wait until its listener has answered (it answers last)."""
    message = card(bot, wave_id)
    seen = len(bot.slack.responses)
    response = bot.sender.block_actions(action, value=value, user_id=user, channel_id=ALERTS, message_ts=message["ts"])
    assert response.status_code == 200
    return bot.slack.wait_for(lambda: bot.slack.responses[seen:] and bot.slack.responses[-1], timeout=15)


def state(bot, wave_id: int) -> str:
    return bot.ctx.store.query("SELECT state FROM waves WHERE id = ?", [wave_id])[0]["state"]


def phases(bot, wave_id: int) -> dict[str, str]:
    return {r["node"]: r["phase"] for r in bot.ctx.store.query("SELECT node, phase FROM wave_nodes WHERE wave_id = ?",
                                                                 [wave_id])}


def unschedulable(fake, name: str) -> bool:
    return bool((fake.get("v1", "nodes", None, name).get("spec") or {}).get("unschedulable"))


__all__ = ["DEVOPS", "DEVOPS2", "ALERTS"]
