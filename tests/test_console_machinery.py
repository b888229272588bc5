"""The terminal console's machinery, in process with scripted input: the Block Kit renderer, clicks and
confirm dialogs, modals field by field with their response actions, Slack's limits, switching users."""
from __future__ import annotations

import io
import json

import pytest
from slack_bolt import BoltResponse
from slack_sdk.signature import SignatureVerifier

from blocks.common import (actions, button, code, confirm, context, divider, fields, header, modal, section,
                           select_input, text_input)
from tests.harness import DEVOPS, base_config, closed_url

class Recorder:
    """Stands in for Bolt's dispatch: records each signed request, answers with the next scripted response
    (a BoltResponse, or a callable(body) -> BoltResponse that may act through the bot's WebClient first)."""

    def __init__(self, secret_of, answers=()):
        self.secret_of = secret_of
        self.bodies: list[dict] = []
        self.answers = list(answers)

    def __call__(self, request):
        verifier = SignatureVerifier(self.secret_of())
        headers = {k: v[0] for k, v in request.headers.items()}
        assert verifier.is_valid(request.raw_body, headers["x-slack-request-timestamp"],
                                 headers["x-slack-signature"])
        self.bodies.append(request.body)
        answer = self.answers.pop(0) if self.answers else BoltResponse(status=200, body="")
        return answer(request.body) if callable(answer) else answer


@pytest.fixture
def console_for(tmp_path, kube_fake):
    from bot.foundation.config import Secrets, parse_settings
    from bot.foundation.context import build_context
    from app import shutdown
    from console import Console

    started = []

    def make(script: str, answers=()):
        cfg = base_config()
        cfg["clusters"] = [{"name": "prod-a", "context": "prod-a", "prometheus_url": closed_url(),
                            "kubeconfig": kube_fake.kubeconfig(str(tmp_path / "kubeconfig"), context="prod-a")}]
        ctx = build_context(parse_settings(cfg), Secrets.from_env({}), str(tmp_path / f"c{len(started)}.db"))
        holder: dict = {}
        recorder = Recorder(lambda: holder["console"].signing_secret, answers)
        console = Console(ctx, stdin=io.StringIO(script), stdout=io.StringIO(), dispatch=recorder, settle_timeout=5,
                          shutdown=shutdown)
        holder["console"] = console
        console.start()
        started.append(console)
        return console, recorder

    yield make
    for console in started:
        console.stop()


def output(console) -> str:
    return console.stdout.getvalue()


def test_renderer_turns_block_kit_into_readable_text():
    from console.render import mrkdwn, render_message

    numbers = iter(range(1, 100))
    blocks = [
        header("Canary checkout"),
        section("Traffic for <@U0PAYDEV> in <#C0PAY|payments> — <https://grafana.example/d/1|dashboard> &amp; more",
                accessory=button("Details", "canary.details", "checkout")),
        fields([("Cluster", "prod-a"), ("Weight", "25%")]),
        divider(),
        section("Last log lines:\n" + code("line one\nline two")),
        context("stable v1 · canary v2"),
        actions(button("Promote", "canary.promote", "checkout", style="primary"),
                button("Abort", "canary.abort", "checkout", style="danger",
                       confirm_dialog=confirm("Abort?", "Send all traffic back to stable?"))),
    ]
    text = "\n".join(render_message("fallback", blocks, lambda element, block_id: next(numbers)))
    assert "== Canary checkout ==" in text
    assert "Traffic for @U0PAYDEV in #payments — dashboard (https://grafana.example/d/1) & more   [1] Details" in text
    assert "  Cluster: prod-a" in text and "  Weight: 25%" in text
    assert "-" * 40 in text
    assert "    line one\n    line two" in text
    assert "  › stable v1 · canary v2" in text
    assert "[2] Promote  [3] Abort (danger)" in text
    assert mrkdwn("<!subteam^S0PAY> <!here> <mailto:a@b.c|a@b.c>") == "@S0PAY @here a@b.c (mailto:a@b.c)"
    assert render_message("just *text*", None, lambda *a: None) == ["just *text*"]


def post_with_buttons(console) -> str:
    ctx = console.ctx
    blocks = [section("Canary *checkout* at 25%"),
              actions(button("Step to 50%", "canary.step", "checkout|50"),
                      button("Abort", "canary.abort", "checkout",
                             confirm_dialog=confirm("Abort the canary?", "All traffic goes back to stable.",
                                                    yes="Abort", no="Keep it")))]
    return ctx.slack.chat_postMessage(channel="C0ALERTS", text="canary", blocks=blocks)["ts"]


def test_click_sends_a_block_actions_payload_and_honours_the_confirm_dialog(console_for):
    console, recorder = console_for("n\ny\n")
    ts = post_with_buttons(console)
    assert "deckhand in #C0ALERTS" in output(console) and "[1] Step to 50%  [2] Abort" in output(console)

    console.click(1)
    body = recorder.bodies[-1]
    assert body["type"] == "block_actions" and body["user"]["id"] == DEVOPS
    assert body["actions"][0]["action_id"] == "canary.step" and body["actions"][0]["value"] == "checkout|50"
    assert body["container"] == {"type": "message", "message_ts": ts, "channel_id": "C0ALERTS", "is_ephemeral": False}
    assert body["message"]["ts"] == ts and body["message"]["blocks"][1]["type"] == "actions"
    assert body["response_url"].startswith(console.slack.url) and body["trigger_id"]

    console.click(2)  # answered "n": nothing is sent
    assert len(recorder.bodies) == 1
    assert "Abort the canary?" in output(console) and "(Keep it: nothing was sent)" in output(console)
    console.click(2)  # answered "y"
    assert recorder.bodies[-1]["actions"][0]["action_id"] == "canary.abort"

    # the listener answers through response_url: replace_original edits the message in place, and the
    # old buttons are gone
    import requests

    requests.post(recorder.bodies[-1]["response_url"], json={"replace_original": True, "text": "aborted",
                                                             "blocks": [section("Canary *checkout* aborted")]})
    assert f"deckhand edited its message [{ts}] in #C0ALERTS" in output(console)
    console.click(1)
    assert "There is no button [1] on screen" in output(console)


def test_buttons_on_ephemeral_messages_carry_no_message_and_replace_in_place(console_for):
    console, recorder = console_for("")
    console.slack.add_ephemeral("C0CONSOLE", DEVOPS, "pick", [actions(button("Request deletion", "svc.request", "x"))])
    console.click(1)
    body = recorder.bodies[-1]
    assert body["container"]["is_ephemeral"] is True and "message" not in body
    import requests

    requests.post(body["response_url"], json={"replace_original": True, "text": "Requested."})
    assert "deckhand replaced its message (only you can see this):\n  Requested." in output(console)


def form_view() -> dict:
    return modal("New pipeline", [
        section("Everything here becomes one pull request."),
        text_input("service", "Service name", hint="lowercase", max_length=20),
        select_input("kind", "Kind", [("Web service", "service"), ("Batch job", "batch")]),
        select_input("envs", "Environments", [("dev", "dev"), ("staging", "staging"), ("prod", "prod")], multi=True),
        text_input("notes", "Notes", optional=True, multiline=True),
    ], callback_id="pipeline.create", submit="Create", private_metadata="meta-1")


def open_modal(console, view: dict) -> str:
    return console.ctx.slack.views_open(trigger_id=console.slack.trigger(console.user), view=view)["view"]["id"]


def test_modal_is_filled_field_by_field_and_validation_errors_are_reasked(console_for):
    script = "\n".join([
        "",                       # Service name is required: asked again
        "x" * 21,                 # over max_length: asked again (Slack checks this in the client)
        "Checkout",               # accepted here; the app rejects it below
        "2",                      # Kind: Batch job
        "1, prod",                # Environments by number and by value
        "first line\\", "second line",     # Notes, multi-line: a trailing backslash continues
        "",                       # Submit? [Y]
        "checkout",               # only the field with an error is asked again
        "y",
    ]) + "\n"
    errors = BoltResponse(status=200, body=json.dumps({"response_action": "errors",
                                                       "errors": {"service": "Use lowercase letters."}}),
                          headers={"content-type": ["application/json"]})
    console, recorder = console_for(script, answers=[errors])
    view_id = open_modal(console, form_view())
    console.modals.present()

    out = output(console)
    assert "┌ New pipeline" in out and "Everything here becomes one pull request." in out
    assert "This field is required." in out and "Enter at most 20 characters (that was 21)." in out
    assert "✗ Service name: Use lowercase letters." in out
    assert out.count("Kind") == 2  # rendered once in the box, asked once: not re-asked after the error
    first, second = recorder.bodies
    assert first["type"] == second["type"] == "view_submission"
    assert first["view"]["id"] == view_id and first["view"]["private_metadata"] == "meta-1"
    values = first["view"]["state"]["values"]
    assert values["service"]["value"] == {"type": "plain_text_input", "value": "Checkout"}
    assert values["kind"]["value"]["selected_option"]["value"] == "batch"
    assert [o["value"] for o in values["envs"]["value"]["selected_options"]] == ["dev", "prod"]
    assert values["notes"]["value"]["value"] == "first line\nsecond line"
    assert second["view"]["state"]["values"]["service"]["value"]["value"] == "checkout"
    assert second["view"]["state"]["values"]["kind"]["value"]["selected_option"]["value"] == "batch"
    assert console.slack.top_modal(console.user) is None  # plain ack closes it


def test_modal_response_actions_update_push_and_cancel(console_for):
    step_two = modal("Confirm", [text_input("reason", "Reason")], callback_id="step.two", submit="Go")
    pushed = modal("Details", [section("More details")], callback_id="details", submit="OK")
    script = "\n".join([
        "svc", "1", "dev", "", "",    # fill the form, submit -> update to step two
        "because", "",                # step two, submit -> push a view without inputs
        "n",                          # cancel the pushed view: back to step two
        "",                           # step two again: already answered, submit -> clear
    ]) + "\n"
    answers = [BoltResponse(status=200, body=json.dumps({"response_action": "update", "view": step_two})),
               BoltResponse(status=200, body=json.dumps({"response_action": "push", "view": pushed})),
               BoltResponse(status=200, body=json.dumps({"response_action": "clear"}))]
    console, recorder = console_for(script, answers)
    open_modal(console, form_view())
    console.modals.present()
    out = output(console)
    assert "┌ Confirm" in out and "┌ Details" in out and "(modal closed)" in out
    assert [b["view"]["callback_id"] for b in recorder.bodies] == ["pipeline.create", "step.two", "step.two"]
    assert recorder.bodies[2]["view"]["state"]["values"]["reason"]["value"]["value"] == "because"
    assert console.slack.top_modal(console.user) is None


def test_dispatch_action_input_updates_the_modal_before_the_next_field(console_for):
    first = modal("Cluster", [select_input("cluster", "Cluster", [("prod-a", "prod-a"), ("prod-b", "prod-b")],
                                           dispatch=True)], callback_id="pick", submit="Next")

    def listener_updates_view(body):
        assert body["type"] == "block_actions" and body["actions"][0]["selected_option"]["value"] == "prod-b"
        console.ctx.slack.views_update(view_id=body["view"]["id"], view=modal(
            "Cluster", [select_input("cluster", "Cluster", [("prod-a", "prod-a"), ("prod-b", "prod-b")], dispatch=True),
                        select_input("ns", "Namespace in prod-b", [("shop", "shop")])], callback_id="pick", submit="Next"))
        return BoltResponse(status=200, body="")

    console, recorder = console_for("2\n1\ny\n", answers=[listener_updates_view])
    open_modal(console, first)
    console.modals.present()
    assert "Namespace in prod-b" in output(console)
    submitted = recorder.bodies[-1]["view"]["state"]["values"]
    assert submitted["cluster"]["value"]["selected_option"]["value"] == "prod-b"
    assert submitted["ns"]["value"]["selected_option"]["value"] == "shop"


def test_messages_over_slack_limits_are_rejected_like_slack_does(console_for):
    from slack_sdk.errors import SlackApiError

    console, _ = console_for("")
    with pytest.raises(SlackApiError) as failure:
        console.ctx.slack.chat_postMessage(channel="C0ALERTS", text="x", blocks=[divider()] * 51)
    assert failure.value.response["error"] == "invalid_blocks"
    assert "51 blocks (Slack allows 50)" in output(console)


def test_as_switches_user_and_group_membership_counts_for_roles(console_for):
    console, _ = console_for("")
    console.act_as(["U0ALICE"])
    assert "You are now U0ALICE (not DevOps; teams: none)" in output(console)
    console.act_as(["U0BOB", "S0SEARCH"])
    assert "You are now U0BOB (not DevOps; teams: search)" in output(console)
    console.act_as(["bob"])
    assert "Usage: as USER [GROUP…]" in output(console)
