"""Guarantees that hold across features: audit feed, durable paced Slack posting, one writer,
no secrets in logs."""
from __future__ import annotations

import json
import logging

from tests.harness import BOT_TOKEN, DEVOPS, GITHUB_TOKEN, HOOK_SECRET, OUTSIDER, SIGNING_SECRET


def test_audit_rows_are_mirrored_to_the_audit_channel_in_batches(bot):
    for n in range(30):
        bot.ctx.audit(DEVOPS, "canary.step", "ok", target=f"svc-{n}", cluster="prod-a")
    assert "30 audit entries" in bot.run_job("audit-feed")
    assert bot.flush() == 2  # 25 + 5: batched, not one message per action
    posted = bot.slack.messages("C0AUDIT")
    assert len(posted) == 2
    assert "svc-0" in json.dumps(list(posted.values())[0]["blocks"])
    assert "0 audit entries" in bot.run_job("audit-feed")  # nothing posted twice


def test_audit_feed_survives_a_slack_outage(bot):
    bot.ctx.audit(OUTSIDER, "ops.run", "denied", target="idle-scan")
    bot.run_job("audit-feed")
    bot.slack.fail("chat.postMessage", status=500, times=None)
    assert bot.flush() == 0
    assert bot.ctx.outbox.pending() == 1  # kept, not lost
    bot.slack.clear_failures()
    bot.ctx.store.db.execute("UPDATE outbox SET next_at = '2000-01-01'")  # skip the backoff wait
    assert bot.flush() == 1
    assert len(bot.slack.messages("C0AUDIT")) == 1


def test_flood_of_300_alerts_to_a_rate_limited_channel_loses_and_duplicates_nothing(bot):
    bot.slack.rate_limit("chat.postMessage", per_channel_per_second=200, retry_after=0)
    bot.slack.fail("chat.postMessage", status=429, times=3, retry_after=0)
    for n in range(300):
        bot.ctx.outbox.post("C0ALERTS", text=f"alert {n}", ref=f"flood:{n}")
    sent = 0
    for _ in range(20):
        sent += bot.flush()
        if bot.ctx.outbox.pending() == 0:
            break
    texts = [m["text"] for m in bot.slack.messages("C0ALERTS").values()]
    assert texts == [f"alert {n}" for n in range(300)]  # every one, once, in order
    assert sent == 300
    assert any(call.status == 429 for call in bot.slack.calls_to("chat.postMessage"))


def test_permanent_slack_errors_are_kept_as_failed_not_retried_forever(bot):
    bot.slack.missing_channels = {"C0GONE"}
    bot.ctx.outbox.post("C0GONE", text="lost channel")
    bot.ctx.outbox.post("C0ALERTS", text="fine")
    bot.flush()
    states = {r["channel"]: r["state"] for r in bot.ctx.store.query("SELECT channel, state FROM outbox")}
    assert states == {"C0GONE": "failed", "C0ALERTS": "sent"}


def test_secrets_never_reach_logs_audit_or_slack(bot, caplog):
    from bot.foundation.logs import Redactor

    caplog.handler.addFilter(Redactor(bot.ctx.secrets.values()))
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("deckhand.test").warning("token is %s and %s", BOT_TOKEN, GITHUB_TOKEN)
        bot.sender.command("/ops", "help", user_id=DEVOPS)
        bot.sender.command("/ops", "run nope", user_id=DEVOPS)
        bot.slack.wait_for(lambda: len(bot.slack.responses) >= 2)
        bot.run_job("audit-feed")
        bot.flush()
    haystack = "\n".join(r.getMessage() for r in caplog.records)
    haystack += json.dumps(bot.ctx.store.query("SELECT * FROM audit"))
    haystack += json.dumps([c.args for c in bot.slack.calls]) + json.dumps(bot.slack.responses)
    for secret in (BOT_TOKEN, GITHUB_TOKEN, SIGNING_SECRET, HOOK_SECRET):
        assert secret not in haystack
    assert "[redacted]" in haystack


def test_redactor_catches_token_shapes_even_when_unconfigured():
    from bot.foundation.logs import Redactor

    redactor = Redactor([])
    text = redactor.scrub("xoxb-1234-5678-abcdefgh and ghp_abcdefghijklmnopqrstuvwxyz0123 and Bearer abcdefghijklmnop1234")
    assert "xoxb-1234" not in text and "ghp_abc" not in text and "abcdefghijklmnop1234" not in text


def test_backend_failures_are_counted_by_kind_in_metrics(bot):
    import requests

    bot.slack.fail("chat.postMessage", error="channel_not_found")
    bot.ctx.outbox.post("C0ALERTS", text="x")
    bot.flush()
    from bot.foundation.gitops import GitOpsError, github_error
    from github import GithubException

    assert isinstance(github_error("open the pull request", GithubException(502, {"message": "bad gateway"})), GitOpsError)
    metrics = requests.get(bot.health_url + "/metrics").text
    assert 'deckhand_backend_errors_total{backend="slack",kind="channel_not_found"} 1.0' in metrics
    assert 'deckhand_backend_errors_total{backend="github",kind="502"} 1.0' in metrics
