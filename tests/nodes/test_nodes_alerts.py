"""Alert buttons (Acknowledge, Silence) and delivery through Slack failures: 429, channel_not_found, 5xx."""
from __future__ import annotations

from datetime import timedelta

from tests.harness import DEVOPS, OUTSIDER, PAY_DEV
from tests.nodes.nodes_support import ALERTS, alert_messages, node, not_ready, open_incidents, post_report, report, text_of


def scan(bot) -> str:
    summary = bot.run_job("node-scan")
    assert "node-scan` ok" in summary, summary
    bot.flush()
    return summary


def click(bot, action_id: str, message: dict, user: str, value: str | None = None) -> dict:
    seen = len(bot.slack.responses)
    response = bot.sender.block_actions(action_id, value=value, user_id=user, channel_id=ALERTS, message_ts=message["ts"])
    assert response.status_code == 200
    reply = bot.slack.wait_for(lambda: len(bot.slack.responses) > seen and bot.slack.responses[seen])
    bot.flush()
    return reply


def skip_backoff(bot) -> None:
    """The outbox waits real seconds between retries; tests move the due time instead of sleeping."""
    bot.ctx.store.db.execute("UPDATE outbox SET next_at = '2000-01-01' WHERE state = 'pending'")


def test_acknowledge_records_who_and_shows_it_in_place(bot):
    post_report(bot, report())
    bot.flush()
    [message] = alert_messages(bot)
    reply = click(bot, "node_alert_ack", message, PAY_DEV)  # anyone may acknowledge
    assert "Acknowledged 1 alert" in reply["text"]
    [incident] = open_incidents(bot)
    assert incident["acked_by"] == PAY_DEV and incident["acked_at"]
    [updated] = alert_messages(bot)
    assert updated["ts"] == message["ts"]
    assert f"Acknowledged by <@{PAY_DEV}>" in text_of(updated)
    assert "node_alert_ack" not in text_of(updated) and "node_alert_silence_node_4h" in text_of(updated)
    audit = bot.ctx.store.audit_log()[0]
    assert (audit["actor"], audit["action"], audit["target"]) == (PAY_DEV, "alert.ack", "prod-a/node-7")
    second = click(bot, "node_alert_ack", message, DEVOPS, value=str(incident["id"]))
    assert f"<@{PAY_DEV}> already acknowledged" in second["text"]
    assert open_incidents(bot)[0]["acked_by"] == PAY_DEV


def test_acknowledge_all_on_a_grouped_message(bot):
    now = bot.clock()
    bot.kube["prod-a"].add_many([node(f"ok-{n}", now) for n in range(10)])
    bot.kube["prod-a"].add_many([not_ready(f"sick-{n}", now, down_for=timedelta(minutes=15)) for n in range(3)])
    scan(bot)
    [group] = alert_messages(bot)
    reply = click(bot, "node_alert_ack", group, DEVOPS)
    assert "Acknowledged 3 alerts" in reply["text"]
    assert all(i["acked_by"] == DEVOPS for i in open_incidents(bot))
    [group] = alert_messages(bot)
    assert f"Acknowledged by <@{DEVOPS}>" in text_of(group)
    [reply] = group["replies"]
    assert text_of(reply).count(f":eyes: <@{DEVOPS}>") == 3


def test_silence_a_node_for_4h_holds_new_alerts_for_it_but_keeps_tracking(bot):
    kube = bot.kube["prod-a"]
    post_report(bot, report(node="worker-1"))
    bot.flush()
    [message] = alert_messages(bot)
    reply = click(bot, "node_alert_silence_node_4h", message, DEVOPS)
    assert "Silenced `prod-a` / `worker-1`" in reply["text"]
    assert ":zzz: node silenced until" in text_of(alert_messages(bot)[0])
    audit = bot.ctx.store.audit_log()[0]
    assert (audit["action"], audit["target"], audit["actor"]) == ("alert.silence", "prod-a/worker-1", DEVOPS)
    now = bot.clock()
    kube.add(not_ready("worker-1", now, down_for=timedelta(minutes=20), age=timedelta(minutes=30)))
    kube.add(not_ready("worker-2", now, down_for=timedelta(minutes=20)))
    kube.add_many([node(f"ok-{n}", now) for n in range(10)])
    scan(bot)
    assert sorted((i["node"], i["reason"]) for i in open_incidents(bot)) == [
        ("worker-1", "join-failed"), ("worker-1", "not-ready"), ("worker-2", "not-ready")]
    assert len(alert_messages(bot)) == 2  # worker-2 posted; worker-1's NotReady held
    assert not any("worker-1" in text_of(m) and "NotReady" in text_of(m) for m in alert_messages(bot))
    bot.clock.advance(hours=4, minutes=1)
    scan(bot)
    assert any("worker-1" in text_of(m) and "NotReady" in text_of(m) for m in alert_messages(bot))
    assert len(bot.slack.calls_to("chat.postMessage")) == 3  # posted once the silence ended, nothing twice


def test_silence_a_cluster_for_24h(bot):
    post_report(bot, report(node="worker-1"))
    bot.flush()
    [message] = alert_messages(bot)
    reply = click(bot, "node_alert_silence_cluster_24h", message, DEVOPS)
    assert "Silenced all node alerts in `prod-a`" in reply["text"]
    row = bot.ctx.store.query("SELECT * FROM alert_silences")[0]
    assert (row["cluster"], row["node"], row["created_by"]) == ("prod-a", "*", DEVOPS)
    post_report(bot, report(node="worker-2"))
    bot.flush()
    assert len(alert_messages(bot)) == 1 and len(open_incidents(bot)) == 2
    # a shorter silence clicked later does not cut the longer one short
    click(bot, "node_alert_silence_cluster_4h", message, DEVOPS)
    assert bot.ctx.store.query("SELECT until FROM alert_silences")[0]["until"] == row["until"]
    bot.clock.advance(hours=24, minutes=1)
    scan(bot)
    assert any("worker-2" in text_of(m) for m in alert_messages(bot))


def test_only_devops_may_silence_and_the_denial_is_audited(bot):
    post_report(bot, report())
    bot.flush()
    [message] = alert_messages(bot)
    reply = click(bot, "node_alert_silence_cluster_24h", message, OUTSIDER)
    assert "can't do that" in reply["text"] and "DevOps" in reply["text"]
    assert bot.ctx.store.query("SELECT * FROM alert_silences") == []
    audit = bot.ctx.store.audit_log()[0]
    assert (audit["actor"], audit["action"], audit["result"]) == (OUTSIDER, "alert.silence", "denied")


def test_slack_429_is_retried_after_retry_after_and_posts_once(bot):
    # More 429s than slack_sdk's own retry handler absorbs, so the outbox's retry is exercised too.
    bot.slack.fail("chat.postMessage", status=429, retry_after=0, times=6)
    post_report(bot, report())
    for _ in range(10):
        bot.flush()
        if alert_messages(bot):
            break
    assert len(alert_messages(bot)) == 1
    assert len(bot.slack.calls_to("chat.postMessage", ok=False)) == 6
    assert len(bot.slack.calls_to("chat.postMessage", ok=True)) == 1
    assert bot.ctx.store.query("SELECT ts FROM alert_messages")[0]["ts"] == alert_messages(bot)[0]["ts"]


def test_an_alert_that_cannot_be_posted_is_kept_and_posted_after_recovery(bot):
    # channel_not_found: the bot was removed from the channel; the outbox gives up on that row
    bot.slack.fail("chat.postMessage", error="channel_not_found", times=None)
    post_report(bot, report())
    bot.flush()
    assert alert_messages(bot) == []
    assert bot.ctx.store.query("SELECT state FROM outbox")[0]["state"] == "failed"
    scan(bot)  # still broken: tried again, still kept
    assert alert_messages(bot) == [] and len(open_incidents(bot)) == 1
    bot.slack.clear_failures()
    scan(bot)  # recovered: the next tick posts it, once
    [message] = alert_messages(bot)
    assert "node-7" in text_of(message)
    scan(bot)
    assert len(bot.slack.calls_to("chat.postMessage", ok=True)) == 1


def test_a_5xx_burst_delays_the_alert_and_the_outbox_retries_it(bot):
    bot.slack.fail("chat.postMessage", status=503, times=None)
    post_report(bot, report())
    assert bot.flush() == 0
    assert bot.ctx.outbox.pending() == 1  # kept for retry, not dropped
    bot.slack.clear_failures()
    skip_backoff(bot)
    assert bot.flush() == 1
    assert len(alert_messages(bot)) == 1


def test_updates_lost_during_an_outage_are_sent_again(bot):
    kube = bot.kube["prod-a"]
    kube.add(not_ready("worker-1", bot.clock(), down_for=timedelta(minutes=12)))
    scan(bot)
    [message] = alert_messages(bot)
    bot.slack.fail("*", error="channel_not_found", times=None)
    kube.add(node("worker-1", bot.clock()))
    scan(bot)  # resolved, but neither the update nor the thread reply gets through
    assert "Resolved" not in text_of(alert_messages(bot)[0])
    bot.slack.clear_failures()
    scan(bot)
    [message] = alert_messages(bot)
    assert "Resolved" in text_of(message) and len(message["replies"]) == 1


def test_an_update_while_the_post_is_still_queued_rewrites_the_post(bot):
    post_report(bot, report(log_tail="first"))
    post_report(bot, report(log_tail="second"))
    assert bot.ctx.outbox.pending() == 1
    bot.flush()
    [message] = alert_messages(bot)
    assert "second" in text_of(message) and len(bot.slack.calls_to("chat.postMessage")) == 1
