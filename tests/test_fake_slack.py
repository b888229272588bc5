"""Tests for tests/fakes/slack.py: the real slack_sdk clients against the fake Web API, and the
signer checked with slack_sdk's SignatureVerifier and a real Bolt app."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from tests.fakes.slack import SlackFake, SlackSender, SlackSigner

SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token"


@pytest.fixture
def client(slack_fake):
    return WebClient(token=TOKEN, base_url=slack_fake.url + "/api/",
                     retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])


def section(text: str, block_id: str | None = None) -> dict:
    b = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if block_id:
        b["block_id"] = block_id
    return b


# -- Web API -------------------------------------------------------------------------------------


def test_auth_test_and_token_check(slack_fake, client):
    r = client.auth_test()
    assert r["ok"] and r["team_id"] == "T0TEAM" and r["user_id"] and r["bot_id"] and r["url"]
    assert slack_fake.calls_to("auth.test")[0].token == TOKEN

    with pytest.raises(SlackApiError) as e:
        WebClient(token="xoxp-user", base_url=slack_fake.api_url).auth_test()
    assert e.value.response["error"] == "invalid_auth"

    slack_fake.valid_tokens = {"xoxb-only-this"}
    with pytest.raises(SlackApiError):
        client.auth_test()
    assert WebClient(token="xoxb-only-this", base_url=slack_fake.api_url).auth_test()["ok"]


def test_base_url_forms_and_unknown_method(slack_fake):
    for base in (slack_fake.url + "/api/", slack_fake.url + "/api", slack_fake.url + "/"):
        assert WebClient(token=TOKEN, base_url=base).auth_test()["ok"]
    with pytest.raises(SlackApiError) as e:
        WebClient(token=TOKEN, base_url=slack_fake.api_url).api_call("nope.nothing")
    assert e.value.response["error"] == "unknown_method"


def test_post_update_thread_permalink(slack_fake, client):
    blocks = [section("*deploy* started", "b1")]
    r = client.chat_postMessage(channel="C1", text="deploy started", blocks=blocks)
    ts = r["ts"]
    assert r["channel"] == "C1" and r["message"]["blocks"] == blocks and r["message"]["text"] == "deploy started"
    assert len(ts.split(".")[1]) == 6

    reply = client.chat_postMessage(channel="C1", thread_ts=ts, text="step 1 done")
    assert float(reply["ts"]) > float(ts) and reply["message"]["thread_ts"] == ts

    up = client.chat_update(channel="C1", ts=ts, text="deploy finished", blocks=[section("*done*")])
    assert up["ts"] == ts and up["message"]["text"] == "deploy finished"

    msgs = slack_fake.messages("C1")
    assert list(msgs) == [ts]
    assert msgs[ts]["text"] == "deploy finished" and msgs[ts]["blocks"][0]["text"]["text"] == "*done*"
    assert [m["text"] for m in msgs[ts]["replies"]] == ["step 1 done"]
    assert msgs[ts]["reply_count"] == 1

    link = client.chat_getPermalink(channel="C1", message_ts=ts)["permalink"]
    assert link == f"https://example.slack.com/archives/C1/p{ts.replace('.', '')}"

    replies = client.conversations_replies(channel="C1", ts=ts)["messages"]
    assert [m["ts"] for m in replies] == [ts, reply["ts"]]

    with pytest.raises(SlackApiError) as e:
        client.chat_update(channel="C1", ts="1.000001", text="x")
    assert e.value.response["error"] == "message_not_found"

    client.chat_delete(channel="C1", ts=reply["ts"])
    assert slack_fake.messages("C1")[ts]["replies"] == []


def test_form_encoded_bodies_are_decoded(slack_fake):
    c = WebClient(token=TOKEN, base_url=slack_fake.api_url)
    c.api_call("chat.postMessage", params={"channel": "C2", "text": "hi", "blocks": json.dumps([section("x")])})
    call = slack_fake.calls_to("chat.postMessage")[0]
    assert "x-www-form-urlencoded" in call.content_type
    assert call.args["blocks"] == [section("x")] and call.status == 200 and call.response["ok"]


def test_block_and_text_limits(slack_fake, client):
    with pytest.raises(SlackApiError) as e:
        client.chat_postMessage(channel="C1", text="t", blocks=[section(str(i)) for i in range(51)])
    assert e.value.response["error"] == "invalid_blocks"
    assert client.chat_postMessage(channel="C1", text="t", blocks=[section(str(i)) for i in range(50)])["ok"]

    with pytest.raises(SlackApiError) as e:
        client.chat_postMessage(channel="C1", text="t", blocks=[section("x" * 3001)])
    assert e.value.response["error"] == "invalid_blocks"
    assert "json-pointer:/blocks/0/text/text" in e.value.response["response_metadata"]["messages"][0]

    with pytest.raises(SlackApiError) as e:
        client.chat_postMessage(channel="C1", text="x" * 40_001)
    assert e.value.response["error"] == "msg_too_long"

    with pytest.raises(SlackApiError) as e, pytest.warns(UserWarning):
        client.chat_postMessage(channel="C1")
    assert e.value.response["error"] == "no_text"
    assert len(slack_fake.messages("C1")) == 1


def test_channel_not_found(slack_fake, client):
    slack_fake.missing_channels = {"C0GONE"}
    with pytest.raises(SlackApiError) as e:
        client.chat_postMessage(channel="C0GONE", text="hello")
    assert e.value.response["error"] == "channel_not_found"
    assert slack_fake.messages("C0GONE") == {}


def test_injected_429_is_retried_by_handler(slack_fake, client):
    slack_fake.fail("chat.postMessage", status=429, retry_after=0)
    r = client.chat_postMessage(channel="C1", text="after retry")
    assert r["ok"]
    calls = slack_fake.calls_to("chat.postMessage")
    assert [c.status for c in calls] == [429, 200]
    assert calls[0].response == {"ok": False, "error": "ratelimited"}
    assert len(slack_fake.messages("C1")) == 1


def test_injected_errors_and_5xx(slack_fake):
    c = WebClient(token=TOKEN, base_url=slack_fake.api_url)
    slack_fake.fail("chat.postMessage", error="not_in_channel", times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as e:
            c.chat_postMessage(channel="C1", text="x")
        assert e.value.response.status_code == 200 and e.value.response["error"] == "not_in_channel"
    slack_fake.fail("*", status=503)
    with pytest.raises(SlackApiError) as e:
        c.auth_test()
    assert e.value.response.status_code == 503
    assert c.chat_postMessage(channel="C1", text="x")["ok"]


def test_rate_limit_mode_answers_429_for_burst(slack_fake):
    c = WebClient(token=TOKEN, base_url=slack_fake.api_url)  # no retry handler: see the 429s
    slack_fake.rate_limit("chat.postMessage", per_channel_per_second=1, retry_after=0)
    assert c.chat_postMessage(channel="C1", text="1")["ok"]
    for i in range(3):
        with pytest.raises(SlackApiError) as e:
            c.chat_postMessage(channel="C1", text=f"burst {i}")
        assert e.value.response.status_code == 429
        assert e.value.response.headers.get("Retry-After", e.value.response.headers.get("retry-after")) == "0"
    assert c.chat_postMessage(channel="C2", text="other channel")["ok"]
    assert [m["text"] for m in slack_fake.messages("C1").values()] == ["1"]
    assert len(slack_fake.calls_to("chat.postMessage")) == 5
    slack_fake.rate_limit("chat.postMessage", per_channel_per_second=None)
    assert c.chat_postMessage(channel="C1", text="2")["ok"]


def test_views_open_update_hash_and_limits(slack_fake, client):
    modal = {"type": "modal", "callback_id": "pipeline_create", "title": {"type": "plain_text", "text": "Create"},
             "submit": {"type": "plain_text", "text": "Go"},
             "blocks": [{"type": "input", "block_id": "svc", "label": {"type": "plain_text", "text": "Service"},
                         "element": {"type": "plain_text_input", "action_id": "name"}}]}
    v = client.views_open(trigger_id=slack_fake.mint_trigger_id("U1"), view=modal)["view"]
    assert v["id"].startswith("V") and v["hash"] and v["callback_id"] == "pipeline_create"

    v2 = client.views_update(view_id=v["id"], hash=v["hash"], view=dict(modal, private_metadata="m"))["view"]
    assert v2["id"] == v["id"] and v2["hash"] != v["hash"]
    assert slack_fake.views[v["id"]]["private_metadata"] == "m"
    with pytest.raises(SlackApiError) as e:
        client.views_update(view_id=v["id"], hash=v["hash"], view=modal)
    assert e.value.response["error"] == "hash_conflict"

    with pytest.raises(SlackApiError) as e:
        client.views_open(trigger_id=slack_fake.mint_trigger_id("U1"),
                          view=dict(modal, title={"type": "plain_text", "text": "x" * 25}))
    assert e.value.response["error"] == "invalid_arguments"
    with pytest.raises(SlackApiError) as e:
        client.views_open(trigger_id=slack_fake.mint_trigger_id("U1"), view=dict(modal, blocks=[section("b")] * 101))
    assert e.value.response["error"] == "invalid_arguments"

    pushed = client.views_push(trigger_id=slack_fake.mint_trigger_id("U1", v["id"]),
                               view=dict(modal, external_id="ext-1"))["view"]
    updated = client.views_update(external_id="ext-1", view=dict(modal, callback_id="step2"))["view"]
    assert updated["id"] == pushed["id"] and updated["callback_id"] == "step2"
    with pytest.raises(SlackApiError) as e:
        client.views_update(view_id="V0NOPE", view=modal)
    assert e.value.response["error"] == "not_found"

    home = client.views_publish(user_id="U1", view={"type": "home", "blocks": [section("hi")]})["view"]
    assert home["type"] == "home"


def test_users_usergroups_ephemeral_conversations(slack_fake, client):
    slack_fake.usergroups = {"S0PAY": ["U1", "U2"]}
    slack_fake.users = {"U1": {"name": "alice", "real_name": "Alice A", "display_name": "ali", "tz": "Asia/Tokyo"}}
    assert client.usergroups_users_list(usergroup="S0PAY")["users"] == ["U1", "U2"]
    with pytest.raises(SlackApiError) as e:
        client.usergroups_users_list(usergroup="S0NOPE")
    assert e.value.response["error"] == "no_such_subteam"
    u = client.users_info(user="U1")["user"]
    assert (u["profile"]["display_name"], u["real_name"], u["tz"]) == ("ali", "Alice A", "Asia/Tokyo")
    with pytest.raises(SlackApiError) as e:  # nobody by that id in the workspace
        client.users_info(user="U9")
    assert e.value.response["error"] == "user_not_found"
    slack_fake.add_users("U9")
    assert client.users_info(user="U9")["user"]["id"] == "U9"

    r = client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert r["message_ts"]
    assert [e["text"] for e in slack_fake.ephemerals(user="U1")] == ["only you"]
    with pytest.raises(SlackApiError) as e:
        client.conversations_info(channel="C1")  # nothing was ever said there and no test made it exist
    assert e.value.response["error"] == "channel_not_found"
    slack_fake.add_channels("C1")
    assert client.conversations_info(channel="C1")["channel"]["id"] == "C1"


def test_response_url_recording(slack_fake):
    url = slack_fake.response_url()
    resp = WebhookClient(url).send(text="working on it", response_type="ephemeral", replace_original=False)
    assert resp.status_code == 200 and resp.body == "ok"
    assert slack_fake.responses[0]["text"] == "working on it"
    assert slack_fake.responses[0]["response_type"] == "ephemeral"
    assert slack_fake.responses[0]["replace_original"] is False
    assert WebhookClient(slack_fake.url + "/response/unknown").send(text="x").status_code == 404


def test_response_url_replace_original_edits_message(slack_fake, client):
    ts = client.chat_postMessage(channel="C1", text="approve?")["ts"]
    url = slack_fake.response_url(channel="C1", message_ts=ts)
    WebhookClient(url).send(text="approved by <@U2>", replace_original=True)
    assert slack_fake.messages("C1")[ts]["text"] == "approved by <@U2>"


def test_latency_and_wait_for(slack_fake, client):
    slack_fake.latency = 0.05
    t0 = time.monotonic()
    client.auth_test()
    assert time.monotonic() - t0 >= 0.05
    slack_fake.latency = 0

    threading.Thread(target=lambda: client.chat_postMessage(channel="C1", text="async"), daemon=True).start()
    call = slack_fake.wait_for_call("chat.postMessage")
    assert call.args["text"] == "async"
    assert slack_fake.wait_for(lambda f: f.messages("C1"))
    with pytest.raises(AssertionError, match="chat.postMessage"):
        slack_fake.wait_for(lambda: False, timeout=0.05)


# -- signed requests ---------------------------------------------------------------------------------


class _Capture(BaseHTTPRequestHandler):
    received: list = []

    def log_message(self, *a):
        pass

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.received.append((self.path, dict(self.headers.items()), body.decode()))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def capture():
    handler = type("Cap", (_Capture,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.received
    server.shutdown()
    server.server_close()


def _verify(headers: dict, body: str, secret: str = SECRET) -> bool:
    return SignatureVerifier(secret).is_valid_request(body, headers)


def test_signer_signature_valid_forged_stale(slack_fake, capture):
    url, received = capture
    sender = SlackSender(url, SECRET, slack_fake)
    assert SlackSigner is SlackSender

    assert sender.command("/ops", "help").status_code == 200
    path, headers, body = received[-1]
    assert path == "/slack/events"
    assert _verify(headers, body)
    form = {k: v[0] for k, v in parse_qs(body).items()}
    assert form["command"] == "/ops" and form["text"] == "help" and form["user_id"] == "U0DEV"
    assert form["response_url"].startswith(slack_fake.url + "/response/") and form["trigger_id"]
    for key in ("token", "team_id", "team_domain", "channel_id", "channel_name", "user_name", "api_app_id"):
        assert key in form

    assert not _verify(headers, body, secret="wrong-secret")
    sender.raw(body, signature="v0=" + "0" * 64)
    assert not _verify(received[-1][1], body)
    sender.raw(body, timestamp=int(time.time()) - 600)
    assert not _verify(received[-1][1], body)  # stale: outside the 5-minute window
    sender.raw(body, sign=False)
    assert "X-Slack-Signature" not in received[-1][1]

    sender.event({"type": "app_mention", "user": "U1", "text": "hi", "channel": "C1"}, retry_num=1)
    _, headers, body = received[-1]
    assert _verify(headers, body)
    assert headers["X-Slack-Retry-Num"] == "1" and headers["X-Slack-Retry-Reason"] == "http_timeout"
    env = json.loads(body)
    assert env["type"] == "event_callback" and env["event"]["type"] == "app_mention" and env["event_id"]


def test_signer_block_actions_and_view_submission_payloads(slack_fake, client, capture):
    url, received = capture
    sender = SlackSender(url, SECRET, slack_fake)
    blocks = [section("delete svc?", "q"), {"type": "actions", "block_id": "act", "elements": [
        {"type": "button", "action_id": "approve", "value": "req-1", "text": {"type": "plain_text", "text": "OK"}}]}]
    ts = client.chat_postMessage(channel="C1", text="delete?", blocks=blocks)["ts"]
    sender.block_actions("approve", user_id="U2", channel_id="C1", message_ts=ts)
    _, headers, body = received[-1]
    assert _verify(headers, body)
    p = json.loads(parse_qs(body)["payload"][0])
    a = p["actions"][0]
    assert p["type"] == "block_actions" and p["user"]["id"] == "U2" and p["channel"]["id"] == "C1"
    assert (a["action_id"], a["block_id"], a["value"], a["type"]) == ("approve", "act", "req-1", "button")
    assert p["message"]["ts"] == ts and p["message"]["blocks"] == blocks
    assert p["container"] == {"type": "message", "message_ts": ts, "channel_id": "C1", "is_ephemeral": False}

    view = client.views_open(trigger_id=p["trigger_id"], view={
        "type": "modal", "callback_id": "svc_delete", "private_metadata": "meta",
        "title": {"type": "plain_text", "text": "Delete"}, "blocks": [section("sure?")]})["view"]
    sender.view_submission("svc_delete", {"reason": {"text": {"type": "plain_text_input", "value": "unused"}},
                                          "team": {"pick": {"selected_option": {"value": "pay"}}}}, user_id="U2")
    p = json.loads(parse_qs(received[-1][2])["payload"][0])
    assert p["type"] == "view_submission" and p["view"]["id"] == view["id"]
    assert p["view"]["private_metadata"] == "meta" and p["view"]["hash"] == view["hash"]
    assert p["view"]["state"]["values"]["reason"]["text"]["value"] == "unused"
    assert p["view"]["state"]["values"]["team"]["pick"]["type"] == "static_select"
    assert slack_fake.views_for("U2")[0]["id"] == view["id"]

    sender.view_closed("svc_delete", user_id="U2")
    assert json.loads(parse_qs(received[-1][2])["payload"][0])["type"] == "view_closed"


class _QuietWSGIHandler(WSGIRequestHandler):
    def log_message(self, *a):
        pass


def test_signer_against_real_bolt_app(slack_fake):
    from slack_bolt import App
    from slack_bolt.adapter.wsgi import SlackRequestHandler

    app = App(client=WebClient(token=TOKEN, base_url=slack_fake.api_url), signing_secret=SECRET)

    @app.command("/ops")
    def ops(ack, respond, say, command):
        ack()
        respond(f"you said {command['text']}")
        say(channel=command["channel_id"], text="announced")

    server = make_server("127.0.0.1", 0, SlackRequestHandler(app), handler_class=_QuietWSGIHandler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        sender = SlackSender(f"http://127.0.0.1:{server.server_port}", SECRET, slack_fake)
        assert sender.command("/ops", "help", channel_id="C7").status_code == 200
        assert slack_fake.wait_for(lambda: slack_fake.responses)[0]["text"] == "you said help"
        assert [m["text"] for m in slack_fake.wait_for(lambda: slack_fake.messages("C7")).values()] == ["announced"]

        assert sender.raw("command=%2Fops&text=x", signature="v0=" + "0" * 64).status_code == 401
        assert sender.raw("command=%2Fops&text=x", timestamp=int(time.time()) - 600).status_code == 401
        challenge = sender.url_verification("abc123")
        assert challenge.status_code == 200 and challenge.json() == {"challenge": "abc123"}
    finally:
        server.shutdown()
        server.server_close()


def test_fake_as_context_manager():
    with SlackFake(retry_after=0) as fake:
        assert fake.client().auth_test()["ok"]
        fake.clear()
        assert fake.calls == []
