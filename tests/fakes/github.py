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

import base64
import difflib
import hashlib
import heapq
import hmac
import itertools
import json
import re
import socket
import threading
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import pytest

API_PREFIX = "/api/v3"
DOCS = "https://docs.github.com/rest"
TREE_MODE = "40000"  # git writes "40000"; the REST API shows "040000"
FILE_MODES = {"100644", "100755", "120000"}


class ApiError(Exception):
    """An error response, shaped like GitHub's: message, documentation_url, status, maybe errors."""

    def __init__(self, status: int, message: str, errors: list | None = None, headers: dict | None = None):
        super().__init__(f"{status} {message}")
        self.status = status
        self.body: dict[str, Any] = {"message": message, "documentation_url": DOCS, "status": str(status)}
        if errors is not None:
            self.body["errors"] = errors
        self.headers = headers or {}


def _validation_failed(*errors: dict) -> ApiError:
    return ApiError(422, "Validation Failed", list(errors))


def _not_found() -> ApiError:
    return ApiError(404, "Not Found")


@dataclass
class Request:
    """One request as the fake saw it. ``path`` is relative to the API base (``/repos/o/r/pulls``)."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    headers: dict[str, str]
    token: str | None


@dataclass
class Fault:
    method: str | None
    path_contains: str | None
    times: int | None  # None: forever
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0  # for hangs
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method and self.method.upper() != method:
            return False
        return not self.path_contains or self.path_contains in path


DEFAULT_FAULT_MESSAGES = {
    401: "Bad credentials",
    403: "Resource not accessible by integration",
    404: "Not Found",
    409: "Conflict",
    422: "Validation Failed",
    500: "Server Error",
    502: "Server Error",
    503: "Service Unavailable",
}


class _Repo:
    def __init__(self, owner: str, name: str, default_branch: str, private: bool, repo_id: int):
        self.owner, self.name, self.default_branch, self.private, self.id = (
            owner, name, default_branch, private, repo_id)
        self.objects: dict[str, tuple[str, Any]] = {}  # sha -> (kind, value)
        self.refs: dict[str, str] = {}  # "refs/heads/main" -> commit sha
        self.pulls: dict[int, dict] = {}
        self.labels: dict[str, dict] = {}  # lower name -> label
        self.comments: dict[int, dict] = {}  # comment id -> comment
        self.generations: dict[str, int] = {}  # commit sha -> generation number
        self.next_number = 1

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def setup(self) -> None:
        super().setup()
        # headers and body go out as separate writes; without NODELAY, delayed ACKs add ~40 ms a request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.connections.discard(self.connection)

    def _any(self) -> None:
        try:
            self.server.fake._serve(self)
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
            self.close_connection = True

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, fake: "GitHubFake"):
        self.fake = fake
        self.connections: set[socket.socket] = set()
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:  # a client went away: not our news
        pass


class GitHubFake:
    """In-memory GitHub behind a real HTTP server. Thread-safe; all state changes happen under one lock."""

    def __init__(self, login: str = "deckhand-bot"):
        self.default_login = login
        self.valid_tokens: set[str] | None = None  # None: any non-empty token is valid
        self.token_logins: dict[str, str] = {}  # token -> user login (default: default_login)
        self.token_repos: dict[str, set[str]] = {}  # token -> repos it can see (absent: all repos)
        self.read_only_tokens: set[str] = set()  # writes with these get 403
        self.collaborators: set[str] | None = None  # None: anyone can be asked to review
        self.latency = 0.0
        self.clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
        self.requests: list[Request] = []
        self.errors: list[str] = []  # tracebacks of requests the fake itself failed to handle
        self.faults: list[Fault] = []
        self.hangs: list[Fault] = []
        self._repos: dict[str, _Repo] = {}
        self._ids = itertools.count(1001)
        self._user_ids: dict[str, int] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._routes = self._build_routes()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> "GitHubFake":
        self._stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="github-fake")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes hanging handlers
        if self._server is None:
            return
        self._server.shutdown()
        for conn in list(self._server.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        self._server = None

    def __enter__(self) -> "GitHubFake":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the fake first"
        return self._server.server_address[1]

    @property
    def web_url(self) -> str:
        """Where html_url links point, like https://HOST for GitHub Enterprise."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The API base for Github(base_url=...), like https://HOST/api/v3."""
        return f"{self.web_url}{API_PREFIX}"

    def client(self, token: str = "test-token", **kwargs: Any) -> Any:
        """A PyGithub client for this fake: no retries, no client-side throttling sleeps."""
        from github import Auth, Github

        options = dict(base_url=self.url, auth=Auth.Token(token), timeout=10, retry=None,
                       seconds_between_requests=None, seconds_between_writes=None)
        options.update(kwargs)
        return Github(**options)

    # ---------------------------------------------------------------- failure injection

    def fail(self, method: str | None = None, path_contains: str | None = None, status: int = 500,
             times: int | None = 1, body: Any = None, headers: dict[str, str] | None = None) -> Fault:
        """The next `times` matching requests (None: all) get `status` with `body` (default: GitHub's)."""
        if body is None:
            body = {"message": DEFAULT_FAULT_MESSAGES.get(status, "Error"), "documentation_url": DOCS,
                    "status": str(status)}
        fault = Fault(method, path_contains, times, status, body, dict(headers or {}))
        with self._lock:
            self.faults.append(fault)
        return fault

    def rate_limit(self, times: int | None = 1, secondary: bool = True, retry_after: int = 60,
                   method: str | None = None, path_contains: str | None = None) -> Fault:
        """GitHub's 403 rate limit: secondary (Retry-After) or primary (X-RateLimit-Remaining: 0)."""
        reset = int(self.clock().timestamp()) + retry_after
        if secondary:
            message = ("You have exceeded a secondary rate limit. Please wait a few minutes before you try "
                       "again. If you reach out to GitHub Support for help, please include the request ID "
                       "0000:0000:0000000:0000000:00000000.")
            headers = {"Retry-After": str(retry_after)}
        else:
            message = "API rate limit exceeded for user ID 1."
            headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
        body = {"message": message, "documentation_url": DOCS + "/overview/rate-limits-for-the-rest-api"}
        return self.fail(method, path_contains, 403, times, body, headers)

    def hang(self, path_contains: str | None = None, seconds: float = 30.0, method: str | None = None,
             times: int | None = 1) -> Fault:
        """Matching requests wait `seconds` before being served (stop() releases them), to drive timeouts."""
        fault = Fault(method, path_contains, times, seconds=seconds)
        with self._lock:
            self.hangs.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()
            self.hangs.clear()

    # ---------------------------------------------------------------- request log

    def writes(self) -> list[Request]:
        """Non-GET requests, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.method not in ("GET", "HEAD")]

    def find(self, method: str | None = None, path_contains: str = "") -> list[Request]:
        with self._lock:
            return [r for r in self.requests
                    if (method is None or r.method == method.upper()) and path_contains in r.path]

    # ---------------------------------------------------------------- test-side helpers (no HTTP)

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

    # ---------------------------------------------------------------- git object model

    def _put(self, r: _Repo, kind: str, payload: bytes, value: Any) -> str:
        sha = hashlib.sha1(f"{kind} {len(payload)}\0".encode() + payload).hexdigest()
        r.objects.setdefault(sha, (kind, value))
        return sha

    def _blob(self, r: _Repo, data: bytes) -> str:
        return self._put(r, "blob", data, data)

    def _tree(self, r: _Repo, entries: dict[str, tuple[str, str]]) -> str:
        # git orders tree entries by name, comparing a subtree as if its name ended in "/"
        def order(item: tuple[str, tuple[str, str]]) -> bytes:
            name, (mode, _) = item
            return (name + "/" if mode == TREE_MODE else name).encode()

        items = sorted(entries.items(), key=order)
        payload = b"".join(f"{mode} {name}".encode() + b"\0" + bytes.fromhex(sha) for name, (mode, sha) in items)
        return self._put(r, "tree", payload, dict(items))

    def _commit(self, r: _Repo, tree: str, parents: list[str], message: str, login: str,
                author: dict | None = None, committer: dict | None = None) -> str:
        now = self.clock().replace(microsecond=0)
        default = {"name": login, "email": f"{login}@users.noreply.github.com", "date": _iso(now)}
        author = {**default, **(author or {})}
        committer = {**default, **(committer or {})}

        def signature(who: dict) -> str:
            stamp = int(_parse_iso(who["date"]).timestamp())
            return f"{who['name']} <{who['email']}> {stamp} +0000"

        lines = [f"tree {tree}", *(f"parent {p}" for p in parents),
                 f"author {signature(author)}", f"committer {signature(committer)}"]
        payload = ("\n".join(lines) + "\n\n" + message).encode()
        value = {"tree": tree, "parents": list(parents), "message": message, "author": author,
                 "committer": committer, "login": login}
        return self._put(r, "commit", payload, value)

    def _kind(self, r: _Repo, sha: str | None) -> str | None:
        obj = r.objects.get(sha or "")
        return obj[0] if obj else None

    def _commit_value(self, r: _Repo, sha: str) -> dict:
        return r.objects[sha][1]

    def _text(self, r: _Repo, blob: str) -> str:
        return r.objects[blob][1].decode("utf-8", errors="replace")

    def _walk(self, r: _Repo, tree: str, prefix: str = "", recursive: bool = True) -> list[tuple[str, str, str]]:
        """(path, mode, sha) in git order; subtrees are listed before their contents."""
        out = []
        for name, (mode, sha) in r.objects[tree][1].items():
            path = f"{prefix}{name}"
            out.append((path, mode, sha))
            if recursive and mode == TREE_MODE:
                out.extend(self._walk(r, sha, path + "/"))
        return out

    def _flatten(self, r: _Repo, tree: str, prefix: str = "") -> dict[str, tuple[str, str]]:
        """path -> (mode, sha) for every non-tree entry."""
        return {path: (mode, sha) for path, mode, sha in self._walk(r, tree, prefix) if mode != TREE_MODE}

    def _build_tree(self, r: _Repo, flat: dict[str, tuple[str, str]]) -> str:
        nested: dict[str, Any] = {}
        for path, entry in flat.items():
            *dirs, leaf = path.split("/")
            node = nested
            for d in dirs:
                node = node.setdefault(d, {})
                if not isinstance(node, dict):
                    raise ApiError(422, "GitRPC::BadObjectState")
            node[leaf] = entry

        def write(node: dict) -> str:
            return self._tree(r, {name: (TREE_MODE, write(v)) if isinstance(v, dict) else v
                                  for name, v in node.items()})

        return write(nested)

    def _resolve(self, r: _Repo, refish: str) -> str | None:
        """A commit sha for a sha, abbreviated sha, branch, tag or full ref name."""
        for candidate in (refish, f"refs/{refish}", f"refs/heads/{refish}", f"refs/tags/{refish}"):
            if candidate in r.refs:
                return r.refs[candidate]
        if self._kind(r, refish) == "commit":
            return refish
        if re.fullmatch(r"[0-9a-f]{7,39}", refish):
            found = [sha for sha, (kind, _) in r.objects.items() if kind == "commit" and sha.startswith(refish)]
            if len(found) == 1:
                return found[0]
        return None

    def _ancestors(self, r: _Repo, sha: str) -> set[str]:
        seen, todo = set(), [sha]
        while todo:
            s = todo.pop()
            if s not in seen:
                seen.add(s)
                todo.extend(self._commit_value(r, s)["parents"])
        return seen

    def _generation(self, r: _Repo, sha: str) -> int:
        """Length of the longest parent chain down to a root commit (commits never change, so cached)."""
        todo = [sha]
        while todo:
            s = todo[-1]
            if s in r.generations:
                todo.pop()
                continue
            missing = [p for p in self._commit_value(r, s)["parents"] if p not in r.generations]
            if missing:
                todo.extend(missing)
            else:
                todo.pop()
                r.generations[s] = 1 + max((r.generations[p] for p in self._commit_value(r, s)["parents"]),
                                           default=0)
        return r.generations[sha]

    def _merge_base(self, r: _Repo, a: str, b: str) -> str | None:
        # the deepest common ancestor; with criss-cross merges any of the best ones will do here
        common = self._ancestors(r, a) & self._ancestors(r, b)
        return max(common, key=lambda c: (self._generation(r, c), c)) if common else None

    def _diff(self, r: _Repo, old_commit: str | None, new_commit: str) -> dict[str, tuple[Any, Any]]:
        """path -> (old (mode, sha) | None, new (mode, sha) | None) for paths that differ."""
        old = self._flatten(r, self._commit_value(r, old_commit)["tree"]) if old_commit else {}
        new = self._flatten(r, self._commit_value(r, new_commit)["tree"])
        return {p: (old.get(p), new.get(p)) for p in sorted(set(old) | set(new)) if old.get(p) != new.get(p)}

    def _three_way(self, r: _Repo, base_tip: str, head: str) -> dict[str, tuple[str, str]] | None:
        """The merged flat tree, or None on a conflict (same path changed differently on both sides)."""
        mb = self._merge_base(r, base_tip, head)
        ours = self._flatten(r, self._commit_value(r, base_tip)["tree"])
        theirs = self._flatten(r, self._commit_value(r, head)["tree"])
        ancestor = self._flatten(r, self._commit_value(r, mb)["tree"]) if mb else {}
        result = dict(ours)
        for path in set(ancestor) | set(theirs):
            a, o, t = ancestor.get(path), ours.get(path), theirs.get(path)
            if t == a or o == t:
                continue
            if o != a:
                return None
            if t is None:
                result.pop(path, None)
            else:
                result[path] = t
        return result

    def _move_ref(self, r: _Repo, ref: str, sha: str | None) -> None:
        """Point (or delete) a ref; open PRs follow their head branch and close when it is deleted."""
        if sha is None:
            r.refs.pop(ref, None)
        else:
            r.refs[ref] = sha
        for pr in r.pulls.values():
            if pr["state"] == "open" and ref == f"refs/heads/{pr['head_ref']}":
                if sha is None:
                    self._set_state(r, pr, "closed")
                else:
                    pr["head_sha"] = sha
                    pr["updated_at"] = _iso(self.clock())

    # ---------------------------------------------------------------- HTTP plumbing

    def _serve(self, h: _Handler) -> None:
        split = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        bad_json = False
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body, bad_json = None, True
        token = _token(h.headers.get("Authorization"))
        path = split.path
        in_api = path == API_PREFIX or path.startswith(API_PREFIX + "/")
        if in_api:
            path = path[len(API_PREFIX):] or "/"
        method = h.command
        with self._lock:
            self.requests.append(Request(method, path, query, body, dict(h.headers.items()), token))
            fault = next((f for f in self.faults if f.matches(method, path)), None)
            hang = next((f for f in self.hangs if f.matches(method, path)), None)
            for f in (fault, hang):
                if f:
                    f.hits += 1
        delay = self.latency + (hang.seconds if hang else 0.0)
        if delay:
            self._stopping.wait(delay)
        headers: dict[str, str] = {}
        if fault:
            status, payload, headers = fault.status, fault.body, dict(fault.headers)
        elif not in_api:
            status, payload = 404, {"message": "Not Found", "documentation_url": DOCS}
        elif bad_json:
            status, payload = 400, {"message": "Problems parsing JSON", "documentation_url": DOCS}
        else:
            try:
                with self._lock:
                    status, payload, *more = self._dispatch(method, path, query, body, token)
                headers = more[0] if more else {}
            except ApiError as e:
                status, payload, headers = e.status, e.body, e.headers
            except Exception as e:  # a bug in the fake: answer 500 and keep it for the test to see
                self.errors.append(traceback.format_exc())
                status, payload = 500, {"message": f"GitHub fake crashed: {e!r}", "documentation_url": DOCS}
        self._respond(h, status, payload, headers)

    def _respond(self, h: _Handler, status: int, payload: Any, extra: dict[str, str]) -> None:
        if payload is None or status == 204:
            data = b""
        elif isinstance(payload, (bytes, str)):
            data = _bytes(payload)
        else:
            data = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Request-Id": uuid.uuid4().hex[:16].upper(),
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": "4999",
            "X-RateLimit-Reset": str(int(self.clock().timestamp()) + 3600),
            "X-RateLimit-Used": "1",
            "X-RateLimit-Resource": "core",
            **extra,
        }
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if data:
            h.wfile.write(data)
        h.wfile.flush()

    def _dispatch(self, method: str, path: str, query: dict, body: Any, token: str | None) -> tuple:
        login = self._authenticate(token)
        for verb, pattern, handler in self._routes:
            m = pattern.match(path) if verb == method else None
            if not m:
                continue
            args = {k: unquote(v) if v is not None else None for k, v in m.groupdict().items()}
            call = _Call(method, path, query, body if body is not None else {}, token, login, args)
            if "owner" in args:
                call.repo = self._repo_for_token(f"{args.pop('owner')}/{args.pop('name')}", token,
                                                 write=method not in ("GET", "HEAD"))
            return handler(call)
        raise _not_found()

    def _authenticate(self, token: str | None) -> str:
        if token is None:
            raise ApiError(401, "Requires authentication")
        if not token or (self.valid_tokens is not None and token not in self.valid_tokens):
            raise ApiError(401, "Bad credentials")
        return self.token_logins.get(token, self.default_login)

    def _repo(self, full_name: str) -> _Repo:
        try:
            return self._repos[full_name.lower()]
        except KeyError:
            raise KeyError(f"no repo {full_name!r}; create_repo() it first") from None

    def _repo_for_token(self, full_name: str, token: str | None, write: bool) -> _Repo:
        r = self._repos.get(full_name.lower())
        visible = self.token_repos.get(token or "")
        if r is None or (visible is not None and r.full_name.lower() not in {v.lower() for v in visible}):
            raise _not_found()
        if write and token in self.read_only_tokens:
            raise ApiError(403, "Resource not accessible by integration")
        return r

    def _paginate(self, call: "_Call", items: list) -> tuple:
        per_page = max(1, min(_int(call.query.get("per_page"), 30), 100))
        page = max(1, _int(call.query.get("page"), 1))
        last = max(1, -(-len(items) // per_page))
        links = []

        def link(n: int, rel: str) -> None:
            links.append(f'<{self.url}{call.path}?{urlencode({**call.query, "page": n})}>; rel="{rel}"')

        if page < last:
            link(page + 1, "next")
            link(last, "last")
        if page > 1:
            link(1, "first")
            link(page - 1, "prev")
        chunk = items[(page - 1) * per_page: page * per_page]
        return 200, chunk, ({"Link": ", ".join(links)} if links else {})

    # ---------------------------------------------------------------- JSON shapes

    def _repo_url(self, r: _Repo) -> str:
        return f"{self.url}/repos/{r.full_name}"

    def _user_json(self, login: str) -> dict:
        uid = self._user_ids.setdefault(login, next(self._ids))
        return {
            "login": login, "id": uid, "node_id": _node_id("U", uid),
            "avatar_url": f"{self.web_url}/avatars/u/{uid}", "gravatar_id": "",
            "url": f"{self.url}/users/{login}", "html_url": f"{self.web_url}/{login}",
            "repos_url": f"{self.url}/users/{login}/repos",
            "type": "Bot" if login.endswith("[bot]") else "User", "site_admin": False,
        }

    def _team_json(self, r: _Repo, slug: str) -> dict:
        tid = self._user_ids.setdefault(f"team:{r.owner}/{slug}", next(self._ids))
        return {
            "id": tid, "node_id": _node_id("T", tid), "url": f"{self.url}/teams/{tid}",
            "html_url": f"{self.web_url}/orgs/{r.owner}/teams/{slug}", "name": slug, "slug": slug,
            "description": None, "privacy": "closed", "notification_setting": "notifications_enabled",
            "permission": "pull", "members_url": f"{self.url}/teams/{tid}/members{{/member}}",
            "repositories_url": f"{self.url}/teams/{tid}/repos", "parent": None,
        }

    def _repo_json(self, r: _Repo, token: str | None = None) -> dict:
        url = self._repo_url(r)
        owner = self._user_json(r.owner)
        owner["type"] = "Organization"
        now = _iso(self.clock())
        return {
            "id": r.id, "node_id": _node_id("R", r.id), "name": r.name, "full_name": r.full_name,
            "private": r.private, "visibility": "private" if r.private else "public", "owner": owner,
            "html_url": f"{self.web_url}/{r.full_name}", "description": None, "fork": False, "url": url,
            "archived": False, "disabled": False, "default_branch": r.default_branch,
            "permissions": {"admin": False, "maintain": False, "push": token not in self.read_only_tokens,
                            "triage": True, "pull": True},
            "allow_merge_commit": True, "allow_squash_merge": True, "allow_rebase_merge": True,
            "delete_branch_on_merge": False, "created_at": now, "updated_at": now, "pushed_at": now,
            "clone_url": f"{self.web_url}/{r.full_name}.git", "git_url": f"git://127.0.0.1/{r.full_name}.git",
            "branches_url": f"{url}/branches{{/branch}}", "commits_url": f"{url}/commits{{/sha}}",
            "contents_url": f"{url}/contents/{{+path}}", "git_refs_url": f"{url}/git/refs{{/sha}}",
            "git_commits_url": f"{url}/git/commits{{/sha}}", "trees_url": f"{url}/git/trees{{/sha}}",
            "blobs_url": f"{url}/git/blobs{{/sha}}", "pulls_url": f"{url}/pulls{{/number}}",
            "issues_url": f"{url}/issues{{/number}}", "labels_url": f"{url}/labels{{/name}}",
            "open_issues_count": sum(1 for pr in r.pulls.values() if pr["state"] == "open"),
        }

    def _ref_json(self, r: _Repo, ref: str) -> dict:
        sha = r.refs[ref]
        return {"ref": ref, "node_id": _node_id("REF", ref), "url": f"{self._repo_url(r)}/git/{ref}",
                "object": {"sha": sha, "type": "commit", "url": f"{self._repo_url(r)}/git/commits/{sha}"}}

    def _git_commit_json(self, r: _Repo, sha: str) -> dict:
        c, url = self._commit_value(r, sha), self._repo_url(r)
        return {
            "sha": sha, "node_id": _node_id("C", sha), "url": f"{url}/git/commits/{sha}",
            "html_url": f"{self.web_url}/{r.full_name}/commit/{sha}",
            "author": dict(c["author"]), "committer": dict(c["committer"]), "message": c["message"],
            "tree": {"sha": c["tree"], "url": f"{url}/git/trees/{c['tree']}"},
            "parents": [{"sha": p, "url": f"{url}/git/commits/{p}",
                         "html_url": f"{self.web_url}/{r.full_name}/commit/{p}"} for p in c["parents"]],
            "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None,
                             "verified_at": None},
        }

    def _commit_json(self, r: _Repo, sha: str, with_files: bool = True) -> dict:
        c, url = self._commit_value(r, sha), self._repo_url(r)
        git = self._git_commit_json(r, sha)
        out = {
            "sha": sha, "node_id": git["node_id"], "url": f"{url}/commits/{sha}", "html_url": git["html_url"],
            "comments_url": f"{url}/commits/{sha}/comments",
            "commit": {"author": git["author"], "committer": git["committer"], "message": c["message"],
                       "tree": git["tree"], "url": git["url"], "comment_count": 0,
                       "verification": git["verification"]},
            "author": self._user_json(c["login"]), "committer": self._user_json(c["login"]),
            "parents": [{"sha": p, "url": f"{url}/commits/{p}",
                         "html_url": f"{self.web_url}/{r.full_name}/commit/{p}"} for p in c["parents"]],
        }
        if with_files:
            files = self._files_json(r, c["parents"][0] if c["parents"] else None, sha)
            adds, dels = sum(f["additions"] for f in files), sum(f["deletions"] for f in files)
            out["stats"] = {"total": adds + dels, "additions": adds, "deletions": dels}
            out["files"] = files
        return out

    def _files_json(self, r: _Repo, old_commit: str | None, new_commit: str) -> list[dict]:
        out = []
        for path, (old, new) in self._diff(r, old_commit, new_commit).items():
            before = self._text(r, old[1]).splitlines() if old else []
            after = self._text(r, new[1]).splitlines() if new else []
            patch = list(difflib.unified_diff(before, after, lineterm="", n=3))[2:]
            adds = sum(1 for line in patch if line.startswith("+"))
            dels = sum(1 for line in patch if line.startswith("-"))
            status = "added" if old is None else "removed" if new is None else "modified"
            blob = (new or old)[1]
            quoted = quote(path)
            out.append({
                "sha": blob, "filename": path, "status": status, "additions": adds, "deletions": dels,
                "changes": adds + dels,
                "blob_url": f"{self.web_url}/{r.full_name}/blob/{new_commit}/{quoted}",
                "raw_url": f"{self.web_url}/{r.full_name}/raw/{new_commit}/{quoted}",
                "contents_url": f"{self._repo_url(r)}/contents/{quoted}?ref={new_commit}",
                "patch": "\n".join(patch),
            })
        return out

    def _tree_json(self, r: _Repo, tree: str, recursive: bool) -> dict:
        url = self._repo_url(r)
        entries = []
        for path, mode, sha in self._walk(r, tree, recursive=recursive):
            if mode == TREE_MODE:
                entries.append({"path": path, "mode": "040000", "type": "tree", "sha": sha,
                                "url": f"{url}/git/trees/{sha}"})
            elif mode == "160000":
                entries.append({"path": path, "mode": mode, "type": "commit", "sha": sha})
            else:
                entries.append({"path": path, "mode": mode, "type": "blob", "sha": sha,
                                "size": len(r.objects[sha][1]), "url": f"{url}/git/blobs/{sha}"})
        return {"sha": tree, "url": f"{url}/git/trees/{tree}", "tree": entries, "truncated": False}

    def _content_json(self, r: _Repo, path: str, mode: str, sha: str, ref: str, with_content: bool) -> dict:
        url, quoted = self._repo_url(r), quote(path)
        is_dir = mode == TREE_MODE
        self_url = f"{url}/contents/{quoted}?ref={quote(ref, safe='')}"
        git_url = f"{url}/git/{'trees' if is_dir else 'blobs'}/{sha}"
        html_url = f"{self.web_url}/{r.full_name}/{'tree' if is_dir else 'blob'}/{ref}/{quoted}"
        out = {
            "type": "dir" if is_dir else "file", "size": 0 if is_dir else len(r.objects[sha][1]),
            "name": path.rsplit("/", 1)[-1], "path": path, "sha": sha, "url": self_url, "git_url": git_url,
            "html_url": html_url,
            "download_url": None if is_dir else f"{self.web_url}/{r.full_name}/raw/{ref}/{quoted}",
            "_links": {"self": self_url, "git": git_url, "html": html_url},
        }
        if with_content and not is_dir:
            out["content"] = _b64_lines(r.objects[sha][1])
            out["encoding"] = "base64"
        return out

    def _label_json(self, r: _Repo, label: dict) -> dict:
        return {"id": label["id"], "node_id": _node_id("LA", label["id"]),
                "url": f"{self._repo_url(r)}/labels/{quote(label['name'])}", "name": label["name"],
                "color": label["color"], "default": False, "description": label.get("description")}

    def _pull_json(self, r: _Repo, pr: dict, full: bool = True) -> dict:
        n, url, web = pr["number"], self._repo_url(r), f"{self.web_url}/{r.full_name}"
        repo_json, owner_json = self._repo_json(r), self._user_json(r.owner)
        base_sha = pr["base_sha"]
        if pr["state"] == "open":
            base_sha = r.refs.get(f"refs/heads/{pr['base_ref']}", base_sha)
        out = {
            "url": f"{url}/pulls/{n}", "id": pr["id"], "node_id": _node_id("PR", pr["id"]),
            "html_url": f"{web}/pull/{n}", "diff_url": f"{web}/pull/{n}.diff", "patch_url": f"{web}/pull/{n}.patch",
            "issue_url": f"{url}/issues/{n}", "commits_url": f"{url}/pulls/{n}/commits",
            "review_comments_url": f"{url}/pulls/{n}/comments",
            "review_comment_url": f"{url}/pulls/comments{{/number}}", "comments_url": f"{url}/issues/{n}/comments",
            "statuses_url": f"{url}/statuses/{pr['head_sha']}", "number": n, "state": pr["state"],
            "locked": False, "title": pr["title"], "user": self._user_json(pr["user"]), "body": pr["body"],
            "labels": [self._label_json(r, r.labels[name.lower()]) for name in pr["labels"]],
            "milestone": None, "active_lock_reason": None, "created_at": pr["created_at"],
            "updated_at": pr["updated_at"], "closed_at": pr["closed_at"], "merged_at": pr["merged_at"],
            "merge_commit_sha": pr["merge_commit_sha"], "assignee": None, "assignees": [],
            "requested_reviewers": [self._user_json(u) for u in pr["reviewers"]],
            "requested_teams": [self._team_json(r, t) for t in pr["teams"]],
            "head": {"label": f"{r.owner}:{pr['head_ref']}", "ref": pr["head_ref"], "sha": pr["head_sha"],
                     "user": owner_json, "repo": repo_json},
            "base": {"label": f"{r.owner}:{pr['base_ref']}", "ref": pr["base_ref"], "sha": base_sha,
                     "user": owner_json, "repo": repo_json},
            "_links": {"self": {"href": f"{url}/pulls/{n}"}, "html": {"href": f"{web}/pull/{n}"},
                       "issue": {"href": f"{url}/issues/{n}"}, "comments": {"href": f"{url}/issues/{n}/comments"},
                       "commits": {"href": f"{url}/pulls/{n}/commits"},
                       "statuses": {"href": f"{url}/statuses/{pr['head_sha']}"}},
            "author_association": "MEMBER", "auto_merge": None, "draft": pr["draft"],
        }
        if full:  # the list endpoint leaves these out; PyGithub fetches the PR when they are read
            mergeable = None if pr["merged_at"] else self._three_way(r, base_sha, pr["head_sha"]) is not None
            files = self._files_json(r, self._pr_base_point(r, pr), pr["head_sha"])
            out.update({
                "merged": pr["merged_at"] is not None, "mergeable": mergeable, "rebaseable": mergeable,
                "mergeable_state": "unknown" if mergeable is None else "clean" if mergeable else "dirty",
                "merged_by": self._user_json(pr["merged_by"]) if pr["merged_by"] else None,
                "comments": sum(1 for c in r.comments.values() if c["number"] == n), "review_comments": 0,
                "maintainer_can_modify": False, "commits": len(self._pr_commits(r, pr)),
                "additions": sum(f["additions"] for f in files), "deletions": sum(f["deletions"] for f in files),
                "changed_files": len(files),
            })
        return out

    def _issue_json(self, r: _Repo, pr: dict) -> dict:
        n, url, web = pr["number"], self._repo_url(r), f"{self.web_url}/{r.full_name}"
        return {
            "url": f"{url}/issues/{n}", "repository_url": url, "labels_url": f"{url}/issues/{n}/labels{{/name}}",
            "comments_url": f"{url}/issues/{n}/comments", "events_url": f"{url}/issues/{n}/events",
            "html_url": f"{web}/pull/{n}", "id": pr["id"] + 1, "node_id": _node_id("I", pr["id"]), "number": n,
            "title": pr["title"], "user": self._user_json(pr["user"]),
            "labels": [self._label_json(r, r.labels[name.lower()]) for name in pr["labels"]],
            "state": pr["state"], "state_reason": None, "locked": False, "assignee": None, "assignees": [],
            "milestone": None, "comments": sum(1 for c in r.comments.values() if c["number"] == n),
            "created_at": pr["created_at"], "updated_at": pr["updated_at"], "closed_at": pr["closed_at"],
            "author_association": "MEMBER", "body": pr["body"], "closed_by": None,
            "pull_request": {"url": f"{url}/pulls/{n}", "html_url": f"{web}/pull/{n}",
                             "diff_url": f"{web}/pull/{n}.diff", "patch_url": f"{web}/pull/{n}.patch",
                             "merged_at": pr["merged_at"]},
        }

    def _comment_json(self, r: _Repo, c: dict) -> dict:
        url = self._repo_url(r)
        return {"id": c["id"], "node_id": _node_id("IC", c["id"]), "url": f"{url}/issues/comments/{c['id']}",
                "html_url": f"{self.web_url}/{r.full_name}/pull/{c['number']}#issuecomment-{c['id']}",
                "issue_url": f"{url}/issues/{c['number']}", "body": c["body"], "user": self._user_json(c["user"]),
                "created_at": c["created_at"], "updated_at": c["updated_at"], "author_association": "MEMBER"}

    # ---------------------------------------------------------------- routes

    def _build_routes(self) -> list[tuple[str, re.Pattern, Callable[["_Call"], tuple]]]:
        repo = r"/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)"
        table = [
            ("GET", r"/user", self._get_user),
            ("GET", r"/users/(?P<login>[^/]+)", lambda c: (200, self._user_json(c.args["login"]))),
            ("GET", r"/rate_limit", self._get_rate_limit),
            ("GET", repo, lambda c: (200, self._repo_json(c.repo, c.token))),
            ("GET", repo + r"/branches", self._list_branches),
            ("GET", repo + r"/branches/(?P<branch>.+)", self._get_branch),
            ("GET", repo + r"/git/ref/(?P<ref>.+)", self._get_ref),
            ("GET", repo + r"/git/refs", self._list_refs),
            ("GET", repo + r"/git/refs/(?P<ref>.+)", self._get_refs_legacy),
            ("GET", repo + r"/git/matching-refs/(?P<ref>.*)", self._matching_refs),
            ("POST", repo + r"/git/refs", self._create_ref),
            ("PATCH", repo + r"/git/refs/(?P<ref>.+)", self._update_ref),
            ("DELETE", repo + r"/git/refs/(?P<ref>.+)", self._delete_ref),
            ("POST", repo + r"/git/blobs", self._create_blob),
            ("GET", repo + r"/git/blobs/(?P<sha>[^/]+)", self._get_blob),
            ("POST", repo + r"/git/trees", self._create_tree),
            ("GET", repo + r"/git/trees/(?P<sha>.+)", self._get_tree),
            ("POST", repo + r"/git/commits", self._create_commit),
            ("GET", repo + r"/git/commits/(?P<sha>[^/]+)", self._get_git_commit),
            ("GET", repo + r"/commits", self._list_commits),
            ("GET", repo + r"/commits/(?P<ref>.+)", self._get_commit),
            ("GET", repo + r"/contents(?:/(?P<path>.*))?", self._get_contents),
            ("PUT", repo + r"/contents/(?P<path>.+)", self._put_contents),
            ("DELETE", repo + r"/contents/(?P<path>.+)", self._delete_contents),
            ("GET", repo + r"/pulls", self._list_pulls),
            ("POST", repo + r"/pulls", self._post_pull),
            ("GET", repo + r"/pulls/(?P<number>\d+)", self._get_pull),
            ("PATCH", repo + r"/pulls/(?P<number>\d+)", self._patch_pull),
            ("GET", repo + r"/pulls/(?P<number>\d+)/files", self._pull_files),
            ("GET", repo + r"/pulls/(?P<number>\d+)/commits", self._pull_commits),
            ("GET", repo + r"/pulls/(?P<number>\d+)/merge", self._is_merged),
            ("PUT", repo + r"/pulls/(?P<number>\d+)/merge", self._put_merge),
            ("GET", repo + r"/pulls/(?P<number>\d+)/requested_reviewers", self._get_reviewers),
            ("POST", repo + r"/pulls/(?P<number>\d+)/requested_reviewers", self._add_reviewers),
            ("DELETE", repo + r"/pulls/(?P<number>\d+)/requested_reviewers", self._remove_reviewers),
            ("GET", repo + r"/issues/(?P<number>\d+)", self._get_issue),
            ("PATCH", repo + r"/issues/(?P<number>\d+)", self._patch_issue),
            ("GET", repo + r"/issues/(?P<number>\d+)/labels", self._get_labels),
            ("POST", repo + r"/issues/(?P<number>\d+)/labels", self._add_labels),
            ("PUT", repo + r"/issues/(?P<number>\d+)/labels", self._set_labels),
            ("DELETE", repo + r"/issues/(?P<number>\d+)/labels/(?P<label>.+)", self._remove_label),
            ("GET", repo + r"/issues/(?P<number>\d+)/comments", self._list_comments),
            ("POST", repo + r"/issues/(?P<number>\d+)/comments", self._add_comment),
            ("PATCH", repo + r"/issues/comments/(?P<id>\d+)", self._edit_comment),
            ("DELETE", repo + r"/issues/comments/(?P<id>\d+)", self._delete_comment),
            ("GET", repo + r"/labels", lambda c: self._paginate(
                c, [self._label_json(c.repo, lab) for lab in c.repo.labels.values()])),
        ]
        return [(verb, re.compile(f"^{pattern}/?$"), fn) for verb, pattern, fn in table]

    # -- users

    def _get_user(self, c: "_Call") -> tuple:
        return 200, self._user_json(c.login)

    def _get_rate_limit(self, c: "_Call") -> tuple:
        core = {"limit": 5000, "remaining": 4999, "reset": int(self.clock().timestamp()) + 3600, "used": 1,
                "resource": "core"}
        return 200, {"resources": {"core": core, "search": {**core, "limit": 30, "resource": "search"},
                                   "graphql": {**core, "resource": "graphql"}}, "rate": core}

    # -- branches and refs

    def _branch_json(self, r: _Repo, name: str) -> dict:
        url = self._repo_url(r)
        return {"name": name, "commit": self._commit_json(r, r.refs[f"refs/heads/{name}"], with_files=False),
                "_links": {"self": f"{url}/branches/{quote(name)}",
                           "html": f"{self.web_url}/{r.full_name}/tree/{name}"},
                "protected": False,
                "protection": {"enabled": False,
                               "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []}},
                "protection_url": f"{url}/branches/{quote(name)}/protection"}

    def _list_branches(self, c: "_Call") -> tuple:
        names = sorted(self.branches(c.repo.full_name))
        return self._paginate(c, [{"name": n, "commit": {"sha": c.repo.refs[f"refs/heads/{n}"],
                                                          "url": f"{self._repo_url(c.repo)}/commits/"
                                                                 f"{c.repo.refs[f'refs/heads/{n}']}"},
                                   "protected": False} for n in names])

    def _get_branch(self, c: "_Call") -> tuple:
        name = c.args["branch"]
        if f"refs/heads/{name}" not in c.repo.refs:
            raise ApiError(404, "Branch not found")
        return 200, self._branch_json(c.repo, name)

    def _get_ref(self, c: "_Call") -> tuple:
        ref = "refs/" + c.args["ref"]
        if ref not in c.repo.refs:
            raise _not_found()
        return 200, self._ref_json(c.repo, ref)

    def _list_refs(self, c: "_Call") -> tuple:
        return self._paginate(c, [self._ref_json(c.repo, ref) for ref in sorted(c.repo.refs)])

    def _get_refs_legacy(self, c: "_Call") -> tuple:
        # GET /git/refs/<ref>: the object for an exact match, else a list of prefix matches
        ref = "refs/" + c.args["ref"]
        if ref in c.repo.refs:
            return 200, self._ref_json(c.repo, ref)
        found = [self._ref_json(c.repo, x) for x in sorted(c.repo.refs) if x.startswith(ref)]
        if not found:
            raise _not_found()
        return 200, found

    def _matching_refs(self, c: "_Call") -> tuple:
        prefix = "refs/" + (c.args["ref"] or "")
        return 200, [self._ref_json(c.repo, x) for x in sorted(c.repo.refs) if x.startswith(prefix)]

    def _create_ref(self, c: "_Call") -> tuple:
        ref, sha = c.body.get("ref"), c.body.get("sha")
        if not isinstance(ref, str) or not ref.startswith("refs/") or ref.count("/") < 2:
            raise ApiError(422, "Reference name must start with 'refs/' and have at least two slashes.")
        if not isinstance(sha, str):
            raise _validation_failed({"resource": "Reference", "field": "sha", "code": "missing_field"})
        if ref in c.repo.refs:
            raise ApiError(422, "Reference already exists")
        if self._kind(c.repo, sha) != "commit":
            raise ApiError(422, "Object does not exist")
        self._move_ref(c.repo, ref, sha)
        return 201, self._ref_json(c.repo, ref)

    def _update_ref(self, c: "_Call") -> tuple:
        ref, sha = "refs/" + c.args["ref"], c.body.get("sha")
        if ref not in c.repo.refs:
            raise ApiError(422, "Reference does not exist")
        if not isinstance(sha, str) or self._kind(c.repo, sha) != "commit":
            raise ApiError(422, "Object does not exist")
        if not c.body.get("force") and c.repo.refs[ref] not in self._ancestors(c.repo, sha):
            raise ApiError(422, "Update is not a fast forward")
        self._move_ref(c.repo, ref, sha)
        return 200, self._ref_json(c.repo, ref)

    def _delete_ref(self, c: "_Call") -> tuple:
        ref = "refs/" + c.args["ref"]
        if ref not in c.repo.refs:
            raise ApiError(422, "Reference does not exist")
        self._move_ref(c.repo, ref, None)
        return 204, None

    # -- blobs, trees, commits

    def _create_blob(self, c: "_Call") -> tuple:
        content, encoding = c.body.get("content"), c.body.get("encoding", "utf-8")
        if not isinstance(content, str):
            raise _validation_failed({"resource": "Blob", "field": "content", "code": "missing_field"})
        if encoding == "base64":
            data = base64.b64decode(content)
        elif encoding in ("utf-8", "utf8"):
            data = content.encode()
        else:
            raise _validation_failed({"resource": "Blob", "field": "encoding", "code": "invalid"})
        sha = self._blob(c.repo, data)
        return 201, {"url": f"{self._repo_url(c.repo)}/git/blobs/{sha}", "sha": sha}

    def _get_blob(self, c: "_Call") -> tuple:
        sha = c.args["sha"]
        if self._kind(c.repo, sha) != "blob":
            raise _not_found()
        data = c.repo.objects[sha][1]
        return 200, {"sha": sha, "node_id": _node_id("B", sha), "size": len(data),
                     "url": f"{self._repo_url(c.repo)}/git/blobs/{sha}", "content": _b64_lines(data),
                     "encoding": "base64"}

    def _create_tree(self, c: "_Call") -> tuple:
        r, elements, base = c.repo, c.body.get("tree"), c.body.get("base_tree")
        if not isinstance(elements, list):
            raise _validation_failed({"resource": "Tree", "field": "tree", "code": "missing_field"})
        flat: dict[str, tuple[str, str]] = {}
        if base is not None:
            if self._kind(r, base) != "tree":
                raise ApiError(422, "base_tree is not a valid tree oid")
            flat = self._flatten(r, base)
        for el in elements:
            path, mode, kind = el.get("path"), str(el.get("mode", "")), el.get("type")
            if not isinstance(path, str) or not path or any(not part for part in path.split("/")):
                raise ApiError(422, "tree.path contains a malformed path component")
            if kind not in ("blob", "tree", "commit") or mode not in FILE_MODES | {"040000", "160000"}:
                raise ApiError(422, f"Invalid tree info: mode {mode!r} type {kind!r}")
            has_sha, has_content = "sha" in el, "content" in el
            if has_sha == has_content:
                raise ApiError(422, "Must supply either tree.sha or tree.content. "
                                    "Request will be rejected if both are present.")
            under = path + "/"
            if has_content:
                sha, kind, mode = self._blob(r, _bytes(el["content"])), "blob", mode
            else:
                sha = el["sha"]
            if sha is None:  # delete: only a path that exists, and only a blob (GitHub: GitRPC::BadObjectState)
                if path not in flat:
                    raise ApiError(422, "GitRPC::BadObjectState")
                del flat[path]
                continue
            if self._kind(r, sha) != kind and not (kind == "commit" and mode == "160000"):
                raise ApiError(422, f"tree.sha {sha} is not a valid {kind}")
            for existing in [p for p in flat if p.startswith(under)]:
                del flat[existing]
            parts = path.split("/")
            for i in range(1, len(parts)):  # a file in the way of a new directory is replaced
                flat.pop("/".join(parts[:i]), None)
            if kind == "tree":
                flat.update(self._flatten(r, sha, under))
            else:
                flat[path] = (mode, sha)
        tree = self._build_tree(r, flat)
        return 201, self._tree_json(r, tree, recursive=False)

    def _get_tree(self, c: "_Call") -> tuple:
        r, key = c.repo, c.args["sha"]
        if self._kind(r, key) == "tree":
            tree = key
        else:
            commit = self._resolve(r, key)
            if commit is None:
                raise _not_found()
            tree = self._commit_value(r, commit)["tree"]
        recursive = c.query.get("recursive") not in (None, "", "0", "false")
        return 200, self._tree_json(r, tree, recursive)

    def _create_commit(self, c: "_Call") -> tuple:
        r, body = c.repo, c.body
        message, tree, parents = body.get("message"), body.get("tree"), body.get("parents", [])
        if not isinstance(message, str):
            raise _validation_failed({"resource": "Commit", "field": "message", "code": "missing_field"})
        if self._kind(r, tree) != "tree":
            raise ApiError(422, "Tree SHA does not exist")
        if not isinstance(parents, list) or any(self._kind(r, p) != "commit" for p in parents):
            raise ApiError(422, "Parent SHA does not exist or is not a commit object")
        sha = self._commit(r, tree, parents, message, c.login, body.get("author"), body.get("committer"))
        return 201, self._git_commit_json(r, sha)

    def _get_git_commit(self, c: "_Call") -> tuple:
        if self._kind(c.repo, c.args["sha"]) != "commit":
            raise _not_found()
        return 200, self._git_commit_json(c.repo, c.args["sha"])

    def _get_commit(self, c: "_Call") -> tuple:
        sha = self._resolve(c.repo, c.args["ref"])
        if sha is None:
            raise ApiError(422, f"No commit found for SHA: {c.args['ref']}")
        return 200, self._commit_json(c.repo, sha)

    def _list_commits(self, c: "_Call") -> tuple:
        r = c.repo
        start = self._resolve(r, c.query.get("sha") or r.default_branch)
        if start is None:
            raise _not_found()
        path = c.query.get("path")
        heap, seen, out = [(0, 0, start)], {start}, []
        order = itertools.count(1)
        while heap:  # newest first, like git log
            _, _, sha = heapq.heappop(heap)
            value = self._commit_value(r, sha)
            parents = value["parents"]
            if not path or any(p == path or p.startswith(path.rstrip("/") + "/")
                               for p in self._diff(r, parents[0] if parents else None, sha)):
                out.append(self._commit_json(r, sha, with_files=False))
            for p in parents:
                if p not in seen:
                    seen.add(p)
                    stamp = _parse_iso(self._commit_value(r, p)["committer"]["date"]).timestamp()
                    heapq.heappush(heap, (-stamp, next(order), p))
        return self._paginate(c, out)

    # -- contents

    def _get_contents(self, c: "_Call") -> tuple:
        r = c.repo
        ref = c.query.get("ref") or r.default_branch
        commit = self._resolve(r, ref)
        if commit is None:
            raise ApiError(404, f"No commit found for the ref {ref}")
        path = (c.args.get("path") or "").strip("/")
        tree = self._commit_value(r, commit)["tree"]
        if path:
            entry = {p: (mode, sha) for p, mode, sha in self._walk(r, tree)}.get(path)
            if entry is None:
                raise _not_found()
            mode, sha = entry
            if mode != TREE_MODE:
                return 200, self._content_json(r, path, mode, sha, ref, with_content=True)
            tree = sha
        prefix = path + "/" if path else ""
        return 200, [self._content_json(r, prefix + p, mode, sha, ref, with_content=False)
                     for p, mode, sha in self._walk(r, tree, recursive=False)]

    def _write_file(self, c: "_Call", content: bytes | None) -> tuple:
        r, body, path = c.repo, c.body, c.args["path"].strip("/")
        branch = body.get("branch") or r.default_branch
        parent = r.refs.get(f"refs/heads/{branch}")
        if parent is None:
            raise ApiError(404, f"Branch {branch} not found")
        if not isinstance(body.get("message"), str):
            raise _validation_failed({"resource": "Commit", "field": "message", "code": "missing_field"})
        flat = self._flatten(r, self._commit_value(r, parent)["tree"])
        existing = flat.get(path)
        if content is None and existing is None:
            raise _not_found()
        if existing is not None and "sha" not in body:
            raise ApiError(422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
        if existing is not None and body["sha"] != existing[1]:
            raise ApiError(409, f"{path} does not match {body['sha']}")
        if content is None:
            del flat[path]
        else:
            flat[path] = (existing[0] if existing else "100644", self._blob(r, content))
        sha = self._commit(r, self._build_tree(r, flat), [parent], body["message"], c.login,
                           body.get("author"), body.get("committer"))
        self._move_ref(r, f"refs/heads/{branch}", sha)
        out = {"content": None, "commit": self._git_commit_json(r, sha)}
        if content is not None:
            out["content"] = self._content_json(r, path, flat[path][0], flat[path][1], branch, with_content=False)
        return (201 if existing is None else 200), out

    def _put_contents(self, c: "_Call") -> tuple:
        if not isinstance(c.body.get("content"), str):
            raise _validation_failed({"resource": "Content", "field": "content", "code": "missing_field"})
        return self._write_file(c, base64.b64decode(c.body["content"]))

    def _delete_contents(self, c: "_Call") -> tuple:
        if "sha" not in c.body:
            raise ApiError(422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
        return self._write_file(c, None)

    # -- pull requests

    def _pr(self, c: "_Call") -> dict:
        pr = c.repo.pulls.get(int(c.args["number"]))
        if pr is None:
            raise _not_found()
        return pr

    def _pr_base_point(self, r: _Repo, pr: dict) -> str | None:
        if pr["merge_base"]:
            return pr["merge_base"]
        tip = r.refs.get(f"refs/heads/{pr['base_ref']}", pr["base_sha"])
        return self._merge_base(r, tip, pr["head_sha"])

    def _pr_commits(self, r: _Repo, pr: dict) -> list[str]:
        base = self._pr_base_point(r, pr)
        exclude = self._ancestors(r, base) if base else set()
        todo, seen, out = [pr["head_sha"]], set(), []
        while todo:
            sha = todo.pop()
            if sha in seen or sha in exclude:
                continue
            seen.add(sha)
            out.append(sha)
            todo.extend(self._commit_value(r, sha)["parents"])
        return sorted(out, key=lambda s: self._generation(r, s))

    def _open_pull(self, r: _Repo, body: dict, login: str) -> dict:
        title, head, base = body.get("title"), body.get("head"), body.get("base")
        if not isinstance(title, str) or not title:
            raise _validation_failed({"resource": "PullRequest", "field": "title", "code": "missing_field"})
        if not isinstance(head, str) or not head:
            raise _validation_failed({"resource": "PullRequest", "field": "head", "code": "missing_field"})
        if not isinstance(base, str) or not base:
            raise _validation_failed({"resource": "PullRequest", "field": "base", "code": "missing_field"})
        owner, _, branch = head.rpartition(":")
        if owner and owner.lower() != r.owner.lower():
            raise _validation_failed({"resource": "PullRequest", "field": "head", "code": "invalid"})
        head_sha = r.refs.get(f"refs/heads/{branch}")
        base_sha = r.refs.get(f"refs/heads/{base}")
        if base_sha is None:
            raise _validation_failed({"resource": "PullRequest", "field": "base", "code": "invalid"})
        if head_sha is None:
            raise _validation_failed({"resource": "PullRequest", "field": "head", "code": "invalid"})
        for pr in r.pulls.values():
            if pr["state"] == "open" and pr["head_ref"] == branch and pr["base_ref"] == base:
                raise _validation_failed({"resource": "PullRequest", "code": "custom",
                                          "message": f"A pull request already exists for {r.owner}:{branch}."})
        if head_sha in self._ancestors(r, base_sha):
            raise _validation_failed({"resource": "PullRequest", "code": "custom",
                                      "message": f"No commits between {base} and {branch}"})
        now = _iso(self.clock())
        number = r.next_number
        r.next_number += 1
        pr = {"number": number, "id": next(self._ids), "title": title, "body": body.get("body"), "state": "open",
              "user": login, "head_ref": branch, "head_sha": head_sha, "base_ref": base, "base_sha": base_sha,
              "labels": [], "reviewers": [], "teams": [], "draft": bool(body.get("draft", False)),
              "created_at": now, "updated_at": now, "closed_at": None, "merged_at": None, "merged_by": None,
              "merge_commit_sha": None, "merge_base": None}
        r.pulls[number] = pr
        return pr

    def _set_state(self, r: _Repo, pr: dict, state: str) -> None:
        now = _iso(self.clock())
        if state == "closed" and pr["state"] == "open":
            pr.update(state="closed", closed_at=now, updated_at=now,
                      base_sha=r.refs.get(f"refs/heads/{pr['base_ref']}", pr["base_sha"]))
        elif state == "open" and pr["state"] == "closed":
            if pr["merged_at"]:
                raise _validation_failed({"resource": "PullRequest", "code": "custom",
                                          "message": "Cannot reopen a merged pull request"})
            if f"refs/heads/{pr['head_ref']}" not in r.refs:
                raise _validation_failed({"resource": "PullRequest", "field": "state", "code": "invalid"})
            pr.update(state="open", closed_at=None, updated_at=now,
                      head_sha=r.refs[f"refs/heads/{pr['head_ref']}"])

    def _merge(self, r: _Repo, pr: dict, login: str, method: str, title: str | None, message: str | None) -> str:
        if pr["state"] != "open":
            raise ApiError(405, "Pull Request is not mergeable")
        base_ref = f"refs/heads/{pr['base_ref']}"
        base_tip = r.refs[base_ref]
        merged = self._three_way(r, base_tip, pr["head_sha"])
        if merged is None:
            raise ApiError(405, "Pull Request is not mergeable")
        tree = self._build_tree(r, merged)
        if method == "merge":
            headline = title or f"Merge pull request #{pr['number']} from {r.owner}/{pr['head_ref']}"
            text = headline + "\n\n" + (message if message is not None else pr["title"])
            sha = self._commit(r, tree, [base_tip, pr["head_sha"]], text, login)
        elif method in ("squash", "rebase"):
            headline = title or f"{pr['title']} (#{pr['number']})"
            sha = self._commit(r, tree, [base_tip], headline + ("\n\n" + message if message else ""), login)
        else:
            raise _validation_failed({"resource": "PullRequest", "field": "merge_method", "code": "invalid"})
        pr["merge_base"] = self._merge_base(r, base_tip, pr["head_sha"])
        self._move_ref(r, base_ref, sha)
        now = _iso(self.clock())
        pr.update(state="closed", merged_at=now, closed_at=now, updated_at=now, merged_by=login,
                  merge_commit_sha=sha, base_sha=base_tip)
        return sha

    def _list_pulls(self, c: "_Call") -> tuple:
        r, q = c.repo, c.query
        state = q.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise _validation_failed({"resource": "Issue", "field": "state", "code": "invalid"})
        pulls = [pr for pr in r.pulls.values() if state == "all" or pr["state"] == state]
        head = q.get("head")
        if head and ":" in head:  # like GitHub, a head without "owner:" is ignored, not matched
            owner, _, branch = head.partition(":")
            pulls = [pr for pr in pulls if owner.lower() == r.owner.lower() and pr["head_ref"] == branch]
        if q.get("base"):
            pulls = [pr for pr in pulls if pr["base_ref"] == q["base"]]
        key = {"created": "created_at", "updated": "updated_at"}.get(q.get("sort", "created"), "created_at")
        descending = q.get("direction", "desc") == "desc"
        pulls.sort(key=lambda pr: (pr[key], pr["number"]), reverse=descending)
        return self._paginate(c, [self._pull_json(r, pr, full=False) for pr in pulls])

    def _post_pull(self, c: "_Call") -> tuple:
        pr = self._open_pull(c.repo, c.body, c.login)
        return 201, self._pull_json(c.repo, pr)

    def _get_pull(self, c: "_Call") -> tuple:
        return 200, self._pull_json(c.repo, self._pr(c))

    def _patch_pull(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        self._edit(c.repo, pr, c.body)
        if "base" in c.body:
            if f"refs/heads/{c.body['base']}" not in c.repo.refs:
                raise _validation_failed({"resource": "PullRequest", "field": "base", "code": "invalid"})
            pr["base_ref"] = c.body["base"]
        return 200, self._pull_json(c.repo, pr)

    def _edit(self, r: _Repo, pr: dict, body: dict) -> None:
        state = body.get("state")
        if state is not None and state not in ("open", "closed"):
            raise _validation_failed({"resource": "PullRequest", "field": "state", "code": "invalid"})
        for key in ("title", "body"):
            if key in body:
                pr[key] = body[key]
        if state:
            self._set_state(r, pr, state)
        pr["updated_at"] = _iso(self.clock())

    def _pull_files(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        return self._paginate(c, self._files_json(c.repo, self._pr_base_point(c.repo, pr), pr["head_sha"]))

    def _pull_commits(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        return self._paginate(c, [self._commit_json(c.repo, s, with_files=False)
                                  for s in self._pr_commits(c.repo, pr)])

    def _is_merged(self, c: "_Call") -> tuple:
        if self._pr(c)["merged_at"]:
            return 204, None
        raise _not_found()

    def _put_merge(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        if c.body.get("sha") and c.body["sha"] != pr["head_sha"]:
            raise ApiError(409, "Head branch was modified. Review and try the merge again.")
        sha = self._merge(c.repo, pr, c.login, c.body.get("merge_method", "merge"),
                          c.body.get("commit_title"), c.body.get("commit_message"))
        return 200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}

    def _get_reviewers(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        return 200, {"users": [self._user_json(u) for u in pr["reviewers"]],
                     "teams": [self._team_json(c.repo, t) for t in pr["teams"]]}

    def _add_reviewers(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        users, teams = c.body.get("reviewers") or [], c.body.get("team_reviewers") or []
        if pr["user"] in users:
            raise _validation_failed({"resource": "PullRequest", "code": "custom",
                                      "message": "Review cannot be requested from pull request author."})
        if self.collaborators is not None and any(u not in self.collaborators for u in users):
            raise ApiError(422, "Reviews may only be requested from collaborators. One or more of the users or "
                                f"teams you specified is not a collaborator of the {c.repo.full_name} repository.")
        pr["reviewers"] += [u for u in users if u not in pr["reviewers"]]
        pr["teams"] += [t for t in teams if t not in pr["teams"]]
        return 201, self._pull_json(c.repo, pr)

    def _remove_reviewers(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        pr["reviewers"] = [u for u in pr["reviewers"] if u not in (c.body.get("reviewers") or [])]
        pr["teams"] = [t for t in pr["teams"] if t not in (c.body.get("team_reviewers") or [])]
        return 200, self._pull_json(c.repo, pr)

    # -- issues (every issue here is a pull request), labels, comments

    def _get_issue(self, c: "_Call") -> tuple:
        return 200, self._issue_json(c.repo, self._pr(c))

    def _patch_issue(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        self._edit(c.repo, pr, c.body)
        if "labels" in c.body:
            pr["labels"] = []
            self._label(c.repo, pr, c.body["labels"])
        return 200, self._issue_json(c.repo, pr)

    def _label(self, r: _Repo, pr: dict, names: Any) -> list[dict]:
        if isinstance(names, dict):
            names = names.get("labels", [])
        if not isinstance(names, list):
            raise _validation_failed({"resource": "Label", "field": "labels", "code": "invalid"})
        for name in names:
            name = name["name"] if isinstance(name, dict) else name
            if not isinstance(name, str) or not name:
                raise _validation_failed({"resource": "Label", "field": "name", "code": "invalid"})
            label = r.labels.setdefault(name.lower(), {"id": next(self._ids), "name": name, "color": "ededed"})
            if label["name"] not in pr["labels"]:
                pr["labels"].append(label["name"])
        pr["updated_at"] = _iso(self.clock())
        return [self._label_json(r, r.labels[n.lower()]) for n in pr["labels"]]

    def _get_labels(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        return self._paginate(c, [self._label_json(c.repo, c.repo.labels[n.lower()]) for n in pr["labels"]])

    def _add_labels(self, c: "_Call") -> tuple:
        return 200, self._label(c.repo, self._pr(c), c.body)

    def _set_labels(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        pr["labels"] = []
        return 200, self._label(c.repo, pr, c.body)

    def _remove_label(self, c: "_Call") -> tuple:
        pr, name = self._pr(c), c.args["label"]
        kept = [n for n in pr["labels"] if n.lower() != name.lower()]
        if len(kept) == len(pr["labels"]):
            raise ApiError(404, "Label does not exist")
        pr["labels"] = kept
        return 200, [self._label_json(c.repo, c.repo.labels[n.lower()]) for n in kept]

    def _list_comments(self, c: "_Call") -> tuple:
        n = self._pr(c)["number"]
        return self._paginate(c, [self._comment_json(c.repo, x) for x in c.repo.comments.values()
                                  if x["number"] == n])

    def _add_comment(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        if not isinstance(c.body.get("body"), str):
            raise _validation_failed({"resource": "IssueComment", "field": "body", "code": "missing_field"})
        now = _iso(self.clock())
        comment = {"id": next(self._ids), "number": pr["number"], "body": c.body["body"], "user": c.login,
                   "created_at": now, "updated_at": now}
        c.repo.comments[comment["id"]] = comment
        return 201, self._comment_json(c.repo, comment)

    def _edit_comment(self, c: "_Call") -> tuple:
        comment = c.repo.comments.get(int(c.args["id"]))
        if comment is None:
            raise _not_found()
        comment.update(body=c.body.get("body", comment["body"]), updated_at=_iso(self.clock()))
        return 200, self._comment_json(c.repo, comment)

    def _delete_comment(self, c: "_Call") -> tuple:
        if c.repo.comments.pop(int(c.args["id"]), None) is None:
            raise _not_found()
        return 204, None


@dataclass
class _Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    token: str | None
    login: str
    args: dict[str, str | None]
    repo: Any = None


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _bytes(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode()


def _b64_lines(data: bytes) -> str:
    """Base64 wrapped at 60 characters with a trailing newline, as the contents API sends it."""
    encoded = base64.b64encode(data).decode()
    return "".join(encoded[i:i + 60] + "\n" for i in range(0, len(encoded), 60))


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _node_id(kind: str, key: Any) -> str:
    return base64.b64encode(f"{kind}_{key}".encode()).decode().rstrip("=")


def _token(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() not in ("token", "bearer"):
        return ""
    return value.strip()


# ---------------------------------------------------------------- webhooks


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


@pytest.fixture
def github_fake():
    """A started GitHubFake, stopped after the test (which fails if the fake itself crashed)."""
    fake = GitHubFake().start()
    try:
        yield fake
    finally:
        fake.stop()
    assert not fake.errors, "the GitHub fake crashed handling a request:\n" + "\n".join(fake.errors)
