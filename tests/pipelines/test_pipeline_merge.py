"""Merge tracking: GitHub's signed pull_request webhook at POST /hooks/github, the pr-poll fallback,
and handing deckhand/delete/* PRs to service deletion."""
from __future__ import annotations

import dataclasses
import json

import pytest
import requests

from tests.fakes.github import pull_request_event, webhook_headers
from tests.harness import PAY_DEV, WEBHOOK_SECRET
from tests.pipelines.test_pipeline_kit import (  # noqa: F401 - pbot is a fixture
    REPO,
    api_form,
    buttons,
    open_modal,
    pbot,
    request_row,
    submit,
    wait_message,
)


def open_pr(bot) -> dict:
    open_modal(bot)
    submit(bot, api_form())
    return wait_message(bot, "C0PAY", "payments-api", "is open for review")


def deliver(bot, payload: dict, secret: str = WEBHOOK_SECRET, delivery: str | None = None,
            event: str = "pull_request", **header_overrides):
    body = json.dumps(payload).encode()
    headers = webhook_headers(secret, body, event=event, delivery=delivery)
    headers.update(header_overrides)
    return requests.post(bot.url + "/hooks/github", data=body, headers=headers, timeout=10)


def thread(bot, message: dict) -> list[dict]:
    return bot.slack.message("C0PAY", message["ts"])["replies"]


def settle_outbox(bot) -> None:
    bot.flush()


def test_merged_pr_updates_the_message_and_tells_the_requester_once(pbot):
    message = open_pr(pbot)
    pbot.github.merge(REPO, 1)
    event = pull_request_event(pbot.github, REPO, 1, "closed")
    response = deliver(pbot, event, delivery="d-1")
    assert response.status_code == 200 and response.json() == {"ok": True, "result": "merged"}
    settle_outbox(pbot)
    updated = pbot.slack.message("C0PAY", message["ts"])
    assert "was merged" in updated["text"] and ":tada:" in json.dumps(updated["blocks"])
    assert buttons(updated)["pipeline_view_pr"]["url"].endswith("/pull/1")
    replies = thread(pbot, message)
    assert len(replies) == 1 and replies[0]["text"].startswith(f"<@{PAY_DEV}> :tada: Pull request")
    assert "rolls it out to prod-a, prod-b" in replies[0]["text"]

    assert deliver(pbot, event, delivery="d-1").json() == {"ok": True, "duplicate": True}  # a redelivery
    assert deliver(pbot, event, delivery="d-2").json() == {"ok": True, "duplicate": True}  # the same news resent
    assert "settled" not in pbot.run_job("pr-poll")  # the poller sees it merged too, and stays quiet
    settle_outbox(pbot)
    assert len(thread(pbot, message)) == 1
    assert request_row(pbot, "pipeline:payments-api")["state"] == "merged"
    merged = [a for a in pbot.ctx.store.audit_log("payments-api") if a["action"] == "pipeline.merged"]
    assert len(merged) == 1 and merged[0]["actor"] == "github:octocat"


def test_closed_without_merge_says_nothing_changes(pbot):
    message = open_pr(pbot)
    pbot.github.close(REPO, 1)
    assert deliver(pbot, pull_request_event(pbot.github, REPO, 1, "closed")).json()["result"] == "closed"
    settle_outbox(pbot)
    assert "closed without merging" in pbot.slack.message("C0PAY", message["ts"])["text"]
    reply = thread(pbot, message)[0]["text"]
    assert "closed without merging, so nothing changes" in reply and "`/pipeline create`" in reply
    assert pbot.ctx.store.audit_log("payments-api")[0]["action"] == "pipeline.closed"


def test_bad_or_missing_signature_is_401_and_nothing_happens(pbot):
    open_pr(pbot)
    pbot.github.merge(REPO, 1)
    event = pull_request_event(pbot.github, REPO, 1, "closed")
    forged = deliver(pbot, event, secret="not-the-secret")
    assert forged.status_code == 401 and "X-Hub-Signature-256" in forged.json()["error"]
    body = json.dumps(event).encode()
    unsigned = requests.post(pbot.url + "/hooks/github", data=body, timeout=10,
                             headers={"X-GitHub-Event": "pull_request", "Content-Type": "application/json"})
    assert unsigned.status_code == 401
    tampered = webhook_headers(WEBHOOK_SECRET, body)
    assert requests.post(pbot.url + "/hooks/github", data=body.replace(b"closed", b"opened", 1), headers=tampered,
                         timeout=10).status_code == 401
    assert request_row(pbot, "pipeline:payments-api")["state"] == "open"
    assert pbot.ctx.outbox.pending() == 0
    assert pbot.ctx.store.query("SELECT * FROM processed WHERE key LIKE 'github-delivery:%'") == []


def test_unset_secret_is_503_naming_the_variable(pbot):
    pbot.ctx.secrets = dataclasses.replace(pbot.ctx.secrets, github_webhook_secret=None)
    response = deliver(pbot, {"zen": "hi"}, event="ping")
    assert response.status_code == 503 and "GITHUB_WEBHOOK_SECRET is not set" in response.json()["error"]


def test_ping_and_events_that_are_not_ours_are_answered_and_ignored(pbot):
    assert deliver(pbot, {"zen": "Keep it logically awesome."}, event="ping").json() == {"ok": True, "pong": True}
    assert "not handled" in deliver(pbot, {}, event="push").json()["ignored"]
    message = open_pr(pbot)
    pbot.github.commit_files(REPO, "feature/readme", {"README.md": "changed\n"})
    other = pbot.github.create_pull(REPO, "feature/readme")
    pbot.github.merge(REPO, other)
    assert deliver(pbot, pull_request_event(pbot.github, REPO, other)).json()["result"] == \
        "ignored: not a deckhand branch"
    pbot.github.merge(REPO, 1)
    foreign = pull_request_event(pbot.github, REPO, 1)
    foreign["repository"]["full_name"] = "someone/else"
    assert deliver(pbot, foreign).json()["ignored"] == "not the GitOps repository"
    assert deliver(pbot, pull_request_event(pbot.github, REPO, 1, "edited")).json()["ignored"] == "action edited"
    assert request_row(pbot, "pipeline:payments-api")["state"] == "open"
    assert len(thread(pbot, message)) == 0
    assert deliver(pbot, {"action": "closed"}).status_code == 400  # not a pull_request payload


def test_the_poller_notices_a_merge_without_a_webhook_once(pbot):
    message = open_pr(pbot)
    assert pbot.run_job("pr-poll") == "`pr-poll` ok: checked 1 open pipeline PRs; none closed"
    pbot.github.merge(REPO, 1)
    assert "settled #1 merged" in pbot.run_job("pr-poll")
    assert "none closed" in pbot.run_job("pr-poll")
    settle_outbox(pbot)
    assert "was merged" in pbot.slack.message("C0PAY", message["ts"])["text"]
    assert len(thread(pbot, message)) == 1
    assert deliver(pbot, pull_request_event(pbot.github, REPO, 1)).json()["result"] == "already merged"
    settle_outbox(pbot)
    assert len(thread(pbot, message)) == 1


def test_a_poll_that_cannot_reach_github_fails_the_run_and_changes_nothing(pbot):
    open_pr(pbot)
    pbot.github.fail("GET", "/pulls/1", status=502, times=None)
    outcome = pbot.run_job("pr-poll")
    assert outcome.startswith("`pr-poll` failed") and "internal error" in outcome
    assert request_row(pbot, "pipeline:payments-api")["state"] == "open"


@pytest.fixture
def deletion_hook(pbot):
    """Stands in for the service-deletion feature's registered handler and records what it is handed."""
    calls = []

    def on_pull_request_closed(ctx, branch, number, merged):
        calls.append((branch, number, merged))
        return f"deletion of {branch.rsplit('/', 1)[-1]} {'goes ahead' if merged else 'cancelled'}"

    pbot.ctx.pull_request_handlers["deckhand/delete/"] = ("service deletion", on_pull_request_closed)
    return calls


def delete_pr(bot, service: str, merge: bool) -> int:
    bot.github.commit_files(REPO, f"deckhand/delete/{service}", {f"services/payments/{service}/gone": "x\n"})
    number = bot.github.create_pull(REPO, f"deckhand/delete/{service}", title=f"delete {service}")
    bot.github.merge(REPO, number) if merge else bot.github.close(REPO, number)
    return number


def test_deletion_prs_are_handed_to_service_deletion_once_from_webhook_or_poller(pbot, deletion_hook):
    by_webhook = delete_pr(pbot, "old-api", merge=True)
    result = deliver(pbot, pull_request_event(pbot.github, REPO, by_webhook)).json()["result"]
    assert result == "dispatched to service deletion: deletion of old-api goes ahead"
    by_poll = delete_pr(pbot, "older-api", merge=False)
    assert "1 deletion PRs handed over" in pbot.run_job("pr-poll")
    assert "handed over" not in pbot.run_job("pr-poll")
    assert deliver(pbot, pull_request_event(pbot.github, REPO, by_poll)).json()["result"] == "already handled"
    assert deletion_hook == [("deckhand/delete/old-api", by_webhook, True),
                             ("deckhand/delete/older-api", by_poll, False)]


def test_deletion_prs_are_ignored_when_service_deletion_has_no_handler(pbot):
    pbot.ctx.pull_request_handlers.clear()
    number = delete_pr(pbot, "old-api", merge=True)
    assert deliver(pbot, pull_request_event(pbot.github, REPO, number)).json()["result"] == \
        "ignored: no handler for deckhand/delete/ branches"
