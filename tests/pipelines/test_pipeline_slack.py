"""/pipeline against Slack's own rules: the trigger_id is exchanged within 3 s even when GitHub and the
clusters are slow, the loading view is swapped for the form with its hash, and a channel the bot is not
in gets the request message in the requester's DM instead."""
from __future__ import annotations

import json
import logging

from tests.harness import DEVOPS, PAY_DEV
from tests.pipelines.test_pipeline_kit import (  # noqa: F401 - pbot is a fixture
    api_form,
    open_modal,
    pbot,
    seed_pipeline,
    submit,
)


def test_slow_github_and_clusters_still_open_the_loading_view_in_time(pbot):
    """Slack refuses a trigger_id older than 3 s (expired_trigger_id): deckhand opens the loading view first and
    only then talks to GitHub and the clusters, so 4 s of latency in both does not lose the modal."""
    seed_pipeline(pbot, api_form())
    pbot.github.latency = 4.0
    for fake in pbot.kube.values():
        fake.latency = 4.0
    pbot.sender.command("/pipeline", "edit payments-api", user_id=PAY_DEV, channel_id="C0PAY")
    opened = pbot.slack.wait_for_call("views.open", timeout=10)
    assert opened.ok, opened.error
    assert opened.args["view"]["callback_id"] == "pipeline_loading"
    form = pbot.slack.wait_for(lambda: [v for v in pbot.slack.views_for(PAY_DEV) if v["callback_id"] == "pipeline_submit"],
                               timeout=30)[-1]
    assert form["id"] == opened.response["view"]["id"]  # the loading view became the form
    pbot.sender.command("/pipeline", "create", user_id=PAY_DEV, channel_id="C0PAY")
    assert pbot.slack.wait_for_call("views.open", count=2, timeout=10).ok


def test_a_view_changed_meanwhile_is_not_overwritten_by_the_form(pbot, caplog):
    """views.update with the loading view's hash: if the view changed in between (the user moved on, another
    update won), Slack answers hash_conflict and deckhand leaves it alone instead of clobbering it."""
    caplog.set_level(logging.INFO, logger="deckhand.commands.pipeline")
    seed_pipeline(pbot, api_form())
    pbot.github.hang("/contents/", seconds=3.0, times=None)  # the edit form waits on GitHub
    pbot.sender.command("/pipeline", "edit payments-api", user_id=PAY_DEV, channel_id="C0PAY")
    loading = pbot.slack.wait_for_call("views.open", timeout=10).response["view"]
    other = {"type": "modal", "callback_id": "someone_else", "title": {"type": "plain_text", "text": "Other"},
             "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "changed meanwhile"}}]}
    pbot.slack.client("xoxb-another-writer").views_update(view_id=loading["id"], view=other)
    refused = pbot.slack.wait_for_call("views.update", lambda c: c.token.endswith("-deckhand"), timeout=15)
    assert (refused.error, refused.args["hash"]) == ("hash_conflict", loading["hash"])
    assert pbot.slack.views[loading["id"]]["callback_id"] == "someone_else"
    pbot.github.clear_faults()
    pbot.slack.wait_for(lambda: any("the loading view is gone (hash_conflict)" in r.getMessage()
                                    for r in caplog.records))
    assert pbot.slack.ephemerals(PAY_DEV) == []


def test_from_a_channel_the_bot_is_not_in_the_request_message_goes_to_the_dm(pbot):
    view = open_modal(pbot, user=DEVOPS, channel="C0RANDOM")
    assert json.loads(view["private_metadata"])["channel"] == "C0RANDOM"
    submit(pbot, api_form(), user=DEVOPS)
    refused = pbot.slack.wait_for_call("chat.postMessage", lambda c: c.args.get("channel") == "C0RANDOM")
    assert refused.error == "not_in_channel"
    dm = pbot.slack.wait_for(lambda: [m for m in pbot.slack.messages(DEVOPS).values()
                                      if "payments-api" in m["text"] and "is open for review" in m["text"]], timeout=15)
    assert dm[0]["channel"] == "D" + DEVOPS[1:]
    assert pbot.slack.messages("C0RANDOM") == {}
    assert len(pbot.github.pulls("org/deploy-manifests")) == 1
