"""`/idle [team] [cluster] | savings` through the real Slack endpoint: a team member's and DevOps' view, the
digest's buttons on the list, a fresh scan (and its Prometheus guard), savings, limits, usage."""
from __future__ import annotations

import json

from blocks.common import MAX_MESSAGE_BLOCKS
from tests.fakes.slack import validate_message_blocks
from tests.harness import DEVOPS, OUTSIDER, PAY_DEV
from tests.idle.test_idle_world import CLUSTER, add_service, digest_messages, idle_bot, seed

GIFT_CARDS = f"{CLUSTER}/shop/gift-cards"


def ask(bot, text: str = "", user: str = PAY_DEV) -> dict:
    seen = len(bot.slack.responses)
    response = bot.sender.command("/idle", text, user_id=user)
    assert response.status_code == 200 and response.text == ""
    answer = bot.slack.wait_for(lambda: len(bot.slack.responses) > seen and bot.slack.responses[seen], timeout=15)
    assert answer["response_type"] == "ephemeral"
    check(answer)
    return answer


def check(answer: dict) -> None:
    if answer.get("blocks"):
        assert validate_message_blocks(answer["blocks"]) == [], answer["blocks"]
        assert len(answer["blocks"]) <= MAX_MESSAGE_BLOCKS


def shown(answer: dict) -> str:
    return json.dumps(answer, ensure_ascii=False)


def listed(answer: dict) -> list[str]:
    """Service keys listed, in order."""
    return [b["block_id"].rsplit("|", 1)[1] for b in answer.get("blocks") or []
            if b.get("block_id", "").startswith("idle-list|") and b["type"] == "section"]


def buttons(answer: dict) -> list[str]:
    return [e["text"]["text"] for b in answer.get("blocks") or [] if b["type"] == "actions" for e in b["elements"]]


def scanned(bot_factory, prometheus_factory, **kwargs):
    bot = idle_bot(bot_factory, prometheus_factory, **kwargs)
    assert "idle-scan` ok" in bot.run_job("idle-scan")
    bot.flush()
    return bot


def click(bot, answer: dict, action_id: str, key: str | None, user: str) -> dict:
    """Press a button on the private /idle answer, as Slack sends it for an ephemeral message."""
    seen = len(bot.slack.responses)
    block_id = next(b["block_id"] for b in answer["blocks"] if b["type"] == "actions"
                    and any(e["action_id"] == action_id and (key is None or e.get("value") == key) for e in b["elements"]))
    element = next(e for b in answer["blocks"] if b.get("block_id") == block_id for e in b["elements"]
                   if e["action_id"] == action_id)
    response = bot.sender.block_actions(
        action_id, value=element.get("value"), user_id=user, channel_id="C0DEV", block_id=block_id,
        message={"ts": "1700000000.000100", "blocks": answer["blocks"], "text": answer["text"]},
        container={"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0DEV", "is_ephemeral": True})
    assert response.status_code == 200
    return bot.slack.wait_for(lambda: [r for r in bot.slack.responses[seen:] if r["replace_original"]], timeout=30)[-1]


def test_a_team_member_sees_their_team_and_devops_see_every_team(bot_factory, prometheus_factory):
    bot = scanned(bot_factory, prometheus_factory)
    mine = ask(bot, user=PAY_DEV)
    assert listed(mine) == [f"{CLUSTER}/shop/old-reports", GIFT_CARDS]  # most CPU first
    text = shown(mine)
    assert "Latest scan: 2026-" in text and "*payments* — 2 idle · reclaimable *2.75 cores, 4.8 GiB*" in text
    assert "Idle for *7d*" in text and "`prod-a/shop`" in text
    assert buttons(mine).count("Request deletion") == 2 and "Run a fresh scan" not in buttons(mine)
    assert "*Fleet:* 4 idle services · reclaimable *10.85 cores, 20.8 GiB*" in text

    everyone = ask(bot, user=DEVOPS)
    assert set(listed(everyone)) == {f"{CLUSTER}/shop/old-reports", GIFT_CARDS, f"{CLUSTER}/search/indexer-v1",
                                     f"{CLUSTER}/misc/orphan"}
    assert "*search* — 1 idle" in shown(everyone) and "*unowned* — 1 idle" in shown(everyone)
    assert "Run a fresh scan" in buttons(everyone) and buttons(everyone).count("Keep") == 4

    other = ask(bot, "search", user=PAY_DEV)  # anyone may look at a team; only its owners get buttons
    assert listed(other) == [f"{CLUSTER}/search/indexer-v1"] and buttons(other) == []
    assert listed(ask(bot, f"payments {CLUSTER}", user=DEVOPS)) == [f"{CLUSTER}/shop/old-reports", GIFT_CARDS]
    assert "You are in no team" in shown(ask(bot, user=OUTSIDER))

    bot.clock.advance(days=3)
    assert "Idle for *10d*" in shown(ask(bot, user=PAY_DEV))

    # App Home shows the same totals, and where to ask for more.
    bot.sender.event({"type": "app_home_opened", "user": PAY_DEV, "channel": "D0HOME", "tab": "home"})
    home = bot.slack.wait_for(lambda: [c for c in bot.slack.calls_to("views.publish")
                                       if c.args.get("user_id") == PAY_DEV], timeout=15)[-1].args["view"]
    assert "2 idle, reclaimable *2.75 cores, 4.8 GiB*" in json.dumps(home) and "`/idle savings`" in json.dumps(home)


def test_the_lists_buttons_act_like_the_digests_and_show_the_new_state(bot_factory, prometheus_factory):
    bot = scanned(bot_factory, prometheus_factory)
    answer = ask(bot, user=PAY_DEV)
    updated = click(bot, answer, "idle_snooze", GIFT_CARDS, PAY_DEV)
    check(updated)
    assert f"Snoozed by <@{PAY_DEV}>" in shown(updated)
    row = bot.ctx.store.query("SELECT state, decided_by FROM idle_services WHERE service = 'gift-cards'")[0]
    assert (row["state"], row["decided_by"]) == ("snoozed", PAY_DEV)
    bot.flush()  # the digest in the team's channel shows it too
    assert f"Snoozed by <@{PAY_DEV}>" in json.dumps(digest_messages(bot, "C0PAY")[-1]["blocks"])


def test_devops_run_a_fresh_scan_from_the_list_and_others_may_not(bot_factory, prometheus_factory):
    bot = idle_bot(bot_factory, prometheus_factory)
    answer = ask(bot, user=DEVOPS)
    assert "No idle scan has run yet" in shown(answer) and listed(answer) == []
    fresh = click(bot, answer, "idle_list_scan", None, DEVOPS)
    check(fresh)
    assert len(listed(fresh)) == 4 and "`idle-scan` ok" in shown(fresh)
    assert bot.ctx.store.query("SELECT trigger FROM job_runs WHERE job = 'idle-scan'")[-1]["trigger"] == f"manual:{DEVOPS}"

    seen = len(bot.slack.responses)
    bot.sender.block_actions("idle_list_scan", value="-", user_id=PAY_DEV, channel_id="C0DEV", block_id="idle-list-scan")
    denied = bot.slack.wait_for(lambda: bot.slack.responses[seen:])[0]
    assert "You can't do that: only DevOps may do this" in denied["text"]
    assert len(bot.ctx.store.query("SELECT * FROM job_runs WHERE job = 'idle-scan'")) == 1


def test_a_fresh_scan_obeys_the_prometheus_guard(bot_factory, prometheus_down_url):  # noqa: F811
    bot = bot_factory(prometheus={CLUSTER: prometheus_down_url})
    seed(bot.kube[CLUSTER], bot.ctx.now())
    fresh = click(bot, ask(bot, user=DEVOPS), "idle_list_scan", None, DEVOPS)
    text = shown(fresh)
    assert "skipped: metrics unavailable" in text and f"`{CLUSTER}` not scanned since" in text
    assert listed(fresh) == [] and bot.ctx.store.query("SELECT * FROM idle_services") == []


def test_savings_by_month_and_team_beside_what_is_still_idle(bot_factory, prometheus_factory):
    bot = scanned(bot_factory, prometheus_factory)
    store = bot.ctx.store
    first_month = bot.clock().strftime("%Y-%m")
    store.record_saving(cluster=CLUSTER, service="legacy", cpu_cores=1000, memory_bytes=100 * 2**30, source="deletion",
                        ref="1", team="payments", namespace="shop")
    bot.clock.advance(days=31)  # into the next month
    second_month = bot.clock().strftime("%Y-%m")
    store.record_saving(cluster=CLUSTER, service="crawler", cpu_cores=280, memory_bytes=28 * 2**30, source="deletion",
                        ref="2", team="search", namespace="search")
    everyone = shown(ask(bot, "savings", user=DEVOPS))
    assert "*Reclaimed so far:* *1280 cores, 128.0 GiB* in 2 deletions" in everyone
    assert f"`{second_month}` search 280 cores, 28.0 GiB (1)" in everyone
    assert f"`{first_month}` payments 1000 cores, 100.0 GiB (1)" in everyone
    assert everyone.index(second_month) < everyone.index(first_month)  # newest month first
    assert "*Still idle:* *10.85 cores, 20.8 GiB* in 4 services" in everyone
    mine = shown(ask(bot, "savings", user=PAY_DEV))
    assert "*Reclaimed so far:* *1000 cores, 100.0 GiB*" in mine and "search" not in mine.split("Still idle by team")[0]
    assert "*Still idle:* *2.75 cores, 4.8 GiB* in 2 services" in mine


def test_a_long_list_says_how_many_more_and_stays_within_50_blocks(bot_factory, prometheus_factory):
    bot = idle_bot(bot_factory, prometheus_factory)
    for n in range(60):
        add_service(bot.kube[CLUSTER], f"batch-{n:02d}", "batch", bot.ctx.now(), team="search", cpu=f"{100 + n}m")
    bot.run_job("idle-scan")
    answer = ask(bot, "search", user=DEVOPS)
    assert len(answer["blocks"]) <= MAX_MESSAGE_BLOCKS
    hidden = 61 - len(listed(answer))
    assert hidden > 0 and f"and {hidden} more idle services not shown" in shown(answer)
    assert "*search* — 61 idle" in shown(answer)


def test_help_and_unknown_input_answer_with_usage(bot_factory, prometheus_factory):
    bot = idle_bot(bot_factory, prometheus_factory)
    assert "*Usage of /idle:*" in ask(bot, "help")["text"]
    unknown = ask(bot, "nonsense")["text"]
    assert "`nonsense` is neither a team" in unknown and "*Usage of /idle:*" in unknown
    assert "I don't know" in ask(bot, "payments prod-a extra")["text"]
