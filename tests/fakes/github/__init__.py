"""A GitHub REST API fake that PyGithub really talks to over HTTP.

A stdlib ThreadingHTTPServer on a free loopback port serves the endpoints deckhand uses (repos, branches,
the Git Data API, contents, commits, pull requests, issue labels and comments, review requests, merges)
on top of a tiny in-memory git: blobs, nested trees and commits are hashed exactly as git hashes them,
refs point at commits, and pull requests diff and merge real trees.

    fake = GitHubFake(); fake.start()
    fake.create_repo("org/deploy-manifests", files={"README.md": "hi\\n"})
    gh = Github(base_url=fake.url, auth=Auth.Token("t"), retry=None,
                seconds_between_requests=None, seconds_between_writes=None)   # or fake.client()

Every request is recorded (``fake.requests``, ``fake.writes()``); failures, hangs and latency can be
injected. Response shapes follow https://docs.github.com/rest (the fields PyGithub reads, and the error
bodies real GitHub sends).
"""
from __future__ import annotations

from tests.fakes.github.common import (
    API_PREFIX, DEFAULT_FAULT_MESSAGES, DOCS, FILE_MODES, TREE_MODE, ApiError, Fault, Request,
)
from tests.fakes.github.server import GitHubFake
from tests.fakes.github.webhooks import pull_request_event, sign_webhook, webhook_headers

__all__ = [
    "API_PREFIX", "DEFAULT_FAULT_MESSAGES", "DOCS", "FILE_MODES", "TREE_MODE", "ApiError", "Fault", "GitHubFake",
    "Request", "pull_request_event", "sign_webhook", "webhook_headers",
]

