"""Access: devops by user or group, team ownership, four-eyes, deny on unknown membership."""
from bot.foundation.access import Access
from bot.foundation.config import parse_settings
from tests.harness import base_config


def settings():
    cfg = base_config()
    cfg["clusters"] = [{"name": "prod-a", "prometheus_url": "http://127.0.0.1:1"}]
    cfg["roles"]["devops"] = ["U0DEVOPS1", "S0OPS"]
    return parse_settings(cfg)


def test_roles_teams_and_four_eyes():
    calls = []

    def members(group):
        calls.append(group)
        return {"S0OPS": ["U0GROUPOPS"], "S0SEARCH": ["U0SEARCHER"]}[group]

    access = Access(settings(), members, ttl=60)
    assert access.is_devops("U0DEVOPS1") and access.is_devops("U0GROUPOPS")
    assert not access.is_devops("U0PAYDEV")
    assert access.may("U0PAYDEV", "canary.operate", team="payments")
    assert access.may("U0SEARCHER", "canary.operate", team="search")
    denied = access.may("U0SEARCHER", "canary.operate", team="payments")
    assert not denied and "payments" in denied.reason
    assert not access.may("U0PAYDEV", "deletion.approve", team="payments", requester="U0DEVOPS1")
    four_eyes = access.may("U0DEVOPS1", "deletion.approve", team="payments", requester="U0DEVOPS1")
    assert not four_eyes and "four-eyes" in four_eyes.reason
    assert access.may("U0GROUPOPS", "deletion.approve", team="payments", requester="U0DEVOPS1")
    assert access.teams_of("U0PAYDEV") == ["payments"]
    access.is_devops("U0GROUPOPS")
    assert calls.count("S0OPS") == 1  # cached within the TTL


def test_group_lookup_failure_denies():
    def broken(group):
        raise RuntimeError("slack down")

    access = Access(settings(), broken)
    assert not access.is_devops("U0GROUPOPS")
    assert access.is_devops("U0DEVOPS1")  # listed by user ID, no lookup needed
