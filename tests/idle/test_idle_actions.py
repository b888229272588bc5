"""Digest buttons through the real HTTP endpoint: Snooze, Keep (modal), Un-keep, Request deletion."""
from __future__ import annotations

import json

import pytest

from tests.harness import DEVOPS, OUTSIDER, PAY_DEV, PAY_DEV2
from tests.idle.test_idle_world import CLUSTER, digest_messages, idle_bot, service_names

GIFT_CARDS = f"{CLUSTER}/shop/gift-cards"
FAST = {"idle": {"repeat_interval": "6h", "snooze": "12h"}}


def posted_digest(bot, channel="C0PAY") -> dict:
    bot.run_job("idle-scan")
    bot.flush()
    return digest_messages(bot, channel)[-1]


def click(bot, action: str, key: str, digest: dict, user: str = PAY_DEV, channel: str = "C0PAY"):
    response = bot.sender.block_actions(action, value=key, user_id=user, channel_id=channel, message_ts=digest["ts"],
                                        block_id=f"idle-actions:{key}")
    assert response.status_code == 200
    return response


def item_blocks(bot, digest: dict, key: str, channel: str = "C0PAY") -> tuple[dict, dict]:
    message = bot.slack.message(channel, digest["ts"])
    index = next(i for i, b in enumerate(message["blocks"]) if b.get("block_id") == f"idle:{key}")
    return message["blocks"][index], message["blocks"][index + 1]


def buttons(block: dict) -> list[str]:
    return [e["text"]["text"] for e in block.get("elements", []) if e.get("type") == "button"]


def state(bot, key: str) -> dict:
    cluster, namespace, service = key.split("/")
    return bot.ctx.store.query("SELECT * FROM idle_services WHERE cluster = ? AND namespace = ? AND service = ?",
                               [cluster, namespace, service])[0]


def test_snooze_updates_the_message_and_hides_the_service_until_it_ends(bot_factory, prometheus_factory):
    bot = idle_bot(bot_factory, prometheus_factory, config=FAST)
    digest = posted_digest(bot)
    click(bot, "idle_snooze", GIFT_CARDS, digest)
    bot.slack.wait_for(lambda: "Snoozed by" in item_blocks(bot, digest, GIFT_CARDS)[0]["text"]["text"])
    info, controls = item_blocks(bot, digest, GIFT_CARDS)
    assert f"<@{PAY_DEV}>" in info["text"]["text"] and buttons(controls) == ["Request deletion", "Keep"]
    assert state(bot, GIFT_CARDS)["snoozed_until"].startswith((bot.ctx.now() + bot.ctx.settings.idle.snooze).isoformat()[:13])
    entry = bot.ctx.store.audit_log("shop/gift-cards")[0]
    assert (entry["actor"], entry["action"], entry["result"]) == (PAY_DEV, "idle.snooze", "ok")

    bot.clock.advance(hours=7)  # past the repeat interval, inside the snooze
    bot.run_job("idle-scan")
    bot.flush()
    assert service_names(digest_messages(bot, "C0PAY")[-1]) == ["old-reports"]
    bot.clock.advance(hours=6)  # the snooze has ended
    bot.run_job("idle-scan")
    bot.flush()
    assert service_names(digest_messages(bot, "C0PAY")[-1]) == ["old-reports", "gift-cards"]


def test_a_double_click_snoozes_once(bot_factory, prometheus_factory):
    bot = idle_bot(bot_factory, prometheus_factory)
    digest = posted_digest(bot)
    click(bot, "idle_snooze", GIFT_CARDS, digest)
    click(bot, "idle_snooze", GIFT_CARDS, digest, user=PAY_DEV2)
    # The two clicks race through Bolt's listener pool: either may win. The store's compare-and-set
    # records the winner; the loser is told who won, and both clicks are audited.
    note = bot.slack.wait_for(lambda: [r for r in bot.slack.responses if "Not snoozed" in r.get("text", "")])
    winner = state(bot, GIFT_CARDS)["decided_by"]
    assert winner in (PAY_DEV, PAY_DEV2) and state(bot, GIFT_CARDS)["state"] == "snoozed"
    assert f"<@{winner}> snoozed it until" in note[0]["text"]

    def snooze_audit():
        rows = [r for r in bot.ctx.store.audit_log("shop/gift-cards") if r["action"] == "idle.snooze"]
        return rows if len(rows) == 2 else None
    entries = bot.slack.wait_for(snooze_audit)
    assert sorted((r["actor"] == winner, r["result"]) for r in entries) == [(False, "not applied: snoozed"),
                                                                           (True, "ok")]
    assert len([r for r in bot.slack.responses if "Not snoozed" in r.get("text", "")]) == 1


def test_only_the_owning_team_or_devops_may_decide_and_denials_are_audited(bot_factory, prometheus_factory):
    bot = idle_bot(bot_factory, prometheus_factory)
    digest = posted_digest(bot)
    click(bot, "idle_snooze", GIFT_CARDS, digest, user=OUTSIDER)
    denial = bot.slack.wait_for(lambda: [r for r in bot.slack.responses if "can't do that" in r.get("text", "")])
    assert "only the payments team or DevOps" in denial[0]["text"]
    assert bot.ctx.store.audit_log("shop/gift-cards")[0]["result"] == "denied"
    assert state(bot, GIFT_CARDS)["state"] == "open"
    click(bot, "idle_snooze", GIFT_CARDS, digest, user=DEVOPS)
    bot.slack.wait_for(lambda: state(bot, GIFT_CARDS)["state"] == "snoozed")


def test_keep_asks_why_records_who_and_why_until_un_kept(bot_factory, prometheus_factory):
    bot = idle_bot(bot_factory, prometheus_factory, config=FAST)
    digest = posted_digest(bot)
    click(bot, "idle_keep", GIFT_CARDS, digest)
    modal = bot.slack.wait_for(lambda: [v for v in bot.slack.views_for(PAY_DEV) if v["callback_id"] == "idle_keep"])[0]
    assert json.loads(modal["private_metadata"])["key"] == GIFT_CARDS

    empty = bot.sender.view_submission("idle_keep", {"reason": {"value": "  "}}, user_id=PAY_DEV)
    assert empty.json()["response_action"] == "errors" and "reason" in empty.json()["errors"]
    assert state(bot, GIFT_CARDS)["state"] == "open"

    bot.sender.view_submission("idle_keep", {"reason": {"value": "Gift card season starts in December"}},
                               user_id=PAY_DEV)
    bot.slack.wait_for(lambda: "Kept by" in item_blocks(bot, digest, GIFT_CARDS)[0]["text"]["text"])
    info, controls = item_blocks(bot, digest, GIFT_CARDS)
    assert "Gift card season starts in December" in info["text"]["text"] and buttons(controls) == ["Un-keep"]
    row = state(bot, GIFT_CARDS)
    assert (row["state"], row["decided_by"], row["reason"]) == ("kept", PAY_DEV, "Gift card season starts in December")
    entry = bot.ctx.store.audit_log("shop/gift-cards")[0]
    assert entry["action"] == "idle.keep" and json.loads(entry["params"])["reason"].startswith("Gift card")

    bot.clock.advance(hours=7)  # kept services are not reported again, whatever the interval
    assert "1 kept" in bot.run_job("idle-scan")
    bot.flush()
    assert "gift-cards" not in service_names(digest_messages(bot, "C0PAY")[-1])

    # the digest footer lists kept services, each with Un-keep
    bot.sender.block_actions("idle_kept_list", user_id=PAY_DEV2, channel_id="C0PAY", message_ts=digest["ts"])
    kept = bot.slack.wait_for(lambda: [v for v in bot.slack.views_for(PAY_DEV2) if v["callback_id"] == "idle_kept_list"])[0]
    assert "gift-cards" in json.dumps(kept["blocks"]) and "Gift card season" in json.dumps(kept["blocks"])
    bot.sender.block_actions("idle_unkeep", value=GIFT_CARDS, user_id=PAY_DEV2, view=kept["id"])
    bot.slack.wait_for(lambda: "Un-kept" in json.dumps(bot.slack.views[kept["id"]]["blocks"]))
    assert "Nothing is kept." in json.dumps(bot.slack.views[kept["id"]]["blocks"])
    assert state(bot, GIFT_CARDS)["state"] == "open"
    assert buttons(item_blocks(bot, digest, GIFT_CARDS)[1]) == ["Request deletion", "Snooze 12h", "Keep"]
    assert bot.ctx.store.audit_log("shop/gift-cards")[0]["action"] == "idle.unkeep"
    bot.clock.advance(hours=7)
    bot.run_job("idle-scan")
    bot.flush()
    assert "gift-cards" in service_names(digest_messages(bot, "C0PAY")[-1])


def test_un_keep_on_the_digest_itself(bot_factory, prometheus_factory):
    bot = idle_bot(bot_factory, prometheus_factory)
    digest = posted_digest(bot)
    click(bot, "idle_keep", GIFT_CARDS, digest)
    bot.slack.wait_for(lambda: bot.slack.views_for(PAY_DEV))
    bot.sender.view_submission("idle_keep", {"reason": {"value": "standby for failover"}}, user_id=PAY_DEV)
    bot.slack.wait_for(lambda: state(bot, GIFT_CARDS)["state"] == "kept")
    # The digest shows Un-keep once the kept rendering has landed; only then click it.
    bot.slack.wait_for(lambda: buttons(item_blocks(bot, digest, GIFT_CARDS)[1]) == ["Un-keep"])
    click(bot, "idle_unkeep", GIFT_CARDS, bot.slack.message("C0PAY", digest["ts"]), user=DEVOPS)
    # Wait on the recorded decision, not on the buttons: the open rendering is also what the digest
    # showed before the keep, so it cannot tell the two states apart.
    bot.slack.wait_for(lambda: (state(bot, GIFT_CARDS)["state"], state(bot, GIFT_CARDS)["decided_by"]) == ("open", DEVOPS))
    assert state(bot, GIFT_CARDS)["reason"] is None
    bot.slack.wait_for(lambda: buttons(item_blocks(bot, digest, GIFT_CARDS)[1]) == ["Request deletion", "Snooze 30 days", "Keep"]
                       and "Kept by" not in item_blocks(bot, digest, GIFT_CARDS)[0]["text"]["text"])


def test_request_deletion_hands_over_to_the_deletion_flow(bot_factory, prometheus_factory, monkeypatch):
    import commands.service

    calls = []

    def open_deletion_request(ctx, client, respond, user, service, cluster, namespace=None, source="idle"):
        calls.append({"user": user, "service": service, "cluster": cluster, "namespace": namespace, "source": source})
        respond(response_type="ephemeral", text=f"dependency report for {service}")

    monkeypatch.setattr(commands.service, "open_deletion_request", open_deletion_request)
    bot = idle_bot(bot_factory, prometheus_factory)
    digest = posted_digest(bot)
    click(bot, "idle_request_deletion", GIFT_CARDS, digest)
    bot.slack.wait_for(lambda: [r for r in bot.slack.responses if "dependency report for gift-cards" in r.get("text", "")])
    assert calls == [{"user": PAY_DEV, "service": "gift-cards", "cluster": CLUSTER, "namespace": "shop", "source": "idle"}]
    bot.slack.wait_for(lambda: "asked to delete it" in item_blocks(bot, digest, GIFT_CARDS)[0]["text"]["text"])
    assert buttons(item_blocks(bot, digest, GIFT_CARDS)[1]) == ["Snooze 30 days", "Keep"]
    assert state(bot, GIFT_CARDS)["state"] == "deletion_requested"
    assert bot.ctx.store.audit_log("shop/gift-cards")[0]["action"] == "idle.request_deletion"

    click(bot, "idle_request_deletion", GIFT_CARDS, digest, user=OUTSIDER)
    bot.slack.wait_for(lambda: [r for r in bot.slack.responses if "can't do that" in r.get("text", "")])
    assert len(calls) == 1


@pytest.mark.parametrize("value", ["not-a-key", "prod-a/shop/never-listed"])
def test_buttons_with_unknown_services_explain_themselves(bot_factory, value):
    bot = bot_factory()
    bot.sender.block_actions("idle_snooze", value=value, user_id=PAY_DEV, channel_id="C0PAY")
    reply = bot.slack.wait_for(lambda: bot.slack.responses)[0]
    assert value in reply["text"] and reply["response_type"] == "ephemeral"


def test_request_deletion_end_to_end_shows_the_dependency_report(bot_factory, prometheus_factory):
    from blocks.service import ACTION_REQUEST

    bot = idle_bot(bot_factory, prometheus_factory)
    digest = posted_digest(bot)
    click(bot, "idle_request_deletion", GIFT_CARDS, digest)
    report = bot.slack.wait_for(lambda: [r for r in bot.slack.responses if "Dependency check: gift-cards" in r.get("text", "")],
                                timeout=15)[0]
    text = json.dumps(report["blocks"])
    assert report["response_type"] == "ephemeral" and "Nothing depends on `gift-cards`" in text
    request = next(e for b in report["blocks"] if b["type"] == "actions" for e in b["elements"]
                   if e["action_id"] == ACTION_REQUEST)
    assert json.loads(request["value"]) == {"c": CLUSTER, "n": "shop", "s": "gift-cards", "src": "idle"}
    assert state(bot, GIFT_CARDS)["state"] == "deletion_requested"
