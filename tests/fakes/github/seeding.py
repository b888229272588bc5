"""What tests set up and read back on the GitHub fake without HTTP: repositories and commits, branches,
history, pull requests opened, merged or closed as a person would."""
from __future__ import annotations

from tests.fakes.github.common import _bytes, _Repo


class SeedingMixin:
    """Test-side helpers of GitHubFake (mixed into it); each takes the fake's lock like a request does."""

    def create_repo(self, full_name: str, files: dict[str, str | bytes] | None = None,
                    default_branch: str = "main", private: bool = True) -> str:
        """Create a repo whose default branch holds one commit with `files`. Returns that commit's sha."""
        owner, name = full_name.split("/")
        with self._lock:
            repo = _Repo(owner, name, default_branch, private, next(self._ids))
            self._repos[full_name.lower()] = repo
            flat = {path: ("100644", self._blob(repo, _bytes(text))) for path, text in (files or {}).items()}
            sha = self._commit(repo, self._build_tree(repo, flat), [], "Initial commit", self.default_login)
            repo.refs[f"refs/heads/{default_branch}"] = sha
            return sha

    def commit_files(self, repo: str, branch: str, changes: dict[str, str | bytes | None],
                     message: str = "Update files", author: str = "octocat") -> str:
        """Push a commit to `branch` (created from the default branch if missing); None deletes a path."""
        with self._lock:
            r = self._repo(repo)
            ref = f"refs/heads/{branch}"
            parent = r.refs.get(ref) or r.refs[f"refs/heads/{r.default_branch}"]
            flat = self._flatten(r, self._commit_value(r, parent)["tree"])
            for path, text in changes.items():
                if text is None:
                    flat.pop(path, None)
                else:
                    flat[path] = ("100644", self._blob(r, _bytes(text)))
            sha = self._commit(r, self._build_tree(r, flat), [parent], message, author)
            self._move_ref(r, ref, sha)
            return sha

    def files(self, repo: str, ref: str | None = None) -> dict[str, str]:
        """path -> text of every file at `ref` (default: the default branch)."""
        with self._lock:
            r = self._repo(repo)
            sha = self._resolve(r, ref or r.default_branch)
            if sha is None:
                raise KeyError(f"no ref {ref!r} in {repo}")
            flat = self._flatten(r, self._commit_value(r, sha)["tree"])
            return {path: self._text(r, blob) for path, (mode, blob) in flat.items()}

    def branches(self, repo: str) -> dict[str, str]:
        """branch name -> commit sha."""
        with self._lock:
            return {ref[len("refs/heads/"):]: sha for ref, sha in self._repo(repo).refs.items()
                    if ref.startswith("refs/heads/")}

    def commit(self, repo: str, ref: str) -> dict:
        """The git commit at `ref` (sha, tree, parents, message, author login)."""
        with self._lock:
            r = self._repo(repo)
            sha = self._resolve(r, ref)
            if sha is None:
                raise KeyError(f"no ref {ref!r} in {repo}")
            c = self._commit_value(r, sha)
            return {"sha": sha, "tree": c["tree"], "parents": list(c["parents"]), "message": c["message"],
                    "author": c["login"]}

    def log(self, repo: str, ref: str | None = None) -> list[dict]:
        """Commits along first parents from `ref`, newest first."""
        with self._lock:
            r = self._repo(repo)
            sha, out = self._resolve(r, ref or r.default_branch), []
            while sha:
                out.append(self.commit(repo, sha))
                parents = self._commit_value(r, sha)["parents"]
                sha = parents[0] if parents else None
            return out

    def pulls(self, repo: str) -> list[dict]:
        """Every pull request (REST JSON, full detail), by number."""
        with self._lock:
            r = self._repo(repo)
            return [self._pull_json(r, pr, full=True) for _, pr in sorted(r.pulls.items())]

    def pull(self, repo: str, number: int) -> dict:
        with self._lock:
            r = self._repo(repo)
            return self._pull_json(r, r.pulls[number], full=True)

    def pr_files(self, repo: str, number: int) -> dict[str, str | None]:
        """What the PR changes: path -> new text, None for a removed path."""
        with self._lock:
            r = self._repo(repo)
            pr = r.pulls[number]
            changes = self._diff(r, self._pr_base_point(r, pr), pr["head_sha"])
            return {path: (None if new is None else self._text(r, new[1])) for path, (old, new) in changes.items()}

    def create_pull(self, repo: str, head: str, base: str | None = None, title: str = "A pull request",
                    body: str = "", user: str = "octocat") -> int:
        """Open a PR as `user` without going through HTTP; returns its number."""
        with self._lock:
            r = self._repo(repo)
            pr = self._open_pull(r, {"head": head, "base": base or r.default_branch, "title": title, "body": body},
                                 user)
            return pr["number"]

    def merge(self, repo: str, number: int, merged_by: str = "octocat", method: str = "merge") -> str:
        """Merge like the green button: a merge commit on base (or squash), PR closed and merged."""
        with self._lock:
            r = self._repo(repo)
            return self._merge(r, r.pulls[number], merged_by, method, None, None)

    def close(self, repo: str, number: int) -> None:
        with self._lock:
            r = self._repo(repo)
            self._set_state(r, r.pulls[number], "closed")
