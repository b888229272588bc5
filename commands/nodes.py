"""`/nodes [cluster] [node] | wave` (answered privately, read from bot/nodes/history.py) and the buttons on
node-join alerts: Acknowledge, Silence 4h/24h per node or cluster, and the per-node menu in a storm's
reason reply (the same two actions for one node).

Registering also wires the alert renderer (blocks/nodes.py) into the core, which must not
import blocks/, and the outbox hooks that learn each alert's Slack ts.
"""
from __future__ import annotations

import logging
import re

from slack_sdk.errors import SlackApiError

from blocks import node_history as history_blocks
from blocks import nodes as node_blocks
from blocks.common import escape
from bot.foundation.config import parse_duration
from bot.foundation.context import Context
from bot.foundation.store import iso
from bot.nodes import alerts, history
from commands.kit import action_value, deny, safe_respond, usage_text, user_of, words
from commands.waves import open_planner

log = logging.getLogger("deckhand.commands.nodes")

SILENCE_ACTION = re.compile(rf"^{node_blocks.SILENCE}_(node|cluster)_(4h|24h)$")


def register(app, ctx: Context) -> None:
    alerts.attach(ctx, renderer=node_blocks)
    register_command(app, ctx)

    @app.action(node_blocks.ACK)
    def acknowledge(ack, body, respond):
        ack()
        _acknowledge(ctx, body, respond, action_value(body))

    @app.action(SILENCE_ACTION)
    def silence(ack, body, respond):
        ack()
        scope, duration = SILENCE_ACTION.match(body["actions"][0]["action_id"]).groups()
        _silence(ctx, body, respond, action_value(body), scope, duration)

    @app.action(node_blocks.NODE_MENU)
    def node_menu(ack, body, respond):
        """A node's menu in a storm's reason reply: "<choice>:<incident id>"."""
        ack()
        choice, _, target = action_value(body).partition(":")
        if choice == "ack":
            return _acknowledge(ctx, body, respond, target)
        chosen = SILENCE_ACTION.match(f"{node_blocks.SILENCE}_{choice[len('silence_'):]}")
        if not choice.startswith("silence_") or chosen is None or chosen.group(1) != "node":
            return safe_respond(respond, response_type="ephemeral", replace_original=False,
                                text=":grey_question: deckhand does not know that menu choice; "
                                     "use the buttons on the cluster's message instead.")
        _silence(ctx, body, respond, target, "node", chosen.group(2))


def _acknowledge(ctx: Context, body: dict, respond, target: str) -> None:
    user = user_of(body)
    decision = ctx.access.may(user, "alert.ack")
    if not decision:
        return deny(ctx, respond, user, "alert.ack", decision, target=target)
    count, already_by = alerts.acknowledge(ctx, target, user)
    safe_respond(respond, response_type="ephemeral", replace_original=False,
                 **node_blocks.acknowledged_notice(count, already_by))


def _silence(ctx: Context, body: dict, respond, target: str, scope: str, duration: str) -> None:
    user = user_of(body)
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


# -- /nodes [cluster] [node] | wave --------------------------------------------------------------------
COMMAND = "/nodes"
SUMMARY = "nodes per cluster, open incidents, every join attempt; maintenance waves"
USAGE = ["[cluster] [node]", "wave"]
RESERVED = ("help", "wave")  # first words that are subcommands, never a cluster or node name


def register_command(app, ctx: Context) -> None:
    @app.command(COMMAND)
    def nodes_command(ack, body, respond, client):
        ack()
        args = words(body.get("text"))
        clusters = [c.name for c in ctx.settings.clusters]
        answer = lambda payload: respond(response_type="ephemeral", **payload)  # noqa: E731
        if not args:
            return answer(history_blocks.overview_message(history.overview(ctx), iso(ctx.now())))
        first = args[0]
        if first.lower() == "help" and len(args) == 1:
            return answer({"text": usage_text(COMMAND, USAGE)})
        if first.lower() == "wave" and len(args) == 1:
            return open_planner(ctx, client, body, respond)
        if first.lower() == "wave":
            return answer({"text": usage_text(COMMAND, USAGE, history_blocks.waves_text())})
        if len(args) > 2:
            return answer({"text": usage_text(COMMAND, USAGE, f"I don't know `{COMMAND} {escape(' '.join(args))}`.")})
        if len(args) == 2:
            if first not in clusters:
                known = ", ".join(f"`{escape(c)}`" for c in clusters)
                return answer({"text": usage_text(COMMAND, USAGE, f"`{escape(first)}` is not a cluster (clusters: "
                                                                  f"{known}).")})
            return show_node(ctx, client, answer, first, args[1])
        if first in clusters:
            view = history.cluster_view(ctx, first)
            with_permalinks(ctx, client, view["incidents"][:history_blocks.SHOWN_INCIDENTS])
            return answer(history_blocks.cluster_message(view))
        if not history.is_node_name(first):
            known = ", ".join(f"`{escape(c)}`" for c in clusters)
            return answer({"text": usage_text(COMMAND, USAGE, f"`{escape(first[:80])}` is neither a cluster "
                                                              f"({known}) nor a node name.")})
        found, down = history.clusters_knowing(ctx, first)
        if len(found) > 1:
            return answer({"text": history_blocks.ambiguous_text(first, found)})
        if not found:
            return answer({"text": history_blocks.unknown_node_text(first, clusters, down)})
        show_node(ctx, client, answer, found[0], first)


def show_node(ctx: Context, client, answer, cluster: str, node: str) -> None:
    if not history.is_node_name(node):
        return answer({"text": usage_text(COMMAND, USAGE, f"`{escape(node[:80])}` is not a node name (a lowercase "
                                                          "DNS name, e.g. `worker-3.dc1`).")})
    view = history.node_view(ctx, cluster, node)
    with_permalinks(ctx, client, view["incidents"][:history_blocks.SHOWN_INCIDENTS])
    answer(history_blocks.node_message(view))


def with_permalinks(ctx: Context, client, incidents: list[dict]) -> None:
    """Link each incident to its alert message. chat.getPermalink is the documented way (a link built by
    hand needs the workspace's domain); a failure only leaves the link out."""
    for item in incidents:
        if not (item.get("channel") and item.get("ts")):
            continue
        try:
            item["permalink"] = client.chat_getPermalink(channel=item["channel"], message_ts=item["ts"])["permalink"]
        except (SlackApiError, KeyError, OSError) as exc:  # OSError: Slack unreachable
            log.info("chat.getPermalink for incident %s failed: %s", item["id"], exc)
