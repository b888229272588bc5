"""Fidelity of the Slack fake: each rule of the real Slack that deckhand can trip, with the real slack_sdk
clients against the fake, expecting Slack's own error code. Time moves on the fake's injectable clock."""
from __future__ import annotations

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from tests.fakes.slack import validate_message_blocks, validate_view

TOKEN = "xoxb-test-token"
MODAL = {"type": "modal", "callback_id": "c", "title": {"type": "plain_text", "text": "Title"},
         "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}]}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(slack_fake):
    slack_fake.clock = Clock()
    return slack_fake.clock


@pytest.fixture
def client(slack_fake):
    return WebClient(token=TOKEN, base_url=slack_fake.api_url)


def error_of(call, **kwargs) -> str:
    with pytest.raises(SlackApiError) as err:
        call(**kwargs)
    return err.value.response["error"]


# -- trigger_id ----------------------------------------------------------------------------------
def test_a_trigger_id_is_exchanged_once_within_three_seconds(slack_fake, client, clock):
    assert error_of(client.views_open, trigger_id="12345.98765.abcd2358fdea", view=MODAL) == "invalid_trigger_id"
    trigger = slack_fake.mint_trigger_id("U1")
    clock.now += 2.9
    client.views_open(trigger_id=trigger, view=MODAL)
    assert error_of(client.views_open, trigger_id=trigger, view=MODAL) == "exchanged_trigger_id"
    late = slack_fake.mint_trigger_id("U1")
    clock.now += 3.1
    assert error_of(client.views_open, trigger_id=late, view=MODAL) == "expired_trigger_id"


def test_views_push_needs_an_open_modal_and_stops_at_three(slack_fake, client, clock):
    assert error_of(client.views_push, trigger_id=slack_fake.mint_trigger_id("U1"), view=MODAL) == "not_found"
    root = client.views_open(trigger_id=slack_fake.mint_trigger_id("U1"), view=MODAL)["view"]
    second = client.views_push(trigger_id=slack_fake.mint_trigger_id("U1", root["id"]), view=MODAL)["view"]
    third = client.views_push(trigger_id=slack_fake.mint_trigger_id("U1", second["id"]), view=MODAL)["view"]
    assert third["root_view_id"] == root["id"] and third["previous_view_id"] == second["id"]
    assert error_of(client.views_push, trigger_id=slack_fake.mint_trigger_id("U1", third["id"]),
                    view=MODAL) == "push_limit_reached"


# -- channels and users ----------------------------------------------------------------------------
def test_the_bot_posts_only_where_it_is_a_member(slack_fake, client):
    slack_fake.join("C0OPS")
    client.chat_postMessage(channel="C0OPS", text="hi")
    assert error_of(client.chat_postMessage, channel="C0ELSEWHERE", text="hi") == "not_in_channel"
    assert error_of(client.chat_postEphemeral, channel="C0ELSEWHERE", user="U1", text="hi") == "not_in_channel"
    assert error_of(client.conversations_history, channel="C0ELSEWHERE") == "not_in_channel"
    slack_fake.add_users("U1")
    assert client.chat_postMessage(channel="U1", text="a DM is always open")["channel"] == "D1"
    slack_fake.leave("C0OPS")
    assert error_of(client.chat_postMessage, channel="C0OPS", text="hi") == "not_in_channel"


def test_a_user_id_names_the_dm_only_for_chat_post_message(slack_fake, client):
    slack_fake.add_users("U1")
    posted = client.chat_postMessage(channel="U1", text="hello")
    assert posted["channel"] == "D1"
    assert error_of(client.chat_update, channel="U1", ts=posted["ts"], text="edited") == "channel_not_found"
    assert error_of(client.conversations_history, channel="U1") == "channel_not_found"
    client.chat_update(channel="D1", ts=posted["ts"], text="edited")  # the D... id the post answered with


def test_unknown_users_and_channels_are_not_found(slack_fake, client):
    assert error_of(client.users_info, user="U0NOBODY") == "user_not_found"
    assert error_of(client.conversations_info, channel="C0NOWHERE") == "channel_not_found"
    assert error_of(client.conversations_open, users="U0NOBODY") == "user_not_found"
    slack_fake.add_users("U1")
    slack_fake.join("C0OPS")
    assert client.users_info(user="U1")["user"]["id"] == "U1"
    info = client.conversations_info(channel="C0OPS")["channel"]
    assert info["is_member"] is True
    slack_fake.add_channels("C0OTHER")
    assert client.conversations_info(channel="C0OTHER")["channel"]["is_member"] is False


# -- response_url -----------------------------------------------------------------------------------
def test_a_response_url_takes_five_posts_within_thirty_minutes(slack_fake, clock):
    url = slack_fake.response_url(channel="C1", user="U1")
    for n in range(5):
        assert WebhookClient(url).send(text=f"update {n}").status_code == 200
    sixth = WebhookClient(url).send(text="one too many")
    assert (sixth.status_code, sixth.body) == (404, "used_url")
    fresh = slack_fake.response_url(channel="C1", user="U1")
    clock.now += 30 * 60 + 1
    late = WebhookClient(fresh).send(text="too late")
    assert (late.status_code, late.body) == (404, "expired_url")
    assert [r["text"] for r in slack_fake.responses] == [f"update {n}" for n in range(5)]


# -- Block Kit --------------------------------------------------------------------------------------
def plain(text: str) -> dict:
    return {"type": "plain_text", "text": text}


def option(text: str, value: str, kind: str = "plain_text") -> dict:
    return {"text": {"type": kind, "text": text}, "value": value}


def errors_at(blocks: list) -> list[str]:
    return [e.split("[json-pointer:")[1].rstrip("]") for e in validate_message_blocks(blocks)]


@pytest.mark.parametrize("block, where", [
    ({"type": "section", "text": {"type": "mrkdwn", "text": ""}}, "/blocks/0/text/text"),
    ({"type": "header", "text": plain("")}, "/blocks/0/text/text"),
    ({"type": "actions", "elements": [{"type": "button", "text": plain(""), "action_id": "a"}]},
     "/blocks/0/elements/0/text/text"),
    ({"type": "context", "elements": [{"type": "mrkdwn", "text": ""}]}, "/blocks/0/elements/0/text"),
])
def test_texts_must_not_be_empty(block, where):
    assert where in errors_at([block])


@pytest.mark.parametrize("kind, limit", [("overflow", 5), ("radio_buttons", 10), ("checkboxes", 10),
                                         ("static_select", 100)])
def test_each_element_has_its_own_option_limit(kind, limit):
    def element(n: int) -> dict:
        return {"type": "actions", "elements": [{"type": kind, "action_id": "a",
                                                 "options": [option(f"o{i}", str(i)) for i in range(n)]}]}
    assert errors_at([element(limit)]) == []
    assert errors_at([element(limit + 1)]) == ["/blocks/0/elements/0/options"]


def test_option_text_is_plain_text_in_selects_and_overflows_but_may_be_mrkdwn_in_radio_buttons():
    mrkdwn = [option("*bold*", "1", "mrkdwn")]
    assert errors_at([{"type": "actions", "elements": [{"type": "static_select", "action_id": "a",
                                                        "options": mrkdwn}]}]) == ["/blocks/0/elements/0/options/0/text/type"]
    assert errors_at([{"type": "actions", "elements": [{"type": "radio_buttons", "action_id": "a",
                                                        "options": mrkdwn}]}]) == []


def test_initial_option_must_be_one_of_the_options():
    options = [option("A", "a"), option("B", "b")]
    select = {"type": "static_select", "action_id": "s", "options": options, "initial_option": option("C", "c")}
    assert errors_at([{"type": "actions", "elements": [select]}]) == ["/blocks/0/elements/0/initial_option"]
    checkboxes = {"type": "checkboxes", "action_id": "c", "options": options, "initial_options": [option("A", "a")]}
    assert errors_at([{"type": "actions", "elements": [checkboxes]}]) == []


def test_confirm_dialog_placeholder_and_hint_limits():
    confirm = {"title": plain("t" * 101), "text": plain("x" * 301), "confirm": plain("c" * 31), "deny": plain("d" * 31)}
    button = {"type": "button", "text": plain("Delete"), "action_id": "a", "confirm": confirm}
    assert errors_at([{"type": "actions", "elements": [button]}]) == [
        f"/blocks/0/elements/0/confirm/{f}/text" for f in ("title", "text", "confirm", "deny")]
    view = {"type": "modal", "title": plain("T"), "submit": plain("Go"), "blocks": [
        {"type": "input", "label": plain("Name"), "hint": plain("h" * 2001),
         "element": {"type": "plain_text_input", "action_id": "n", "placeholder": plain("p" * 151)}}]}
    assert [e.split("[json-pointer:")[1].rstrip("]") for e in validate_view(view)] == [
        "/view/blocks/0/hint/text", "/view/blocks/0/element/placeholder/text"]


def test_an_input_block_takes_only_input_elements(client, slack_fake):
    view = {"type": "modal", "title": plain("T"), "submit": plain("Go"), "blocks": [
        {"type": "input", "label": plain("Pick"), "element": {"type": "button", "text": plain("No"), "action_id": "b"}}]}
    assert any("/view/blocks/0/element/type" in e for e in validate_view(view))
    assert error_of(client.views_open, trigger_id=slack_fake.mint_trigger_id("U1"), view=view) == "invalid_arguments"
