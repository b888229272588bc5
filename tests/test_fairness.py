"""One person's flood does not hold up anyone else (commands/pool.py): each user has a share of 3
listener calls at a time; beyond it a request is refused at once with an ephemeral answer.

Kubernetes is held (the fake's hang(), released by the test) so the flooding user's requests are
provably still running while the others are answered; no timing is asserted."""
from __future__ import annotations

import json
import re

import requests

from tests.harness import DEVOPS, PAY_DEV, PAY_DEV2
from tests.pipelines.test_pipeline_kit import ack_body, api_form, open_modal, pbot, submit  # noqa: F401 - pbot is a fixture


def command(bot, text: str, user: str, command: str = "/canary") -> str:
    """Send a signed slash command with a response_url of our own; return that URL."""
    url = bot.slack.response_url(channel="C0PAY", user=user)
    response = bot.sender.command(command, text, user_id=user, channel_id="C0PAY", response_url=url)
    assert response.status_code == 200 and "still running" not in response.text, response.text
    return url


def answer_body(bot, url: str) -> dict:
    return bot.slack.wait_for(lambda: bot.slack.responses_to(url))[0]["body"]


def answer(bot, url: str) -> str:
    return answer_body(bot, url).get("text", "")


def test_a_flooding_user_is_refused_beyond_their_share_and_others_are_answered_meanwhile(bot_factory):
    bot = bot_factory(backend_timeout=60)
    kube = bot.kube["prod-a"]
    kube.hang(seconds=60, times=None)  # every Kubernetes call waits until the test releases it
    try:
        # The HTTP 200 comes after the listener was admitted to the pool, so these three are running.
        held = [command(bot, "list", PAY_DEV) for _ in range(3)]
        # A slash command's refusal is its ack: Slack shows that body to the person who typed it.
        refused_url = bot.slack.response_url(channel="C0PAY", user=PAY_DEV)
        refused = bot.sender.command("/canary", "list", user_id=PAY_DEV, channel_id="C0PAY", response_url=refused_url)
        assert refused.status_code == 200 and refused.json()["response_type"] == "ephemeral"
        text = refused.json()["text"]
        assert "You have 3 requests still running (`/canary list`, `/canary list`, `/canary list`)" in text
        assert "did not run this one" in text and "Try again once one of them has answered" in text

        clicked = bot.slack.response_url(channel="C0PAY", user=PAY_DEV)
        assert bot.sender.block_actions("canary_refresh", value="x", user_id=PAY_DEV, channel_id="C0PAY",
                                        response_url=clicked).status_code == 200
        # A click counts like a command; its ack body is not shown, so the refusal goes to its response_url.
        assert "You have 3 requests still running" in answer(bot, clicked)

        # Someone else, even a teammate in the same channel, is answered while the three are still held.
        for user in (DEVOPS, PAY_DEV2):
            assert "/canary" in json.dumps(answer_body(bot, command(bot, "help", user, command="/ops")))
        assert all(bot.slack.responses_to(url) == [] for url in held + [refused_url])
    finally:
        kube.release_hangs()

    for url in held:  # released: each held request answers normally
        assert "refused" not in answer(bot, url) and "still running" not in answer(bot, url)
    bot.slack.wait_for(lambda: bot.ctx.extras["listener_executor"].running(PAY_DEV) == [])
    again = command(bot, "list", PAY_DEV)  # the share is given back when the work ends
    assert "still running" not in answer(bot, again)


def test_modal_submissions_and_other_users_are_not_charged_to_the_flooding_user(bot_factory):
    bot = bot_factory(backend_timeout=60)
    kube = bot.kube["prod-a"]
    kube.hang(seconds=60, times=None)
    try:
        # Clicks no listener handles (Bolt's 404) give their reserved slot back at once.
        for _ in range(5):
            assert bot.sender.block_actions("no_such_button", user_id=PAY_DEV, channel_id="C0PAY").status_code == 404
        for _ in range(3):
            command(bot, "list", PAY_DEV)
        # Each of three other users still gets their own full share.
        for user in (DEVOPS, PAY_DEV2):
            for _ in range(3):
                command(bot, "list", user)  # admitted: no refusal in the ack
        # A modal submission answers in the ack (on the request thread), share or not: an unknown callback_id is
        # Bolt's 404, never a refusal and never a wait behind the held work.
        response = bot.sender.view_submission("bench_unregistered_modal", values={}, user_id=PAY_DEV)
        assert response.status_code == 404
    finally:
        kube.release_hangs()


def test_a_modal_submission_is_answered_as_soon_as_its_listener_acks(pbot, monkeypatch):
    """Bolt's request thread checks for the ack every 10 ms (thread_runner.py); a modal's listener runs
    on that thread before its first look, so that loop never sleeps."""
    import time as real

    import slack_bolt.listener.thread_runner as runner

    naps: list[float] = []

    class Clock:  # Bolt's `time`, with its naps counted
        time = staticmethod(real.time)

        @staticmethod
        def sleep(seconds: float) -> None:
            naps.append(seconds)
            real.sleep(seconds)

    open_modal(pbot)
    monkeypatch.setattr(runner, "time", Clock)
    refused = ack_body(submit(pbot, api_form(replicas="many")))
    assert refused["response_action"] == "errors" and "replicas" in refused["errors"]
    assert ack_body(submit(pbot, api_form())) == {}  # accepted: the pull request is opened after the ack
    assert naps == []


REASON = "Access logs for 30 days show no requests; payments confirmed in #payments"


def override_modal_open(bot_factory, github_fake):
    """A bot whose DevOps user has the deletion override modal open (Prometheus is down: traffic unknown)."""
    from blocks.service import ACTION_OVERRIDE, VIEW_OVERRIDE
    from tests.deletion.test_service_world import button, report_of, start

    bot = start(bot_factory, github_fake, backend_timeout=60)
    report = report_of(bot, DEVOPS, "delete payments-api prod-a")
    override = button(report["blocks"], ACTION_OVERRIDE)
    bot.sender.block_actions(ACTION_OVERRIDE, value=override["value"], user_id=DEVOPS, channel_id="C0PAY",
                             message={"type": "message", "blocks": report["blocks"], "ts": "1.000002"})
    assert bot.slack.wait_for(lambda: bot.slack.views_for(DEVOPS))[-1]["callback_id"] == VIEW_OVERRIDE
    return bot


def submit_override(bot):
    from blocks.service import REASON_BLOCK, VIEW_OVERRIDE

    return bot.sender.view_submission(VIEW_OVERRIDE, {REASON_BLOCK: {"value": REASON}}, user_id=DEVOPS)


def test_a_modal_listener_acks_on_the_request_thread_and_its_work_follows_on_the_pool(bot_factory, github_fake):
    """The override modal's listener runs where the request arrived, so its ack is ready at once; the
    dependency check and the pull request that follow go to the pool (commands.kit.after_ack). With
    Kubernetes held, the submission is still answered, and the work waits, off the request thread."""
    from bot.deletion import lifecycle

    bot = override_modal_open(bot_factory, github_fake)
    kube = bot.kube["prod-a"]
    asked_before = len(kube.requests)
    kube.hang(seconds=60, times=None)
    try:
        answer = submit_override(bot)
        assert answer.status_code == 200 and answer.text == ""  # acked (the client gives up after 10 s)
        bot.slack.wait_for(lambda: len(kube.requests) > asked_before)  # the check after the ack has started ...
        assert lifecycle.open_request_for(bot.ctx, "prod-a", "payments", "payments-api") is None  # ... and is held
    finally:
        kube.release_hangs()
    req = bot.slack.wait_for(lambda: lifecycle.open_request_for(bot.ctx, "prod-a", "payments", "payments-api"))
    assert req.override_reason == REASON


def test_a_failure_after_a_modal_ack_is_reported_with_an_error_id(bot_factory, github_fake, monkeypatch, caplog):
    from bot.deletion import lifecycle

    bot = override_modal_open(bot_factory, github_fake)

    def broken(*_args, **_kwargs):
        raise RuntimeError("the store fell over")

    monkeypatch.setattr(lifecycle, "create_request", broken)
    assert submit_override(bot).status_code == 200
    logged = bot.slack.wait_for(lambda: [r for r in caplog.records if "error id" in r.getMessage()])
    assert re.fullmatch(r"error id [0-9a-f]{8} in view service_delete_override for U0DEVOPS1", logged[0].getMessage())
    assert isinstance(logged[0].exc_info[1], RuntimeError)
    metrics = requests.get(bot.health_url + "/metrics").text
    assert 'deckhand_errors_total{where="view:service_delete_override"} 1.0' in metrics
    # The modal is closed by then and names no channel: the person is told in their DM with the app.
    error_id = logged[0].getMessage().split()[2]
    told = bot.slack.wait_for(lambda: [m for m in bot.slack.messages(DEVOPS).values() if error_id in m["text"]])
    assert "Something went wrong" in told[0]["text"]
