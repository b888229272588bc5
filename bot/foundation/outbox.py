"""Slack messages the bot posts on its own (alerts, digests, reminders, audit lines).

A message is first written to the `outbox` table — in the same transaction as the state it
announces, when the caller is inside `store.tx()` — and then sent by one drainer thread. So a
crash, a Slack outage or a 429 delays a message but never loses it, and a restart does not
send it twice (rows are marked sent with Slack's `ts`).

Pacing: Slack allows about one message per second per channel ("chat.postMessage" rate limit,
https://api.slack.com/methods/chat.postMessage#rate_limiting); the drainer keeps to
`min_interval` per channel and, on a 429, waits the `Retry-After` Slack sent.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.foundation import failures
from bot.foundation.store import Store

log = logging.getLogger(__name__)

# Errors that will not get better by retrying: keep the row as failed and say so in the log.
PERMANENT = {"channel_not_found", "not_in_channel", "is_archived", "invalid_blocks", "msg_too_long",
             "invalid_auth", "account_inactive", "token_revoked", "no_text", "message_not_found",
             "cant_update_message", "invalid_arguments", "restricted_action"}

SentHook = Callable[[str, str, str], None]  # (ref, channel, ts)
STUCK_AFTER_ATTEMPTS = 3  # a message that failed this often (~7 s of backoff) means Slack or the token is wrong


class Outbox:
    def __init__(self, store: Store, client: WebClient | None, min_interval: float = 1.0,
                 max_attempts: int = 50, metrics=None, health=None):
        self.store = store
        self.health = health  # bot/foundation/integrations.py: Slack's state as the drainer sees it
        self.stuck = False  # messages failing again and again (logged once when it starts and ends)
        self.client = client
        self.min_interval = min_interval
        self.max_attempts = max_attempts
        self.metrics = metrics
        self._hooks: dict[str, SentHook] = {}
        self._last_sent: dict[str, float] = {}
        self._wake = threading.Condition()
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- enqueue -----------------------------------------------------------------------------
    def post(self, channel: str, text: str, blocks: list | None = None, thread_ts: str | None = None,
             ref: str | None = None, **extra: Any) -> int:
        payload = {"channel": channel, "text": text, **extra}
        if blocks is not None:
            payload["blocks"] = blocks
        if thread_ts:
            payload["thread_ts"] = thread_ts
        return self._enqueue(channel, "chat.postMessage", payload, ref)

    def update(self, channel: str, ts: str, text: str, blocks: list | None = None, ref: str | None = None) -> int:
        payload = {"channel": channel, "ts": ts, "text": text}
        if blocks is not None:
            payload["blocks"] = blocks
        return self._enqueue(channel, "chat.update", payload, ref)

    def replace_pending(self, ref: str, text: str, blocks: list | None = None) -> bool:
        """If the post for `ref` has not gone out yet, change what it will say. True if it did."""
        with self.store.tx() as db:
            rows = list(db.query("SELECT id, payload FROM outbox WHERE ref = ? AND state = 'pending' "
                                 "AND method = 'chat.postMessage' ORDER BY id DESC LIMIT 1", [ref]))
            if not rows:
                return False
            payload = json.loads(rows[0]["payload"])
            payload["text"] = text
            if blocks is not None:
                payload["blocks"] = blocks
            db.execute("UPDATE outbox SET payload = ? WHERE id = ?", [json.dumps(payload), rows[0]["id"]])
            return True

    def show(self, ref: str, channel: str, text: str, blocks: list | None = None) -> None:
        """Post the message known as `ref`, or update it in place (or the queued post, if not sent yet).

        A message deckhand keeps current (a wave card, an approval request) goes through here, so it
        survives Slack outages and restarts and is never posted twice."""
        for _ in range(3):
            rows = self.store.query("SELECT state, ts, channel FROM outbox WHERE ref = ? AND method = 'chat.postMessage' "
                                    "ORDER BY id DESC LIMIT 1", [ref])
            if not rows or rows[0]["state"] == "failed":
                self.post(channel, text, blocks, ref=ref)
                return
            if rows[0]["state"] == "sent" and rows[0]["ts"]:
                self.update(rows[0]["channel"], rows[0]["ts"], text, blocks, ref=f"{ref}:update")
                return
            if self.replace_pending(ref, text, blocks):
                return
            # it was sent between our read and the replace: read again and update it

    def posted_at(self, ref: str) -> tuple[str, str] | None:
        """(channel, ts) of the message `ref` once Slack accepted it."""
        rows = self.store.query("SELECT channel, ts FROM outbox WHERE ref = ? AND method = 'chat.postMessage' "
                                "AND state = 'sent' ORDER BY id DESC LIMIT 1", [ref])
        return (rows[0]["channel"], rows[0]["ts"]) if rows and rows[0]["ts"] else None

    def _enqueue(self, channel: str, method: str, payload: dict, ref: str | None) -> int:
        row_id = self.store.insert("outbox", {
            "channel": channel, "method": method, "payload": json.dumps(payload), "state": "pending",
            "next_at": _wall_iso(), "created_at": self.store.now(), "ref": ref,
        })
        with self._wake:
            self._wake.notify()
        return row_id

    def on_sent(self, ref_prefix: str, hook: SentHook) -> None:
        """Call `hook(ref, channel, ts)` when a post whose ref starts with `ref_prefix` is accepted."""
        self._hooks[ref_prefix] = hook

    # -- send --------------------------------------------------------------------------------
    def check_stuck(self, after_attempts: int = STUCK_AFTER_ATTEMPTS) -> dict:
        """Count what waits; log once when messages start failing again and again, and when they move on."""
        row = self.store.query(
            "SELECT COUNT(*) AS n, SUM(CASE WHEN attempts >= ? THEN 1 ELSE 0 END) AS stuck, "
            "MIN(CASE WHEN attempts >= ? THEN created_at END) AS oldest, "
            "MAX(CASE WHEN attempts >= ? THEN error END) AS error FROM outbox WHERE state = 'pending'",
            [after_attempts] * 3)[0]
        pending, stuck = row["n"] or 0, row["stuck"] or 0
        if self.metrics:
            self.metrics.outbox_pending.set(pending)
        if stuck and not self.stuck:
            log.warning("outbox stuck: %d Slack message(s) failed %d+ times (oldest queued %s, last error: %s); "
                        "%d waiting in all. `python app.py check` tests the Slack token.",
                        stuck, after_attempts, row["oldest"], row["error"], pending)
        elif not stuck and self.stuck:
            log.info("outbox moving again: %d Slack message(s) waiting", pending)
        self.stuck = bool(stuck)
        return {"pending": pending, "stuck": stuck}

    def pending(self) -> int:
        return self.store.query("SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending'")[0]["n"]

    def flush(self, max_seconds: float = 30.0) -> int:
        """Send every due message, oldest first per channel, pacing each channel. Returns how many were sent.

        Only the oldest pending message of a channel may go out, so a message held back by a 429
        is never overtaken by a later one: alerts arrive in the order they happened.
        """
        if self.client is None:
            return 0
        sent = 0
        deadline = time.monotonic() + max_seconds
        with self._flush_lock:
            while time.monotonic() < deadline and not self._stop.is_set():
                heads = self.store.query(
                    "SELECT o.* FROM outbox o JOIN (SELECT channel, MIN(id) AS id FROM outbox "
                    "WHERE state = 'pending' GROUP BY channel) h ON o.id = h.id WHERE o.next_at <= ? ORDER BY o.id",
                    [_wall_iso()],
                )
                if not heads:
                    break
                waits = []
                for row in heads:
                    wait = self._last_sent.get(row["channel"], 0) + self.min_interval - time.monotonic()
                    if wait > 0:
                        waits.append(wait)
                        continue
                    if self._send(row):
                        sent += 1
                if waits and len(waits) == len(heads):
                    self._stop.wait(max(0.0, min(min(waits), deadline - time.monotonic())))
        return sent

    def _send(self, row: dict) -> bool:
        payload = json.loads(row["payload"])
        channel = row["channel"]
        self._last_sent[channel] = time.monotonic()
        try:
            response = self.client.api_call(row["method"], json=payload)
            # Pace from the answer, not the request: Slack counts when a call arrives, and a next call
            # started exactly min_interval after the previous one STARTED can arrive within Slack's
            # second (network jitter) and be answered 429 (bench/node_scan.py storm: every other call).
            self._last_sent[channel] = time.monotonic()
        except SlackApiError as exc:
            error = str(exc.response.get("error", "")) if exc.response is not None else "unknown"
            status = exc.response.status_code if exc.response is not None else 0
            if self.metrics:
                self.metrics.backend_errors.labels(backend="slack", kind=error or f"http_{status}").inc()
            if self.health is not None and error not in PERMANENT - {"invalid_auth", "account_inactive", "token_revoked"}:
                self.health.failed("slack", error or f"HTTP {status}")
            if status == 429 or error == "ratelimited":
                retry_after = float(exc.response.headers.get("Retry-After", 1) or 1)
                self._last_sent[channel] = time.monotonic() + retry_after - self.min_interval
                self._retry(row, retry_after, error or "ratelimited", count=False)
            elif error in PERMANENT or row["attempts"] + 1 >= self.max_attempts:
                self._give_up(row, error)
            else:
                self._retry(row, min(300, 2 ** row["attempts"]), error or f"HTTP {status}")
            return False
        except Exception as exc:  # connection errors, timeouts: Slack will be back
            reason = failures.describe(exc)
            if self.metrics:
                self.metrics.backend_errors.labels(backend="slack", kind=failures.kind(exc)).inc()
            if self.health is not None:
                self.health.failed("slack", reason)
            self._retry(row, min(300, 2 ** row["attempts"]), reason)
            return False
        if self.health is not None:
            self.health.ok("slack")
        ts = response.get("ts") or payload.get("ts") or ""
        with self.store.tx() as db:
            db.execute("UPDATE outbox SET state = 'sent', sent_at = ?, ts = ?, attempts = attempts + 1 "
                       "WHERE id = ?", [self.store.now(), ts, row["id"]])
        if self.metrics:
            self.metrics.alerts.labels(kind="outbox", event=row["method"]).inc()
        ref = row.get("ref")
        if ref:
            for prefix, hook in self._hooks.items():
                if ref.startswith(prefix):
                    try:
                        hook(ref, channel, ts)
                    except Exception:
                        log.exception("outbox hook for %s failed", ref)
        return True

    def _retry(self, row: dict, after: float, error: str, count: bool = True) -> None:
        next_at = _wall_iso(after)
        with self.store.tx() as db:
            db.execute(
                f"UPDATE outbox SET next_at = ?, error = ?{', attempts = attempts + 1' if count else ''} WHERE id = ?",
                [next_at, error, row["id"]])

    def _give_up(self, row: dict, error: str) -> None:
        log.error("slack %s to %s failed for good: %s (outbox id %s)", row["method"], row["channel"], error, row["id"])
        with self.store.tx() as db:
            db.execute("UPDATE outbox SET state = 'failed', error = ?, attempts = attempts + 1 WHERE id = ?",
                       [error, row["id"]])

    # -- drainer thread ----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.flush(max_seconds=10)
                self.check_stuck()
            except Exception:
                log.exception("outbox flush failed")
            with self._wake:
                self._wake.wait(timeout=1.0)

    def stop(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _wall_iso(after: float = 0.0) -> str:
    """Retry timing is transport business: real time, not the injected domain clock."""
    return datetime.fromtimestamp(time.time() + after, timezone.utc).isoformat(timespec="milliseconds")
