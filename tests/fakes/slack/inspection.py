"""What tests read back from the Slack fake: calls, messages with their threads, ephemerals, views,
response_url posts, and waiting for any of them."""
from __future__ import annotations

import copy
import inspect
import json
import time
from typing import Any, Callable, Dict, List, Optional

from .common import Call, Json


class InspectionMixin:
    """Read-side API of SlackFake (mixed into it); each call takes the fake's lock like a request does."""

    @property
    def calls(self) -> List[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str, *, ok: Optional[bool] = None) -> List[Call]:
        with self._lock:
            return [c for c in self._calls if c.method == method and (ok is None or c.ok == ok)]

    def _resolve_channel(self, channel: str) -> str:
        if channel and channel[0] in "UW":
            return "D" + channel[1:]
        return channel

    def _export(self, channel: str, msg: Json, with_replies: bool) -> Json:
        out = copy.deepcopy(msg)
        out["channel"] = channel
        if with_replies:
            out["replies"] = [
                self._export(channel, self._messages[channel][ts], False)
                for ts in self._replies.get((channel, msg["ts"]), [])
                if ts in self._messages[channel]
            ]
        return out

    def messages(self, channel: Optional[str] = None) -> Dict[str, Json]:
        """Current top-level messages (edits applied, deletions removed) keyed by ts, oldest first;
        each carries `channel` and `replies` (its thread). A user id as channel means the DM."""
        with self._lock:
            chans = [self._resolve_channel(channel)] if channel else list(self._messages)
            rows = []
            for ch in chans:
                for ts, msg in self._messages.get(ch, {}).items():
                    if msg.get("thread_ts") and msg["thread_ts"] != ts:
                        continue
                    rows.append(self._export(ch, msg, True))
            rows.sort(key=lambda m: float(m["ts"]))
            return {m["ts"]: m for m in rows}

    def message(self, channel: str, ts: str) -> Optional[Json]:
        """One message (top-level or reply) by channel + ts, or None."""
        with self._lock:
            ch = self._resolve_channel(channel)
            msg = self._messages.get(ch, {}).get(ts)
            return self._export(ch, msg, True) if msg else None

    def ephemerals(self, user: Optional[str] = None) -> List[Json]:
        with self._lock:
            return [copy.deepcopy(e) for e in self._ephemerals if user is None or e["user"] == user]

    @property
    def views(self) -> Dict[str, Json]:
        with self._lock:
            return copy.deepcopy(self._views)

    def views_for(self, user_id: str) -> List[Json]:
        """Views opened through a trigger minted for `user_id`, or published to their home tab."""
        with self._lock:
            return [
                copy.deepcopy(self._views[vid])
                for vid, meta in self._view_meta.items()
                if meta.get("user") == user_id and vid in self._views
            ]

    @property
    def responses(self) -> List[Json]:
        with self._lock:
            return copy.deepcopy(self._responses)

    def responses_to(self, url: str) -> List[Json]:
        with self._lock:
            return [copy.deepcopy(r) for r in self._responses if r["url"] == url]

    def wait_for(self, predicate: Callable[..., Any], timeout: float = 5.0, interval: float = 0.005) -> Any:
        """Poll `predicate()` (or `predicate(fake)`) until it returns something truthy; return that.
        On timeout raise AssertionError describing the recorded calls and responses."""
        try:
            wants_arg = len(inspect.signature(predicate).parameters) >= 1
        except (TypeError, ValueError):
            wants_arg = False
        deadline = time.monotonic() + timeout
        last_exc: Optional[BaseException] = None
        while True:
            try:
                result = predicate(self) if wants_arg else predicate()
                last_exc = None
            except (AssertionError, LookupError, AttributeError, TypeError) as exc:
                result, last_exc = None, exc
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"condition not met within {timeout}s"
                    + (f" (last error: {last_exc!r})" if last_exc else "")
                    + "\n" + self.describe()
                )
            time.sleep(interval)

    def wait_for_call(self, method: str, predicate: Optional[Callable[[Call], bool]] = None,
                      count: int = 1, timeout: float = 5.0) -> Call:
        """Wait until `count` calls to `method` (matching `predicate`) were answered; return the last."""
        def check():
            hits = [c for c in self.calls_to(method) if predicate is None or predicate(c)]
            return hits[count - 1] if len(hits) >= count else None
        return self.wait_for(check, timeout=timeout)

    def describe(self, last: int = 40) -> str:
        with self._lock:
            calls = self._calls[-last:]
            lines = [f"recorded Slack calls ({len(self._calls)}):"]
            lines += [f"  {c.describe()}" for c in calls] or ["  (none)"]
            lines.append(f"response_url posts ({len(self._responses)}):")
            lines += [
                f"  {r['id']}: {json.dumps({k: r.get(k) for k in ('response_type', 'text', 'replace_original', 'delete_original')})}"
                for r in self._responses[-last:]
            ] or ["  (none)"]
            if self._internal_errors:
                lines.append(f"fake internal errors: {self._internal_errors!r}")
            return "\n".join(lines)
