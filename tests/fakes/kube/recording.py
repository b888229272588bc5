"""What the Kubernetes fake records about requests, and the failure/hang rules tests inject."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable


class Headers(dict):
    """Request headers; lookups ignore case like HTTP does (stored lower-cased)."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()):
        super().__init__((k.lower(), v) for k, v in items)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


# Every request deckhand's own gateway (User-Agent deckhand/…) made to any fake in this test session: the RBAC test
# derives the permissions deckhand needs from it (tests/test_zz_permissions.py).
SESSION_CALLS: set[tuple[str, str, str]] = set()


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any  # parsed JSON (or YAML for apply patches); raw text when unparsable; None when empty
    headers: Headers
    timestamp: float
    status: int | None = None  # the HTTP status answered, filled once handled
    injected: bool = False  # answered by `fail()` rather than by the fake's logic

    @property
    def is_write(self) -> bool:
        return self.method not in ("GET", "HEAD", "OPTIONS")


@dataclass
class _Rule:
    method: str | None
    path_contains: str | None
    times: int | None  # None: forever
    status: int = 500
    retry_after: float | int | None = None
    body: Any = None
    message: str | None = None
    seconds: float = 0.0  # for hangs

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method and self.method.upper() != method:
            return False
        return not self.path_contains or self.path_contains in path

    def consume(self) -> None:
        if self.times is not None:
            self.times -= 1

    @property
    def remaining(self) -> int | None:
        return self.times
