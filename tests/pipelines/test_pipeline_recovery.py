"""A request whose worker was killed mid-proposal (left `proposing`, its message saying "preparing…"):
a resubmit or Try again takes it over at once, onto the same branch, PR and Slack message; the pr-poll
job gives it Try again back; a request a live worker is proposing is left alone.
(tests/test_crash.py kills a real process; these build what a killed one leaves and go on from there.)"""
from __future__ import annotations

import dataclasses
import json

import yaml

from blocks.pipeline import request_message
from bot.pipelines import requests as pipeline_requests
from bot.foundation.store import Store
from tests.harness import PAY_DEV
from tests.pipelines.test_pipeline_kit import (  # noqa: F401 - pbot is a fixture
    REPO,
    ack_body,
    api_form,
    buttons,
    messages_about,
    open_modal,
    pbot,
    request_row,
    seed_pipeline,
    spec_of,
    submit,
    wait_message,
)

BRANCH = "deckhand/pipeline/payments-api"
SPEC = "services/payments/payments-api/deckhand.yaml"


def edit_form(**overrides) -> dict:
    form = api_form(**overrides)
    del form["service"], form["team"]
    return form


def killed_mid_proposal(bot, action: str, form: dict, user: str = PAY_DEV) -> dict:
    """What a process killed while proposing leaves: the request `proposing` under that process's lock,
    and its message posted, saying "preparing…". The lock outlives the process until a new writer
    drops it (bot.leader calls Store.drop_foreign_locks)."""
    dead = Store(bot.ctx.store.path, clock=bot.clock)
    try:
        ghost = dataclasses.replace(bot.ctx, store=dead)
        spec = spec_of(form)
        row = pipeline_requests.claim(ghost, action=action, target=spec.service, team=spec.team,
                                      spec=spec.to_dict(), user=user, channel="C0PAY").row
        posted = bot.ctx.slack.chat_postMessage(channel="C0PAY", **request_message(pipeline_requests.request_card(row)))
        pipeline_requests.attach_message(ghost, row["id"], posted["channel"], posted["ts"], None)
    finally:
        dead.close()
    return request_row(bot, row["key"])


def message(bot, row: dict) -> dict:
    return bot.slack.message(row["channel"], row["ts"])


def spec_on_branch(bot) -> dict:
    return yaml.safe_load(bot.github.files(REPO, BRANCH)[SPEC])


def test_a_create_left_by_a_killed_worker_is_taken_over_by_submitting_again(pbot):
    open_modal(pbot)
    orphan = killed_mid_proposal(pbot, "create", api_form(replicas="4"))
    assert "preparing the pull request" in message(pbot, orphan)["text"]
    # While the lock says a worker is on it, the name is pending...
    assert "as a pending pull request" in ack_body(submit(pbot, api_form()))["errors"]["service"]
    pbot.ctx.store.drop_foreign_locks()  # ...the new writer drops the dead one's lock: no more
    assert ack_body(submit(pbot, api_form(replicas="5"))) == {}

    done = pbot.slack.wait_for(lambda: "is open for review" in message(pbot, orphan)["text"] and message(pbot, orphan))
    assert "pipeline_retry" not in buttons(done)
    assert len(messages_about(pbot, "C0PAY", "payments-api")) == 1  # the same message, not a second one
    assert len(pbot.slack.calls_to("chat.postMessage")) == 1  # nor a thread reply
    [pull] = pbot.github.pulls(REPO)
    assert pull["head"]["ref"] == BRANCH and spec_on_branch(pbot)["replicas"] == 5
    row = request_row(pbot, "pipeline:payments-api")
    assert (row["id"], row["state"], row["pr_number"], row["ts"]) == (orphan["id"], "open", 1, orphan["ts"])
    assert pipeline_requests.worker_of(pbot.ctx, row["id"]) is None  # released with the move to open
    assert [a["result"] for a in pbot.ctx.store.audit_log("payments-api")] == ["opened #1"]


def test_an_edit_left_by_a_killed_worker_is_taken_over_in_its_own_message(pbot):
    seed_pipeline(pbot, api_form())
    orphan = killed_mid_proposal(pbot, "edit", api_form(replicas="4"))
    pbot.ctx.store.drop_foreign_locks()
    view = open_modal(pbot, "edit payments-api")
    assert view["callback_id"] == "pipeline_submit"
    assert ack_body(submit(pbot, edit_form(replicas="5"))) == {}

    pbot.slack.wait_for(lambda: "is open for review" in message(pbot, orphan)["text"])
    assert len(messages_about(pbot, "C0PAY", "payments-api")) == 1
    assert len(pbot.github.pulls(REPO)) == 1 and spec_on_branch(pbot)["replicas"] == 5
    row = request_row(pbot, "pipeline:payments-api")
    assert (row["id"], row["action"], row["state"], row["ts"]) == (orphan["id"], "edit", "open", orphan["ts"])


def test_pr_poll_gives_an_interrupted_create_try_again_and_leaves_a_live_one_alone(pbot):
    open_modal(pbot)
    orphan = killed_mid_proposal(pbot, "create", api_form())
    pbot.ctx.store.drop_foreign_locks()
    # This process is proposing another one right now (it holds that request's lock).
    live = pipeline_requests.claim(pbot.ctx, action="create", target="orders-api", team="payments",
                                   spec=spec_of(api_form(service="orders-api")).to_dict(), user=PAY_DEV,
                                   channel="C0PAY").row

    assert "1 interrupted by a restart" in pbot.run_job("pr-poll")
    assert "interrupted" not in pbot.run_job("pr-poll")  # once
    pbot.flush()
    interrupted = message(pbot, orphan)
    assert "could not be opened" in interrupted["text"]
    assert "deckhand restarted while opening the pull request" in json.dumps(interrupted["blocks"])
    assert buttons(interrupted)["pipeline_retry"]["value"] == str(orphan["id"])
    assert request_row(pbot, "pipeline:payments-api")["state"] == "failed"
    assert request_row(pbot, "pipeline:orders-api")["state"] == "proposing"
    assert "as a pending pull request" in ack_body(submit(pbot, api_form(service="orders-api")))["errors"]["service"]
    # /pipeline edit of the unmerged create says what to do instead of "no such pipeline".
    notice = open_modal(pbot, "edit payments-api")
    assert "creating it failed or was interrupted" in json.dumps(notice["blocks"])

    pbot.sender.block_actions("pipeline_retry", user_id=PAY_DEV, channel_id="C0PAY", message_ts=orphan["ts"])
    done = pbot.slack.wait_for(lambda: "is open for review" in message(pbot, orphan)["text"] and message(pbot, orphan))
    assert "pipeline_retry" not in buttons(done) and len(messages_about(pbot, "C0PAY", "payments-api")) == 1
    assert [p["head"]["ref"] for p in pbot.github.pulls(REPO)] == [BRANCH]
    assert [a["result"] for a in pbot.ctx.store.audit_log("payments-api")] == \
        ["opened #1", "failed: interrupted by a restart"]
    assert pipeline_requests.worker_of(pbot.ctx, live["id"]) is not None


def test_an_interrupted_update_of_an_open_pull_request_stays_tracked_with_try_again(pbot):
    open_modal(pbot)
    submit(pbot, api_form())
    first = wait_message(pbot, "C0PAY", "payments-api", "is open for review")
    # A killed worker was pushing an edit onto the open PR: same row, same message, still PR #1.
    dead = Store(pbot.ctx.store.path, clock=pbot.clock)
    try:
        spec = spec_of(api_form(replicas="4"))
        claim = pipeline_requests.claim(dataclasses.replace(pbot.ctx, store=dead), action="edit",
                                        target=spec.service, team=spec.team, spec=spec.to_dict(), user=PAY_DEV,
                                        channel="C0PAY")
        assert claim.reused and claim.row["ts"] == first["ts"]
    finally:
        dead.close()
    pbot.ctx.store.drop_foreign_locks()

    assert "1 interrupted by a restart" in pbot.run_job("pr-poll")
    pbot.flush()
    shown = pbot.slack.message("C0PAY", first["ts"])
    assert "is open for review" in shown["text"] and "pipeline_retry" in buttons(shown)
    assert "deckhand restarted while updating pull request #1" in json.dumps(shown["blocks"])
    row = request_row(pbot, "pipeline:payments-api")
    assert row["state"] == "open" and row["pr_number"] == 1 and row["error"]

    pbot.sender.block_actions("pipeline_retry", user_id=PAY_DEV, channel_id="C0PAY", message_ts=first["ts"])
    pbot.slack.wait_for(lambda: (m := pbot.slack.message("C0PAY", first["ts"])) and "is open for review" in m["text"]
                        and "pipeline_retry" not in buttons(m))
    assert request_row(pbot, "pipeline:payments-api")["error"] is None
    assert len(pbot.github.pulls(REPO)) == 1 and spec_on_branch(pbot)["replicas"] == 4
    # Still tracked: its merge settles it as usual.
    pbot.github.merge(REPO, 1)
    assert "settled #1 merged" in pbot.run_job("pr-poll")
