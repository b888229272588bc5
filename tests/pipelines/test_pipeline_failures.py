"""GitHub failing in every way, double submits and Slack retries: a specific Slack message, no
half-made state, and a retry that reuses the branch and the pull request."""
from __future__ import annotations

import json
import threading

import pytest

from bot.foundation.gitops import GitOps
from tests.harness import GITHUB_TOKEN, PAY_DEV
from tests.pipelines.test_pipeline_kit import (  # noqa: F401 - pbot is a fixture
    REPO,
    api_form,
    buttons,
    messages_about,
    open_modal,
    pbot,
    request_row,
    submit,
    wait_message,
)

BRANCH = "deckhand/pipeline/payments-api"


def retry(bot, message: dict, user: str = PAY_DEV, value: str | None = None):
    """Press "Try again" on the message (value: a stale click on a button the message no longer shows)."""
    return bot.sender.block_actions("pipeline_retry", value=value, user_id=user, channel_id="C0PAY",
                                    message_ts=message["ts"])


def assert_retry_reuses_branch_and_pr(bot, failed: dict) -> None:
    bot.github.clear_faults()
    retry(bot, failed)
    done = bot.slack.wait_for(lambda: "is open for review" in bot.slack.message("C0PAY", failed["ts"])["text"]
                              and bot.slack.message("C0PAY", failed["ts"]), timeout=10)
    assert "pipeline_retry" not in buttons(done)
    assert len(bot.github.pulls(REPO)) == 1 and bot.github.pulls(REPO)[0]["head"]["ref"] == BRANCH
    assert [b for b in bot.github.branches(REPO) if b != "main"] == [BRANCH]
    assert len(bot.github.pr_files(REPO, 1)) == 7
    row = request_row(bot, "pipeline:payments-api")
    assert row["state"] == "open" and row["pr_number"] == 1 and row["error"] is None
    results = [a["result"] for a in bot.ctx.store.audit_log("payments-api")]
    assert results[0] == "opened #1" and results[1].startswith("failed")
    assert len(messages_about(bot, "C0PAY", "payments-api")) == 1


@pytest.mark.parametrize("method, path, status, says", [
    ("POST", "/git/trees", 401, "GITHUB_TOKEN was rejected (expired or revoked); ask DevOps to rotate it"),
    ("POST", "/git/refs", 403, "may not write to this repository"),
    ("GET", "/git/ref/heads/main", 404, "the repository or branch was not found"),
    ("POST", "/pulls", 422, "GitHub rejected the change as invalid"),
    ("POST", "/git/commits", 502, "GitHub had an internal error; try again in a minute"),
])
def test_github_failure_gives_a_specific_message_and_a_retry_reuses_branch_and_pr(pbot, method, path, status, says):
    open_modal(pbot)
    pbot.github.fail(method, path, status=status, times=None)
    submit(pbot, api_form())
    failed = wait_message(pbot, "C0PAY", "payments-api", "could not be opened")
    text = json.dumps(failed["blocks"])
    assert says in text and f"({status}" in text
    next_step = "Once DevOps has fixed it, press *Try again*" if status in (401, 403, 404) else \
        "it reuses the same branch and pull request"
    assert next_step in text
    assert buttons(failed)["pipeline_retry"]["text"]["text"] == "Try again"
    row = request_row(pbot, "pipeline:payments-api")
    assert row["state"] == "failed" and row["pr_number"] is None
    assert pbot.github.pulls(REPO) == []
    assert pbot.ctx.store.audit_log("payments-api")[0]["result"].startswith(f"failed: GitHub:")
    assert_retry_reuses_branch_and_pr(pbot, failed)


def test_github_timeout_says_so_and_the_late_pull_request_is_reused(pbot):
    pbot.ctx.gitops = GitOps(pbot.ctx.settings.github, GITHUB_TOKEN, timeout=1, seconds_between_writes=None)
    open_modal(pbot)
    pbot.github.hang("/pulls", seconds=2, method="POST")
    submit(pbot, api_form())
    failed = wait_message(pbot, "C0PAY", "payments-api", "could not be opened")
    assert "GitHub did not answer in time" in json.dumps(failed["blocks"])
    assert request_row(pbot, "pipeline:payments-api")["state"] == "failed"
    pbot.slack.wait_for(lambda: pbot.github.pulls(REPO), timeout=5)  # GitHub finished it after we gave up
    assert_retry_reuses_branch_and_pr(pbot, failed)


def test_retry_is_refused_for_outsiders_and_when_nothing_failed(pbot):
    open_modal(pbot)
    pbot.github.fail("POST", "/git/trees", status=500, times=1)
    submit(pbot, api_form())
    failed = wait_message(pbot, "C0PAY", "payments-api", "could not be opened")
    retry(pbot, failed, user="U0OUTSIDER")
    assert "can't do that" in pbot.slack.wait_for(lambda: pbot.slack.responses)[-1]["text"]
    assert request_row(pbot, "pipeline:payments-api")["state"] == "failed"
    retry(pbot, failed)
    wait_message(pbot, "C0PAY", "payments-api", "is open for review")
    retry(pbot, failed, value=str(request_row(pbot, "pipeline:payments-api")["id"]))
    assert "nothing to retry" in pbot.slack.wait_for(
        lambda: len(pbot.slack.responses) >= 2 and pbot.slack.responses[-1])["text"]
    assert len(pbot.github.pulls(REPO)) == 1


def test_a_double_submit_creates_one_pull_request(pbot):
    open_modal(pbot)
    barrier = threading.Barrier(2)

    def click():
        barrier.wait()
        submit(pbot, api_form())

    threads = [threading.Thread(target=click) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_message(pbot, "C0PAY", "payments-api", "is open for review")
    pbot.ctx.extras["listener_executor"].shutdown(wait=True)  # both submissions are fully handled
    assert len(pbot.github.pulls(REPO)) == 1
    assert len(messages_about(pbot, "C0PAY", "payments-api")) == 1
    assert [a["result"] for a in pbot.ctx.store.audit_log("payments-api")] == ["opened #1"]


def test_a_slack_retry_of_the_submission_is_dropped(pbot):
    open_modal(pbot)
    submit(pbot, api_form())
    original = pbot.sender.sent[-1]
    wait_message(pbot, "C0PAY", "payments-api", "is open for review")
    again = pbot.sender.raw(original.body, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert again.status_code == 200
    pbot.ctx.extras["listener_executor"].shutdown(wait=True)
    assert len(pbot.github.pulls(REPO)) == 1 and len(pbot.slack.calls_to("chat.postMessage")) == 1


def test_a_second_create_of_a_pending_name_is_refused_in_the_ack(pbot):
    open_modal(pbot)
    submit(pbot, api_form())
    wait_message(pbot, "C0PAY", "payments-api", "is open for review")
    response = submit(pbot, api_form(replicas="2"))
    assert "as a pending pull request #1" in response.json()["errors"]["service"]
    assert len(pbot.github.pulls(REPO)) == 1


def test_a_failed_update_of_an_open_pull_request_keeps_tracking_it(pbot):
    open_modal(pbot)
    submit(pbot, api_form())
    first = wait_message(pbot, "C0PAY", "payments-api", "is open for review")
    open_modal(pbot, "edit payments-api")
    pbot.github.fail("POST", "/git/trees", status=500, times=1)
    form = api_form(replicas="4")
    del form["service"], form["team"]
    submit(pbot, form)
    message = pbot.slack.wait_for(lambda: (lambda m: "pipeline_retry" in buttons(m) and m)(
        pbot.slack.message("C0PAY", first["ts"])))
    assert "is open for review" in message["text"] and "internal error" in json.dumps(message["blocks"])
    row = request_row(pbot, "pipeline:payments-api")
    assert row["state"] == "open" and row["pr_number"] == 1 and row["error"]
    pbot.github.merge(REPO, 1)
    assert "settled #1 merged" in pbot.run_job("pr-poll")
    pbot.flush()
    assert "was merged" in pbot.slack.message("C0PAY", first["ts"])["text"]


def test_reviewers_github_refuses_are_named_in_slack_the_pr_body_and_the_log(bot_factory, github_fake, caplog):
    """A configured reviewer who is not a collaborator, and a team that does not exist: GitHub answers 422
    to the review request. The PR still opens (the valid reviewer is still asked), and deckhand says who was
    not asked in the Slack card, the PR body and the log, instead of "open for review"."""
    from tests.pipelines.test_pipeline_kit import POINTER

    github_fake.create_repo(REPO, files={"README.md": "deploy manifests\n", "batch-images.yaml": POINTER})
    bot = bot_factory(clusters=("prod-a", "prod-b"), github_fake=github_fake,
                      config={"github": {"reviewers": ["octocat", "stranger"], "team_reviewers": ["ghosts"]}})
    open_modal(bot)
    submit(bot, api_form())
    message = wait_message(bot, "C0PAY", "payments-api", "is open, but no reviewer was asked")
    text = json.dumps(message["blocks"])
    assert "GitHub refused to request `stranger`, team `ghosts` as reviewer" in text
    assert "github.reviewers" in text and "open for review" not in text
    pull = github_fake.pulls(REPO)[0]
    assert [u["login"] for u in pull["requested_reviewers"]] == ["octocat"]  # the valid one is still asked
    assert "**Reviewers not requested:** GitHub refused to request `stranger`, team `ghosts`" in pull["body"]
    assert any("refused to request reviewers" in r.getMessage() and "stranger" in r.getMessage()
               for r in caplog.records if r.name == "bot.foundation.gitops")
    assert request_row(bot, "pipeline:payments-api")["state"] == "open"
