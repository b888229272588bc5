"""`/nodes [cluster] [node] | wave` through the real Slack endpoint: the fleet overview (with a cluster that
does not answer), one cluster, one node's whole join story across a restart, lookups, limits, retention."""
from __future__ import annotations

import json
from datetime import timedelta

from blocks.common import MAX_MESSAGE_BLOCKS, MAX_SECTION_TEXT
from bot.nodes.reports import PHASES
from tests.fakes.slack import validate_message_blocks
from tests.harness import DEVOPS, PAY_DEV
from tests.nodes.nodes_support import ALERTS, alert_messages, node, not_ready, post_report, report


def ask(bot, text: str = "", user: str = DEVOPS) -> dict:
    """Run `/nodes <text>` like Slack does and return the private answer sent to its response_url."""
    seen = len(bot.slack.responses)
    response = bot.sender.command("/nodes", text, user_id=user)
    assert response.status_code == 200 and response.text == ""  # acked at once, answered later
    answer = bot.slack.wait_for(lambda: len(bot.slack.responses) > seen and bot.slack.responses[seen], timeout=15)
    assert answer["response_type"] == "ephemeral"
    if answer.get("blocks"):
        assert validate_message_blocks(answer["blocks"]) == [], answer["blocks"]
        assert len(answer["blocks"]) <= MAX_MESSAGE_BLOCKS
    return answer


def shown(answer: dict) -> str:
    return (answer.get("text") or "") + "\n" + "\n".join(
        b["text"]["text"] if b.get("text") and isinstance(b["text"], dict) else json.dumps(b, ensure_ascii=False)
        for b in answer.get("blocks") or [])


def send(bot, node_name: str, phase: str, status: str, cluster: str = "prod-a", **fields) -> None:
    body = report(cluster=cluster, node=node_name, phase=phase, status=status,
                  message=fields.pop("message", "" if status != "failed" else f"{phase} failed"),
                  log_tail=fields.pop("log_tail", ""), **fields)
    if status != "failed":
        body.pop("exit_code")
    response = post_report(bot, body)
    assert response.status_code == 202, response.text


def join(bot, node_name: str, *, seconds: int = 60, fail_at: str | None = None, cluster: str = "prod-a",
         exit_code: int = 1, log_tail: str = "") -> None:
    """One run of the join script: every phase started then ok, the last report `seconds` after the first
    (or failing at `fail_at`). Reports are at least a second apart: the same body twice in one second is a replay."""
    steps = [(phase, status) for phase in PHASES for status in ("started", "ok")]
    gaps = len(steps) - 1
    for number, (phase, status) in enumerate(steps):
        failing = phase == fail_at and status == "ok"
        send(bot, node_name, phase, "failed" if failing else status, cluster,
             **({"exit_code": exit_code, "log_tail": log_tail} if failing else {}))
        bot.clock.advance(seconds=seconds // gaps + (1 if number < seconds % gaps else 0) if number < gaps else 1)
        if failing:
            return


def test_the_overview_has_one_line_per_cluster_and_says_when_a_cluster_does_not_answer(bot_factory):
    bot = bot_factory(clusters=("prod-a", "prod-b"))
    now = bot.clock()
    bot.kube["prod-a"].add_many([node(f"a-{n}", now) for n in range(3)])
    bot.kube["prod-a"].add(node("a-cordoned", now, unschedulable=True))
    bot.kube["prod-a"].add(not_ready("a-sick", now, down_for=timedelta(minutes=30)))
    bot.kube["prod-b"].fail(path_contains="/api/v1/nodes", status=503, times=None, message="etcdserver: request timed out")
    join(bot, "a-new")
    join(bot, "a-broken", fail_at="join")
    bot.clock.advance(hours=1)

    answer = ask(bot, user=PAY_DEV)  # anyone may look
    lines = {line.split("*")[1]: line for line in shown(answer).splitlines() if line.count("*") >= 2 and "—" in line}
    assert set(lines) == {"prod-a", "prod-b"}
    assert "4/5 Ready · 1 NotReady · 1 cordoned · joins 24h: 1 ok / 1 failed · 1 open incident" in lines["prod-a"]
    assert "did not answer" in lines["prod-b"] and "etcdserver: request timed out" in lines["prod-b"]
    assert "NotReady" not in lines["prod-b"] and "Ready" not in lines["prod-b"].split("·")[0]  # never "0 NotReady"
    assert "1 did not answer" in answer["text"]

    bot.clock.advance(hours=25)  # joins older than 24 h drop out of the count
    assert "joins 24h: 0 ok / 0 failed" in shown(ask(bot))


def test_a_cluster_shows_open_incidents_with_links_to_their_alerts_and_the_last_ten_joins(bot_factory):
    bot = bot_factory(clusters=("prod-a",))
    for n in range(11):
        join(bot, f"worker-{n:02d}", seconds=40 + n)
    join(bot, "worker-bad", fail_at="config", exit_code=7)
    bot.flush()  # the failure's alert is posted, so it has a ts and a permalink
    [alert] = alert_messages(bot)

    answer = ask(bot, "prod-a")
    text = shown(answer)
    link = f"https://example.slack.com/archives/{ALERTS}/p{alert['ts'].replace('.', '')}"
    assert "*Open incidents (1)*" in text and f"<{link}|alert message>" in text and "*Join failed*" in text
    assert bot.slack.calls_to("chat.getPermalink")[-1].args["message_ts"] == alert["ts"]
    assert "*Last 10 join attempts* (of 12 in the last 90d)" in text
    attempts = [line for line in text.splitlines() if "reached `" in line]
    assert len(attempts) == 10
    assert "`worker-bad`" in attempts[0] and "reached `config`, *failed*" in attempts[0] and "exit code 7" in attempts[0]
    assert "reached `ready`, *joined* in 50s" in attempts[1]  # worker-10: newest first
    assert all("worker-00" not in line for line in attempts)  # the oldest ones are left out

    # Slack refusing the permalink (here: the message was deleted) only leaves the link out.
    bot.slack.fail("chat.getPermalink", error="message_not_found", times=None)
    text = shown(ask(bot, "prod-a"))
    assert "*Join failed*" in text and "alert message>" not in text


def test_a_node_shows_every_attempt_across_a_restart_with_who_acknowledged_and_silenced(bot_factory, tmp_path):
    db_path = str(tmp_path / "shared.db")
    first = bot_factory(db_path=db_path)
    hostile = "[preflight] <!channel> & <https://evil.example|click me>\nerror: unable to connect ```"
    join(first, "node-7", fail_at="join", exit_code=1, log_tail=hostile)
    first.flush()
    [alert] = alert_messages(first)
    reply = first.sender.block_actions("node_alert_ack", user_id=PAY_DEV, channel_id=ALERTS, message_ts=alert["ts"])
    assert reply.status_code == 200
    first.slack.wait_for(lambda: first.ctx.store.query("SELECT acked_by FROM incidents")[0]["acked_by"] == PAY_DEV)
    first.clock.advance(minutes=5)
    join(first, "node-7", fail_at="config", exit_code=2)
    first.stop()

    second = bot_factory(db_path=db_path, kube_fakes=first.kube, clock=first.clock)
    second.flush()
    alert = [m for m in alert_messages(second) if m["ts"] == alert["ts"]][0]
    silence = second.sender.block_actions("node_alert_silence_node_4h", user_id=DEVOPS, channel_id=ALERTS,
                                          message_ts=alert["ts"])
    assert silence.status_code == 200
    second.slack.wait_for(lambda: second.ctx.store.query("SELECT * FROM alert_silences"))
    second.clock.advance(minutes=5)
    join(second, "node-7", seconds=90)
    obj = node("node-7", second.clock(), age=timedelta(minutes=1),
               taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}])
    obj["status"]["nodeInfo"] = {"kubeletVersion": "v1.30.2"}
    second.kube["prod-a"].add(obj)

    answer = ask(second, "prod-a node-7")
    text = shown(answer)
    assert "*Join attempts (3)*, newest first" in text
    assert text.index("*Attempt 3*") < text.index("*Attempt 2*") < text.index("*Attempt 1*")
    assert "reached `ready`, *joined*" in text.split("*Attempt 3*")[1].split("*Attempt 2*")[0]
    attempt_1 = text.split("*Attempt 1*")[1]
    assert "`join` started" in attempt_1 and "*failed*" in attempt_1 and "exit code `1`" in attempt_1
    assert "`config` started" in text.split("*Attempt 2*")[1] and "exit code `2`" in text.split("*Attempt 2*")[1]
    # The log tail is the node's text: shown, escaped, and unable to break out of its code block.
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click me&gt;" in text
    assert "<!channel>" not in json.dumps(answer) and "<https://evil" not in json.dumps(answer)
    assert f"acknowledged by <@{PAY_DEV}>" in text and f"<@{DEVOPS}> silenced this node" in text
    assert "kubelet `v1.30.2`" in text and "`node.kubernetes.io/not-ready:NoSchedule`" in text and "Ready=True" in text

    # The node's name alone finds it when it is in one cluster only.
    assert "*Join attempts (3)*" in shown(ask(second, "node-7"))


def test_a_node_name_in_several_clusters_asks_which_and_an_unknown_one_says_what_was_checked(bot_factory):
    bot = bot_factory(clusters=("prod-a", "prod-b", "prod-c"))
    bot.kube["prod-a"].add(node("shared-1", bot.clock()))
    join(bot, "shared-1", cluster="prod-b")
    bot.kube["prod-c"].fail(path_contains="/api/v1/nodes", status=503, times=None)
    text = ask(bot, "shared-1")["text"]
    assert "several clusters (`prod-a`, `prod-b`)" in text and "`/nodes prod-a shared-1`" in text
    text = ask(bot, "ghost-9")["text"]
    assert "`ghost-9` is neither a cluster" in text and "did not answer: `prod-c`" in text


def test_help_unknown_input_and_the_reserved_word_wave_answer_with_usage(bot_factory):
    bot = bot_factory(clusters=("prod-a",))
    assert "*Usage of /nodes:*" in ask(bot, "help")["text"]
    waves = ask(bot, "wave extra")["text"]  # plain `/nodes wave` opens the planner (tests/nodes/test_waves.py)
    assert "opens the planner" in waves and "*Usage of /nodes:*" in waves and "`/nodes [cluster] [node]`" in waves
    assert "`prod-x` is not a cluster (clusters: `prod-a`)" in ask(bot, "prod-x node-1")["text"]
    assert "I don't know" in ask(bot, "prod-a node-1 extra")["text"]
    assert "is neither a cluster" in ask(bot, "../../api")["text"]  # never put in an API path
    assert "is not a node name" in ask(bot, "prod-a ../secrets")["text"]
    # A node literally named "wave" (or "help") is reached with its cluster.
    bot.kube["prod-a"].add(node("wave", bot.clock()))
    assert "*Now:* Ready" in shown(ask(bot, "prod-a wave"))

    seen = len(bot.slack.responses)
    bot.sender.command("/ops", "help", user_id=PAY_DEV)
    listing = json.dumps(bot.slack.wait_for(lambda: bot.slack.responses[seen:])[0]["blocks"], ensure_ascii=False)
    assert "*/nodes* \u2014" in listing and "`/nodes [cluster] [node]`" in listing and "`/nodes wave`" in listing
    assert "*/idle* \u2014" in listing and "`/idle savings`" in listing


def test_a_join_much_slower_than_the_clusters_p90_is_marked(bot_factory):
    bot = bot_factory(clusters=("prod-a",))
    for n in range(8):
        join(bot, f"quick-{n}", seconds=60)
    join(bot, "slowpoke", seconds=400)
    text = shown(ask(bot, "prod-a"))
    slow = [line for line in text.splitlines() if ":turtle:" in line and "reached" in line]
    assert len(slow) == 1 and "`slowpoke`" in slow[0]
    assert ":turtle: *slow*" in shown(ask(bot, "prod-a slowpoke"))


def test_long_lists_stay_within_slacks_limits(bot_factory):
    bot = bot_factory(clusters=("prod-a",))
    for n in range(45):  # 45 failed joins: 45 open incidents (sent in one batch, grouped)
        send(bot, f"w-{n:02d}", "join", "failed", exit_code=1, log_tail="x" * 4000)
        bot.clock.advance(seconds=1)
    bot.flush()
    answer = ask(bot, "prod-a")
    assert "*Open incidents (45)*" in shown(answer) and "and 25 more open incidents" in shown(answer)
    for n in range(30):  # one node, 30 attempts, each with a 4 KiB log tail full of characters to escape
        join(bot, "flaky-1", fail_at="discovery", log_tail="<&>" * 1300)
        bot.clock.advance(minutes=1)
    answer = ask(bot, "prod-a flaky-1")
    text = shown(answer)
    assert "*Join attempts (30)*" in text and "older attempts not shown" in text
    assert all(len(b["text"]["text"]) <= MAX_SECTION_TEXT for b in answer["blocks"] if b["type"] == "section")


def test_history_is_kept_for_the_retention_and_then_forgotten(bot_factory):
    bot = bot_factory(clusters=("prod-a",), config={"node_join": {"retention": "30d"}})
    join(bot, "old-node", fail_at="join")              # 6 reports; its incident stays open
    join(bot, "old-fixed", fail_at="config")           # 4 reports; resolved by the next run
    join(bot, "old-fixed")                             # 8 reports
    bot.clock.advance(days=29)
    assert "forgot" not in bot.run_job("node-scan")
    assert "*Join attempts (2)*" in shown(ask(bot, "prod-a old-fixed"))
    bot.clock.advance(days=2)
    join(bot, "new-node")
    summary = bot.run_job("node-scan")
    assert "forgot 18 join reports and 1 resolved incidents past node_join.retention" in summary
    assert "*Join attempts (0)*: none reported in the last 30d" in shown(ask(bot, "prod-a old-fixed"))
    assert "*Incidents (0)*: none" in shown(ask(bot, "prod-a old-fixed"))
    cluster = shown(ask(bot, "prod-a"))
    assert "*Open incidents (1)*" in cluster and "`old-node`" in cluster  # open incidents are never forgotten
    assert "*Last 1 join attempts* (of 1 in the last 30d)" in cluster
