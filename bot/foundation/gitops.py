"""Pull requests on the GitOps repo (PyGithub).

Everything that lands in the repo goes through ONE commit on a named branch and ONE pull
request per branch, so any write here is safe to repeat after a crash or a retry: the branch
is force-moved to the new commit and an existing open PR is updated instead of duplicated.
"""
from __future__ import annotations

import base64
import logging
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

import github
from github import Auth, Github, GithubException, InputGitTreeElement
from github.Repository import Repository

from bot.foundation import failures
from bot.foundation.config import GitHub as GitHubSettings

log = logging.getLogger(__name__)


def markdown_text(value: object) -> str:
    """Any outside value (a display name, a service, an image, a path) as inert GitHub Markdown.

    The one escaping function for pull request bodies. It renders the value as an inline code
    span: inside one GitHub makes no links, images, HTML, `@user` / `@org/team` mentions or `#123`
    references, which backslash escapes do not prevent (mentions and autolinks are found in the
    rendered text). The fence is one backtick longer than the longest run inside (CommonMark code
    spans); whitespace runs (a newline would start a new block) become one space, and control
    characters are dropped. Not for table cells: a `|` still splits a GFM table row."""
    text = "".join(ch for ch in str(value) if ch in "\t\n\r" or not (ord(ch) < 32 or 127 <= ord(ch) < 160))
    text = " ".join(text.split())
    if not text:
        return "(empty)"
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


class GitOpsError(Exception):
    """A GitHub call failed; `str()` is a sentence fit for Slack; `status` is the HTTP status (0 = no answer)."""

    def __init__(self, action: str, status: int, detail: str = ""):
        self.action, self.status, self.detail = action, status, detail
        super().__init__(f"GitHub: {action} failed: {_explain(status, detail)}")


NO_TOKEN = "GITHUB_TOKEN is not set"


def _explain(status: int, detail: str) -> str:
    if status == 0 and detail == NO_TOKEN:
        return ("deckhand has no GITHUB_TOKEN; set it to a token that can push branches and open pull requests "
                "on the GitOps repository, and restart")
    if status == 0 and detail and detail != failures.TIMED_OUT:
        return (f"GitHub could not be reached ({detail}); check github.api_url in the config and the network, "
                "then try again")
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


# Set by bot.foundation.context.build_context to count failures in /metrics (backend="github", kind=<status>)
# and to track GitHub's health (bot/foundation/integrations.py): on_error(status or failure kind), on_answer().
on_error = None
on_answer = None


def _answered() -> None:
    if on_answer is not None:
        on_answer()


def github_error(action: str, exc: Exception) -> GitOpsError:
    if isinstance(exc, GitOpsError):  # already explained (and counted) where it happened
        return exc
    if on_error is not None:
        on_error(exc.status if isinstance(exc, GithubException) else failures.kind(exc))
    if isinstance(exc, GithubException):
        data = exc.data if isinstance(exc.data, dict) else {}
        detail = str(data.get("message") or "")
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            first = errors[0]
            detail += ": " + str(first.get("message") if isinstance(first, dict) else first)
        return GitOpsError(action, exc.status or 0, detail[:300])
    return GitOpsError(action, 0, failures.describe(exc))


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    state: str  # open | closed
    merged: bool
    branch: str
    merge_sha: str | None = None  # the merge commit, once merged (GitHub sets a test merge sha before)
    head_sha: str | None = None
    # A sentence when GitHub refused to request some configured reviewers (422: not a collaborator, no such
    # team, the PR's own author): the PR is open but nobody named was asked. Callers show it.
    review_problem: str | None = None


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
                if not self.token:  # fail at once and say why, not after GitHub's 401 (or a DNS error)
                    if on_error is not None:
                        on_error("no-token")
                    raise GitOpsError(f"open repository {self.settings.repo}", 0, NO_TOKEN)
                try:
                    self._repo = self.client.get_repo(self.settings.repo)
                    _answered()
                except Exception as exc:
                    raise github_error(f"open repository {self.settings.repo}", exc) from None
            return self._repo

    def probe(self) -> str:
        repo = self.repo()
        try:
            branch = repo.get_branch(self.settings.base_branch)
        except Exception as exc:
            raise github_error(f"read branch {self.settings.base_branch}", exc) from None
        _answered()
        return f"{repo.full_name}@{branch.name}"

    def owner(self) -> str:
        return self.settings.repo.split("/", 1)[0]

    # -- reading -----------------------------------------------------------------------------
    def read_file(self, path: str, ref: str | None = None) -> str | None:
        """A file's text on `ref` (default: the base branch), or None when it does not exist."""
        repo = self.repo()
        try:
            content = repo.get_contents(path, ref=ref or self.settings.base_branch)
        except GithubException as exc:
            if exc.status == 404:
                return None
            raise github_error(f"read {path}", exc) from None
        except Exception as exc:
            raise github_error(f"read {path}", exc) from None
        if isinstance(content, list):
            return None  # a directory
        return content.decoded_content.decode("utf-8")

    def files_under(self, prefix: str, ref: str | None = None) -> dict[str, str]:
        """path -> blob sha for every file below `prefix` (one recursive tree call)."""
        repo = self.repo()
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        try:
            head = repo.get_branch(ref or self.settings.base_branch).commit.sha
            tree = repo.get_git_tree(head, recursive=True)
        except Exception as exc:
            raise github_error("list repository files", exc) from None
        return {e.path: e.sha for e in tree.tree if e.type == "blob" and e.path.startswith(prefix)}

    def read_blob(self, sha: str) -> str:
        """A file's text by its blob id (content-addressed, so it can be cached forever)."""
        try:
            blob = self.repo().get_git_blob(sha)
        except GitOpsError:
            raise
        except Exception as exc:
            raise github_error(f"read blob {sha[:7]}", exc) from None
        return base64.b64decode(blob.content).decode("utf-8") if blob.encoding == "base64" else blob.content

    def closed_since(self, head_prefix: str, since: datetime, limit: int = 100) -> list[PullRequest]:
        """Pull requests from branches starting with `head_prefix` closed (or merged) at or after `since`,
        newest first. Reads pages of recently updated closed PRs until they are older than `since`."""
        found: list[PullRequest] = []
        try:
            pulls = self.repo().get_pulls(state="closed", sort="updated", direction="desc",
                                          base=self.settings.base_branch)
            for seen, pr in enumerate(pulls):
                updated = pr.updated_at if pr.updated_at.tzinfo else pr.updated_at.replace(tzinfo=timezone.utc)
                if updated < since or seen >= limit:
                    break
                closed = pr.closed_at and (pr.closed_at if pr.closed_at.tzinfo else pr.closed_at.replace(tzinfo=timezone.utc))
                if pr.head.ref.startswith(head_prefix) and closed and closed >= since:
                    found.append(PullRequest(pr.number, pr.html_url, pr.state, pr.merged_at is not None, pr.head.ref))
        except Exception as exc:
            raise github_error("list closed pull requests", exc) from None
        return found

    def pull(self, number: int) -> PullRequest:
        try:
            pr = self.repo().get_pull(number)
        except Exception as exc:
            raise github_error(f"read pull request #{number}", exc) from None
        _answered()
        merged = bool(pr.merged)
        return PullRequest(pr.number, pr.html_url, pr.state, merged, pr.head.ref,
                           pr.merge_commit_sha if merged else None, pr.head.sha)

    # -- writing -----------------------------------------------------------------------------
    def propose(self, branch: str, changes: dict[str, str | None], title: str, body: str,
                message: str | None = None) -> PullRequest:
        """Put `changes` (path -> new text, or None to delete) in ONE commit on `branch`, made
        from the base branch, and open (or update) ONE pull request for it.

        Safe to repeat: the branch is force-moved to the new commit, an open PR for the branch
        (found with `head=owner:branch`) is edited instead of duplicated, and a lost race on
        creating the ref or the PR falls back to the one that won.
        """
        repo = self.repo()
        base = self.settings.base_branch
        step = "read the base branch"
        try:
            base_ref = repo.get_git_ref(f"heads/{base}")
            base_commit = repo.get_git_commit(base_ref.object.sha)
            step = "create the commit"
            elements = [
                InputGitTreeElement(path, "100644", "blob", content=text) if text is not None
                else InputGitTreeElement(path, "100644", "blob", sha=None)
                for path, text in sorted(changes.items())
            ]
            tree = repo.create_git_tree(elements, base_tree=repo.get_git_tree(base_commit.tree.sha))
            commit = repo.create_git_commit(message or title, tree, [base_commit])
            step = f"move branch {branch}"
            self._point_branch(repo, branch, commit.sha)
            step = "open the pull request"
            pr = self._open_or_update_pull(repo, branch, title, body)
            step = "label the pull request"
            if self.settings.labels:
                pr.add_to_labels(*self.settings.labels)
            review_problem = None
            if self.settings.reviewers or self.settings.team_reviewers:
                step = "request reviewers"
                review_problem = self._request_reviewers(pr, body)
        except GitOpsError:
            raise
        except Exception as exc:
            raise github_error(step, exc) from None
        return PullRequest(pr.number, pr.html_url, pr.state, bool(pr.merged), branch, review_problem=review_problem)

    def _request_reviewers(self, pr, body: str) -> str | None:
        """Ask the configured reviewers; None when all were asked, else what GitHub refused and why.

        GitHub refuses the whole request with 422 when any one of them cannot review (not a collaborator
        of the repo, a team that does not exist or has no access, the PR's author), so on 422 each is asked
        on its own: the valid ones still get the request, and the refused ones are named in the PR body and
        returned for Slack. Other failures (401, 5xx) fail the proposal as before.
        """
        users, teams = list(self.settings.reviewers), list(self.settings.team_reviewers)
        try:
            pr.create_review_request(reviewers=users, team_reviewers=teams)
            return None
        except GithubException as exc:
            if exc.status != 422:
                raise
        refused = []
        for kind, name in [("user", u) for u in users] + [("team", t) for t in teams]:
            try:
                if kind == "user":
                    pr.create_review_request(reviewers=[name])
                else:
                    pr.create_review_request(team_reviewers=[name])
            except GithubException as exc:
                if exc.status != 422:
                    raise
                refused.append((kind, name, github_error("request reviewer", exc).detail))
        if not refused:
            return None
        names = ", ".join(f"`{name}`" if kind == "user" else f"team `{name}`" for kind, name, _ in refused)
        why = "; ".join(f"{name}: {detail}" for _, name, detail in refused if detail)
        log.warning("pull request #%s: GitHub refused to request reviewers %s (%s); check github.reviewers and "
                    "github.team_reviewers in the config", pr.number, names, why)
        problem = (f"GitHub refused to request {names} as reviewer (422: not a collaborator of "
                   f"{self.settings.repo}, or no such team), so nobody named in the config was asked. Ask DevOps "
                   "to fix `github.reviewers` / `github.team_reviewers` (`python app.py check` verifies them); "
                   "meanwhile ask a reviewer by hand.")
        pr.edit(body=f"{body}\n\n> **Reviewers not requested:** {problem}")
        return problem

    def check_reviewers(self) -> list[str]:
        """Problems with the configured reviewers, as `python app.py check` reports them: each user must be a
        collaborator of the repo (GET .../collaborators/{user} is 204, else 404) and each team must exist in
        the repo's organisation (GET /orgs/{org}/teams/{slug})."""
        repo = self.repo()
        problems = []
        for user in self.settings.reviewers:
            try:
                if not repo.has_in_collaborators(user):
                    problems.append(f"reviewer {user} is not a collaborator of {self.settings.repo}")
            except Exception as exc:
                raise github_error(f"check reviewer {user}", exc) from None
        for team in self.settings.team_reviewers:
            try:
                self.client.get_organization(self.owner()).get_team_by_slug(team)
            except GithubException as exc:
                if exc.status != 404:
                    raise github_error(f"check team {team}", exc) from None
                problems.append(f"team {team} does not exist in {self.owner()} (or the token cannot see it)")
            except Exception as exc:
                raise github_error(f"check team {team}", exc) from None
        return problems

    def _point_branch(self, repo: Repository, branch: str, sha: str) -> None:
        try:
            repo.get_git_ref(f"heads/{branch}").edit(sha, force=True)
            return
        except GithubException as exc:
            if exc.status != 404:
                raise
        try:
            repo.create_git_ref(f"refs/heads/{branch}", sha)
        except GithubException as exc:
            if exc.status != 422:  # created meanwhile by a concurrent retry: move it instead
                raise
            repo.get_git_ref(f"heads/{branch}").edit(sha, force=True)

    def _open_or_update_pull(self, repo: Repository, branch: str, title: str, body: str):
        head = f"{self.owner()}:{branch}"
        base = self.settings.base_branch
        for pr in repo.get_pulls(state="open", head=head, base=base):
            pr.edit(title=title, body=body)
            return pr
        try:
            return repo.create_pull(title=title, body=body, head=branch, base=base)
        except GithubException as exc:
            if exc.status != 422:
                raise
            for pr in repo.get_pulls(state="open", head=head, base=base):
                return pr
            raise


__all__ = ["GitOps", "GitOpsError", "PullRequest", "github_error", "InputGitTreeElement", "github"]
