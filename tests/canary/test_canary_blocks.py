"""Golden files for /canary's Block Kit: read tests/golden/canary_*.json to see the UI."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from blocks.canary import (REFRESH, ago, ended_message, gone_message, list_message, outcome_note,
                           reminder_message, status_message)
from bot.canary.model import Canary, CanaryRef, Outcome
from bot.canary.traffic import CanaryTraffic, VersionStats
from tests.fakes.slack import validate_message_blocks
from tests.golden import assert_golden

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def istio(weight: int = 25, **kwargs) -> Canary:
    values = dict(
        ref=CanaryRef("istio", "prod-a", "payments", "checkout"), team="payments", canary_weight=weight,
        stable_images=["registry.example/checkout:1.4.2"], canary_images=["registry.example/checkout:1.5.0"],
        next_weight=50, step_label="step 2 of 4", phase="In progress", revision="3f2a9c1b7d4e",
        started_by="U0PAYDEV", started_at=NOW - timedelta(days=2, hours=3), stepped_at=NOW - timedelta(hours=20),
        canary_pods="2/2", stable_pods="3/3", reserved_cpu=0.5, reserved_memory=2**30, seen={"w": weight},
        objects={"live": True})
    values.update(kwargs)
    return Canary(**values)


def argo_aborted() -> Canary:
    return Canary(
        ref=CanaryRef("argo", "prod-b", "shop", "cart"), team=None, canary_weight=0,
        stable_images=["registry.example/cart:2.0.3"], canary_images=["registry.example/cart:2.1.0"],
        next_weight=20, step_label="aborted at step 2 of 4", phase="Aborted", revision="5c7d9f8b6",
        started_at=NOW - timedelta(days=1), canary_pods="0", stable_pods="4", seen={"i": 1, "a": True},
        warnings=["Argo says: RolloutAborted: Rollout aborted update to revision 2"], objects={"live": True})


TRAFFIC = CanaryTraffic(VersionStats(9.0, 1.0, 120.0), VersionStats(1.0, 0.8, 800.0))
UNKNOWN = CanaryTraffic(None, None, "prod-a: Prometheus did not answer (connection refused)")


def check(name: str, payload: dict) -> None:
    assert validate_message_blocks(payload["blocks"]) == []
    assert_golden(name, payload)


def test_status_card_with_traffic():
    check("canary_status", status_message(istio(), TRAFFIC, NOW))


def test_status_card_with_traffic_unknown_and_warnings():
    canary = istio(weight=30, step_label="30% (set by hand)", started_by=None,
                   warnings=["the VirtualService's routes disagree on the canary weight ([30, 10])"])
    check("canary_status_unknown", status_message(canary, UNKNOWN, NOW))


def test_argo_aborted_card_offers_retry():
    check("canary_status_argo_aborted", status_message(argo_aborted(), None, NOW))


def test_card_while_working_offers_only_refresh():
    payload = status_message(istio(), None, NOW, note=":hourglass_flowing_sand: waiting for the stable rollout: "
                                                       "1/3 updated, 1 available (9m41s left)", working=True)
    # No Next step / Promote / Abort mid-operation; Refresh stays, for a card whose worker was killed.
    [row] = [b for b in payload["blocks"] if b["type"] == "actions"]
    assert [e["action_id"] for e in row["elements"]] == [REFRESH]
    check("canary_working", payload)


def test_card_after_a_failed_step():
    outcome = Outcome("abort", "failed", "Abort stopped", steps=["set weights 100/0"],
                      failed_step="scale the canary to 0", actor="U0PAYDEV",
                      error="prod-a: patch Deployment payments/checkout-canary failed: the API server had an "
                            "internal error (500: etcdserver: request timed out)",
                      next_hint="Click *Abort* again: it re-reads the cluster and continues from where it stopped.")
    check("canary_outcome_failed", status_message(istio(weight=0), TRAFFIC, NOW, note=outcome_note(outcome)))


def test_card_after_promotion_has_only_refresh():
    outcome = Outcome("promote", "done", "Promoted: stable runs `registry.example/checkout:1.5.0`.",
                      steps=["copy the canary's pod template onto the stable Deployment", "wait for the stable rollout",
                             "set weights 100/0", "scale the canary to 0"], actor="U0DEVOPS1")
    ended = istio(weight=0, canary_pods="0/0", step_label="done", phase="Ended", next_weight=10,
                  reserved_cpu=0.0, reserved_memory=0, objects={"live": False})
    payload = status_message(ended, None, NOW, note=outcome_note(outcome))
    actions = [b for b in payload["blocks"] if b["type"] == "actions"][0]
    assert [e["action_id"] for e in actions["elements"]] == ["canary_refresh"]
    check("canary_promoted", payload)


def test_list():
    """Traffic per version on each live canary's line (worse canary flagged; unknown says why)."""
    errors = ["prod-c: list virtualservices failed: the API server did not answer (connection refused)"]
    canaries = [istio(), argo_aborted()]
    traffic = {canaries[0].ref.key: TRAFFIC, canaries[1].ref.key: UNKNOWN}
    payload = list_message(canaries, errors, NOW, clusters=3, traffic=traffic)
    check("canary_list", payload)
    lines = [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]
    assert "traffic (10 min): stable 9.00 req/s, 100.0% ok, p99 120 ms · canary 1.00 req/s, 80.0% ok, p99 800 ms " \
           ":warning: canary worse than stable" in lines[0]
    assert "traffic (10 min): *unknown* — prod-a: Prometheus did not answer (connection refused)" in lines[1]
    # placeholders are escaped, or Slack would read <service> as a link and show nothing
    assert "`/canary &lt;service&gt; [cluster]`" in payload["blocks"][-1]["elements"][0]["text"]


def test_empty_list():
    check("canary_list_empty", list_message([], [], NOW, clusters=16))


def test_long_list_stays_within_slack_limits():
    many = [istio(ref=CanaryRef("istio", f"prod-{i}", "payments", f"svc-{i}")) for i in range(80)]
    payload = list_message(many, [], NOW, clusters=80)
    assert len(payload["blocks"]) == 50 and "and 33 more" in payload["blocks"][-2]["elements"][0]["text"]
    assert sum(b["type"] == "section" for b in payload["blocks"]) == 47
    assert validate_message_blocks(payload["blocks"]) == []


def test_reminder():
    check("canary_reminder", reminder_message(istio(), TRAFFIC, NOW, timedelta(hours=72), mention="S0PAY"))


def test_ended_and_gone():
    check("canary_ended", ended_message("checkout", "prod-a", "payments"))
    check("canary_gone", gone_message(CanaryRef("istio", "prod-a", "payments", "checkout")))


@pytest.mark.parametrize("delta, text", [(timedelta(seconds=20), "just now"), (timedelta(minutes=45), "45m"),
                                         (timedelta(hours=5, minutes=3), "5h 3m"), (timedelta(days=3), "3d"),
                                         (timedelta(days=2, hours=3, minutes=9), "2d 3h"), (None, "unknown")])
def test_ago(delta, text):
    assert ago(delta) == text
