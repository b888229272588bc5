"""Who may touch a canary, and where deckhand touches nothing: the owner is the stable workload's team
(never the canary Deployment's label alone), and protected namespaces are refused whoever asks.
Signed Slack requests to the real endpoint, the Kubernetes fake as the cluster."""
from __future__ import annotations

import json

import pytest

from bot.foundation.kube import DEPLOYMENTS, LEASES, PODS, KubeError
from tests.canary.test_canary_fixtures import (click, fast, istio_canary, post_card, wait_card,  # noqa: F401
                                               wait_outcome, weights, writes)
from tests.fakes.kube import SESSION_CALLS
from tests.harness import DEVOPS, PAY_DEV

SEARCHER = "U0SEARCHER"


def relabel(fake, name: str, team: str | None, namespace: str = "payments", kind: str = "deployments",
            api: str = "apps/v1") -> None:
    fake.patch(api, kind, namespace, name, {"metadata": {"labels": {"team": team}}})


def denial_after(bot, before: int) -> str:
    return bot.slack.wait_for(lambda: [r["text"] for r in bot.slack.responses[before:]
                                       if "can't do that" in (r.get("text") or "")], timeout=15)[-1]


def test_a_canary_deployment_labelled_with_another_team_does_not_make_them_owner(bot, fast):
    fake = bot.kube["prod-a"]
    bot.slack.usergroups["S0SEARCH"] = [SEARCHER]
    istio_canary(fake, weight=10)  # payments owns checkout: its stable Deployment and VirtualService say so
    relabel(fake, "checkout-canary", "search")  # someone in a shared namespace claims the canary
    card = post_card(bot, "checkout", user=SEARCHER)
    text = json.dumps(card["blocks"])
    assert "labelled team=search, but the stable workload and route belong to payments" in text
    fake.clear_requests()
    before = len(bot.slack.responses)
    click(bot, card, "canary_step", user=SEARCHER)
    assert "only the payments team or DevOps may do this" in denial_after(bot, before)
    assert writes(fake) == [] and weights(fake) == (90, 10)

    # Neither the stable Deployment nor the route names a team: the canary's label still counts for
    # nothing, and only DevOps may operate it.
    relabel(fake, "checkout", None)
    relabel(fake, "checkout", None, kind="virtualservices", api="networking.istio.io/v1")
    before = len(bot.slack.responses)
    click(bot, card, "canary_step", user=SEARCHER)
    assert "only the owning team (the service has no team label) or DevOps" in denial_after(bot, before)
    before = len(bot.slack.responses)
    click(bot, card, "canary_step", user=PAY_DEV)
    denial_after(bot, before)
    assert writes(fake) == []
    click(bot, card, "canary_step", user=DEVOPS)
    wait_card(bot, card, "Next step* by <@U0DEVOPS1>")
    assert weights(fake) == (75, 25)


def test_the_stable_owner_operates_even_when_the_canary_says_otherwise(bot, fast):
    fake = bot.kube["prod-a"]
    istio_canary(fake, weight=10)
    relabel(fake, "checkout-canary", "search")
    card = post_card(bot, "checkout")
    click(bot, card, "canary_step", user=PAY_DEV)
    wait_card(bot, card, "Next step* by <@U0PAYDEV>")
    assert weights(fake) == (75, 25)


def test_a_canary_in_a_protected_namespace_is_refused_even_to_devops(bot_factory, fast):
    bot = bot_factory()
    fake = bot.kube["prod-a"]
    istio_canary(fake, service="ingress-gw", namespace="istio-system", team="payments", weight=10)
    card = post_card(bot, "ingress-gw", user=DEVOPS)
    fake.clear_requests()
    rows = []
    for action in ("step", "promote", "abort"):
        click(bot, card, f"canary_{action}", user=DEVOPS)
        rows += wait_outcome(bot, action)
    assert [r["result"] for r in rows] == ["refused: protected namespace"] * 3
    text = wait_card(bot, card, "protected namespace")
    assert "`istio-system` is a protected namespace" in text and "Nothing was changed" in text
    assert writes(fake) == [] and weights(fake, "ingress-gw", "istio-system") == (90, 10)


def test_protected_namespaces_come_from_the_config_and_the_gateway_refuses_writes(bot_factory, fast):
    bot = bot_factory(config={"protected_namespaces": ["payments"]})
    assert bot.ctx.settings.protected_namespaces == ["payments"]
    fake = bot.kube["prod-a"]
    istio_canary(fake, weight=10)
    card = post_card(bot, "checkout", user=PAY_DEV)
    fake.clear_requests()
    click(bot, card, "canary_step", user=DEVOPS)
    assert "`payments` is a protected namespace" in wait_card(bot, card, "protected namespace")
    assert writes(fake) == []
    # The one door every write goes through refuses it too, before a request is made.
    with pytest.raises(KubeError) as refused:
        bot.ctx.kube.patch("prod-a", DEPLOYMENTS, "payments", "checkout", {"spec": {"replicas": 0}})
    assert refused.value.protected and "`payments` is a protected namespace" in str(refused.value)
    assert writes(fake) == [] and fake.get("apps/v1", "deployments", "payments", "checkout")["spec"]["replicas"] == 3


def test_the_gateway_lets_only_a_drain_eviction_and_deckhands_own_lease_through(bot_factory):
    bot = bot_factory()
    fake = bot.kube["prod-a"]
    fake.add({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "coredns-1", "namespace": "kube-system"},
              "spec": {"nodeName": "node-1", "containers": [{"name": "coredns", "image": "coredns:1.11"}]}})
    fake.clear_requests()
    with pytest.raises(KubeError) as refused:
        bot.ctx.kube.delete("prod-a", PODS, "kube-system", "coredns-1")
    assert refused.value.protected and fake.writes() == []
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "coredns-1", "namespace": "kube-system"}}
    bot.ctx.kube.request("prod-a", "POST", PODS.path("kube-system", "coredns-1", "eviction"), body=body)
    assert [(w.method, w.path.split("?")[0]) for w in fake.writes()] == [
        ("POST", "/api/v1/namespaces/kube-system/pods/coredns-1/eviction")]
    # Leases: deckhand's own (lease.name) only; a node's heartbeat Lease in kube-node-lease is not its business.
    own = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "deckhand"}, "spec": {}}
    bot.ctx.kube.create("prod-a", LEASES, "kube-node-lease", own)
    with pytest.raises(KubeError) as refused:
        bot.ctx.kube.create("prod-a", LEASES, "kube-node-lease", {**own, "metadata": {"name": "node-1"}})
    assert refused.value.protected and len(fake.writes()) == 2
    # That Lease create probes the guard, not a call deckhand makes in service (its Role holds only in its own
    # namespace): keep it out of the least-privilege check in tests/test_zz_permissions.py.
    SESSION_CALLS.difference_update({c for c in SESSION_CALLS if "/namespaces/kube-node-lease/" in c[1]})
