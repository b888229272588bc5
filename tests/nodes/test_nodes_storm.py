"""Alert storms grouped like Alertmanager's group_by [cluster, reason]: one channel message per cluster,
one thread reply per reason listing the nodes (20 at most, "and N more"), kept current in place as
nodes come and go, acknowledge/silence still per node (each line's menu) and per cluster."""
from __future__ import annotations

from datetime import timedelta

from tests.harness import DEVOPS, OUTSIDER, PAY_DEV
from tests.nodes.nodes_support import ALERTS, alert_messages, node, not_ready, open_incidents, starting, text_of


def scan(bot) -> str:
    summary = bot.run_job("node-scan")
    assert "node-scan` ok" in summary, summary
    bot.flush()
    return summary


def healthy(bot, count: int, cluster: str = "prod-a") -> None:
    bot.kube[cluster].add_many([node(f"ok-{n:03d}", bot.clock()) for n in range(count)])


def sick(bot, names, cluster: str = "prod-a") -> None:
    bot.kube[cluster].add_many([not_ready(name, bot.clock(), down_for=timedelta(minutes=20)) for name in names])


def replies_by_title(message: dict) -> dict[str, dict]:
    out = {}
    for reply in message["replies"]:
        title = reply["blocks"][0]["text"]["text"].split("*")[1]
        out[title] = reply
    return out


def menu_click(bot, reply: dict, node_name: str, choice: str, user: str) -> dict:
    """Choose `choice` in `node_name`'s menu in `reply`, as Slack sends an overflow selection."""
    block = next(b for b in reply["blocks"] if f"`{node_name}`" in b.get("text", {}).get("text", ""))
    selected = next(o for o in block["accessory"]["options"] if o["value"].startswith(f"{choice}:"))
    seen = len(bot.slack.responses)
    response = bot.sender.block_actions("node_alert_node", user_id=user, channel_id=ALERTS, message_ts=reply["ts"],
                                        block_id=block.get("block_id"),
                                        action={"type": "overflow", "selected_option": selected})
    assert response.status_code == 200
    answer = bot.slack.wait_for(lambda: len(bot.slack.responses) > seen and bot.slack.responses[seen])
    bot.flush()
    return answer


def test_a_storm_is_one_message_per_cluster_and_one_reply_per_reason(bot):
    healthy(bot, 30)
    sick(bot, [f"worker-{n}" for n in range(5)])
    bot.kube["prod-a"].add_many([starting(f"new-{n}", bot.clock(), age=timedelta(minutes=20)) for n in range(3)])
    scan(bot)
    [group] = alert_messages(bot)
    assert "8 of 8 nodes in `prod-a` need attention" in text_of(group)
    assert "*NotReady*: 5 nodes open" in text_of(group) and "*Never became Ready*: 3 nodes open" in text_of(group)
    replies = replies_by_title(group)
    assert sorted(replies) == ["Never became Ready", "NotReady"]
    assert all(f"`worker-{n}`" in text_of(replies["NotReady"]) for n in range(5))
    assert all(f"`new-{n}`" in text_of(replies["Never became Ready"]) for n in range(3))
    assert "new-" not in text_of(replies["NotReady"])
    assert len(bot.slack.calls_to("chat.postMessage")) == 3  # the group and two replies, nothing per node
    incidents = open_incidents(bot)
    assert len({i["message_id"] for i in incidents}) == 2 and len({i["group_id"] for i in incidents}) == 1


def test_more_than_20_nodes_of_a_reason_are_counted_not_listed(bot):
    healthy(bot, 80)
    sick(bot, [f"worker-{n:02d}" for n in range(26)])
    scan(bot)
    [group] = alert_messages(bot)
    [reply] = group["replies"]
    assert "26 of 26 nodes in `prod-a` open" in text_of(reply)
    assert text_of(reply).count("node_alert_node") == 20
    assert "`worker-19`" in text_of(reply) and "`worker-20`" not in text_of(reply)
    assert "and 6 more (6 open)" in text_of(reply) and "/nodes prod-a" in text_of(reply)
    assert len(reply["blocks"]) <= 50


def test_nodes_that_come_and_go_edit_the_reason_reply_in_place(bot):
    healthy(bot, 30)
    sick(bot, ["worker-1", "worker-2", "worker-3"])
    scan(bot)
    [group] = alert_messages(bot)
    posts = len(bot.slack.calls_to("chat.postMessage"))
    # Next tick: one more NotReady node, a node of a new reason, and one of the first three recovers.
    bot.clock.advance(minutes=2)
    sick(bot, ["worker-4"])
    bot.kube["prod-a"].add(starting("new-1", bot.clock(), age=timedelta(minutes=20)))
    bot.kube["prod-a"].add(node("worker-1", bot.clock()))
    scan(bot)
    assert len(alert_messages(bot)) == 1  # no new channel message while the group is open
    assert len(bot.slack.calls_to("chat.postMessage")) == posts + 1  # only the new reason's reply
    [group] = alert_messages(bot)
    assert "4 of 5 nodes in `prod-a` need attention" in text_of(group)
    replies = replies_by_title(group)
    not_ready_text = text_of(replies["NotReady"])
    assert "`worker-4`" in not_ready_text and ":white_check_mark: `worker-1` — resolved after" in not_ready_text
    assert "3 of 4 nodes in `prod-a` open" in not_ready_text
    assert "`new-1`" in text_of(replies["Never became Ready"])
    # Everything recovers: the group and its replies turn resolved, still without a new post.
    for name in ("worker-2", "worker-3", "worker-4", "new-1"):
        bot.kube["prod-a"].add(node(name, bot.clock()))
    bot.clock.advance(minutes=2)
    scan(bot)
    [group] = alert_messages(bot)
    assert "All 5 node alerts in `prod-a` are resolved" in text_of(group) and "node_alert_ack" not in text_of(group)
    assert all("resolved" in text_of(r) and "node_alert_node" not in text_of(r) for r in group["replies"])
    assert len(bot.slack.calls_to("chat.postMessage")) == posts + 1
    # A later storm in the same cluster starts a group of its own.
    bot.clock.advance(minutes=30)
    sick(bot, ["worker-7", "worker-8", "worker-9"])
    scan(bot)
    assert len(alert_messages(bot)) == 2


def test_a_nodes_menu_acknowledges_and_silences_that_node_only(bot):
    healthy(bot, 30)
    sick(bot, ["worker-1", "worker-2", "worker-3"])
    scan(bot)
    [reply] = alert_messages(bot)[0]["replies"]
    answer = menu_click(bot, reply, "worker-2", "ack", PAY_DEV)  # anyone may acknowledge
    assert "Acknowledged 1 alert" in answer["text"]
    assert {i["node"]: i["acked_by"] for i in open_incidents(bot)} == {"worker-1": None, "worker-2": PAY_DEV,
                                                                       "worker-3": None}
    [reply] = alert_messages(bot)[0]["replies"]
    assert f"`worker-2` — since" in text_of(reply) and text_of(reply).count(f":eyes: <@{PAY_DEV}>") == 1

    denied = menu_click(bot, reply, "worker-3", "silence_node_4h", OUTSIDER)
    assert "can't do that" in denied["text"]
    answer = menu_click(bot, reply, "worker-3", "silence_node_24h", DEVOPS)
    assert "Silenced `prod-a` / `worker-3`" in answer["text"]
    [row] = bot.ctx.store.query("SELECT * FROM alert_silences")
    assert (row["cluster"], row["node"], row["created_by"]) == ("prod-a", "worker-3", DEVOPS)
    [reply] = alert_messages(bot)[0]["replies"]
    assert text_of(reply).count(":zzz: node silenced until") == 1
    # A forged choice is refused without acting.
    block = next(b for b in reply["blocks"] if "`worker-1`" in b.get("text", {}).get("text", ""))
    seen = len(bot.slack.responses)
    bot.sender.block_actions("node_alert_node", user_id=DEVOPS, channel_id=ALERTS, message_ts=reply["ts"],
                             action={"type": "overflow", "selected_option": {
                                 "text": {"type": "plain_text", "text": "x"}, "value": "silence_cluster_24h:1"}})
    answer = bot.slack.wait_for(lambda: len(bot.slack.responses) > seen and bot.slack.responses[seen])
    assert "does not know that menu choice" in answer["text"] and block
    assert len(bot.ctx.store.query("SELECT * FROM alert_silences")) == 1


def test_acknowledge_all_and_cluster_silence_stay_on_the_group_message(bot):
    healthy(bot, 30)
    sick(bot, ["worker-1", "worker-2", "worker-3"])
    scan(bot)
    [group] = alert_messages(bot)
    assert "node_alert_ack" in text_of(group) and "node_alert_silence_cluster_24h" in text_of(group)
    seen = len(bot.slack.responses)
    bot.sender.block_actions("node_alert_silence_cluster_4h", user_id=DEVOPS, channel_id=ALERTS, message_ts=group["ts"])
    assert "Silenced all node alerts in `prod-a`" in bot.slack.wait_for(
        lambda: len(bot.slack.responses) > seen and bot.slack.responses[seen])["text"]
    bot.flush()
    sick(bot, ["worker-4"])  # silenced: tracked, not shown
    bot.clock.advance(minutes=2)
    scan(bot)
    assert len(open_incidents(bot)) == 4
    assert "`worker-4`" not in text_of(alert_messages(bot)[0]["replies"][0])
