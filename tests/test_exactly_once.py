"""Exactly once, for every state-changing action: 20 signed requests at once, one effect.

Each case sends 10 distinct presses (different people where the action allows more than one; a
double click by the same person otherwise) and, beside each, Slack's retry of it: the same bytes
with `X-Slack-Retry-Num: 1`. All 20 leave together from a barrier. Then:

- one effect: one pull request / one write of each kind on the Kubernetes fake / one state change,
  and one audit row of the winning kind;
- each retry pair ran once: the middleware dropped the other copy (200, no listener, no side
  effect), so nothing was done or said twice for it;
- everyone else was told what happened (an ephemeral, a response_url reply or the modal's own
  errors), never silence and never the generic "error id" message.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs

import pytest
import requests

from tests.fakes.slack import SlackSender
from tests.harness import DEVOPS, DEVOPS2, OUTSIDER, PAY_DEV, PAY_DEV2, SIGNING_SECRET
from tests.canary.test_canary_fixtures import fast  # noqa: F401 - fixture, asked for by name below
from tests.deletion.test_service_world import mesh_prometheus  # noqa: F401 - fixture, asked for by name below

PRESSES = 10  # distinct presses; each is also retried by Slack, so 20 requests
MORE_DEVOPS = [f"U0DEVOPS{n}" for n in range(3, 7)]
MORE_PAY = [f"U0PAYDEV{n}" for n in range(3, 7)]
DEVOPS_USERS = [DEVOPS, DEVOPS2, *MORE_DEVOPS]
PAY_USERS = [PAY_DEV, PAY_DEV2, *MORE_PAY]
# More people in each role, so two, three... of them can press the same button at once.
PEOPLE = {"roles": {"devops": DEVOPS_USERS},
          "teams": {"payments": {"members": PAY_USERS, "channel": "C0PAY"}}}
RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
UNHANDLED = ("error id", "Something went wrong", "Traceback", "unexpected error")


class _Capture(SlackSender):
    """Builds exactly the body Slack would send and returns it unsent, so it can be sent twice."""

    def _send(self, body, content_type, retry_num, retry_reason, headers):  # noqa: ARG002
        return body


@dataclass
class Press:
    user: str
    body: str
    response_url: str | None = None
    answers: list[requests.Response] = field(default_factory=list)

    @classmethod
    def of(cls, user: str, body: str) -> "Press":
        payload = json.loads(parse_qs(body)["payload"][0])
        return cls(user=user, body=body, response_url=payload.get("response_url"))


@dataclass
class Case:
    bot: Any
    press: Callable[[_Capture, str], str]   # (capture sender, user) -> the signed body
    users: list[str]                        # who presses, in order (repeats are double clicks)
    effect: Callable[[], str]               # asserts one effect; returns the winner's user id


def storm(case: Case) -> list[Press]:
    """Send every press and its retry at once; wait until every listener has finished."""
    bot = case.bot
    capture = _Capture(bot.url, SIGNING_SECRET, bot.slack)
    assert len(case.users) >= PRESSES
    presses = [Press.of(user, case.press(capture, user)) for user in case.users[:PRESSES]]
    sends = [(p, False) for p in presses] + [(p, True) for p in presses]
    barrier = threading.Barrier(len(sends))
    lock = threading.Lock()

    def send(press: Press, retry: bool) -> None:
        sender = SlackSender(bot.url, SIGNING_SECRET, bot.slack)  # a session per thread
        barrier.wait()
        answer = sender.raw(press.body, headers=RETRY if retry else None)
        with lock:
            press.answers.append(answer)

    threads = [threading.Thread(target=send, args=s) for s in sends]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bot.ctx.extras["listener_executor"].shutdown(wait=True)  # every delivered press fully handled
    bot.flush()
    return presses


def duplicates_dropped(bot) -> float:
    """Retries dropped by the delivery-key middleware, plus those signed in the same second as their
    original: byte-for-byte the same signed request, which the Slack door drops as a replay first."""
    names = ("deckhand_requests", "deckhand_refused_requests")
    return sum(s.value for m in bot.ctx.metrics.registry.collect() if m.name in names
               for s in m.samples if (s.name == "deckhand_requests_total" and s.labels.get("outcome") == "duplicate")
               or (s.name == "deckhand_refused_requests_total" and s.labels.get("reason") == "replay"))


def told(bot, press: Press) -> list[str]:
    """What this press's user was told: replies to its response_url, its ack's errors, ephemerals."""
    said = [r.get("text") or json.dumps(r.get("blocks")) for r in bot.slack.responses_to(press.response_url)] \
        if press.response_url else []
    for answer in press.answers:
        if answer.text:
            said.append(answer.text)
    return said


def told_by_slack_api(bot, user: str) -> list[str]:
    """chat.postEphemeral and DMs to `user` (modal submissions have no response_url)."""
    ephemerals = [e.get("text") or "" for e in bot.slack.ephemerals(user)]
    dms = [m.get("text") or "" for m in bot.slack.messages(user).values()]
    return ephemerals + dms


def assert_exactly_once(case: Case, presses: list[Press]) -> str:
    bot = case.bot
    assert all(a.status_code == 200 for p in presses for a in p.answers), \
        [(a.status_code, a.text) for p in presses for a in p.answers]
    # One copy of each pair was dropped before any listener saw it.
    assert duplicates_dropped(bot) == PRESSES
    winner = case.effect()
    # Everyone else was told; nobody saw an unhandled error.
    everything = json.dumps(bot.slack.responses) + json.dumps(bot.slack.ephemerals()) + \
        json.dumps([p.answers[i].text for p in presses for i in range(2)])
    for bad in UNHANDLED:
        assert bad not in everything, everything
    assert bot.ctx.metrics.registry.get_sample_value("deckhand_errors_total") in (None, 0.0)
    by_user: dict[str, list[Press]] = {}
    for press in presses:
        by_user.setdefault(press.user, []).append(press)
    for user, mine in by_user.items():
        losers = len(mine) - (1 if user == winner else 0)
        notes = [t for p in mine for t in told(bot, p)]
        if len(notes) < losers:  # modal submissions answer through the Web API, per user
            notes += told_by_slack_api(bot, user)
        assert len(notes) >= losers, f"{user} pressed {len(mine)} times and was told {notes}"
    return winner


def audit_rows(bot, action: str, target: str | None = None) -> list[dict]:
    return [r for r in bot.ctx.store.audit_log(target, limit=1000) if r["action"] == action]


def write_counts(fake, status: int | None = None) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for request in fake.writes():
        if status is not None and request.status != status:
            continue
        key = (request.method, request.path.split("?")[0])
        counts[key] = counts.get(key, 0) + 1
    return counts


# -- service deletion ------------------------------------------------------------------------------
def deletion_case(request, verb: str) -> Case:
    from blocks.service import ACTION_APPROVE, ACTION_REJECT
    from bot.deletion import lifecycle
    from tests.deletion.test_service_approval import OBJECTS
    from tests.deletion.test_service_world import approval_message, request_deletion, start

    bot = start(request.getfixturevalue("bot_factory"), request.getfixturevalue("github_fake"),
                request.getfixturevalue("mesh_prometheus"), config=PEOPLE)
    req = request_deletion(bot, PAY_DEV)
    channel, ts = lifecycle.message_of(bot.ctx, req.id)
    kube = bot.kube["prod-a"]
    kube.clear_requests()
    action = ACTION_APPROVE if verb == "approve" else ACTION_REJECT

    def press(capture: _Capture, user: str) -> str:
        return capture.block_actions(action, value=str(req.id), user_id=user, channel_id=channel, message_ts=ts)

    def effect() -> str:
        final = lifecycle.get_request(bot.ctx, req.id)
        [won] = audit_rows(bot, f"deletion.{verb}", "payments-api")
        assert final.decided_by == won["actor"]
        if verb == "approve":
            assert final.state == "deleted"
            # Each object deleted once (200); the second DELETE of each is deckhand checking that the marked
            # object is gone (404), not a second deletion.
            counts = {key: n for key, n in write_counts(kube, status=200).items()}
            assert sorted(counts.values()) == [1] * len(OBJECTS), counts
            assert sorted(write_counts(kube, status=404).values()) == [1] * len(OBJECTS)
            assert sorted((d["kind"], d["name"]) for d in kube.deletions) == sorted(OBJECTS)
            assert len(bot.ctx.store.query("SELECT * FROM savings")) == 1
            assert len(audit_rows(bot, "deletion.done", "payments-api")) == 1
        else:
            assert final.state == "rejected" and kube.writes() == []
        # the approval message everyone sees names the one who decided
        shown = json.dumps(approval_message(bot, req.id)["blocks"])
        assert f"by <@{won['actor']}>" in shown and ("*Deleted*" if verb == "approve" else "*Rejected*") in shown
        return won["actor"]

    # Approvers: DevOps, never the requester. Rejecters: DevOps and the requester themself.
    users = DEVOPS_USERS * 2 if verb == "approve" else [PAY_DEV, *DEVOPS_USERS] * 2
    return Case(bot, press, users, effect)


# -- canaries --------------------------------------------------------------------------------------
def canary_case(request, verb: str) -> Case:
    from blocks.canary import LABELS
    from tests.canary.test_canary_fixtures import (CHANNEL, card_json, deployment_controller, istio_canary, outcome_rows,
                                            post_card, weights)

    request.getfixturevalue("fast")
    bot = request.getfixturevalue("bot_factory")(config=PEOPLE)
    fake = bot.kube["prod-a"]
    istio_canary(fake, weight={"step": 10, "promote": 50, "abort": 25}[verb])
    deployment_controller(fake)
    card = post_card(bot, "checkout")
    fake.clear_requests()
    vs = "/apis/networking.istio.io/v1/namespaces/payments/virtualservices/checkout"
    stable = "/apis/apps/v1/namespaces/payments/deployments/checkout"
    canary = "/apis/apps/v1/namespaces/payments/deployments/checkout-canary"
    expected = {"step": {("PATCH", vs): 1},
                "promote": {("PATCH", stable): 1, ("PATCH", vs): 1, ("PATCH", canary): 1},
                "abort": {("PATCH", vs): 1, ("PATCH", canary): 1}}[verb]
    after = {"step": (75, 25), "promote": (100, 0), "abort": (100, 0)}[verb]

    def press(capture: _Capture, user: str) -> str:
        # every press carries the card as it was when all of them clicked
        return capture.block_actions(f"canary_{verb}", user_id=user, channel_id=CHANNEL, message=card)

    def effect() -> str:
        assert write_counts(fake) == expected
        assert weights(fake) == after
        rows = outcome_rows(bot, verb)
        assert len(rows) == PRESSES  # one outcome per delivered press, none for the dropped retries
        [won] = [r for r in rows if r["result"] == "done"]
        if verb == "promote":
            assert len(bot.ctx.store.query("SELECT * FROM savings")) == 1
        # the shared card keeps the winner's outcome: a late press must not overwrite it
        shown = card_json(bot, card)
        assert f"*{LABELS[verb]}* by <@{won['actor']}>" in shown, shown
        return won["actor"]

    users = [PAY_DEV, PAY_DEV2, DEVOPS, DEVOPS2, *MORE_PAY, *MORE_DEVOPS[:2]]
    return Case(bot, press, users, effect)


# -- pipelines -------------------------------------------------------------------------------------
def pipeline_case(request) -> Case:
    from tests.pipelines.test_pipeline_kit import POINTER, REPO, api_form, messages_about, open_modal, state_values

    github = request.getfixturevalue("github_fake")
    github.create_repo(REPO, files={"README.md": "deploy manifests\n", "batch-images.yaml": POINTER})
    bot = request.getfixturevalue("bot_factory")(clusters=("prod-a", "prod-b"), github_fake=github, config=PEOPLE)
    github.clock = bot.clock
    bot.slack.usergroups["S0SEARCH"] = []
    view = open_modal(bot)

    def press(capture: _Capture, user: str) -> str:
        return capture.view_submission("pipeline_submit", values=state_values(api_form()), user_id=user,
                                       view_id=view["id"])

    def effect() -> str:
        assert len(github.pulls(REPO)) == 1
        assert len([w for w in github.writes() if w.method == "POST" and w.path.endswith("/pulls")]) == 1
        [message] = messages_about(bot, "C0PAY", "payments-api")
        assert message["replies"] == []  # no "submitted a change; updating the pull request" either
        [won] = audit_rows(bot, "pipeline.create", "payments-api")
        assert won["result"] == "opened #1"
        return won["actor"]

    return Case(bot, press, PAY_USERS + [DEVOPS, DEVOPS2, *MORE_DEVOPS[:2]], effect)


# -- idle services ---------------------------------------------------------------------------------
def idle_case(request, verb: str) -> Case:
    from tests.idle.test_idle_actions import GIFT_CARDS, item_blocks, posted_digest, state
    from tests.idle.test_idle_world import idle_bot

    bot = idle_bot(request.getfixturevalue("bot_factory"), request.getfixturevalue("prometheus_factory"),
                   config=PEOPLE)
    digest = posted_digest(bot)
    if verb == "keep":
        bot.sender.block_actions("idle_keep", value=GIFT_CARDS, user_id=PAY_DEV, channel_id="C0PAY",
                                 message_ts=digest["ts"], block_id=f"idle-actions:{GIFT_CARDS}")
        view = bot.slack.wait_for(
            lambda: [v for v in bot.slack.views_for(PAY_DEV) if v["callback_id"] == "idle_keep"])[0]

    def press(capture: _Capture, user: str) -> str:
        if verb == "keep":
            return capture.view_submission("idle_keep", {"reason": {"value": f"standby for failover ({user})"}},
                                           user_id=user, view_id=view["id"])
        return capture.block_actions("idle_snooze", value=GIFT_CARDS, user_id=user, channel_id="C0PAY",
                                     message_ts=digest["ts"], block_id=f"idle-actions:{GIFT_CARDS}")

    def effect() -> str:
        row = state(bot, GIFT_CARDS)
        assert row["state"] == {"keep": "kept", "snooze": "snoozed"}[verb]
        rows = audit_rows(bot, f"idle.{verb}", "shop/gift-cards")
        [won] = [r for r in rows if r["result"] == "ok"]
        assert won["actor"] == row["decided_by"]
        if verb == "keep":
            assert row["reason"] == f"standby for failover ({won['actor']})"
        assert all(r["result"].startswith("not applied") for r in rows if r is not won)
        # the digest everyone sees names the one who decided
        shown = item_blocks(bot, digest, GIFT_CARDS)[0]["text"]["text"]
        assert f"{'Kept' if verb == 'keep' else 'Snoozed'} by <@{won['actor']}>" in shown, shown
        return won["actor"]

    return Case(bot, press, PAY_USERS + [DEVOPS, DEVOPS2, *MORE_DEVOPS[:2]], effect)


# -- node alerts -----------------------------------------------------------------------------------
def node_alert_case(request, verb: str) -> Case:
    from tests.nodes.nodes_support import ALERTS, alert_messages, open_incidents, post_report, report, text_of

    bot = request.getfixturevalue("bot_factory")(config=PEOPLE)
    post_report(bot, report())
    bot.flush()
    [message] = alert_messages(bot)
    action = "node_alert_ack" if verb == "ack" else "node_alert_silence_node_4h"

    def press(capture: _Capture, user: str) -> str:
        return capture.block_actions(action, user_id=user, channel_id=ALERTS, message_ts=message["ts"])

    def effect() -> str:
        [incident] = open_incidents(bot)
        rows = audit_rows(bot, f"alert.{verb}")
        [won] = [r for r in rows if r["result"] == "ok"]
        if verb == "ack":
            assert incident["acked_by"] == won["actor"]
            assert f"Acknowledged by <@{won['actor']}>" in text_of(alert_messages(bot)[0])
        else:
            [silence] = bot.ctx.store.query("SELECT * FROM alert_silences")
            assert silence["created_by"] == won["actor"] and silence["node"] == "node-7"
            assert all(r["result"] == f"not applied: already silenced by {won['actor']}"
                       for r in rows if r is not won)
        # every other press hears who was first ("<@U…> already acknowledged / silenced …")
        others = [r["text"] for r in bot.slack.responses if f"<@{won['actor']}> already" in r["text"]]
        assert len(others) == PRESSES - 1, others
        return won["actor"]

    # Anyone may acknowledge; only DevOps may silence.
    users = [PAY_DEV, DEVOPS, OUTSIDER, PAY_DEV2, DEVOPS2, *MORE_PAY, *MORE_DEVOPS] if verb == "ack" \
        else DEVOPS_USERS * 2
    return Case(bot, press, users, effect)


CASES = {
    "approve deletion": lambda r: deletion_case(r, "approve"),
    "reject deletion": lambda r: deletion_case(r, "reject"),
    "canary next step": lambda r: canary_case(r, "step"),
    "canary promote": lambda r: canary_case(r, "promote"),
    "canary abort": lambda r: canary_case(r, "abort"),
    "pipeline submit": pipeline_case,
    "idle snooze": lambda r: idle_case(r, "snooze"),
    "idle keep": lambda r: idle_case(r, "keep"),
    "node alert acknowledge": lambda r: node_alert_case(r, "ack"),
    "node alert silence": lambda r: node_alert_case(r, "silence"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_twenty_identical_requests_act_once_and_tell_everyone_else(request, name):
    case = CASES[name](request)
    presses = storm(case)
    assert_exactly_once(case, presses)
