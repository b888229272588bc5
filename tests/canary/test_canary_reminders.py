"""Forgotten canaries: the scheduled job reminds the owner team once per stale_after, with the card's
buttons and what the canary keeps reserved, and marks the reminder ended when the canary is gone."""
from __future__ import annotations

import json
from datetime import timedelta

from tests.harness import DEVOPS, PAY_DEV
from tests.canary.test_canary_fixtures import (argo_canary, click, fast, istio_canary, post_card, wait_card,  # noqa: F401
                                        weights)


def js(data) -> str:
    return json.dumps(data, ensure_ascii=False)


def reminders(bot, channel: str) -> list[dict]:
    return [m for m in bot.slack.messages(channel).values() if m["text"].startswith("Forgotten canary")]


def test_forgotten_canary_is_reminded_once_per_stale_after_until_it_ends(bot, fast):
    fake = bot.kube["prod-a"]
    istio_canary(fake, weight=25, created=bot.clock() - timedelta(days=4))  # payments: channel C0PAY
    istio_canary(fake, service="full", weight=100, created=bot.clock() - timedelta(days=9))
    istio_canary(fake, service="orphan", namespace="misc", team="nobody", weight=50,
                 created=bot.clock() - timedelta(days=5))  # no team config: the alerts channel
    istio_canary(fake, service="fresh", namespace="misc", weight=25, created=bot.clock() - timedelta(hours=1))

    assert "2 forgotten, 2 reminded" in bot.run_job("canary-reminders")
    bot.flush()
    [reminder] = reminders(bot, "C0PAY")
    text = js(reminder["blocks"])
    assert "The canary of *checkout* in `prod-a/payments` has been at *25%* for 4d" in text
    assert "It keeps *0.5 cores, 1.0 GiB* reserved" in text and "the limit is 3d" in text
    for action in ("canary_step", "canary_promote", "canary_abort"):
        assert f'"action_id": "{action}"' in text
    assert [m["text"] for m in reminders(bot, "C0ALERTS")] == [
        "Forgotten canary: orphan in prod-a/misc at 50% for 5d"]

    assert "0 reminded" in bot.run_job("canary-reminders")  # deduped
    bot.clock.advance(hours=70)
    assert "2 forgotten, 0 reminded" in bot.run_job("canary-reminders")
    bot.clock.advance(hours=2)  # a full stale_after since the last reminder; `fresh` is 73h old now
    assert "3 forgotten, 3 reminded" in bot.run_job("canary-reminders")
    bot.flush()
    assert [m["text"].split(" at ")[0] for m in reminders(bot, "C0PAY")] == [
        "Forgotten canary: checkout in prod-a/payments", "Forgotten canary: checkout in prod-a/payments",
        "Forgotten canary: fresh in prod-a/misc"]

    latest = reminders(bot, "C0PAY")[1]
    click(bot, latest, "canary_abort", user=PAY_DEV)  # the reminder's own buttons work
    wait_card(bot, latest, "Abort* by <@U0PAYDEV>: Aborted")
    assert weights(fake) == (100, 0)
    assert "1 reminders marked ended" in bot.run_job("canary-reminders")
    bot.flush()
    assert "has ended" in bot.slack.message("C0PAY", latest["ts"])["text"]
    assert [r["key"] for r in bot.ctx.store.query("SELECT key FROM canary_reminders ORDER BY key")] == [
        "prod-a/misc/fresh", "prod-a/misc/orphan"]
    bot.clock.advance(days=10)
    assert "2 reminded" in bot.run_job("canary-reminders")  # the ended canary is never reminded again
    audit = [r for r in bot.ctx.store.audit_log(limit=100) if r["action"] == "canary.remind"]
    assert len(audit) == 7


def test_a_step_through_deckhand_restarts_the_clock(bot, fast):
    fake = bot.kube["prod-a"]
    istio_canary(fake, weight=10, created=bot.clock() - timedelta(days=30))
    card = post_card(bot, "checkout")
    click(bot, card, "canary_step", user=DEVOPS)
    wait_card(bot, card, "Next step* by <@U0DEVOPS1>")
    assert "0 forgotten" in bot.run_job("canary-reminders")
    bot.clock.advance(hours=73)
    assert "1 reminded" in bot.run_job("canary-reminders")


def test_argo_canary_stuck_in_a_pause_is_reminded_and_a_silent_cluster_proves_nothing(bot_factory, fast):
    bot = bot_factory(clusters=("prod-a", "prod-b"))
    argo_canary(bot.kube["prod-a"], pause_started=bot.clock() - timedelta(days=3, hours=1))
    istio_canary(bot.kube["prod-b"], weight=50, created=bot.clock() - timedelta(days=4))
    assert "2 reminded" in bot.run_job("canary-reminders")
    bot.flush()
    assert len(reminders(bot, "C0PAY")) == 2

    bot.kube["prod-b"].fail("GET", None, status=503, times=None)
    summary = bot.run_job("canary-reminders")
    assert "0 reminders marked ended" in summary and "1 clusters did not answer" in summary
    assert len(bot.ctx.store.query("SELECT key FROM canary_reminders")) == 2
