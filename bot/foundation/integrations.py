"""How each integration is doing, as last seen by the calls deckhand made: `kubernetes <cluster>`,
`prometheus <cluster>`, `github`, `slack`.

The gateways report every answer (`ok`) and every failure that says the integration itself is in
trouble (`failed`: no answer, name resolution, timeouts, 401/403, 5xx, an unusable kubeconfig) —
not a 404 or a 409, which are answers. A change of state is logged once (a warning when it starts
failing, with the reason; an info line when it recovers), `deckhand_integration_up{integration}` is
1 or 0, and /readyz lists every integration's state in its details. Readiness itself does not depend
on them: a pod taken out of its Service because GitHub is down would only stop the hooks too.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone

log = logging.getLogger("deckhand.integrations")


class IntegrationHealth:
    def __init__(self, metrics=None):
        self.metrics = metrics
        self._state: dict[str, dict] = {}
        self._lock = threading.Lock()

    def failed(self, name: str, reason: str) -> None:
        with self._lock:
            state = self._state.get(name)
            changed = state is None or state["ok"]
            if changed:
                state = {"ok": False, "since": time.time(), "error": reason, "failures": 0}
                self._state[name] = state
            state["error"], state["failures"] = reason, state["failures"] + 1
        if changed:
            log.warning("%s: failing: %s", name, reason)
            self._gauge(name, 0)

    def ok(self, name: str) -> None:
        with self._lock:
            state = self._state.get(name)
            if state is not None and state["ok"]:
                return
            self._state[name] = {"ok": True, "since": time.time(), "error": None, "failures": 0}
        if state is not None:
            log.info("%s: recovered after %.0fs failing (%s)", name, time.time() - state["since"], state["error"])
        self._gauge(name, 1)

    def _gauge(self, name: str, value: int) -> None:
        if self.metrics is not None:
            self.metrics.integration_up.labels(integration=name).set(value)

    def snapshot(self) -> dict[str, dict]:
        """integration -> {status: ok|failing, since, error?}; integrations not used yet are absent."""
        with self._lock:
            items = sorted(self._state.items())
        out = {}
        for name, state in items:
            since = datetime.fromtimestamp(state["since"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            entry = {"status": "ok" if state["ok"] else "failing", "since": since}
            if not state["ok"]:
                entry.update(error=state["error"], failures=state["failures"])
            out[name] = entry
        return out


def serious(status: int | str) -> bool:
    """Does this failure say the integration is in trouble (not merely "no such object")?"""
    return isinstance(status, str) or status in (0, 401, 403, 429) or status >= 500
