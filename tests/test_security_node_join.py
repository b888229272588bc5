"""The node-join door, attacked through the real POST /hooks/node-join: replays dressed up as new
signatures, forged node names, malformed headers, oversized bodies, and one cluster's secret used
to report for another."""
from __future__ import annotations

import dataclasses
import json

import pytest
import requests

from bot.nodes.reports import sign
from tests.harness import HOOK_SECRET
from tests.nodes.nodes_support import post_report, report

PROD_A_SECRET = "prod-a-own-join-secret-0123456789"


def stored_reports(bot) -> int:
    return bot.ctx.store.query("SELECT COUNT(*) AS n FROM node_reports")[0]["n"]


def test_one_captured_report_cannot_be_replayed_under_respelled_signatures(bot):
    raw = json.dumps(report()).encode()
    ts = int(bot.clock().timestamp())
    signature = sign(HOOK_SECRET, ts, raw)
    assert post_report(bot, raw, timestamp=ts, signature=signature).status_code == 202
    respelled = [signature + "\xa0" * n for n in range(1, 20)]
    respelled += [signature.upper(), "SHA256=" + signature[7:], signature + "\t", signature + "0",
                  signature.replace("sha256=", "sha256= "), signature[:-1]]
    for variant in respelled:
        answer = post_report(bot, raw, timestamp=ts, signature=variant)
        assert answer.status_code == 401, (variant, answer.text)
    assert post_report(bot, raw, timestamp=ts, signature=signature).json()["status"] == "duplicate"
    assert stored_reports(bot) == 1


@pytest.mark.parametrize("node", ["node-7\n", "node-7\r\n", "Node-7", "node-7.", "-node", "node_7", "node 7", "nöde"])
def test_node_names_must_match_in_full(bot, node):
    answer = post_report(bot, report(node=node))
    assert answer.status_code == 400 and "not a valid node name" in answer.json()["error"]
    assert stored_reports(bot) == 0


@pytest.mark.parametrize("timestamp", ["²", "1e9", "١٧٠٠٠٠٠٠٠٠", "0x10", "-5", "1.5", "9" * 40])
def test_a_malformed_timestamp_is_401_not_500(bot, timestamp):
    raw = json.dumps(report()).encode()
    try:  # HTTP header bytes are read as Latin-1: b"\xb2" arrives as "²", which str.isdigit() accepts
        sent = timestamp.encode("latin-1")
    except UnicodeEncodeError:
        sent = timestamp.encode("utf-8")
    answer = requests.post(bot.url + "/hooks/node-join", data=raw, timeout=10, headers={
        "X-Deckhand-Timestamp": sent, "X-Deckhand-Signature": sign(HOOK_SECRET, 0, raw)})
    assert answer.status_code == 401, answer.text
    assert stored_reports(bot) == 0


@pytest.mark.parametrize("signature", ["sha256=" + "é" * 64, "sha256=" + "０" * 64, "sha256=" + "g" * 64, "é"])
def test_a_non_ascii_or_misshapen_signature_is_401_not_500(bot, signature):
    raw = json.dumps(report()).encode()
    ts = int(bot.clock().timestamp())
    answer = requests.post(bot.url + "/hooks/node-join", data=raw, timeout=10, headers={
        "X-Deckhand-Timestamp": str(ts), "X-Deckhand-Signature": signature.encode("utf-8")})
    assert answer.status_code == 401, answer.text


@pytest.mark.parametrize("size", [64 * 1024 + 1, 900 * 1024, 2 * 1024 * 1024])
def test_a_body_over_the_limit_is_413_not_500(bot, size):
    raw = b"x" * size
    answer = post_report(bot, raw)
    assert answer.status_code == 413, answer.text
    assert stored_reports(bot) == 0


def test_a_cluster_with_its_own_secret_takes_reports_only_signed_with_it(bot_factory):
    bot = bot_factory(clusters=("prod-a", "prod-b"))
    bot.ctx.secrets = dataclasses.replace(bot.ctx.secrets, cluster_hook_secrets={"PROD_A": PROD_A_SECRET})
    # prod-a has its own secret: the shared one no longer speaks for it
    shared = post_report(bot, report(cluster="prod-a", node="node-1"), secret=HOOK_SECRET)
    assert shared.status_code == 401 and "DECKHAND_HOOK_SECRET_PROD_A" in shared.json()["error"]
    assert post_report(bot, report(cluster="prod-a", node="node-1"), secret=PROD_A_SECRET).status_code == 202
    # prod-a's secret cannot report for prod-b, which has none of its own
    forged = post_report(bot, report(cluster="prod-b", node="node-2"), secret=PROD_A_SECRET)
    assert forged.status_code == 401 and "DECKHAND_HOOK_SECRET" in forged.json()["error"]
    assert post_report(bot, report(cluster="prod-b", node="node-2"), secret=HOOK_SECRET).status_code == 202
    # a discovery failure names no cluster: either secret may send it
    assert post_report(bot, report(cluster="", node="node-3", phase="discovery"), secret=PROD_A_SECRET).status_code == 202
    rows = bot.ctx.store.query("SELECT cluster, node FROM node_reports ORDER BY id")
    assert [(r["cluster"], r["node"]) for r in rows] == [("prod-a", "node-1"), ("prod-b", "node-2"), ("", "node-3")]


def test_per_cluster_secrets_come_from_the_environment():
    from bot.foundation.config import Secrets, hook_secret_env

    secrets = Secrets.from_env({"DECKHAND_HOOK_SECRET_PROD_A": "a" * 20, "DECKHAND_HOOK_SECRET_EDGE_1_EU": "b" * 20,
                                "DECKHAND_HOOK_SECRET": "c" * 20})
    assert hook_secret_env("edge-1.eu") == "DECKHAND_HOOK_SECRET_EDGE_1_EU"
    assert secrets.cluster_hook_secret("prod-a") == "a" * 20 and secrets.cluster_hook_secret("edge-1.eu") == "b" * 20
    assert secrets.cluster_hook_secret("prod-b") is None
    assert "a" * 20 in secrets.values() and "a" * 20 not in repr(secrets)
