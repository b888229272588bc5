"""Buttons on node-join alerts (no slash command of its own): Acknowledge, Silence 4h/24h per node or cluster.

Registering also wires the alert renderer (blocks/nodes.py) into the core, which must not
import blocks/, and the outbox hooks that learn each alert's Slack ts.
"""
from __future__ import annotations

import re

from blocks import nodes as node_blocks
from bot.nodes import alerts
from bot.foundation.config import parse_duration
from bot.foundation.context import Context
from commands.kit import action_value, deny, safe_respond, user_of

SILENCE_ACTION = re.compile(rf"^{node_blocks.SILENCE}_(node|cluster)_(4h|24h)$")


def register(app, ctx: Context) -> None:
    alerts.attach(ctx, renderer=node_blocks)

    @app.action(node_blocks.ACK)
    def acknowledge(ack, body, respond):
        ack()
        user, target = user_of(body), action_value(body)
        decision = ctx.access.may(user, "alert.ack")
        if not decision:
            return deny(ctx, respond, user, "alert.ack", decision, target=target)
        count, already_by = alerts.acknowledge(ctx, target, user)
        safe_respond(respond, response_type="ephemeral", replace_original=False,
                     **node_blocks.acknowledged_notice(count, already_by))

    @app.action(SILENCE_ACTION)
    def silence(ack, body, respond):
        ack()
        user, target = user_of(body), action_value(body)
        scope, duration = SILENCE_ACTION.match(body["actions"][0]["action_id"]).groups()
        incidents = alerts.incidents_of(ctx, target)
        where = incidents[0]["cluster"] if incidents else None
        decision = ctx.access.may(user, "alert.silence")
        if not decision:
            return deny(ctx, respond, user, "alert.silence", decision, target=target, cluster=where)
        info = alerts.silence(ctx, target, user, scope, parse_duration(duration))
        if info is None:
            return safe_respond(respond, response_type="ephemeral", replace_original=False,
                                text=":grey_question: That alert is no longer in deckhand's database, so there is "
                                     "nothing to silence. The next scan posts anything still wrong.")
        safe_respond(respond, response_type="ephemeral", replace_original=False, **node_blocks.silenced_notice(info))
