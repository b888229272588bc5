"""`python bench/bare_app.py`: the limit deckhand's ack latency is measured against.

A bare slack-bolt App on the same server stack as `python app.py` serves it: Flask with Bolt's
Flask adapter at POST /slack/events, waitress with the same thread count and limits (the very
listeners app.serve builds, bot/foundation/serving.create_listeners: PORT and HEALTH_PORT),
a listener executor of the same size (app.build_bolt's 8 workers), signature verification on,
authorization answered once at start (as app.warm_authorization does). Its listeners only ack():
every slash command, every action_id and every callback_id. Whatever it costs to answer is what
Bolt, Flask and waitress cost on this machine at this moment; deckhand's own share is the rest.

Environment: HOST, PORT, HTTP_THREADS, SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN, SLACK_API_URL
(the same variables BotProcess sets for app.py). GET /healthz on HEALTH_PORT answers 200 so
BotProcess can wait on it.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flask import Flask, request
from slack_bolt import App
from slack_bolt.adapter.flask import SlackRequestHandler
from slack_sdk import WebClient

LISTENER_WORKERS = 8  # app.build_bolt(ctx, workers=8)
ANYTHING = re.compile(".*")


def build() -> Flask:
    client = WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"])
    bolt = App(signing_secret=os.environ["SLACK_SIGNING_SECRET"], client=client, token_verification_enabled=False,
               listener_executor=ThreadPoolExecutor(max_workers=LISTENER_WORKERS, thread_name_prefix="listener"),
               logger=logging.getLogger("bare.bolt"))

    def only_ack(ack):
        ack()

    bolt.command(ANYTHING)(only_ack)
    bolt.action(ANYTHING)(only_ack)
    bolt.view(ANYTHING)(only_ack)
    bolt.event(ANYTHING)(only_ack)

    from slack_bolt.middleware.authorization.single_team_authorization import SingleTeamAuthorization

    result = client.auth_test()
    for middleware in bolt._middleware_list:  # as app.warm_authorization: no auth.test inside a request
        if isinstance(middleware, SingleTeamAuthorization):
            middleware.auth_test_result = result

    web = Flask("bare")
    handler = SlackRequestHandler(bolt)
    web.add_url_rule("/slack/events", "slack_events", lambda: handler.handle(request), methods=["POST"])
    return web


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bot.foundation.serving import create_listeners

    logging.basicConfig(level=logging.WARNING)
    health = Flask("bare-health")
    health.add_url_rule("/healthz", "healthz", lambda: ("ok", 200), methods=["GET"])
    listeners = create_listeners(build(), health, host=os.environ.get("HOST", "127.0.0.1"),
                                 port=int(os.environ["PORT"]), health_port=int(os.environ["HEALTH_PORT"]),
                                 threads=int(os.environ.get("HTTP_THREADS", "8")))
    signal.signal(signal.SIGTERM, lambda *_: listeners.close_main())
    signal.signal(signal.SIGINT, lambda *_: listeners.close_main())
    try:
        listeners.serve()
    except (OSError, ValueError):
        pass
    finally:
        listeners.close(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
