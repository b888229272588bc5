"""The Slack door, attacked through the real `/slack/events` of the running app: unsigned and
malformed requests never reach Bolt, its error handler or the metrics; verified requests cannot
send deckhand to a URL of their choosing; replays are dropped, also after a restart; forged
floods leave a few short log lines, not their bodies."""
from __future__ import annotations

import json
import logging
import random
import string
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode

import pytest
import requests

from tests.harness import DEVOPS
from tests.processes import wait_until


class Listener:
    """A loopback HTTP server an attacker would point a response_url at: it records every hit."""

    def __init__(self):
        hits = self.hits = []

        class Record(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                hits.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Record)
        self.url = f"http://127.0.0.1:{self.server.server_port}/internal/admin"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


def command_body(response_url: str, command: str = "/ops", text: str = "audit", user: str = DEVOPS,
                 channel: str = "C0DEV") -> str:
    return urlencode({"command": command, "text": text, "user_id": user, "channel_id": channel,
                      "trigger_id": f"trig-{random.random()}", "response_url": response_url, "team_id": "T0TEAM"})


def settle(bot) -> None:
    """Wait for every queued listener (and error display) to finish: after this nothing more is sent."""
    bot.ctx.extras["listener_executor"].shutdown(wait=True)


def series(metrics_text: str) -> set[str]:
    return {line.rsplit(" ", 1)[0] for line in metrics_text.splitlines() if line and not line.startswith("#")}


@pytest.mark.parametrize("timestamp", ["abc", "1e9", "²", "", "-1", "+1700000000", "0x10", "1700000000.5", "9" * 40])
def test_a_malformed_timestamp_is_401_before_any_listener_or_error_handler(bot, listener, timestamp):
    bot.ctx.store.audit_log = None  # /ops audit would raise: the error handler would answer if reached
    for response_url in (listener.url, bot.slack.response_url("C0DEV")):
        body = command_body(response_url)
        answer = bot.sender.raw(body, sign=False, timestamp=timestamp, signature="v0=" + "0" * 64)
        assert answer.status_code == 401
    settle(bot)
    assert listener.hits == []
    assert bot.slack.responses == [] and bot.slack.calls == []


def test_an_unsigned_body_that_is_not_even_json_is_401_not_500(bot):
    answer = bot.sender.raw(b"{not json", sign=False, content_type="application/json")
    assert answer.status_code == 401


def test_a_verified_request_cannot_point_deckhand_at_another_host(bot, listener):
    bot.ctx.store.audit_log = None  # the listener fails: the error handler answers on the response_url
    answer = bot.sender.raw(command_body(listener.url), content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 200
    bot.sender.command("/ops", "help", user_id=DEVOPS)  # a normal request still gets its answer
    wait_until(lambda: bot.slack.responses, "the /ops help answer")
    settle(bot)
    assert listener.hits == []
    assert "deckhand_errors_total{where=\"command:/ops audit\"} 1.0" in requests.get(bot.health_url + "/metrics").text


def test_500_unsigned_random_requests_add_no_metric_series(bot):
    before = series(requests.get(bot.health_url + "/metrics").text)
    rng = random.Random(14)

    def word(n: int) -> str:
        return "".join(rng.choice(string.ascii_letters) for _ in range(n))

    for n in range(500):
        shape = n % 4
        if shape == 0:
            body = urlencode({"command": "/" + word(12), "text": word(30), "trigger_id": word(8)})
        elif shape == 1:
            body = urlencode({"payload": json.dumps({"type": "block_actions", "trigger_id": word(8),
                                                     "actions": [{"action_id": word(20)}]})})
        elif shape == 2:
            body = json.dumps({"type": word(10), "event": {"type": word(10)}, "event_id": word(9)})
        else:
            body = urlencode({"payload": json.dumps({"type": "view_submission", "view": {"callback_id": word(20)}})})
        stamp = rng.choice([None, "abc", "1e9", "²", str(rng.randrange(10**10))])
        answer = bot.sender.raw(body, sign=False, timestamp=stamp,
                                signature=rng.choice([None, "v0=" + word(64), "sha256=x"]))
        assert answer.status_code == 401
    after = series(requests.get(bot.health_url + "/metrics").text)
    assert after - before == set()


def test_signed_requests_are_labelled_only_with_registered_names(bot):
    bot.sender.command("/ops", "help", user_id=DEVOPS)
    bot.sender.command("/ops", "x" * 50, user_id=DEVOPS)
    bot.sender.block_actions("evil_action_" + "y" * 40, value="1", user_id=DEVOPS)
    bot.sender.event({"type": "made_up_event_" + "z" * 30, "user": DEVOPS})
    settle(bot)
    text = requests.get(bot.health_url + "/metrics").text
    assert 'name="/ops help"' in text and 'name="/ops"' in text and 'name="other"' in text
    assert "x" * 50 not in text and "evil_action_" not in text and "made_up_event_" not in text


def test_a_verbatim_replay_is_dropped_also_after_a_restart(bot_factory, tmp_path):
    db = str(tmp_path / "shared.db")
    first = bot_factory(db_path=db)
    first.sender.command("/ops", "help", user_id=DEVOPS)
    wait_until(lambda: first.slack.responses, "the first answer")
    sent = first.sender.sent[-1]
    again = requests.post(first.url + "/slack/events", data=sent.body, headers=dict(sent.headers))
    assert again.status_code == 200
    wait_until(lambda: first.ctx.store.query("SELECT key FROM processed WHERE key LIKE 'slack-request:%'"),
               "the request's key to be written to SQLite")
    first.stop()

    second = bot_factory(db_path=db)  # a restart: same database, nothing in memory
    replay = requests.post(second.url + "/slack/events", data=sent.body, headers=dict(sent.headers))
    assert replay.status_code == 200
    settle(second)
    assert len(second.slack.responses) == 1  # only the original's answer
    assert 'deckhand_refused_requests_total{door="slack",reason="replay"} 1.0' in requests.get(second.health_url + "/metrics").text


def test_a_slack_retry_of_a_request_answered_before_a_restart_is_dropped(bot_factory, tmp_path):
    # Slack retries (X-Slack-Retry-Num) are signed anew, so only the delivery key recognises them; the
    # key is written to SQLite in batches by the same writer as the replay keys.
    db = str(tmp_path / "shared.db")
    first = bot_factory(db_path=db)
    first.sender.command("/ops", "help", user_id=DEVOPS, trigger_id="trig-restart")
    wait_until(lambda: first.slack.responses, "the first answer")
    first.stop()  # the writer flushes what it holds

    answered_before = len(first.slack.responses)  # the Slack fake outlives the restart
    second = bot_factory(db_path=db)
    retry = second.sender.command("/ops", "help", user_id=DEVOPS, trigger_id="trig-restart", retry_num=1)
    assert retry.status_code == 200
    fresh = second.sender.command("/ops", "help", user_id=DEVOPS, trigger_id="trig-new")
    assert fresh.status_code == 200
    wait_until(lambda: len(second.slack.responses) > answered_before, "the new request's answer")
    settle(second)
    assert len(second.slack.responses) == answered_before + 1  # the new one's; the retry ran nothing
    assert 'outcome="duplicate"} 1.0' in requests.get(second.health_url + "/metrics").text


def test_a_flood_of_forged_requests_logs_a_few_short_lines_without_bodies(bot, caplog):
    marker = "BODY-MARKER-" + "q" * 2000
    with caplog.at_level(logging.DEBUG):
        for n in range(200):
            body = command_body(bot.slack.response_url(), text=marker)
            bot.sender.raw(body, signature="v0=" + f"{n:064x}", content_type="application/x-www-form-urlencoded")
    lines = [r.getMessage() for r in caplog.records]
    assert not any("BODY-MARKER" in line for line in lines)
    refused = [line for line in lines if "refused a request" in line]
    assert 1 <= len(refused) <= 10
    assert all(len(line) < 300 for line in refused)
    assert 'deckhand_refused_requests_total{door="slack",reason="bad-signature"} 200.0' in requests.get(
        bot.health_url + "/metrics").text


def test_the_error_handler_never_holds_the_request_thread_on_a_slack_call(bot):
    def broken_lease():
        raise RuntimeError("lease lookup failed")

    bot.ctx.is_leader = broken_lease  # a middleware fails: the error surfaces on the HTTP request thread
    bot.slack.fail("chat.postEphemeral", error="ok_after_delay", delay=5.0)  # Slack is slow to answer
    body = urlencode({"command": "/ops", "text": "help", "user_id": DEVOPS, "channel_id": "C0DEV",
                      "trigger_id": f"trig-{random.random()}", "team_id": "T0TEAM"})  # no response_url
    answer = bot.sender.raw(body, content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 500
    # Answered while Slack was still holding the error message's call back...
    assert not [c for c in bot.slack.calls if c.method == "chat.postEphemeral"]
    # ...which was made all the same, from another thread.
    wait_until(lambda: [c for c in bot.slack.calls if c.method == "chat.postEphemeral"], "the error message")
