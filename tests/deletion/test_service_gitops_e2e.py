"""The most destructive path, end to end with nothing stubbed: a DevOps approval of a GitOps service's
deletion opens the removal PR; the PR is merged on the GitHub fake; GitHub's signed pull_request webhook at
POST /hooks/github (or, when no webhook arrives, the pr-poll job) hands the merge to bot.deletion.lifecycle
through the handler app.py wires; and the service's objects are deleted from the Kubernetes fake."""
from __future__ import annotations

import json

from blocks.service import ACTION_APPROVE
from tests.deletion.test_service_approval import OBJECTS
from tests.deletion.test_service_gitops import FILES
from tests.deletion.test_service_world import (REPO, approval_message, click, exists, mesh_prometheus,  # noqa: F401
                                               request_deletion, start, wait_state)
from tests.fakes.github import pull_request_event
from tests.harness import DEVOPS, PAY_DEV
from tests.pipelines.test_pipeline_merge import deliver


def approved_and_merged(bot, github_fake):
    """Request, approve, and merge the removal PR on GitHub; nothing is deleted yet."""
    github_fake.clock = bot.clock
    kube = bot.kube["prod-a"]
    req = request_deletion(bot, PAY_DEV)
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS)
    waiting = wait_state(bot, req.id, "awaiting_merge")
    pull = github_fake.pulls(REPO)[0]
    assert (pull["number"], pull["head"]["ref"]) == (waiting.pr_number, "deckhand/delete/payments-api")
    assert [u["login"] for u in pull["requested_reviewers"]] == ["octocat"]
    github_fake.merge(REPO, waiting.pr_number)
    assert "services/payments/payments-api/deckhand.yaml" not in github_fake.files(REPO)
    assert kube.deletions == [] and all(exists(kube, kind, "payments", name) for kind, name in OBJECTS)
    return req, waiting


def assert_deleted(bot, req) -> None:
    kube = bot.kube["prod-a"]
    done = wait_state(bot, req.id, "deleted")
    assert all(step.done for step in done.plan)
    assert not any(exists(kube, kind, "payments", name) for kind, name in OBJECTS)
    assert sorted((d["kind"], d["name"]) for d in kube.deletions) == sorted(OBJECTS)
    assert {d["propagationPolicy"] for d in kube.deletions} == {"Foreground"}
    assert exists(kube, "Service", "payments", "ledger")  # its neighbours stay
    assert [a["action"] for a in bot.ctx.store.audit_log("payments-api", limit=3)][:2] == ["deletion.done",
                                                                                           "deletion.merged"]
    bot.flush()
    assert "*Deleted*" in json.dumps(approval_message(bot, req.id)["blocks"])


def test_the_signed_merge_webhook_deletes_the_service_from_the_cluster(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus, files=FILES)
    req, waiting = approved_and_merged(bot, github_fake)
    event = pull_request_event(github_fake, REPO, waiting.pr_number, "closed")
    assert event["pull_request"]["merged"] is True
    answer = deliver(bot, event, delivery="delivery-1")
    assert answer.status_code == 200, answer.text
    assert_deleted(bot, req)
    deleted = len(bot.kube["prod-a"].deletions)
    again = deliver(bot, event, delivery="delivery-2")  # GitHub redelivers: nothing is deleted twice
    assert again.status_code == 200 and len(bot.kube["prod-a"].deletions) == deleted


def test_without_a_webhook_the_pr_poll_job_finds_the_merge_and_deletes(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus, files=FILES)
    req, _ = approved_and_merged(bot, github_fake)
    outcome = bot.run_job("pr-poll")
    assert outcome.startswith("`pr-poll` ok"), outcome
    assert_deleted(bot, req)
    deleted = len(bot.kube["prod-a"].deletions)
    bot.run_job("pr-poll")
    assert len(bot.kube["prod-a"].deletions) == deleted


def test_an_unsigned_merge_webhook_deletes_nothing(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus, files=FILES)
    req, waiting = approved_and_merged(bot, github_fake)
    event = pull_request_event(github_fake, REPO, waiting.pr_number, "closed")
    forged = deliver(bot, event, secret="not-the-webhook-secret", delivery="forged-1")
    assert forged.status_code in (401, 403)
    assert bot.kube["prod-a"].deletions == []
    assert wait_state(bot, req.id, "awaiting_merge").state == "awaiting_merge"


def test_a_reviewer_github_refuses_is_named_when_the_removal_pr_opens(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus, files=FILES,
                config={"github": {"reviewers": ["stranger"], "team_reviewers": []}})
    req = request_deletion(bot, PAY_DEV)
    before = len(bot.slack.responses)
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS)
    reply = bot.slack.wait_for(lambda: [r["text"] for r in bot.slack.responses[before:]
                                        if "PR #" in (r.get("text") or "")])[-1]
    assert "GitHub refused to request `stranger` as reviewer" in reply
    pull = github_fake.pulls(REPO)[0]
    assert pull["requested_reviewers"] == [] and "**Reviewers not requested:**" in pull["body"]
    bot.flush()
    assert any("refused to request" in m["text"] for m in bot.slack.messages(PAY_DEV).values())
