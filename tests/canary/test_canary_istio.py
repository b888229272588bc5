"""/canary end to end for Istio-native canaries: signed Slack requests to the real endpoint, the
Kubernetes fake as the cluster, the real Prometheus for traffic."""
from __future__ import annotations

import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from bot.canary.model import REVISION, STARTED_AT, STARTED_BY, STEPPED_AT
from tests.fakes.slack import SlackSender
from tests.harness import DEVOPS, DEVOPS2, OUTSIDER, PAY_DEV, PAY_DEV2, SIGNING_SECRET, FakeClock
from tests.canary.test_canary_fixtures import (CANARY_IMAGE, CHANNEL, STABLE_IMAGE, checkout_metrics, click,  # noqa: F401
                                        deployment_controller, fast, istio_canary, outcome_rows, post_card,
                                        wait_card, wait_outcome, weights, writes)

VS = "/apis/networking.istio.io/v1/namespaces/payments/virtualservices/checkout"
STABLE = "/apis/apps/v1/namespaces/payments/deployments/checkout"
CANARY = "/apis/apps/v1/namespaces/payments/deployments/checkout-canary"


def js(data) -> str:
    return json.dumps(data, ensure_ascii=False)


def revision(image: str) -> str:
    return hashlib.sha256(image.encode()).hexdigest()[:12]


def replicas(fake, name: str) -> int:
    return fake.get("apps/v1", "deployments", "payments", name)["spec"]["replicas"]


# -- seeing ------------------------------------------------------------------------------------------
def test_list_spans_clusters_with_one_list_per_kind_and_names_who_started(bot_factory):
    bot = bot_factory(clusters=("prod-a", "prod-b"))
    started = bot.clock() - timedelta(days=2, hours=3)
    istio_canary(bot.kube["prod-a"], weight=25, vs_annotations={
        STARTED_BY: PAY_DEV, STARTED_AT: started.isoformat(), REVISION: revision(CANARY_IMAGE)})
    istio_canary(bot.kube["prod-b"], service="search", namespace="search", team="search", weight=10,
                 created=bot.clock() - timedelta(hours=5))
    istio_canary(bot.kube["prod-b"], service="ended", namespace="search", weight=0, canary_replicas=0)
    for fake in bot.kube.values():
        fake.clear_requests()

    bot.sender.command("/canary", "", user_id=OUTSIDER)  # looking is for everyone
    reply = bot.slack.wait_for(lambda: bot.slack.responses, timeout=15)[0]
    text = js(reply["blocks"])
    assert reply["response_type"] == "ephemeral" and "Live canaries (2)" in text
    assert "*checkout* · `prod-a/payments` · canary *25%* (step 2 of 4" in text
    assert STABLE_IMAGE in text and CANARY_IMAGE in text
    assert "started by <@U0PAYDEV>, 2d 3h ago" in text
    assert "*search* · `prod-b/search` · canary *10%*" in text and "started by unknown, 5h ago" in text
    assert "ended" not in text  # at 0% with no canary pods: over
    for cluster, fake in bot.kube.items():
        paths = [r.path.split("?")[0] for r in fake.requests]
        assert sorted(paths) == sorted(set(paths)), f"{cluster}: one list per kind, got {paths}"
        assert all(r.method == "GET" for r in fake.requests)
        assert "/apis/networking.istio.io/v1/virtualservices" in paths and "/apis/apps/v1/deployments" in paths

    bot.kube["prod-b"].fail("GET", "virtualservices", status=503, times=None)
    bot.sender.command("/canary", "list", user_id=OUTSIDER)
    again = js(bot.slack.wait_for(lambda: len(bot.slack.responses) > 1 and bot.slack.responses, timeout=15)[1])
    assert "Live canaries (1)" in again and "*checkout*" in again
    assert "prod-b: list virtualservices failed" in again


def test_status_card_shows_per_version_traffic_from_istio_metrics(bot_factory, prometheus_factory):
    server = prometheus_factory(checkout_metrics())
    bot = bot_factory(prometheus={"prod-a": server.url}, clock=FakeClock(server.eval_time))
    istio_canary(bot.kube["prod-a"], weight=10)
    card = post_card(bot, "checkout prod-a")
    text = js(card["blocks"])
    table = re.search(r"```(.*?)```", text).group(1).replace("\\n", "\n")
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[1:]}
    assert rows == {"stable": ["9.00", "100.0%", "120", "ms"], "canary": ["1.00", "80.0%", "800", "ms"]}
    assert "success rate is lower than stable" in text and "p99 latency is well above" in text
    assert "stable *90%* · canary *10%*" in text and "Next step → 25%" in text
    assert bot.ctx.traffic.queries["prod-a"] == 2  # one request query, one latency query: not per version

    click(bot, card, "canary_refresh", user=OUTSIDER)
    bot.slack.wait_for(lambda: bot.ctx.traffic.queries["prod-a"] == 4 and
                       bot.slack.calls_to("chat.update"), timeout=15)
    assert "800 ms" in js(bot.slack.message(CHANNEL, card["ts"])["blocks"])


def test_status_with_prometheus_down_says_unknown_never_zero(bot):
    istio_canary(bot.kube["prod-a"], weight=10)
    card = post_card(bot, "checkout")
    text = js(card["blocks"])
    assert "*unknown* — prod-a: Prometheus did not answer (connection refused)" in text
    assert "0.00" not in text and "req/s" not in text and "0.0%" not in text


def test_unknown_service_and_ambiguous_service(bot_factory):
    bot = bot_factory(clusters=("prod-a", "prod-b"))
    istio_canary(bot.kube["prod-a"])
    istio_canary(bot.kube["prod-b"])
    bot.sender.command("/canary", "nope", user_id=PAY_DEV)
    bot.sender.command("/canary", "checkout", user_id=PAY_DEV)
    replies = bot.slack.wait_for(lambda: len(bot.slack.responses) >= 2 and bot.slack.responses, timeout=15)
    texts = " ".join(r["text"] for r in replies)
    assert "No live canary of `nope` in any cluster" in texts
    assert "`prod-a/payments`, `prod-b/payments`" in texts and "/canary checkout prod-a" in texts


# -- acting ------------------------------------------------------------------------------------------
def test_next_step_moves_weights_and_records_who_started(bot, fast):
    fake = bot.kube["prod-a"]
    istio_canary(fake, weight=0)
    card = post_card(bot, "checkout")
    fake.clear_requests()
    click(bot, card, "canary_step", user=PAY_DEV)
    wait_card(bot, card, "Next step* by <@U0PAYDEV>", "Next step → 25%")
    assert weights(fake) == (90, 10)
    assert writes(fake) == [("PATCH", VS)]
    notes = fake.get("networking.istio.io/v1", "virtualservices", "payments", "checkout")["metadata"]["annotations"]
    assert notes[STARTED_BY] == PAY_DEV and notes[REVISION] == revision(CANARY_IMAGE)

    bot.clock.advance(hours=1)
    click(bot, card, "canary_step", user=DEVOPS)
    wait_card(bot, card, "Next step* by <@U0DEVOPS1>", "Next step → 50%")
    assert weights(fake) == (75, 25)
    notes = fake.get("networking.istio.io/v1", "virtualservices", "payments", "checkout")["metadata"]["annotations"]
    assert notes[STARTED_BY] == PAY_DEV and notes[STEPPED_AT] > notes[STARTED_AT]  # the starter stays
    audit = [r for r in bot.ctx.store.audit_log(limit=50) if r["action"] == "canary.step"]
    assert [r["result"] for r in audit][:2] == ["done", "ok"] and audit[1]["actor"] == DEVOPS

    # A GitOps sync wipes our annotations: the audit log still knows who started this revision.
    fake.patch("networking.istio.io/v1", "virtualservices", "payments", "checkout", {"metadata": {"annotations": None}})
    bot.sender.command("/canary", "list", user_id=OUTSIDER)
    listing = js(bot.slack.wait_for(lambda: bot.slack.responses, timeout=15)[-1]["blocks"])
    assert "started by <@U0PAYDEV>" in listing


def test_promote_copies_template_waits_for_rollout_then_shifts_and_scales(bot, fast):
    fake = bot.kube["prod-a"]
    istio_canary(fake, weight=50)
    deployment_controller(fake, after=0.3)
    card = post_card(bot, "checkout")
    fake.clear_requests()
    click(bot, card, "canary_promote", user=PAY_DEV)
    text = wait_card(bot, card, "Promote* by <@U0PAYDEV>: Promoted")
    assert writes(fake) == [("PATCH", STABLE), ("PATCH", VS), ("PATCH", CANARY)]
    stable = fake.get("apps/v1", "deployments", "payments", "checkout")
    container = stable["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == CANARY_IMAGE and {"name": "NEW_FLAG", "value": "on"} in container["env"]
    assert stable["spec"]["template"]["metadata"]["labels"] == {"app": "checkout", "track": "stable", "version": "v1"}
    assert weights(fake) == (100, 0) and replicas(fake, "checkout-canary") == 0
    updates = js([c.args for c in bot.slack.calls_to("chat.update")])
    assert "Promote started by" in updates and "waiting for the" in updates  # progress shown in place
    assert "_ended_" in text and "canary_promote" not in text  # nothing left to click but Refresh
    saving = bot.ctx.store.query("SELECT * FROM savings")
    assert len(saving) == 1 and saving[0]["cpu_cores"] == 0.5 and saving[0]["memory_bytes"] == 2**30
    assert saving[0]["source"] == "canary" and saving[0]["team"] == "payments"
    steps = [json.loads(r["params"])["step"] for r in reversed(bot.ctx.store.audit_log(limit=50))
             if r["action"] == "canary.promote"]
    assert steps == ["copy the canary's pod template onto the stable Deployment", "wait for the stable rollout",
                     "set weights 100/0", "scale the canary to 0", "outcome"]


def test_promote_stops_when_the_stable_rollout_never_becomes_ready(bot_factory, fast):
    bot = bot_factory(config={"canary": {"rollout_timeout": "1s"}})
    fake = bot.kube["prod-a"]
    istio_canary(fake, weight=25)
    card = post_card(bot, "checkout")
    fake.clear_requests()
    click(bot, card, "canary_promote", user=DEVOPS)
    text = wait_card(bot, card, "stopped at step “wait for the stable rollout”")
    assert "did not complete within 1s" in text and "still gets 25%" in text
    assert writes(fake) == [("PATCH", STABLE)]  # no traffic moved away from the only healthy copy
    assert weights(fake) == (75, 25) and replicas(fake, "checkout-canary") == 2
    assert outcome_rows(bot, "promote")[0]["result"].startswith("failed: wait for the stable rollout")

    deployment_controller(fake)  # the cause is fixed; the controller catches up
    fake.patch("apps/v1", "deployments", "payments", "checkout", {"status": {"observedGeneration": 2}})
    click(bot, card, "canary_promote", user=DEVOPS)
    wait_card(bot, card, "Promote* by <@U0DEVOPS1>: Promoted", "already done: stable already runs it")
    assert writes(fake) == [("PATCH", STABLE), ("PATCH", VS), ("PATCH", CANARY)]


def test_abort_shifts_weights_before_scaling_the_canary(bot, fast):
    fake = bot.kube["prod-a"]
    istio_canary(fake, weight=25)
    seen_at_scale = []

    @fake.on_write
    def record(verb, rt, obj):
        if verb == "patch" and obj["metadata"]["name"] == "checkout-canary":
            seen_at_scale.append(weights(fake))

    card = post_card(bot, "checkout")
    fake.clear_requests()
    click(bot, card, "canary_abort", user=PAY_DEV2)
    wait_card(bot, card, "Abort* by <@U0PAYDEV2>: Aborted")
    assert writes(fake) == [("PATCH", VS), ("PATCH", CANARY)]
    assert seen_at_scale == [(100, 0)]
    assert weights(fake) == (100, 0) and replicas(fake, "checkout-canary") == 0
    assert replicas(fake, "checkout") == 3
    annotations = fake.get("networking.istio.io/v1", "virtualservices", "payments", "checkout")["metadata"]
    assert not (annotations.get("annotations") or {})  # the canary is over: its bookkeeping goes too


def test_failure_midway_names_the_step_and_a_second_click_resumes(bot, fast):
    fake = bot.kube["prod-a"]
    istio_canary(fake, weight=50)
    card = post_card(bot, "checkout")
    fake.clear_requests()
    fake.fail("PATCH", "deployments/checkout-canary", status=500, message="etcdserver: request timed out")
    click(bot, card, "canary_abort", user=PAY_DEV)
    text = wait_card(bot, card, "stopped at step “scale the canary to 0”")
    assert "the API server had an internal error" in text and "etcdserver: request timed out" in text
    assert "set weights 100/0" in text  # what was done before it
    assert weights(fake) == (100, 0) and replicas(fake, "checkout-canary") == 2

    click(bot, card, "canary_abort", user=PAY_DEV)
    text = wait_card(bot, card, "Abort* by <@U0PAYDEV>: Aborted")
    assert "set weights 100/0 (already done" in text
    assert writes(fake) == [("PATCH", VS), ("PATCH", CANARY), ("PATCH", CANARY)]
    assert [r.status for r in fake.writes()] == [200, 500, 200]
    assert replicas(fake, "checkout-canary") == 0


def test_twenty_concurrent_clicks_step_once_and_tell_the_others(bot, fast):
    fake = bot.kube["prod-a"]
    istio_canary(fake, weight=10)
    card = post_card(bot, "checkout")
    fake.clear_requests()
    users = [PAY_DEV, PAY_DEV2, DEVOPS, DEVOPS2] * 5

    def one(user):  # every click carries the card as it was when all twenty clicked
        sender = SlackSender(bot.url, SIGNING_SECRET, bot.slack)
        return sender.block_actions("canary_step", user_id=user, channel_id=CHANNEL, message=card).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        assert list(pool.map(one, users)) == [200] * 20
    told = bot.slack.wait_for(lambda: len(bot.slack.responses) >= 19 and bot.slack.responses, timeout=30)
    assert len(told) == 19 and all(r["response_type"] == "ephemeral" for r in told)
    # Five clicks at once from one person exceed their share of the workers (commands/pool.py): the
    # extra ones are refused before they run, and say so; every other click ran and was told.
    refused = [r for r in told if "did not run this one" in r["text"]]
    assert all("is already running" in r["text"] or "changed since that message" in r["text"]
               for r in told if r not in refused)
    wait_outcome(bot, "step", count=20 - len(refused), timeout=30)
    assert writes(fake) == [("PATCH", VS)]
    assert weights(fake) == (75, 25)
    results = [r["result"] for r in outcome_rows(bot, "step")]
    assert results.count("done") == 1 and len(results) == 20 - len(refused)


def test_outsiders_are_denied_and_audited_and_team_groups_are_resolved(bot, fast):
    fake = bot.kube["prod-a"]
    istio_canary(fake, weight=10)
    istio_canary(fake, service="search", namespace="search", team="search", weight=10)
    bot.slack.usergroups["S0SEARCH"] = ["U0SEARCHER"]
    card = post_card(bot, "checkout")
    fake.clear_requests()
    click(bot, card, "canary_promote", user=OUTSIDER)
    denial = bot.slack.wait_for(lambda: bot.slack.responses, timeout=15)[0]
    assert denial["response_type"] == "ephemeral"
    assert "You can't do that: only the payments team or DevOps may do this" in denial["text"]
    row = bot.ctx.store.audit_log(limit=1)[0]
    assert (row["actor"], row["action"], row["result"], row["target"]) == (OUTSIDER, "canary.promote", "denied",
                                                                           "checkout")
    assert writes(fake) == []

    search = post_card(bot, "search", user="U0SEARCHER")
    click(bot, search, "canary_step", user=PAY_DEV)  # another team's canary
    bot.slack.wait_for(lambda: len(bot.slack.responses) >= 2, timeout=15)
    click(bot, search, "canary_step", user="U0SEARCHER")  # a member through the Slack user group
    wait_card(bot, search, "Next step* by <@U0SEARCHER>")
    assert weights(fake, "search", "search") == (75, 25) and weights(fake) == (90, 10)


def test_card_falls_back_to_response_url_when_the_bot_cannot_post_or_edit(bot_factory, fast):
    bot = bot_factory(config={"canary": {"rollout_timeout": "5s"}})
    fake = bot.kube["prod-a"]
    istio_canary(fake, weight=25)
    deployment_controller(fake, after=0.2)
    bot.slack.fail("chat.postMessage", "not_in_channel")
    card = post_card(bot, "checkout")  # answered in_channel through the command's response_url
    assert bot.slack.responses[-1]["response_type"] == "in_channel"
    bot.slack.fail("chat.update", "cant_update_message", times=None)
    click(bot, card, "canary_promote", user=PAY_DEV)
    wait_card(bot, card, "Promote* by <@U0PAYDEV>: Promoted")
    edits = [r for r in bot.slack.responses if r["replace_original"]]
    assert len(edits) <= 2  # one progress, one outcome: a response_url allows only 5 posts
    assert weights(fake) == (100, 0)


def test_from_a_channel_the_bot_is_not_in_the_card_comes_through_the_response_url(bot):
    """chat.postMessage answers not_in_channel where the bot was not invited; the card still reaches the
    channel, posted in_channel through the command's response_url."""
    istio_canary(bot.kube["prod-a"], weight=10)
    bot.sender.command("/canary", "checkout", user_id=PAY_DEV, channel_id="C0RANDOM")
    refused = bot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("channel") == "C0RANDOM", timeout=15)
    assert refused.error == "not_in_channel"
    answer = bot.slack.wait_for(lambda: [r for r in bot.slack.responses if r["response_type"] == "in_channel"],
                                timeout=15)[0]
    assert "checkout" in js(answer["blocks"]) and any(b["type"] == "actions" for b in answer["blocks"])
    card = bot.slack.wait_for(lambda: list(bot.slack.messages("C0RANDOM").values()))[0]
    assert card["blocks"] == answer["blocks"]
