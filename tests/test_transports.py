"""The main flows over both transports: signed HTTP to `/slack/events`, and Socket Mode envelopes through
the gateway fake (tests/fakes/slack/socket_mode.py) to the same Bolt app, acked over the WebSocket."""
from __future__ import annotations

import json

import pytest
import requests

from blocks.service import ACTION_APPROVE
from tests.harness import DEVOPS, DEVOPS2, PAY_DEV
from tests.deletion.test_service_world import (approval_message, click, mesh_prometheus, request_deletion,  # noqa: F401
                                               start, wait_state)
from tests.pipelines.test_pipeline_kit import REPO as PIPELINE_REPO, POINTER, ack_body, api_form, open_modal, submit

TRANSPORTS = ["http", "socket"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_slash_command(bot_factory, transport):
    bot = bot_factory(transport=transport)
    response = bot.sender.command("/ops", "help", user_id=PAY_DEV)
    assert response.status_code == 200
    reply = bot.slack.wait_for(lambda: bot.slack.responses)[0]
    assert "/pipeline" in json.dumps(reply["blocks"])
    metrics = requests.get(bot.health_url + "/metrics").text
    assert 'deckhand_requests_total{kind="command",name="/ops help",outcome="ok"} 1.0' in metrics


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_button_and_the_deletion_approval(bot_factory, github_fake, mesh_prometheus, transport):
    bot = start(bot_factory, github_fake, mesh_prometheus, transport=transport)
    request = request_deletion(bot, PAY_DEV)  # /service delete, then the Request deletion button
    assert "Waiting for approval" in json.dumps(approval_message(bot, request.id)["blocks"])
    ack = click(bot, ACTION_APPROVE, request.id, user=DEVOPS2)
    assert ack.status_code == 200
    assert wait_state(bot, request.id, "deleted").decided_by == DEVOPS2
    assert {d["name"] for d in bot.kube["prod-a"].deletions} >= {"payments-api"}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_modal_inline_errors_come_back_in_the_ack(bot_factory, github_fake, transport):
    github_fake.create_repo(PIPELINE_REPO, files={"README.md": "deploy manifests\n", "batch-images.yaml": POINTER})
    bot = bot_factory(clusters=("prod-a", "prod-b"), github_fake=github_fake, transport=transport)
    open_modal(bot)
    body = ack_body(submit(bot, api_form(service="Payments_API", port="70000")))
    assert body["response_action"] == "errors"
    assert set(body["errors"]) == {"service", "port"} and "lowercase" in body["errors"]["service"]
    assert github_fake.writes() == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_app_home_opened_event_publishes_home(bot_factory, transport):
    bot = bot_factory(transport=transport)
    response = bot.sender.event({"type": "app_home_opened", "user": DEVOPS, "channel": "D0HOME", "tab": "home"})
    assert response.status_code == 200
    call = bot.slack.wait_for(lambda: [c for c in bot.slack.calls_to("views.publish") if c.ok])[-1]
    assert call.args["user_id"] == DEVOPS and call.args["view"]["type"] == "home"


def test_a_redelivered_event_envelope_runs_once(bot_factory):
    bot = bot_factory(transport="socket")
    gateway = bot.sender.gateway
    envelope = {"type": "event_callback", "team_id": "T0TEAM", "api_app_id": "A0APP", "event_id": "Ev0REDELIVER",
                "event": {"type": "app_home_opened", "user": DEVOPS, "channel": "D0HOME", "tab": "home"}}
    gateway.send_envelope("events_api", envelope)
    bot.slack.wait_for(lambda: bot.slack.calls_to("views.publish"))
    gateway.send_envelope("events_api", envelope, retry_attempt=1, retry_reason="timeout")
    bot.ctx.extras["listener_executor"].shutdown(wait=True)
    assert len(bot.slack.calls_to("views.publish")) == 1


def test_in_socket_mode_slack_events_does_not_exist(bot_factory):
    bot = bot_factory(transport="socket")
    answer = requests.post(bot.url + "/slack/events", data="command=%2Fops&text=help", timeout=5)
    assert answer.status_code == 404
    assert bot.slack.responses == []
