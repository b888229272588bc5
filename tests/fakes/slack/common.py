"""Shared Slack fake constants and plumbing: workspace identity, the Web API error type, recorded calls."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

TEAM_ID = "T0TEAM"
TEAM_NAME = "Example"
TEAM_DOMAIN = "example"
WORKSPACE_URL = "https://example.slack.com/"
BOT_USER_ID = "U0BOT"
BOT_USER_NAME = "deckhand"
BOT_ID = "B0BOT"
APP_ID = "A0APP"
VERIFICATION_TOKEN = "fake-verification-token"

# A trigger_id must be exchanged within 3 seconds, once (https://api.slack.com/interactivity/handling#modal_responses:
# "trigger_id ... expires in 3 seconds"); a response_url takes at most 5 posts within 30 minutes.
TRIGGER_TTL = 3.0
RESPONSE_URL_USES = 5
RESPONSE_URL_TTL = 30 * 60.0
# After a modal opens, the app may push at most 2 more views onto its stack (views.push: push_limit_reached).
MAX_VIEW_STACK = 3

# Fields that slack_sdk (or a hand-written client) sends as JSON strings inside form bodies.
JSON_FIELDS = {"blocks", "view", "attachments", "metadata", "user_auth_blocks", "unfurls", "chunks"}
Json = Dict[str, Any]


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


class _SlackError(Exception):
    """Raised inside a method handler; becomes `{"ok": false, "error": ...}`."""

    def __init__(self, error: str, messages: Optional[List[str]] = None, **extra: Any):
        super().__init__(error)
        self.error = error
        self.messages = messages or []
        self.extra = extra

    def body(self) -> Json:
        body: Json = {"ok": False, "error": self.error}
        if self.messages:
            body["errors"] = [m.replace("[ERROR] ", "", 1) for m in self.messages]
            body["response_metadata"] = {"messages": list(self.messages)}
        body.update(self.extra)
        return body


# Every Web API method called on any fake in this test session: the manifest test derives the
# bot scopes deckhand needs from it (tests/test_zz_permissions.py).
SESSION_METHODS: set[str] = set()


@dataclass
class Call:
    """One recorded Web API call."""

    method: str
    args: Json
    token: Optional[str]
    status: int = 0
    response: Json = field(default_factory=dict)
    headers: Dict[str, str] = field(default_factory=dict)
    path: str = ""
    content_type: str = ""
    body: str = ""
    time: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))

    @property
    def error(self) -> Optional[str]:
        return self.response.get("error")

    def describe(self) -> str:
        outcome = "ok" if self.ok else f"error={self.error}"
        args = {k: v for k, v in self.args.items() if k not in {"blocks", "view", "attachments"}}
        extra = []
        for k in ("blocks", "view", "attachments"):
            if k in self.args:
                v = self.args[k]
                extra.append(f"{k}=<{len(v) if isinstance(v, list) else 'dict'}>")
        text = json.dumps(args, default=str)
        if len(text) > 200:
            text = text[:200] + "..."
        return f"{self.method} [{self.status} {outcome}] {text} {' '.join(extra)}".rstrip()


@dataclass
class _Injection:
    method: str
    error: str
    status: int
    remaining: Optional[int]
    retry_after: Optional[Union[int, str]]
    delay: float
    channel: Optional[str]


@dataclass
class _RateLimit:
    method: str
    per_second: int
    retry_after: Optional[Union[int, str]]
    window: float = 1.0
