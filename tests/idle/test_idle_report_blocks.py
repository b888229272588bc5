"""Golden files for `/idle` (tests/golden/idle_list*.json, idle_savings.json) and Slack's limits."""
from __future__ import annotations

from blocks import idle_report
from blocks.common import MAX_MESSAGE_BLOCKS
from tests.fakes.slack import validate_message_blocks
from tests.golden import assert_golden

NOW = "2026-11-20T12:00:00+00:00"


def valid(payload: dict) -> dict:
    assert validate_message_blocks(payload["blocks"]) == []
    assert len(payload["blocks"]) <= MAX_MESSAGE_BLOCKS
    return payload


def item(service: str, team: str = "payments", state: str = "open", cpu: float = 2.0, memory: int = 4 * 2**30,
         **extra) -> dict:
    return {"key": f"prod-a/shop/{service}", "cluster": "prod-a", "namespace": "shop", "service": service,
            "team": team, "state": state, "decided_by": extra.get("decided_by"), "decided_at": extra.get("decided_at"),
            "reason": extra.get("reason"), "snoozed_until": extra.get("snoozed_until"), "cpu_cores": cpu,
            "memory_bytes": memory, "workloads": [{"kind": "Deployment", "name": service, "replicas": 2}],
            "created": "2026-09-01T08:00:00+00:00", "idle_seconds": extra.get("idle_seconds", 23 * 86400)}


def totals(items: list[dict]) -> dict:
    kept = [i for i in items if i["state"] != "kept"]
    return {"count": len(items), "kept": len(items) - len(kept), "cpu_cores": sum(i["cpu_cores"] for i in kept),
            "memory_bytes": sum(i["memory_bytes"] for i in kept)}


def view(teams: dict[str, list[dict]], scope=None, **overrides) -> dict:
    everything = [i for items in teams.values() for i in items]
    base = {"now": NOW, "scan": {"at": "2026-11-20T10:00:04+00:00", "outcome": "ok", "detail": ""}, "window": 7 * 86400,
            "snooze": 30 * 86400, "cluster": None, "scope": scope,
            "teams": [{"team": t, "items": items, "totals": totals(items)} for t, items in teams.items()],
            "fleet": totals(everything), "outages": []}
    base.update(overrides)
    return base


PAYMENTS = [item("old-reports"), item("gift-cards", cpu=0.75, memory=768 * 2**20, state="snoozed",
                                      decided_by="U0PAYDEV", snoozed_until="2026-12-20T12:00:00+00:00"),
            item("dr-standby", state="kept", decided_by="U0PAYDEV", decided_at="2026-11-01T09:00:00+00:00",
                 reason="disaster-recovery standby <b>& friends</b>")]


def test_member_list_golden():
    payload = valid(idle_report.list_message(view({"payments": PAYMENTS}, scope=["payments"]), args="",
                                             devops=False, own_teams=["payments"]))
    assert_golden("idle_list_member", payload)
    assert "Run a fresh scan" not in str(payload) and "&lt;b&gt;&amp; friends&lt;/b&gt;" in str(payload)


def test_devops_list_golden_with_an_outage_and_another_team_without_buttons_for_outsiders():
    teams = {"payments": PAYMENTS, "search": [item("indexer-v1", team="search", cpu=8, memory=16 * 2**30)]}
    outage = [{"cluster": "prod-b", "since": "2026-11-19T10:00:00+00:00", "reason": "connection refused"}]
    payload = valid(idle_report.list_message(view(teams, outages=outage), args="", devops=True, own_teams=[]))
    assert_golden("idle_list_devops", payload)
    outsider = valid(idle_report.list_message(view(teams), args="search", devops=False, own_teams=[]))
    assert not [b for b in outsider["blocks"] if b["type"] == "actions"]


def test_a_list_without_a_scan_and_for_someone_in_no_team():
    payload = valid(idle_report.list_message(view({}, scope=[], scan=None), args="", devops=False, own_teams=[]))
    assert_golden("idle_list_no_team", payload)


def test_hundreds_of_services_fit_in_fifty_blocks():
    many = {f"team-{t}": [item(f"svc-{t}-{n}", team=f"team-{t}") for n in range(40)] for t in range(5)}
    payload = valid(idle_report.list_message(view(many), args="", devops=True, own_teams=[]))
    assert "more idle services not shown" in str(payload)


def test_savings_golden():
    savings = {"now": NOW, "scan": None, "scope": None,
               "months": [{"month": "2026-11", "teams": [{"team": "payments", "cpu_cores": 1000, "memory_bytes": 100 * 2**30,
                                                          "actions": 12},
                                                         {"team": "search", "cpu_cores": 280, "memory_bytes": 28 * 2**30,
                                                          "actions": 3}]},
                          {"month": "2026-10", "teams": [{"team": "unowned", "cpu_cores": 4, "memory_bytes": 2**31,
                                                          "actions": 1}]}],
               "reclaimed": {"cpu_cores": 1284, "memory_bytes": 130 * 2**30, "actions": 16},
               "idle": [{"team": "search", **totals([item("indexer-v1", cpu=8)])}, {"team": "payments", **totals(PAYMENTS)}],
               "idle_total": totals(PAYMENTS + [item("indexer-v1", cpu=8)])}
    assert_golden("idle_savings", valid(idle_report.savings_message(savings)))
