"""The HTTP side of the GitHub fake: the stdlib server and handler, and GitHubFake itself."""
from __future__ import annotations

import itertools
import json
import re
import socket
import threading
import traceback
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from tests.fakes.github.common import (
    API_PREFIX, DEFAULT_FAULT_MESSAGES, DOCS, ApiError, Fault, Request, _bytes, _Call, _int, _iso, _node_id,
    _not_found, _Repo, _token,
)
from tests.fakes.github.gitdata import GitDataRoutesMixin
from tests.fakes.github.git import GitObjectsMixin
from tests.fakes.github.pulls import PullsMixin
from tests.fakes.github.seeding import SeedingMixin


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
class GitHubFake(SeedingMixin, GitObjectsMixin, GitDataRoutesMixin, PullsMixin):
    """In-memory GitHub behind a real HTTP server. Thread-safe; all state changes happen under one lock."""

    def __init__(self, login: str = "deckhand-bot"):
        self.default_login = login
        self.valid_tokens: set[str] | None = None  # None: any non-empty token is valid
        self.token_logins: dict[str, str] = {}  # token -> user login (default: default_login)
        self.token_repos: dict[str, set[str]] = {}  # token -> repos it can see (absent: all repos)
        self.read_only_tokens: set[str] = set()  # writes with these get 403
        # Who may be asked to review, as on GitHub: a repo's collaborators (the token's own login always
        # is one, since it writes there) and the org's teams. Anyone else is a 422 (see pulls.py).
        self._collaborators: dict[str, set[str]] = {}  # repo full name (lower) -> logins (lower)
        self._teams: dict[str, set[str]] = {}  # org (lower) -> team slugs (lower)
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

    def add_collaborators(self, full_name: str, *logins: str) -> None:
        """Make `logins` collaborators of repo `full_name` (it need not exist yet): they may review."""
        with self._lock:
            self._collaborators.setdefault(full_name.lower(), set()).update(x.lower() for x in logins)

    def add_teams(self, org: str, *slugs: str) -> None:
        """Create teams `slugs` in `org` with access to its repos: they may be asked to review."""
        with self._lock:
            self._teams.setdefault(org.lower(), set()).update(x.lower() for x in slugs)

    def is_collaborator(self, full_name: str, login: str) -> bool:
        with self._lock:
            return login.lower() in self._collaborators.get(full_name.lower(), set()) | {self.default_login.lower()}

    def has_team(self, org: str, slug: str) -> bool:
        with self._lock:
            return slug.lower() in self._teams.get(org.lower(), set())

    def _get_collaborator(self, c: "_Call") -> tuple:
        # GET /repos/{owner}/{repo}/collaborators/{username}: 204 if a collaborator, else 404
        # (https://docs.github.com/rest/collaborators/collaborators#check-if-a-user-is-a-repository-collaborator).
        if self.is_collaborator(c.repo.full_name, c.args["login"]):
            return 204, None
        raise _not_found()

    def _get_org(self, c: "_Call") -> tuple:
        org = c.args["org"]
        with self._lock:
            known = org.lower() in self._teams or any(r.owner.lower() == org.lower() for r in self._repos.values())
        if not known:
            raise _not_found()
        body = self._user_json(org)
        body.update(type="Organization", url=f"{self.url}/orgs/{org}", html_url=f"{self.web_url}/{org}")
        return 200, body

    def _get_team(self, c: "_Call") -> tuple:
        if not self.has_team(c.args["org"], c.args["slug"]):
            raise _not_found()
        r = next((r for r in self._repos.values() if r.owner.lower() == c.args["org"].lower()), None)
        return 200, self._team_json(r or _Repo(c.args["org"], "-", "main", True, 0), c.args["slug"])

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

    # ---------------------------------------------------------------- routes

    def _build_routes(self) -> list[tuple[str, re.Pattern, Callable[["_Call"], tuple]]]:
        repo = r"/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)"
        table = [
            ("GET", r"/user", self._get_user),
            ("GET", r"/users/(?P<login>[^/]+)", lambda c: (200, self._user_json(c.args["login"]))),
            ("GET", r"/rate_limit", self._get_rate_limit),
            ("GET", r"/orgs/(?P<org>[^/]+)", self._get_org),
            ("GET", r"/orgs/(?P<org>[^/]+)/teams/(?P<slug>[^/]+)", self._get_team),
            ("GET", repo + r"/collaborators/(?P<login>[^/]+)", self._get_collaborator),
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
