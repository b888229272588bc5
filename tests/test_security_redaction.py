"""Tokens never leave deckhand: an upstream that echoes credentials back, or a hook body that quotes
them, reaches Slack, the log and /metrics with the token redacted. Driven through the real
endpoints (/slack/events, /hooks/node-join, /metrics)."""
from __future__ import annotations

import json
import logging

import requests

from bot.foundation.logs import Redactor
from tests.harness import DEVOPS
from tests.nodes.nodes_support import post_report, report

JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6IkFCQyJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJlLWJ5dGVz"
TOKENS = [JWT, "ghp_" + "A1b2C3d4" * 5, "github_pat_" + "Z9" * 20, "xoxb-1111-2222-" + "k" * 24,
          "xapp-1-A0-" + "9" * 20, "s3cr3t-basic-credential"]
ECHO = (f"upstream echoed: Authorization: Bearer {JWT}; token {TOKENS[1]} pat {TOKENS[2]} slack {TOKENS[3]} "
        f"app {TOKENS[4]} Authorization: Basic {TOKENS[5]}")


def everything_sent(bot) -> str:
    return json.dumps(bot.slack.responses) + json.dumps([c.args for c in bot.slack.calls], default=str)


def test_an_upstream_error_that_echoes_credentials_reaches_slack_and_the_log_redacted(bot, caplog):
    caplog.handler.addFilter(Redactor(bot.ctx.secrets.values()))
    bot.kube_fake().fail(status=500, times=None, message=ECHO)
    with caplog.at_level(logging.DEBUG):
        bot.sender.command("/canary", "list", user_id=DEVOPS)
        bot.sender.command("/service", "deps checkout prod-a", user_id=DEVOPS)
        bot.slack.wait_for(lambda: len(bot.slack.responses) >= 2)
        bot.ctx.extras["listener_executor"].shutdown(wait=True)
    sent = everything_sent(bot)
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "upstream echoed" in sent  # the error itself is shown...
    for token in TOKENS:
        assert token not in sent and token not in logged  # ...without the credentials
    assert "[redacted]" in sent


def test_a_hook_body_quoting_a_token_is_posted_to_the_channel_redacted(bot):
    answer = post_report(bot, report(log_tail=ECHO, message=f"curl -H 'Authorization: token {TOKENS[1]}' failed"))
    assert answer.status_code == 202
    bot.flush()
    sent = everything_sent(bot)
    assert "upstream echoed" in sent
    for token in TOKENS:
        assert token not in sent


def test_metrics_never_carry_a_token_an_upstream_put_in_an_error_kind(bot):
    bot.slack.fail("chat.postMessage", error=f"invalid_auth_{TOKENS[3]}")
    bot.ctx.outbox.post("C0ALERTS", text="x")
    bot.flush()
    text = requests.get(bot.health_url + "/metrics").text
    assert "invalid_auth_" in text and TOKENS[3] not in text
