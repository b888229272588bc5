"""Pull requests on the GitOps repo (PyGithub).

Everything that lands in the repo goes through ONE commit on a named branch and ONE pull
request per branch, so any write here is safe to repeat after a crash or a retry: the branch
is force-moved to the new commit and an existing open PR is updated instead of duplicated.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import github
from github import Auth, Github, GithubException, InputGitTreeElement
from github.Repository import Repository

from bot.config import GitHub as GitHubSettings


class GitOpsError(Exception):
    """A GitHub call failed; `str()` is a sentence fit for Slack; `status` is the HTTP status (0 = no answer)."""

    def __init__(self, action: str, status: int, detail: str = ""):
        self.action, self.status, self.detail = action, status, detail
        super().__init__(f"GitHub: {action} failed: {_explain(status, detail)}")


def _explain(status: int, detail: str) -> str:
    hints = {
        0: "GitHub did not answer in time; nothing was left half-done, try again",
        401: "deckhand's GITHUB_TOKEN was rejected (expired or revoked); ask DevOps to rotate it",
        403: "deckhand's token may not write to this repository (or hit a rate limit); ask DevOps to check its permissions",
        404: "the repository or branch was not found, or the token cannot see it; check github.repo in the config",
        409: "the branch moved meanwhile; try again",
        422: "GitHub rejected the change as invalid",
    }
    hint = hints.get(status) or ("GitHub had an internal error; try again in a minute" if status >= 500 else "unexpected answer")
    return f"{hint} ({status}{': ' + detail if detail else ''})" if status else hint


def github_error(action: str, exc: Exception) -> GitOpsError:
    if isinstance(exc, GithubException):
        data = exc.data if isinstance(exc.data, dict) else {}
        detail = str(data.get("message") or "")
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            first = errors[0]
            detail += ": " + str(first.get("message") if isinstance(first, dict) else first)
        return GitOpsError(action, exc.status or 0, detail[:300])
    return GitOpsError(action, 0, type(exc).__name__)


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    state: str  # open | closed
    merged: bool
    branch: str


class GitOps:
    def __init__(self, settings: GitHubSettings, token: str | None, timeout: float = 15.0,
                 seconds_between_writes: float | None = 0.5):
        self.settings = settings
        self.token = token
        self.timeout = timeout
        # GitHub asks integrations to pace writes to avoid secondary rate limits.
        self.seconds_between_writes = seconds_between_writes
        self._repo: Repository | None = None
        self._lock = threading.Lock()
        self.calls = 0

    @property
    def client(self) -> Github:
        return Github(
            base_url=self.settings.api_url, auth=Auth.Token(self.token) if self.token else None,
            timeout=int(max(1, self.timeout)), retry=None, seconds_between_requests=None,
            seconds_between_writes=self.seconds_between_writes,
        )

    def repo(self) -> Repository:
        with self._lock:
            if self._repo is None:
                try:
                    self._repo = self.client.get_repo(self.settings.repo)
                except Exception as exc:
                    raise github_error(f"open repository {self.settings.repo}", exc) from None
            return self._repo

    def probe(self) -> str:
        repo = self.repo()
        try:
            branch = repo.get_branch(self.settings.base_branch)
        except Exception as exc:
            raise github_error(f"read branch {self.settings.base_branch}", exc) from None
        return f"{repo.full_name}@{branch.name}"

    def owner(self) -> str:
        return self.settings.repo.split("/", 1)[0]


__all__ = ["GitOps", "GitOpsError", "PullRequest", "github_error", "InputGitTreeElement", "github"]
