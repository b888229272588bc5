"""Services whose pipeline lives in the GitOps repo: approval opens a PR removing the folder, the
cluster-side deletion follows the merge; and the entry point the idle digest uses."""
from __future__ import annotations

import json

from blocks.service import ACTION_APPROVE, ACTION_REQUEST
from bot.deletion import lifecycle
from commands.service import open_deletion_request
from tests.harness import DEVOPS, DEVOPS2, PAY_DEV
from tests.deletion.test_service_world import (REPO, approval_message, button, click, mesh_prometheus,  # noqa: F401
                                      request_deletion, service, start, wait_state, workload)

FILES = {
    "README.md": "deploy manifests\n",
    "services/payments/payments-api/deckhand.yaml": "service: payments-api\nteam: payments\n",
    "services/payments/payments-api/deployment.yaml": "kind: Deployment\n",
    "services/payments/old-batch-api/deckhand.yaml": "service: old-batch-api\n",
    "services/payments/ledger/deckhand.yaml": "service: ledger\n",
    "services/search/payments-api-v2/deckhand.yaml": "service: payments-api-v2\n",
}


def test_gitops_service_gets_a_pr_and_is_deleted_after_the_merge(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus, files=FILES)
    kube = bot.kube["prod-a"]
    req = request_deletion(bot, PAY_DEV)
    before = len(bot.slack.responses)
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS)
    reply = bot.slack.wait_for(lambda: [r["text"] for r in bot.slack.responses[before:] if "PR #" in (r.get("text") or "")])
    waiting = wait_state(bot, req.id, "awaiting_merge")
    assert "removing `services/payments/payments-api/`" in reply[-1]

    pulls = github_fake.pulls(REPO)
    assert len(pulls) == 1 and pulls[0]["head"]["ref"] == "deckhand/delete/payments-api"
    assert github_fake.pr_files(REPO, pulls[0]["number"]) == {
        "services/payments/payments-api/deckhand.yaml": None, "services/payments/payments-api/deployment.yaml": None}
    assert waiting.branch == "deckhand/delete/payments-api" and waiting.pr_number == pulls[0]["number"]
    assert kube.deletions == []  # GitOps would re-create it: nothing is deleted before the merge
    bot.flush()
    message = json.dumps(approval_message(bot, req.id)["blocks"])
    assert waiting.pr_url in message and "follows the merge" in message

    github_fake.merge(REPO, waiting.pr_number)
    outcome = lifecycle.on_pull_request_closed(bot.ctx, waiting.branch, waiting.pr_number, True)
    assert "Deleted" in outcome
    assert wait_state(bot, req.id, "deleted").state == "deleted"
    assert {(d["kind"], d["name"]) for d in kube.deletions} >= {("Deployment", "payments-api"), ("Service", "payments-api")}
    assert len(bot.ctx.store.query("SELECT * FROM savings WHERE ref = ?", [f"deletion:{req.id}"])) == 1
    count = len(kube.deletions)
    assert "nothing to do" in lifecycle.on_pull_request_closed(bot.ctx, waiting.branch, waiting.pr_number, True)
    assert len(kube.deletions) == count  # a redelivered webhook deletes nothing twice
    bot.flush()
    assert "*Deleted*" in json.dumps(approval_message(bot, req.id)["blocks"])


def test_closing_the_pr_unmerged_cancels_the_deletion(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus, files=FILES)
    bot.kube["prod-a"].add_many([service("old-batch-api", "payments"),
                                 workload("old-batch-api", "payments", app="old-batch-api")])
    req = request_deletion(bot, PAY_DEV, "old-batch-api")
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS2)
    waiting = wait_state(bot, req.id, "awaiting_merge")
    github_fake.close(REPO, waiting.pr_number)
    assert "cancelled" in lifecycle.on_pull_request_closed(bot.ctx, waiting.branch, waiting.pr_number, False)
    assert lifecycle.get_request(bot.ctx, req.id).state == "cancelled"
    assert bot.kube["prod-a"].deletions == []
    bot.flush()
    assert "*Cancelled*" in json.dumps(approval_message(bot, req.id)["blocks"])
    assert any("closed without merging" in m["text"] for m in bot.slack.messages(PAY_DEV).values())


def test_github_down_at_approval_keeps_the_request_pending_and_deletes_nothing(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus, files=FILES)
    req = request_deletion(bot, PAY_DEV)
    github_fake.fail("GET", "/git/trees", status=502, times=1)
    before = len(bot.slack.responses)
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS)
    text = bot.slack.wait_for(lambda: [r["text"] for r in bot.slack.responses[before:]
                                       if "Could not" in (r.get("text") or "")])[-1]
    assert "check the GitOps repository" in text and "pending again" in text
    assert wait_state(bot, req.id, "pending").decided_by is None
    assert bot.kube["prod-a"].deletions == [] and github_fake.pulls(REPO) == []
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS)  # GitHub is back: approving again works
    assert wait_state(bot, req.id, "awaiting_merge").pr_number == github_fake.pulls(REPO)[0]["number"]


def test_open_deletion_request_is_the_delete_command_for_other_features(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    replies = []
    open_deletion_request(bot.ctx, bot.ctx.slack, lambda **kw: replies.append(kw), PAY_DEV, "payments-api", "prod-a",
                          namespace="payments", source="idle")
    assert all(r.get("replace_original") is False for r in replies)  # never replaces the digest it came from
    report = replies[-1]
    element = button(report["blocks"], ACTION_REQUEST)
    assert json.loads(element["value"]) == {"c": "prod-a", "n": "payments", "s": "payments-api", "src": "idle"}
    bot.sender.block_actions(ACTION_REQUEST, value=element["value"], user_id=PAY_DEV, channel_id="C0PAY",
                             message={"type": "message", "blocks": report["blocks"], "ts": "1.000003"})
    req = bot.slack.wait_for(lambda: lifecycle.open_request_for(bot.ctx, "prod-a", "payments", "payments-api"))
    assert req.source == "idle"
    bot.flush()
    assert "via idle" in json.dumps(approval_message(bot, req.id)["blocks"])

    replies.clear()
    open_deletion_request(bot.ctx, bot.ctx.slack, lambda **kw: replies.append(kw), PAY_DEV, "nosuch", "prod-a")
    assert "No Service named `nosuch`" in replies[-1]["text"]


def test_a_second_request_for_the_same_service_points_at_the_first(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    first = request_deletion(bot, PAY_DEV)
    replies = []
    open_deletion_request(bot.ctx, bot.ctx.slack, lambda **kw: replies.append(kw), DEVOPS, "payments-api", "prod-a")
    assert f"Deletion request #{first.id} by <@{PAY_DEV}> is already pending" in json.dumps(replies[-1]["blocks"])
    assert button(replies[-1]["blocks"], ACTION_REQUEST) is None
    # a Request button from a report shown before the first request still finds the first one
    value = json.dumps({"c": "prod-a", "n": "payments", "s": "payments-api", "src": "command"})
    before = len(bot.slack.responses)
    bot.sender.block_actions(ACTION_REQUEST, value=value, user_id=DEVOPS, channel_id="C0PAY")
    text = bot.slack.wait_for(lambda: [r["text"] for r in bot.slack.responses[before:] if "already" in (r.get("text") or "")])
    assert f"(#{first.id}, by <@{PAY_DEV}>, pending)" in text[-1]
    assert len(bot.ctx.store.query("SELECT * FROM deletion_requests")) == 1
