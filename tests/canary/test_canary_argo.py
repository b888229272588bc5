"""/canary end to end for Argo Rollouts: the same buttons write what `kubectl argo rollouts` writes,
status through the status subresource, in the CLI's order."""
from __future__ import annotations

import json

from tests.harness import DEVOPS, OUTSIDER, PAY_DEV, FakeClock
from tests.canary.test_canary_fixtures import (argo_canary, argo_controller, checkout_metrics, click, fast,  # noqa: F401
                                        post_card, wait_card)

STATUS = "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/cart/status"
ROLLOUT = "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/cart"


def js(data) -> str:
    return json.dumps(data, ensure_ascii=False)


def sent(fake) -> list[tuple[str, str, str, object]]:
    """(method, path, content type, body) of every write, in order."""
    return [(r.method, r.path.split("?")[0], r.content_type, r.body) for r in fake.writes()]


def rollout_of(fake) -> dict:
    return fake.get("argoproj.io/v1alpha1", "rollouts", "shop", "cart")


def test_argo_card_reads_weights_steps_and_traffic_per_version(bot_factory, prometheus_factory):
    server = prometheus_factory(checkout_metrics())
    bot = bot_factory(prometheus={"prod-a": server.url}, clock=FakeClock(server.eval_time))
    argo_canary(bot.kube["prod-a"])
    card = post_card(bot, "cart")
    text = js(card["blocks"])
    assert "Argo Rollouts" in text and "stable *80%* · canary *20%*" in text
    assert "step 2 of 4 · Paused" in text and "Next step → 50%" in text
    assert "`registry.example/cart:2.0.3`" in text and "`registry.example/cart:2.1.0`" in text
    assert "stable      4.00    100.0%      50 ms" in text and "canary      1.00    100.0%      60 ms" in text
    assert "0.5 cores, 1.0 GiB" in text  # one pod beyond spec.replicas at 500m / 1Gi


def test_next_step_clears_the_pause_then_unpauses_like_the_cli(bot, fast):
    fake = bot.kube["prod-a"]
    argo_canary(fake, spec_paused=True)
    card = post_card(bot, "cart")
    fake.clear_requests()
    click(bot, card, "canary_step", user=PAY_DEV)
    wait_card(bot, card, "Next step* by <@U0PAYDEV>: Argo continues")
    (m1, p1, t1, b1), (m2, p2, t2, b2) = sent(fake)
    assert (m1, p1, t1, b1) == ("PATCH", STATUS, "application/merge-patch+json", {"status": {"pauseConditions": None}})
    assert (m2, p2, t2) == ("PATCH", ROLLOUT, "application/merge-patch+json")
    assert b2["spec"] == {"paused": False} and b2["metadata"]["annotations"]["deckhand.io/canary-started-by"] == PAY_DEV
    ro = rollout_of(fake)
    assert "pauseConditions" not in ro["status"] and ro["spec"]["paused"] is False
    assert ro["metadata"]["annotations"]["deckhand.io/canary-revision"] == "5c7d9f8b6"


def test_next_step_without_a_pause_advances_the_step_index(bot, fast):
    fake = bot.kube["prod-a"]
    argo_canary(fake, index=2, weight=50, paused=False)
    card = post_card(bot, "cart")
    fake.clear_requests()
    click(bot, card, "canary_step", user=DEVOPS)
    wait_card(bot, card, "Next step* by <@U0DEVOPS1>")
    assert sent(fake)[0][1:] == (STATUS, "application/merge-patch+json",
                                 {"status": {"pauseConditions": None, "currentStepIndex": 3}})
    assert rollout_of(fake)["status"]["currentStepIndex"] == 3


def test_promote_sets_promote_full_and_waits_for_healthy(bot, fast):
    fake = bot.kube["prod-a"]
    argo_canary(fake)
    argo_controller(fake)
    card = post_card(bot, "cart")
    fake.clear_requests()
    click(bot, card, "canary_promote", user=PAY_DEV)
    text = wait_card(bot, card, "Promote* by <@U0PAYDEV>: Promoted: Argo reports the Rollout Healthy")
    assert sent(fake) == [("PATCH", STATUS, "application/merge-patch+json", {"status": {"promoteFull": True}})]
    assert rollout_of(fake)["status"]["stableRS"] == "5c7d9f8b6"
    assert "_ended_" in text
    saving = bot.ctx.store.query("SELECT cpu_cores, memory_bytes, source FROM savings")
    assert saving == [{"cpu_cores": 0.5, "memory_bytes": 2**30, "source": "canary"}]


def test_promote_after_abort_retries_first_and_unpauses(bot, fast):
    fake = bot.kube["prod-a"]
    argo_canary(fake, aborted=True, weight=0, paused=False, spec_paused=True)
    argo_controller(fake)
    card = post_card(bot, "cart")
    assert "Retry canary" in js(card["blocks"]) and "RolloutAborted" in js(card["blocks"])
    fake.clear_requests()
    click(bot, card, "canary_promote", user=DEVOPS)
    wait_card(bot, card, "Promote* by <@U0DEVOPS1>: Promoted")
    assert [(m, p, b) for m, p, _, b in sent(fake)] == [
        ("PATCH", STATUS, {"status": {"abort": False}}),
        ("PATCH", STATUS, {"status": {"promoteFull": True}}),
        ("PATCH", ROLLOUT, {"spec": {"paused": False}}),
    ]


def test_promote_that_argo_does_not_finish_in_time_is_reported(bot_factory, fast):
    bot = bot_factory(config={"canary": {"rollout_timeout": "1s"}})
    fake = bot.kube["prod-a"]
    argo_canary(fake)
    card = post_card(bot, "cart")
    click(bot, card, "canary_promote", user=PAY_DEV)
    text = wait_card(bot, card, "stopped at step “wait for Argo to finish the promotion”")
    assert "Argo had not finished within 1s (phase Paused)" in text
    assert rollout_of(fake)["status"]["promoteFull"] is True


def test_abort_sets_status_abort_only(bot, fast):
    fake = bot.kube["prod-a"]
    argo_canary(fake)
    card = post_card(bot, "cart")
    fake.clear_requests()
    click(bot, card, "canary_abort", user=OUTSIDER)
    assert "can't do that" in bot.slack.wait_for(lambda: bot.slack.responses, timeout=15)[0]["text"]
    click(bot, card, "canary_abort", user=PAY_DEV)
    wait_card(bot, card, "Abort* by <@U0PAYDEV>: Aborted")
    assert sent(fake) == [("PATCH", STATUS, "application/merge-patch+json", {"status": {"abort": True}})]
    assert rollout_of(fake)["status"]["abort"] is True
    assert bot.ctx.store.query("SELECT COUNT(*) AS n FROM savings")[0]["n"] == 1
