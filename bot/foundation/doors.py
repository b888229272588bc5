"""Where outside traffic comes in: check it on the raw bytes, before anything reads the body.

Every door (Slack's `/slack/events`, `/hooks/node-join`, `/hooks/github`) keeps the same promises:
- the signature (HMAC over the raw body) is checked first; a header that is not exactly the
  documented shape is refused before any arithmetic or comparison (`²` passes `str.isdigit()` and
  then breaks `int()`; `hmac.compare_digest` raises on non-ASCII text), so a bad header is 401,
  never 500;
- a refusal is logged as one short line without the body, and those lines are rate-limited, so a
  flood of forged requests cannot fill the log (Bolt's own check logs the whole body at INFO);
- a verified request is remembered for as long as its signature is valid, so a verbatim replay is
  dropped, also after a restart (`SlackReplays`).

Slack's request signing: https://api.slack.com/authentication/verifying-requests-from-slack
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import queue
import re
import threading
import time
from typing import Callable, Mapping
from urllib.parse import urlsplit

log = logging.getLogger("deckhand.doors")

# Slack rejects requests older than 5 minutes in its own libraries; so do we, either way.
SLACK_WINDOW_SECONDS = 300
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")  # ASCII digits only: re's [0-9] excludes "²" and "٣"
_SLACK_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
# Slack posts response_urls on this host (https://api.slack.com/interactivity/handling#message_responses).
SLACK_HOOKS_HOST = "hooks.slack.com"


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively, from Flask's headers or a plain dict."""
    value = headers.get(name)
    if value is None and isinstance(headers, Mapping):
        lowered = name.lower()
        value = headers.get(lowered)  # Bolt's headers: lower-case names
        if value is None:
            value = next((v for k, v in headers.items() if str(k).lower() == lowered), None)
    if isinstance(value, list):  # Bolt keeps header values as lists
        value = value[0] if value else None
    return value


def unix_seconds(text: str | None) -> int | None:
    """The timestamp header as an int, or None unless it is 1-12 ASCII digits."""
    if text is None or not _UNIX_SECONDS.fullmatch(text):
        return None
    return int(text)


class RejectionLog:
    """One log line per refused request, at most `burst` lines per `period` seconds per door; the
    lines skipped meanwhile are counted into the next one. Never the body: it is unverified."""

    def __init__(self, door: str, burst: int = 5, period: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.door, self.burst, self.period, self.clock = door, burst, period, clock
        self._lock = threading.Lock()
        self._window_start = -period
        self._logged = 0
        self._skipped = 0

    def note(self, reason: str, peer: str | None = None) -> bool:
        """Log `reason` unless the door has logged `burst` lines this period; True if logged."""
        now = self.clock()
        with self._lock:
            if now - self._window_start >= self.period:
                self._window_start, self._logged = now, 0
            if self._logged >= self.burst:
                self._skipped += 1
                return False
            self._logged += 1
            skipped, self._skipped = self._skipped, 0
        more = f" ({skipped} more refused since the last line)" if skipped else ""
        log.warning("refused a request on %s from %s: %s%s", self.door, peer or "unknown", reason[:200], more)
        return True


# -- Slack ------------------------------------------------------------------------------------------
def slack_signature(secret: str, timestamp: str, raw: bytes) -> str:
    return "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256).hexdigest()


def check_slack_signature(secret: str | None, raw: bytes, headers: Mapping[str, str],
                          now: float | None = None) -> str | None:
    """None when Slack signed exactly these bytes within the last 5 minutes; else why not, as a
    fixed short reason (safe as a metrics label)."""
    if not secret:
        return "no-signing-secret"
    stamp, given = header(headers, "X-Slack-Request-Timestamp"), header(headers, "X-Slack-Signature")
    if stamp is None or given is None:
        return "unsigned"
    seconds = unix_seconds(stamp)
    if seconds is None:
        return "bad-timestamp"
    if abs((time.time() if now is None else now) - seconds) > SLACK_WINDOW_SECONDS:
        return "stale"
    if not _SLACK_SIGNATURE.fullmatch(given):
        return "bad-signature"
    if not hmac.compare_digest(slack_signature(secret, stamp, raw), given):
        return "bad-signature"
    return None


class SlackReplays:
    """Signatures of verified Slack requests, kept while they are valid, so a verbatim replay is dropped.

    A signature names one (timestamp, body) pair and is valid for 5 minutes, so it is the replay key.
    Memory answers on the ack path (no SQLite write there: a write can wait on another transaction's
    lock); each key is also written to SQLite (`processed`, outcome = the request's timestamp) by a
    writer thread, and the keys still valid are loaded at start, so a replay after a restart is
    dropped too. Expired keys are pruned by the writer. The same writer records the delivery keys
    that drop Slack's retries (`record`, commands/__init__.py): one transaction per batch of requests,
    not one per request.
    """

    PREFIX = "slack-request:"

    def __init__(self, store, clock: Callable[[], float] = time.time):
        self.store, self.clock = store, clock
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()  # (key, outcome)
        self._writer: threading.Thread | None = None
        self._last_prune = 0.0
        self._load()

    def _load(self) -> None:
        horizon = int(self.clock()) - SLACK_WINDOW_SECONDS
        try:
            rows = self.store.query("SELECT key, outcome FROM processed WHERE key >= ? AND key < ?",
                                    [self.PREFIX, self.PREFIX[:-1] + ";"])  # ";" sorts right after ":"
        except Exception as exc:  # readiness reports an unusable database; do not refuse to start
            log.warning("could not load recent Slack request keys: %s", exc)
            return
        for row in rows:
            stamp = unix_seconds(row["outcome"])
            if stamp is not None and stamp >= horizon:
                self._seen[row["key"]] = stamp

    def first(self, signature: str, stamp: int) -> bool:
        """True the first time this signature is presented; False for a replay."""
        key = self.PREFIX + signature.removeprefix("v0=")
        now = int(self.clock())
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = stamp
            if len(self._seen) > 20000:
                self._seen = {k: s for k, s in self._seen.items() if s >= now - SLACK_WINDOW_SECONDS}
        self.record(key, str(stamp))
        return True

    def record(self, key: str, outcome: str = "") -> None:
        """Write `key` to `processed` soon, from the writer thread (its INSERT does nothing if it is there)."""
        with self._lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write, name="slack-replays", daemon=True)
                self._writer.start()
        self._queue.put((key, outcome))

    def _write(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < 500:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.append(more)
            try:
                with self.store.tx() as db:
                    at = self.store.now()
                    db.conn.executemany("INSERT INTO processed(key, at, outcome) VALUES(?, ?, ?) ON CONFLICT(key) DO NOTHING",
                                   [(key, at, outcome) for key, outcome in batch])
                    if time.monotonic() - self._last_prune > 60:
                        self._last_prune = time.monotonic()
                        db.execute("DELETE FROM processed WHERE key >= ? AND key < ? AND CAST(outcome AS INTEGER) < ?",
                                   [self.PREFIX, self.PREFIX[:-1] + ";", int(self.clock()) - 2 * SLACK_WINDOW_SECONDS])
            except Exception as exc:  # a closed or locked database: memory still drops replays
                log.warning("could not record %d Slack request keys: %s", len(batch), exc)

    def stop(self) -> None:
        self._queue.put(None)
        if self._writer is not None:
            self._writer.join(timeout=5)


SLACK_REFUSALS = ("no-signing-secret", "unsigned", "bad-timestamp", "stale", "bad-signature", "replay")


class SlackDoor:
    """`/slack/events`: signature on the raw bytes, then replay, before Bolt parses anything."""

    def __init__(self, secret: str | None, store, metrics):
        self.secret, self.metrics = secret, metrics
        for reason in SLACK_REFUSALS:  # every series exists from the start: a flood adds none
            metrics.refused.labels(door="slack", reason=reason)
        self.replays = SlackReplays(store)
        self.rejections = RejectionLog("/slack/events")

    def admit(self, raw: bytes, headers: Mapping[str, str], peer: str | None = None) -> tuple[int, str] | None:
        """None to let the request in; else (status, text) to answer without reading the body."""
        reason = check_slack_signature(self.secret, raw, headers)
        if reason is not None:
            self.metrics.refused.labels(door="slack", reason=reason).inc()
            self.rejections.note(f"signature check failed: {reason}", peer)
            return 401, "invalid request"
        stamp = unix_seconds(header(headers, "X-Slack-Request-Timestamp"))
        if not self.replays.first(header(headers, "X-Slack-Signature") or "", stamp or 0):
            self.metrics.refused.labels(door="slack", reason="replay").inc()
            self.rejections.note("replay of a request already received", peer)
            return 200, ""  # Slack itself never sends the same signature twice; nothing to retry
        return None


def allowed_response_url(url: object, slack_api_url: str | None) -> bool:
    """True only for Slack's hooks host over https, or the host of SLACK_API_URL (a Slack stand-in,
    e.g. the console's or the tests'): a response_url is where deckhand POSTs, so it must not be
    anything a body can name."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.username or parts.password:
        return False
    if parts.scheme == "https" and parts.hostname == SLACK_HOOKS_HOST and port in (None, 443):
        return True
    if slack_api_url:
        api = urlsplit(slack_api_url)
        return (parts.scheme, parts.hostname, port) == (api.scheme, api.hostname, api.port) and bool(parts.hostname)
    return False
