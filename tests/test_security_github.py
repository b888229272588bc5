"""The GitHub door, attacked through the real POST /hooks/github: a signed payload is news, not
proof. The merge state comes from GitHub's API, and a resend under a new delivery id does nothing
twice."""
from __future__ import annotations

import json

import pytest
import requests

from tests.fakes.github import pull_request_event, webhook_headers
from tests.harness import WEBHOOK_SECRET
from tests.pipelines.test_pipeline_kit import REPO, pbot  # noqa: F401 - pbot is a fixture


@pytest.fixture
def handed_over(pbot):  # noqa: F811 - the fixture above
    """Stands in for service deletion's handler: what a merged deckhand/delete/* PR would delete."""
    calls = []

    def on_pull_request_closed(ctx, branch, number, merged):
        calls.append((branch, number, merged))
        return "deleting" if merged else "cancelled"

    pbot.ctx.pull_request_handlers["deckhand/delete/"] = ("service deletion", on_pull_request_closed)
    return calls


def delete_pr(bot, service: str) -> int:
    bot.github.commit_files(REPO, f"deckhand/delete/{service}", {f"services/payments/{service}/gone": "x\n"})
    return bot.github.create_pull(REPO, f"deckhand/delete/{service}", title=f"delete {service}")


def deliver(bot, payload: dict, delivery: str | None = None) -> requests.Response:
    body = json.dumps(payload).encode()
    return requests.post(bot.url + "/hooks/github", data=body, timeout=10,
                         headers=webhook_headers(WEBHOOK_SECRET, body, delivery=delivery))


def test_a_payload_claiming_a_merge_github_has_not_seen_deletes_nothing(pbot, handed_over):  # noqa: F811
    number = delete_pr(pbot, "coredns")
    forged = pull_request_event(pbot.github, REPO, number, "closed")
    forged["pull_request"].update(state="closed", merged=True, merge_commit_sha="f" * 40)
    answer = deliver(pbot, forged)
    assert answer.status_code == 200 and "not closed" in answer.json()["ignored"]  # GitHub: still open
    pbot.github.close(REPO, number)  # closed without merging, and the payload still says merged
    assert deliver(pbot, forged).json()["result"] == "dispatched to service deletion: cancelled"
    assert handed_over == [("deckhand/delete/coredns", number, False)]


def test_a_merge_resent_under_new_delivery_ids_is_acted_on_once(pbot, handed_over):  # noqa: F811
    number = delete_pr(pbot, "old-api")
    pbot.github.merge(REPO, number)
    event = pull_request_event(pbot.github, REPO, number, "closed")
    assert deliver(pbot, event, delivery="first").json()["result"] == "dispatched to service deletion: deleting"
    for n in range(5):
        assert deliver(pbot, event, delivery=f"resent-{n}").json() == {"ok": True, "duplicate": True}
    assert handed_over == [("deckhand/delete/old-api", number, True)]


def test_when_github_cannot_confirm_nothing_happens_and_a_redelivery_works(pbot, handed_over):  # noqa: F811
    number = delete_pr(pbot, "old-api")
    pbot.github.merge(REPO, number)
    event = pull_request_event(pbot.github, REPO, number, "closed")
    pbot.github.fail("GET", path_contains=f"/pulls/{number}", status=502, times=None)
    deferred = deliver(pbot, event, delivery="d-1")
    assert deferred.status_code == 202 and f"#{number}" in deferred.json()["deferred"]
    assert handed_over == []
    pbot.github.clear_faults()
    assert deliver(pbot, event, delivery="d-1").json()["result"] == "dispatched to service deletion: deleting"
    assert handed_over == [("deckhand/delete/old-api", number, True)]
