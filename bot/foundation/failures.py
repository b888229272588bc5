"""Why a call to another system failed, in words a person can act on — one classifier for every gateway.

Kubernetes (urllib3), GitHub and Prometheus (requests) all fail the same few ways before any answer
comes back: the name does not resolve, nothing listens, no answer in time, TLS does not verify. The
libraries bury that under wrapper exceptions (requests' ConnectionError around urllib3's
MaxRetryError around NameResolutionError around socket.gaierror), so the whole chain is read.
`python app.py check`, Slack replies, logs and the `kind` label of deckhand_backend_errors_total use
the same words.
"""
from __future__ import annotations

import re

NAME_RESOLUTION = "name resolution failed"
REFUSED = "connection refused"
TIMED_OUT = "timed out"
TLS = "TLS error"

_DNS = ("name or service not known", "nodename nor servname", "temporary failure in name resolution",
        "no address associated with hostname", "failed to resolve", "getaddrinfo failed", "name resolution")
_HOST = re.compile(r"(?:host=['\"]?|resolve ['\"]|HTTPSConnectionPool\(host=')([A-Za-z0-9._-]+)")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 12:
        current = todo.pop(0)
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [current.__cause__, current.__context__,
                 *(a for a in getattr(current, "args", ()) if isinstance(a, BaseException)),
                 getattr(current, "reason", None) if isinstance(getattr(current, "reason", None), BaseException)
                 else None]
    return seen


def kind(exc: BaseException) -> str:
    """One of: name resolution failed, connection refused, timed out, TLS error, connection closed,
    or the exception's type name. Short and stable: it is also a metrics label value."""
    chain = _chain(exc)
    text = " ".join(f"{type(e).__name__}: {e}" for e in chain).lower()
    names = {type(e).__name__ for e in chain}
    if "gaierror" in names or "NameResolutionError" in names or any(s in text for s in _DNS):
        return NAME_RESOLUTION
    if "ConnectionRefusedError" in names or "refused" in text:
        return REFUSED
    if "timed out" in text or any("Timeout" in n for n in names):
        return TIMED_OUT
    if "certificate verify failed" in text or "SSLError" in names:
        return TLS
    if "RemoteDisconnected" in names or "connection reset" in text or "connection aborted" in text:
        return "connection closed"
    return type(exc).__name__


def describe(exc: BaseException) -> str:
    """`kind`, with the host name when the name did not resolve (the one detail a person needs)."""
    found = kind(exc)
    if found == NAME_RESOLUTION:
        match = _HOST.search(" ".join(str(e) for e in _chain(exc)))
        return f"{found} for {match.group(1)} (DNS)" if match else f"{found} (DNS)"
    return found
