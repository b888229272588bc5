"""Who may do what: the devops role, team ownership, and the four-eyes rule.

Roles and teams name Slack user IDs or user group IDs. Group membership is resolved through
`usergroups.users.list` and cached for `ttl` seconds; if Slack cannot answer we use the last
known membership, and with none we deny (never allow on an unknown).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from bot.foundation.config import Settings

log = logging.getLogger(__name__)

# action -> who may do it. "owner" = a member of the service's team; "devops" = the devops role.
RULES: dict[str, set[str]] = {
    "pipeline.create": {"owner", "devops"},
    "pipeline.edit": {"owner", "devops"},
    "pipeline.bump": {"devops"},
    "canary.operate": {"owner", "devops"},
    "deletion.request": {"owner", "devops"},
    "deletion.approve": {"devops"},
    "deletion.reject": {"devops", "requester"},
    "deletion.override": {"devops"},
    "idle.snooze": {"owner", "devops"},
    "idle.keep": {"owner", "devops"},
    "alert.ack": {"anyone"},
    "alert.silence": {"devops"},
    "ops.run": {"devops"},
    "wave.plan": {"devops"},
    "wave.start": {"devops"},     # and not the person who planned it (bot/nodes/waves.py: four eyes)
    "wave.operate": {"devops"},   # pause, resume, abort, hand back
}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


class Access:
    def __init__(self, settings: Settings, group_members: Callable[[str], list[str]] | None, ttl: float = 300):
        """`group_members(S…)` returns user IDs (the app passes a usergroups.users.list call)."""
        self.settings = settings
        self._fetch = group_members
        self.ttl = ttl
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def members(self, group: str) -> frozenset[str]:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(group)
        if cached and now - cached[0] < self.ttl:
            return cached[1]
        if self._fetch is None:
            return cached[1] if cached else frozenset()
        try:
            users = frozenset(self._fetch(group))
        except Exception as exc:  # Slack down or the group is gone: fall back, never widen
            log.warning("usergroup %s: membership lookup failed: %s", group, exc)
            return cached[1] if cached else frozenset()
        with self._lock:
            self._cache[group] = (now, users)
        return users

    def _in(self, user: str, ids: list[str]) -> bool:
        for entry in ids:
            if entry == user or (entry.startswith("S") and user in self.members(entry)):
                return True
        return False

    def is_devops(self, user: str) -> bool:
        return self._in(user, self.settings.roles.devops)

    def teams_of(self, user: str) -> list[str]:
        return [name for name in self.settings.teams if self.is_member(user, name)]

    def is_member(self, user: str, team: str | None) -> bool:
        spec = self.settings.teams.get(team or "")
        if spec is None:
            return False
        ids = list(spec.members) + ([spec.usergroup] if spec.usergroup else [])
        return self._in(user, ids)

    def may(self, user: str, action: str, team: str | None = None, requester: str | None = None) -> Decision:
        who = RULES.get(action)
        if who is None:
            return Decision(False, f"unknown action {action}")
        if "anyone" in who:
            return Decision(True, "anyone may")
        if "devops" in who and self.is_devops(user):
            if requester is not None and requester == user and action == "deletion.approve":
                return Decision(False, "you requested this, so someone else must approve it (four-eyes rule)")
            return Decision(True, "devops")
        if action == "deletion.approve" and requester == user:
            return Decision(False, "you requested this, so someone else must approve it (four-eyes rule)")
        if "requester" in who and requester is not None and requester == user:
            return Decision(True, "requester")
        if "owner" in who and team and self.is_member(user, team):
            return Decision(True, f"member of {team}")
        if "owner" in who:
            owner = f"the {team} team" if team else "the owning team (the service has no team label)"
            return Decision(False, f"only {owner} or DevOps may do this")
        return Decision(False, "only DevOps may do this")
