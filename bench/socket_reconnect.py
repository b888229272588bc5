"""Socket Mode reconnect time after an abrupt drop: Slack's side ends the TCP connection without a
WebSocket close frame, by a reset (RST) or an orderly FIN, and we time how long until a new connection
has said hello on the gateway fake (tests/fakes/slack/socket_mode.py).

Three clients, each with its library defaults: deckhand's link (bot/foundation/socket_mode.py, the
websocket-client adapter with its own reconnecting), Bolt's built-in SocketModeHandler, and Bolt's
websocket-client SocketModeHandler. The target is deckhand's; the other rows are why it is built so.
"""
from __future__ import annotations

import logging

from bench.common import Options, Result, benchmark, log

TARGET_S = 3.0
GIVE_UP_S = 120.0


def _quiet() -> logging.Logger:
    quiet = logging.getLogger("bench.socket_reconnect.quiet")
    quiet.setLevel(logging.CRITICAL)
    return quiet


def _deckhand(fake, gateway):
    from bot.foundation.metrics import Metrics
    from bot.foundation.socket_mode import SocketModeLink
    from slack_sdk.socket_mode.response import SocketModeResponse

    def ack(client, req):
        client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))

    link = SocketModeLink(gateway.app_token, fake.api_url, ack, Metrics()).start()
    link.want(True)
    return link.stop


def _bolt(kind: str):
    def start(fake, gateway):
        from slack_bolt import App
        from slack_sdk import WebClient

        if kind == "builtin":
            from slack_bolt.adapter.socket_mode.builtin import SocketModeHandler
        else:
            from slack_bolt.adapter.socket_mode.websocket_client import SocketModeHandler
        web = WebClient(token="xoxb-bench", base_url=fake.api_url)
        app = App(client=web, token_verification_enabled=False, logger=_quiet())
        handler = SocketModeHandler(app, gateway.app_token, web_client=web, logger=_quiet())
        handler.connect()
        return handler.close
    return start


CLIENTS = {"deckhand link (websocket-client)": _deckhand, "Bolt built-in handler": _bolt("builtin"),
           "Bolt websocket-client handler": _bolt("websocket_client")}


def measure(start, how: str) -> float | None:
    from tests.fakes.slack import SlackFake, SocketModeGateway

    fake = SlackFake().start()
    gateway = SocketModeGateway(fake).start()
    stop = start(fake, gateway)
    try:
        gateway.wait_for_connections(1)
        dropped = gateway.drop(how)
        try:
            [fresh] = gateway.wait_for_connections(1, opened_after=dropped.closed_at, timeout=GIVE_UP_S)
        except AssertionError:
            return None
        return fresh.opened_at - dropped.closed_at
    finally:
        stop()
        gateway.stop()
        fake.stop()


@benchmark("socket-reconnect", order=60)
def run(opts: Options) -> list[Result]:
    rows = []
    for client, start in CLIENTS.items():
        for how in ("rst", "fin"):
            log(f"socket-reconnect: {client}, drop by {how.upper()}")
            seconds = measure(start, how)
            ours = client.startswith("deckhand")
            rows.append(Result(f"Socket Mode reconnect after {how.upper()}: {client}", seconds, "s",
                               target=f"< {TARGET_S:.0f} s" if ours else None,
                               met=(seconds is not None and seconds < TARGET_S) if ours else None,
                               details={"gave_up_after_s": GIVE_UP_S} if seconds is None else {}))
    return rows


if __name__ == "__main__":
    for row in run(Options()):
        value = "none within %.0f s" % GIVE_UP_S if row.value is None else f"{row.value * 1000:.0f} ms"
        print(f"{row.name}: {value}")
