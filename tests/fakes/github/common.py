"""Shared pieces of the GitHub fake: constants, the error type, request/fault records, repo state, helpers."""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

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
