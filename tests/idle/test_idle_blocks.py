"""Golden files for the idle-service UI: a reviewer reads tests/golden/idle_*.json to see it."""
from __future__ import annotations

from blocks.common import MAX_MESSAGE_BLOCKS, MAX_VIEW_BLOCKS
from blocks.idle import (PARENT_SERVICES, THREAD_SERVICES, digest_message, keep_modal, kept_list_modal, outage_alert,
                         snooze_label, span)
from tests.golden import assert_golden

DAY = 86400


def item(service: str, state: str = "open", **extra) -> dict:
    base = {"key": f"prod-a/shop/{service}", "cluster": "prod-a", "namespace": "shop", "service": service,
            "cpu_cores": 2.0, "memory_bytes": 4 * 2**30, "replicas": 2, "created": "2026-09-01T00:00:00+00:00",
            "workloads": [{"kind": "Deployment", "name": service, "replicas": 2}], "state": state,
            "decided_by": None, "decided_at": None, "reason": None, "snoozed_until": None, "cleared_reason": None}
    return {**base, **extra}


def summary(count: int, **extra) -> dict:
    base = {"team": "payments", "count": count, "window": 7 * DAY, "snooze": 30 * DAY, "cpu_cores": 9.5,
            "memory_bytes": 21 * 2**30, "clusters": ["prod-a", "prod-b"], "skipped": [], "no_endpoints": []}
    return {**base, **extra}


def test_digest_with_every_service_state():
    view = {"part": 0, "parts": 1, "summary": summary(
        5, skipped=[["prod-c", "metrics unavailable: connection refused"]],
        no_endpoints=[{"key": "prod-a/shop/broken", "replicas": 2}, {"key": "prod-b/shop/lonely", "replicas": 1}]),
        "items": [
            item("old-reports"),
            item("gift-cards", "snoozed", decided_by="U0PAYDEV", decided_at="2026-11-20T12:00:00+00:00",
                 snoozed_until="2026-12-20T12:00:00+00:00"),
            item("dr-standby", "kept", decided_by="U0PAYDEV2", decided_at="2026-11-20T12:00:00+00:00",
                 reason="Failover standby <for> the EU region & friends"),
            item("legacy-api", "deletion_requested", decided_by="U0DEVOPS1", decided_at="2026-11-21T09:00:00+00:00",
                 workloads=[{"kind": "Deployment", "name": "legacy-api", "replicas": 1},
                            {"kind": "Rollout", "name": "legacy-api-next", "replicas": 1}]),
            item("promo", "cleared", cleared_reason="got traffic again"),
        ]}
    message = digest_message(view)
    assert_golden("idle_digest", message)
    assert len(message["blocks"]) <= MAX_MESSAGE_BLOCKS


def test_digest_thread_part():
    view = {"part": 1, "parts": 3, "summary": {"team": "payments", "snooze": 30 * DAY},
            "items": [item("batch-a", cpu_cores=0.25, memory_bytes=2**28), item("batch-b", cpu_cores=0.1)]}
    assert_golden("idle_digest_thread", digest_message(view))


def test_digest_with_only_no_endpoint_services():
    view = {"part": 0, "parts": 1, "items": [], "summary": summary(
        0, cpu_cores=0, memory_bytes=0, clusters=["prod-a"], no_endpoints=[{"key": "prod-a/shop/broken", "replicas": 1}])}
    assert_golden("idle_digest_no_endpoints", digest_message(view))


def test_full_parts_stay_within_slacks_block_limit():
    many_missing = [{"key": f"prod-a/ns/svc-{i}", "replicas": 1} for i in range(40)]
    parent = {"part": 0, "parts": 2, "items": [item(f"svc-{i}") for i in range(PARENT_SERVICES)],
              "summary": summary(PARENT_SERVICES + 3, skipped=[["prod-c", "timed out"]], no_endpoints=many_missing)}
    blocks = digest_message(parent)["blocks"]
    assert len(blocks) <= MAX_MESSAGE_BLOCKS
    assert "3 more idle services in the thread" in str(blocks) and "and 25 more" in str(blocks)
    thread = {"part": 1, "parts": 2, "summary": {"team": "payments", "snooze": 30 * DAY},
              "items": [item(f"svc-{i}") for i in range(THREAD_SERVICES)]}
    assert len(digest_message(thread)["blocks"]) <= MAX_MESSAGE_BLOCKS
    # a decision re-renders a service in the same two blocks, so a full part stays within the limit
    decided = {**parent, "items": [item(f"svc-{i}", "kept", decided_by="U1", reason="x" * 500)
                                   for i in range(PARENT_SERVICES)]}
    assert len(digest_message(decided)["blocks"]) == len(blocks)


def test_keep_modal():
    view = keep_modal({"cluster": "prod-a", "namespace": "shop", "service": "dr-standby"},
                      {"key": "prod-a/shop/dr-standby", "channel": "C0PAY", "ts": "1700000000.000100"})
    assert_golden("idle_keep_modal", view)


def test_kept_list_modal():
    rows = [{"cluster": "prod-a", "namespace": "shop", "service": "dr-standby", "decided_by": "U0PAYDEV",
             "decided_at": "2026-11-20T12:00:00+00:00", "reason": "Failover standby"}]
    assert_golden("idle_kept_list", kept_list_modal("payments", rows, note=":white_check_mark: Un-kept `x`"))
    assert "Nothing is kept." in str(kept_list_modal("search", []))
    many = rows * 150
    view = kept_list_modal("payments", many)
    assert len(view["blocks"]) <= MAX_VIEW_BLOCKS and "more" in view["blocks"][-1]["elements"][0]["text"]


def test_outage_alert():
    assert_golden("idle_outage", outage_alert("prod-b", "connection refused", 7 * DAY))


def test_durations_read_like_the_config():
    assert span(7 * DAY) == "7d" and span(12 * 3600) == "12h" and span(90) == "90s"
    assert snooze_label(30 * DAY) == "Snooze 30 days" and snooze_label(DAY) == "Snooze 1 day"
    assert snooze_label(12 * 3600) == "Snooze 12h"
