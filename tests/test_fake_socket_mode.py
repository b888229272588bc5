"""Fidelity of the Socket Mode gateway fake: slack_sdk's own clients and Bolt's SocketModeHandler
connect to it, get hello, answer envelopes, follow disconnect frames and notice abrupt drops."""
from __future__ import annotations

import logging

import pytest
import websocket
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.response import SocketModeResponse

from tests.fakes.slack import APP_TOKEN, AckTimeout
from tests.processes import wait_until

QUIET = logging.getLogger("fidelity")
QUIET.setLevel(logging.CRITICAL)


def web(slack_fake, token="xoxb-test-token"):
    return WebClient(token=token, base_url=slack_fake.api_url)


def client_of(kind, slack_fake, **kwargs):
    if kind == "builtin":
        from slack_sdk.socket_mode.builtin import SocketModeClient
    else:
        from slack_sdk.socket_mode.websocket_client import SocketModeClient
    return SocketModeClient(app_token=APP_TOKEN, web_client=web(slack_fake), logger=QUIET, **kwargs)


def test_connections_open_wants_the_app_token_and_tickets_are_single_use(slack_fake, socket_gateway):
    with pytest.raises(SlackApiError) as bot_token:
        web(slack_fake).apps_connections_open(app_token="xoxb-test-token")
    assert bot_token.value.response["error"] == "not_allowed_token_type"
    with pytest.raises(SlackApiError) as wrong:
        web(slack_fake).apps_connections_open(app_token="xapp-1-other")
    assert wrong.value.response["error"] == "invalid_auth"
    url = web(slack_fake).apps_connections_open(app_token=APP_TOKEN)["url"]
    assert url.startswith(f"ws://127.0.0.1:{socket_gateway.port}/link/?ticket=")
    first = websocket.create_connection(url, timeout=5)
    assert first.recv().startswith('{"type": "hello"')
    with pytest.raises(websocket.WebSocketBadStatusException) as reused:
        websocket.create_connection(url, timeout=5)
    assert reused.value.status_code == 401
    first.close()


def test_outage_switch_fails_connections_open_until_lifted(slack_fake, socket_gateway):
    socket_gateway.outage()
    with pytest.raises(SlackApiError) as failed:
        web(slack_fake).apps_connections_open(app_token=APP_TOKEN)
    assert failed.value.response.status_code == 500 and failed.value.response["error"] == "internal_error"
    socket_gateway.outage(False)
    assert web(slack_fake).apps_connections_open(app_token=APP_TOKEN)["ok"]


@pytest.mark.parametrize("kind", ["builtin", "websocket_client"])
def test_slack_sdk_clients_get_hello_answer_envelopes_and_follow_refresh(kind, slack_fake, socket_gateway):
    client = client_of(kind, slack_fake)
    hellos = []
    client.message_listeners.append(lambda c, message, raw: message.get("type") == "hello" and hellos.append(message))

    def listener(c, req):
        payload = {"text": f"got {req.payload['command']}"} if req.type == "slash_commands" else None
        c.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id, payload=payload))

    client.socket_mode_request_listeners.append(listener)
    try:
        client.connect()
        [first] = socket_gateway.wait_for_connections(1)
        wait_until(lambda: hellos, "hello")
        assert hellos[0]["connection_info"]["app_id"] == "A0APP"
        ack = socket_gateway.send_envelope("slash_commands", {"command": "/ops", "text": "help"})
        assert ack.payload == {"text": "got /ops"} and ack.connection == first.number
        event = socket_gateway.send_envelope("events_api", {"type": "event_callback", "event": {"type": "x"}})
        assert event.payload is None

        socket_gateway.disconnect("refresh_requested")
        [second] = socket_gateway.wait_for_connections(1, opened_after=first.opened_at)
        assert not first.open and second.number > first.number
        assert socket_gateway.send_envelope("slash_commands", {"command": "/canary", "text": ""}).connection \
            == second.number
        assert socket_gateway.problems == []
    finally:
        client.close()
    wait_until(lambda: not socket_gateway.connections(), "the client's close to reach the gateway")
    assert [c.close_reason for c in socket_gateway.connections(include_closed=True)][-1].startswith("client closed")


def test_an_envelope_nobody_acks_times_out(slack_fake, socket_gateway):
    client = client_of("websocket_client", slack_fake)
    try:
        client.connect()
        socket_gateway.wait_for_connections(1)
        with pytest.raises(AckTimeout):
            socket_gateway.send_envelope("events_api", {"type": "event_callback", "event": {}}, timeout=0.3)
    finally:
        client.close()


def test_payload_on_an_envelope_that_accepts_none_is_recorded(slack_fake, socket_gateway):
    client = client_of("builtin", slack_fake)
    client.socket_mode_request_listeners.append(lambda c, req: c.send_socket_mode_response(
        SocketModeResponse(envelope_id=req.envelope_id, payload={"text": "nope"})))
    try:
        client.connect()
        socket_gateway.wait_for_connections(1)
        socket_gateway.send_envelope("interactive", {"type": "block_actions"})
        assert socket_gateway.problems and "does not accept" in socket_gateway.problems[0]
    finally:
        client.close()


@pytest.mark.parametrize("how", ["rst", "fin"])
def test_abrupt_drops_end_the_connection_without_a_close_frame(how, slack_fake, socket_gateway):
    ws = websocket.create_connection(web(slack_fake).apps_connections_open(app_token=APP_TOKEN)["url"], timeout=5)
    try:
        ws.recv()  # hello
        [conn] = socket_gateway.wait_for_connections(1)  # listed just after its hello was sent
        socket_gateway.drop(how, conn)
        assert not conn.open
        error = ConnectionResetError if how == "rst" else websocket.WebSocketConnectionClosedException
        with pytest.raises((error, websocket.WebSocketConnectionClosedException)):
            ws.recv()
    finally:
        ws.close()


def test_bolt_socket_mode_handler_acks_commands_and_modal_errors(slack_fake, socket_gateway):
    from slack_bolt import App
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    app = App(client=web(slack_fake, "xoxb-bolt"), token_verification_enabled=False, logger=QUIET)

    @app.command("/ops")
    def ops(ack, command):
        ack(f"ops {command['text']}")

    @app.view("form")
    def form(ack):
        ack(response_action="errors", errors={"name": "Pick another name"})

    handler = SocketModeHandler(app, APP_TOKEN, web_client=web(slack_fake, "xoxb-bolt"), logger=QUIET)
    handler.connect()
    try:
        socket_gateway.wait_for_connections(1)
        ack = socket_gateway.send_envelope("slash_commands", {"command": "/ops", "text": "help", "user_id": "U1",
                                                              "team_id": "T0TEAM", "channel_id": "C1"})
        assert ack.payload == {"text": "ops help"}
        ack = socket_gateway.send_envelope("interactive", {
            "type": "view_submission", "team": {"id": "T0TEAM"}, "user": {"id": "U1"},
            "view": {"id": "V1", "type": "modal", "callback_id": "form", "state": {"values": {}}}})
        assert ack.payload == {"response_action": "errors", "errors": {"name": "Pick another name"}}
    finally:
        handler.close()
    assert socket_gateway.problems == []


def test_gateway_spreads_envelopes_over_every_open_connection(slack_fake, socket_gateway):
    clients = [client_of("builtin", slack_fake) for _ in range(2)]
    for client in clients:
        client.socket_mode_request_listeners.append(
            lambda c, req: c.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id)))
    try:
        for client in clients:
            client.connect()
        socket_gateway.wait_for_connections(2)
        seen = {socket_gateway.send_envelope("events_api", {"type": "event_callback"}).connection for _ in range(4)}
        assert len(seen) == 2
    finally:
        for client in clients:
            client.close()
    wait_until(lambda: not socket_gateway.connections(), "both clients' close to reach the gateway")
