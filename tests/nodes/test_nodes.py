"""POST /hooks/node-join end to end: authentication, validation, storage, immediate alerts."""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json

import pytest
import requests

from bot.nodes.reports import sign
from tests.harness import HOOK_SECRET
from tests.nodes.nodes_support import ALERTS, alert_messages, open_incidents, post_report, report, text_of


def stored(bot) -> dict[str, int]:
    count = lambda table: bot.ctx.store.query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]  # noqa: E731
    return {t: count(t) for t in ("node_reports", "node_joins", "incidents", "outbox")}


NOTHING = {"node_reports": 0, "node_joins": 0, "incidents": 0, "outbox": 0}


def test_a_failed_report_is_stored_and_alerted_at_once(bot):
    response = post_report(bot, report())
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"
    row = bot.ctx.store.query("SELECT * FROM node_reports")[0]
    assert (row["cluster"], row["node"], row["phase"], row["status"], row["exit_code"]) == \
        ("prod-a", "node-7", "join", "failed", 1)
    assert bot.ctx.outbox.pending() == 1  # queued in the handler, not at the next scan
    assert bot.flush() == 1
    [message] = alert_messages(bot)
    text = text_of(message)
    assert "Join failed" in text and "node-7" in text and "`join`" in text
    assert "```" in text and "couldn't validate the identity of the API Server" in text  # log tail in a code block
    assert "Failing since" in text and "exit code 1" in text
    assert [i["reason"] for i in open_incidents(bot)] == ["join-failed"]
    metrics = requests.get(bot.health_url + "/metrics").text
    assert 'deckhand_alerts_total{event="posted",kind="node"} 1.0' in metrics
    assert "deckhand_open_incidents 1.0" in metrics


def test_started_and_ok_reports_are_recorded_without_alerting(bot):
    for phase in ("discovery", "config", "join", "ready"):
        for status in ("started", "ok"):
            assert post_report(bot, report(phase=phase, status=status, message="", log_tail="")).status_code == 202
    assert stored(bot)["node_reports"] == 8
    join = bot.ctx.store.query("SELECT * FROM node_joins")[0]
    assert (join["last_phase"], join["last_status"]) == ("ready", "ok")
    assert bot.ctx.outbox.pending() == 0 and open_incidents(bot) == []


def test_a_repeated_failure_updates_the_same_message(bot):
    post_report(bot, report())
    bot.flush()
    bot.clock.advance(minutes=3)
    post_report(bot, report(message="kubeadm join exited with 1 (retry)", log_tail="second try\nstill refused"))
    bot.flush()
    [message] = alert_messages(bot)
    assert "still refused" in text_of(message) and "Failures" in text_of(message)
    assert len(bot.slack.calls_to("chat.postMessage")) == 1
    assert len(bot.slack.calls_to("chat.update")) == 1
    assert len(open_incidents(bot)) == 1


def test_a_later_ok_resolves_the_message_in_place_with_a_thread_reply(bot):
    post_report(bot, report(phase="config"))
    bot.flush()
    [posted] = alert_messages(bot)
    bot.clock.advance(minutes=7)
    assert post_report(bot, report(phase="config", status="started", message="", log_tail="")).status_code == 202
    assert open_incidents(bot)  # a retry starting is not a success yet
    post_report(bot, report(phase="config", status="ok", message="", log_tail=""))
    bot.flush()
    [message] = alert_messages(bot)
    assert message["ts"] == posted["ts"]  # same message, turned resolved
    assert "Resolved" in text_of(message) and "node_alert_ack" not in text_of(message)
    [reply] = message["replies"]
    assert "resolved after *7m*" in reply["text"] + json.dumps(reply.get("blocks"))
    assert open_incidents(bot) == []
    assert 'deckhand_alerts_total{event="resolved",kind="node"} 1.0' in requests.get(bot.health_url + "/metrics").text


def test_an_ok_for_an_earlier_phase_does_not_resolve_a_later_failure(bot):
    post_report(bot, report(phase="join"))
    post_report(bot, report(phase="discovery", status="ok", message="", log_tail=""))
    assert len(open_incidents(bot)) == 1


def test_a_discovery_failure_without_a_cluster_is_alerted_and_resolved_by_the_next_discovery(bot):
    body = report(cluster="", phase="discovery", message="no CLUSTER_MAP pattern matches this hostname", exit_code=3)
    assert post_report(bot, body).status_code == 202
    bot.flush()
    assert "unknown cluster" in text_of(alert_messages(bot)[0])
    post_report(bot, report(cluster="prod-a", phase="discovery", status="ok", message="", log_tail=""))
    assert open_incidents(bot) == []


def test_a_replayed_report_is_accepted_once(bot):
    raw = json.dumps(report()).encode()
    ts = int(bot.clock().timestamp())
    headers = {"X-Deckhand-Timestamp": str(ts), "X-Deckhand-Signature": sign(HOOK_SECRET, ts, raw)}
    first = requests.post(bot.url + "/hooks/node-join", data=raw, headers=headers)
    again = requests.post(bot.url + "/hooks/node-join", data=raw, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["status"] == "duplicate"
    assert stored(bot)["node_reports"] == 1


# -- rejections: each names the reason, and nothing is stored -------------------------------------
def test_wrong_signature_is_401(bot):
    response = post_report(bot, report(), secret="not-the-secret")
    assert response.status_code == 401 and "signature does not match" in response.json()["error"]
    assert stored(bot) == NOTHING


def test_a_signature_over_the_body_alone_is_401(bot):
    raw = json.dumps(report()).encode()
    naive = "sha256=" + hmac.new(HOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert post_report(bot, raw, signature=naive).status_code == 401
    assert stored(bot) == NOTHING


@pytest.mark.parametrize("offset, word", [(-301, "old"), (-3600, "old"), (301, "in the future")])
def test_a_timestamp_more_than_5_minutes_off_is_401(bot, offset, word):
    ts = int(bot.clock().timestamp()) + offset
    response = post_report(bot, report(), timestamp=ts)
    assert response.status_code == 401
    assert word in response.json()["error"] and "NTP" in response.json()["error"]
    assert stored(bot) == NOTHING


def test_a_timestamp_just_inside_5_minutes_is_accepted(bot):
    assert post_report(bot, report(), timestamp=int(bot.clock().timestamp()) - 299).status_code == 202


@pytest.mark.parametrize("drop", ["X-Deckhand-Timestamp", "X-Deckhand-Signature"])
def test_missing_auth_headers_are_401(bot, drop):
    raw = json.dumps(report()).encode()
    ts = int(bot.clock().timestamp())
    headers = {"X-Deckhand-Timestamp": str(ts), "X-Deckhand-Signature": sign(HOOK_SECRET, ts, raw)}
    del headers[drop]
    response = requests.post(bot.url + "/hooks/node-join", data=raw, headers=headers)
    assert response.status_code == 401 and drop in response.json()["error"]
    assert stored(bot) == NOTHING


def test_without_a_hook_secret_reports_are_503_naming_the_variable(bot):
    bot.ctx.secrets = dataclasses.replace(bot.ctx.secrets, hook_secret=None)
    response = post_report(bot, report())
    assert response.status_code == 503 and "DECKHAND_HOOK_SECRET" in response.json()["error"]
    assert stored(bot) == NOTHING


def test_a_standby_instance_answers_503_so_the_script_retries(bot):
    bot.ctx.is_leader = lambda: False
    response = post_report(bot, report())
    assert response.status_code == 503 and "standing by" in response.json()["error"]
    assert stored(bot) == NOTHING


@pytest.mark.parametrize("body, reason", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[1, 2]", "must be a JSON object"),
    ({k: v for k, v in report().items() if k not in ("phase", "log_tail")}, "missing field(s): phase, log_tail"),
    (report(phase="reboot"), "unknown phase 'reboot'"),
    (report(status="maybe"), "unknown status 'maybe'"),
    (report(log_tail="x" * 4097), "log_tail is 4097 bytes"),
    (report(log_tail="é" * 2049), "log_tail is 4098 bytes"),
    (report(cluster="prod-zz"), "unknown cluster 'prod-zz'"),
    (report(cluster=""), "unknown cluster ''"),  # only a discovery failure may lack a cluster
    (report(node="Node_7!"), "not a valid node name"),
    (report(exit_code="one"), "exit_code must be an integer"),
    (report(timestamp="yesterday"), "not ISO-8601"),
    (report(message=7), "message must be a string"),
])
def test_bad_reports_are_400_with_the_reason(bot, body, reason):
    response = post_report(bot, body)
    assert response.status_code == 400, response.text
    assert reason in response.json()["error"]
    assert stored(bot) == NOTHING


def test_a_log_tail_of_exactly_4_kib_is_accepted(bot):
    assert post_report(bot, report(log_tail="x" * 4096)).status_code == 202


def test_a_body_over_64_kib_is_413(bot):
    body = report()
    body["padding"] = "x" * (64 * 1024)
    response = post_report(bot, body)
    assert response.status_code == 413 and "64 KiB" in response.json()["error"]
    assert stored(bot) == NOTHING


def test_unsigned_garbage_is_not_parsed_before_authentication(bot):
    response = requests.post(bot.url + "/hooks/node-join", data=b"{not json", timeout=5)
    assert response.status_code == 401
    assert stored(bot) == NOTHING
    assert ALERTS not in json.dumps([c.args for c in bot.slack.calls])
