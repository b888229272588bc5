"""The Socket Mode link on its own (bot/foundation/socket_mode.py) against the gateway fake: each way of
failing to connect is named, the backoff is capped and jittered, a half-dead connection is given up,
and want(False) closes what want(True) opened."""
from __future__ import annotations

import pytest
from slack_sdk.socket_mode.response import SocketModeResponse

from bot.foundation.metrics import Metrics
from bot.foundation.socket_mode import SocketModeLink, backoff_delay
from tests.harness import closed_url
from tests.processes import wait_until


def ack(client, req):
    client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))


@pytest.fixture
def links():
    made = []

    def make(app_token, api_url, **kwargs):
        kwargs.setdefault("backoff_base", 0.05)
        kwargs.setdefault("backoff_cap", 0.2)
        link = SocketModeLink(app_token, api_url, ack, Metrics(), **kwargs).start()
        made.append(link)
        return link

    yield make
    for link in made:
        link.stop()


def failures(link) -> float:
    return link.metrics.registry.get_sample_value("deckhand_socket_mode_connect_failures_total")


def test_backoff_doubles_to_its_cap_and_stays_in_the_upper_half():
    assert [backoff_delay(n, 1.0, 30.0, 1.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert [backoff_delay(n, 1.0, 30.0, 0.0) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 15, 15]
    assert backoff_delay(10_000, 1.0, 30.0, 0.5) == 22.5  # no overflow after a very long outage


def test_slack_unreachable_is_named_and_retried(links, caplog):
    link = links("xapp-1-whatever", closed_url())
    link.want(True)
    problem = wait_until(lambda: failures(link) and failures(link) >= 2 and link.problem(), "two failed attempts")
    assert problem.startswith("slack: connecting (attempt ") and "Connection refused" in problem
    assert not link.connected


def test_a_wrong_app_token_is_named(links, slack_fake, socket_gateway):
    link = links("xapp-1-wrong", slack_fake.api_url)
    link.want(True)
    problem = wait_until(lambda: failures(link) and link.problem(), "a failed attempt")
    assert "apps.connections.open answered invalid_auth" in problem
    assert socket_gateway.tickets_issued == 0


def test_a_websocket_that_cannot_be_opened_is_named_and_retried(links, slack_fake, socket_gateway):
    socket_gateway.refuse_handshakes = True
    link = links(socket_gateway.app_token, slack_fake.api_url)
    link.want(True)
    problem = wait_until(lambda: failures(link) and failures(link) >= 2 and link.problem(), "two failed attempts")
    assert f"WebSocket 127.0.0.1:{socket_gateway.port}:" in problem
    socket_gateway.refuse_handshakes = False
    socket_gateway.wait_for_connections(1)
    wait_until(lambda: link.connected, "the link to connect")
    assert link.problem() is None


def test_a_connection_that_stops_answering_is_replaced(links, slack_fake, socket_gateway):
    link = links(socket_gateway.app_token, slack_fake.api_url, ping_interval=0.5, ping_timeout=0.3)
    link.want(True)
    [old] = socket_gateway.wait_for_connections(1)
    socket_gateway.silence(old)
    [new] = socket_gateway.wait_for_connections(2, opened_after=None)[1:]
    assert new.number > old.number
    assert socket_gateway.send_envelope("events_api", {"type": "event_callback"}, connection=new).connection \
        == new.number
    reconnects = link.metrics.registry.get_sample_value("deckhand_socket_mode_reconnects_total",
                                                        {"reason": "dropped"})
    assert reconnects == 1.0


def test_want_false_closes_and_want_true_reopens(links, slack_fake, socket_gateway):
    link = links(socket_gateway.app_token, slack_fake.api_url)
    link.want(True)
    [first] = socket_gateway.wait_for_connections(1)
    link.want(False)
    wait_until(lambda: not first.open, "the connection to close")
    assert first.close_reason.startswith("client closed") and link.problem() is None
    assert link.metrics.registry.get_sample_value("deckhand_socket_mode_connected") == 0.0
    link.want(True)
    socket_gateway.wait_for_connections(1, opened_after=first.opened_at)
    wait_until(lambda: link.metrics.registry.get_sample_value("deckhand_socket_mode_connected") == 1.0,
               "the gauge to say connected")


def test_slack_going_down_after_a_drop_is_retried_until_it_is_back(links, slack_fake, socket_gateway):
    link = links(socket_gateway.app_token, slack_fake.api_url)
    link.want(True)
    [old] = socket_gateway.wait_for_connections(1)
    socket_gateway.outage(status=503, error="service_unavailable")
    socket_gateway.drop("fin")
    problem = wait_until(lambda: failures(link) and failures(link) >= 2 and link.problem(), "failed reconnects")
    assert "apps.connections.open answered service_unavailable (HTTP 503)" in problem and not link.connected
    socket_gateway.outage(False)
    socket_gateway.wait_for_connections(1, opened_after=old.closed_at)
    wait_until(lambda: link.connected, "the link to reconnect")
    assert link.problem() is None
    assert link.metrics.registry.get_sample_value("deckhand_socket_mode_reconnects_total", {"reason": "dropped"}) == 1
