"""The per-team digest: grouping, sorting, totals, the thread for long lists, repeat-interval dedupe,
services leaving the list when traffic returns."""
from __future__ import annotations

import json
from datetime import timedelta

from blocks.common import MAX_MESSAGE_BLOCKS
from blocks.idle import PARENT_SERVICES, THREAD_SERVICES
from tests.idle.test_idle_world import CLUSTER, add_service, digest_messages, idle_bot, service_names

FAST_REPEAT = {"idle": {"repeat_interval": "6h"}}


def test_each_team_gets_one_digest_in_its_channel_sorted_by_reclaimable_resources(bot_factory, prometheus_factory):
    bot = idle_bot(bot_factory, prometheus_factory)
    add_service(bot.kube[CLUSTER], "big-cache", "shop", bot.ctx.now(), replicas=2, cpu="500m", memory="8Gi")
    bot.run_job("idle-scan")
    bot.flush()
    [payments] = digest_messages(bot, "C0PAY")
    # old-reports (2 cores) > big-cache (1 core, 16 GiB) > gift-cards (0.75 cores)
    assert service_names(payments) == ["old-reports", "big-cache", "gift-cards"]
    summary = payments["blocks"][1]["text"]["text"]
    assert "*3 services* in `prod-a`" in summary and "*3.75 cores, 20.8 GiB*" in summary and "*7d*" in summary
    assert "`prod-a/shop/broken` (2 replicas, no ready pod)" in json.dumps(payments["blocks"])
    [search] = digest_messages(bot, "C0SEARCH")
    assert service_names(search) == ["indexer-v1"]
    [unowned] = digest_messages(bot, "C0ALERTS")
    assert service_names(unowned) == ["orphan"]
    buttons = [e["text"]["text"] for b in payments["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons[:3] == ["Request deletion", "Snooze 30 days", "Keep"] and buttons[-1] == "Kept services"


def test_a_long_digest_continues_in_the_thread(bot_factory, prometheus_factory):
    bot = idle_bot(bot_factory, prometheus_factory)
    count = PARENT_SERVICES + THREAD_SERVICES + 5  # the parent, one full reply and a short one
    for i in range(count):
        add_service(bot.kube[CLUSTER], f"batch-{i:02d}", "batch", bot.ctx.now(), team="search",
                    cpu=f"{100 + i}m", memory="128Mi")
    bot.run_job("idle-scan")
    bot.flush()
    [digest] = digest_messages(bot, "C0SEARCH")
    assert len(digest["blocks"]) <= MAX_MESSAGE_BLOCKS
    assert len(digest["replies"]) == 2 and all(len(r["blocks"]) <= MAX_MESSAGE_BLOCKS for r in digest["replies"])
    names = service_names(digest)
    expected = ["indexer-v1"] + [f"batch-{i:02d}" for i in reversed(range(count))]  # most CPU first
    assert names == expected
    assert f"{len(expected) - PARENT_SERVICES} more idle services in the thread" in json.dumps(digest["blocks"])
    assert "part 3 of 3" in json.dumps(digest["replies"][1]["blocks"])
    assert f"*{len(expected)} services*" in digest["blocks"][1]["text"]["text"]


def test_a_service_is_not_reported_again_until_the_repeat_interval_passes(bot_factory, prometheus_factory):
    bot = idle_bot(bot_factory, prometheus_factory, config=FAST_REPEAT)
    assert "3 digests posted (5 services reported" in bot.run_job("idle-scan")
    assert "0 digests posted (0 services reported" in bot.run_job("idle-scan")
    bot.clock.advance(hours=5)
    assert "0 digests posted" in bot.run_job("idle-scan")
    bot.clock.advance(hours=2)  # 7 h after the first report
    assert "3 digests posted (5 services reported" in bot.run_job("idle-scan")
    bot.flush()
    assert len(digest_messages(bot, "C0PAY")) == 2


def test_a_service_that_gets_traffic_again_leaves_the_list(bot_factory, prometheus_factory):
    bot = idle_bot(bot_factory, prometheus_factory, at=-timedelta(hours=3))  # before promo's traffic starts
    bot.run_job("idle-scan")
    bot.flush()
    [digest] = digest_messages(bot, "C0PAY")
    assert "promo" in service_names(digest)

    bot.clock.advance(hours=3)
    assert "1 left the list" in bot.run_job("idle-scan")
    bot.flush()
    updated = bot.slack.message("C0PAY", digest["ts"])
    promo = next(i for i, b in enumerate(updated["blocks"]) if b.get("block_id") == f"idle:{CLUSTER}/shop/promo")
    assert "Left the list: got traffic again" in updated["blocks"][promo]["text"]["text"]
    assert updated["blocks"][promo + 1]["type"] == "context"  # no buttons any more
    row = bot.ctx.store.query("SELECT state, cleared_reason FROM idle_services WHERE service = 'promo'")
    assert row == [{"state": "cleared", "cleared_reason": "got traffic again"}]
    audit = bot.ctx.store.audit_log("shop/promo")
    assert audit[0]["action"] == "idle.left_list" and audit[0]["actor"] == "deckhand"


def test_a_decision_that_lands_while_the_scan_runs_wins_over_the_scan(bot_factory, prometheus_factory, monkeypatch):
    from bot.idle import store as idle_store
    bot = idle_bot(bot_factory, prometheus_factory, config=FAST_REPEAT)
    assert "3 digests posted (5 services reported" in bot.run_job("idle-scan")
    bot.clock.advance(hours=7)  # every finding is due again
    planned = idle_store.plan

    def plan_then_clicks(ctx, scans, now):
        result = planned(ctx, scans, now)
        # Between the plan and the report: someone keeps old-reports from the last digest, and another
        # replica's run reports a service this run saw as new.
        assert idle_store.decide(ctx, f"{CLUSTER}/shop/old-reports", "U0ALICE", "idle.keep",
                                 (idle_store.OPEN,), idle_store.KEPT, {"reason": "month-end batch"})
        with ctx.store.tx() as db:
            db.execute("INSERT INTO idle_services(cluster, namespace, service, finding, state, last_reported_at) "
                       "VALUES(?, 'shop', 'late-comer', 'idle', 'open', ?)", [CLUSTER, iso_now(ctx)])
        return result

    monkeypatch.setattr(idle_store, "plan", plan_then_clicks)
    add_service(bot.kube[CLUSTER], "late-comer", "shop", bot.ctx.now() - timedelta(days=30))
    # six due (late-comer is new), two taken from under the scan
    assert "3 digests posted (4 services reported" in bot.run_job("idle-scan")
    bot.flush()
    latest = digest_messages(bot, "C0PAY")[-1]
    assert "old-reports" not in service_names(latest) and "late-comer" not in service_names(latest)
    assert "gift-cards" in service_names(latest)
    row = bot.ctx.store.query("SELECT state, decided_by, reason FROM idle_services WHERE service = 'old-reports'")
    assert row == [{"state": "kept", "decided_by": "U0ALICE", "reason": "month-end batch"}]


def iso_now(ctx) -> str:
    return ctx.now().isoformat()
