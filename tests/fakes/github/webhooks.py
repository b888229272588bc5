"""Webhook helpers: sign a delivery, build its headers, and a ``pull_request`` event payload."""
from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import TYPE_CHECKING

from tests.fakes.github.common import _bytes

if TYPE_CHECKING:
    from tests.fakes.github.server import GitHubFake


def sign_webhook(secret: str | bytes, body: bytes) -> str:
    """The X-Hub-Signature-256 value GitHub sends: sha256=<hex HMAC of the raw body>."""
    return "sha256=" + hmac.new(_bytes(secret), body, hashlib.sha256).hexdigest()


def webhook_headers(secret: str | bytes, body: bytes, event: str = "pull_request",
                    delivery: str | None = None) -> dict[str, str]:
    """Headers of a GitHub webhook delivery of `body`."""
    return {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/fake",
            "X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-Hub-Signature-256": sign_webhook(secret, body)}


def pull_request_event(fake: GitHubFake, repo: str, number: int, action: str = "closed") -> dict:
    """A `pull_request` webhook payload for the PR as the fake holds it now."""
    with fake._lock:
        r = fake._repo(repo)
        pr = r.pulls[number]
        sender = pr["merged_by"] if action == "closed" and pr["merged_by"] else pr["user"]
        return {"action": action, "number": number, "pull_request": fake._pull_json(r, pr, full=True),
                "repository": fake._repo_json(r), "organization": {"login": r.owner},
                "sender": fake._user_json(sender)}
