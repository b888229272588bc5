"""What a canary is, whichever backend runs it, and how one operation records its steps.

Shared by bot/canary/__init__.py (the interface) and the two backends (canary_istio, canary_argo), so
neither backend imports the interface module that imports it.

"Who started it" and "since when" (the cluster holds no such fact, so deckhand writes it):
the first Next step deckhand makes on a canary writes annotations on the object that carries
the traffic split — the VirtualService (Istio) or the Rollout (Argo):

    deckhand.io/canary-started-by   Slack user ID of whoever made the first step
    deckhand.io/canary-started-at   when (ISO-8601 UTC)
    deckhand.io/canary-stepped-at   the latest step through deckhand
    deckhand.io/canary-revision     which canary these describe (hash of the canary images /
                                    the Rollout's currentPodHash); annotations of an older
                                    revision are ignored, so a new canary starts fresh

Without them the start time falls back to the canary Deployment's creationTimestamp (Istio)
or the first pause of the Rollout (Argo), and the starter to the audit log, else "unknown".
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from bot.foundation.kube import KubeError, parse_time  # noqa: F401 - parse_time is re-exported to the backends
from bot.foundation.store import iso

log = logging.getLogger("deckhand.canary")

STARTED_BY = "deckhand.io/canary-started-by"
STARTED_AT = "deckhand.io/canary-started-at"
STEPPED_AT = "deckhand.io/canary-stepped-at"
REVISION = "deckhand.io/canary-revision"
ANNOTATIONS = (STARTED_BY, STARTED_AT, STEPPED_AT, REVISION)

ISTIO = "istio"
ARGO = "argo"
_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # a Kubernetes object name (DNS-1123)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class CanaryRef:
    """Where a canary lives; what a button carries (with what the clicker saw)."""

    backend: str
    cluster: str
    namespace: str
    service: str

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.namespace}/{self.service}"

    @property
    def lock_name(self) -> str:
        return f"canary:{self.key}"

    def button_value(self, seen: dict[str, Any] | None = None) -> str:
        return json.dumps({"b": self.backend, "c": self.cluster, "n": self.namespace, "s": self.service,
                           **({"seen": seen} if seen else {})}, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_button(cls, value: str) -> tuple["CanaryRef", dict[str, Any]]:
        """ValueError when the value is not one of ours (an old message, a hand-made payload)."""
        try:
            data = json.loads(value)
            ref = cls(backend=data["b"], cluster=data["c"], namespace=data["n"], service=data["s"])
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"not a canary button value: {value[:80]!r}") from None
        if not all(isinstance(part, str) for part in (ref.backend, ref.cluster, ref.namespace, ref.service)):
            raise ValueError(f"not a canary button value: {value[:80]!r}")
        if not (_OBJECT_NAME.match(ref.namespace) and _OBJECT_NAME.match(ref.service)):
            # These go into Kubernetes API paths: "../x" would address another resource altogether.
            raise ValueError(f"not a canary button value: {value[:80]!r}")
        if ref.backend not in (ISTIO, ARGO):
            raise ValueError(f"unknown canary backend {ref.backend!r}")
        seen = data.get("seen") or {}
        return ref, seen if isinstance(seen, dict) else {}


@dataclass(frozen=True)
class MetricsSplit:
    """How Istio's request metrics of this service divide into stable and canary.

    `selector` is the PromQL label matchers of the service's requests; samples are grouped by
    `label` and `roles` maps a label value to "stable"/"canary" (`default` for any other value).
    `unknown` explains why no split is possible (then no query is made).
    """

    selector: str = ""
    label: str = "destination_version"
    roles: dict[str, str] = field(default_factory=dict)
    default: str | None = None
    unknown: str | None = None

    def role(self, labels: dict[str, str]) -> str | None:
        return self.roles.get(labels.get(self.label, ""), self.default)


@dataclass
class Canary:
    ref: CanaryRef
    team: str | None
    canary_weight: int
    stable_images: list[str]
    canary_images: list[str]
    next_weight: int | None          # where Next step goes; None: no step left
    step_label: str                  # "step 2 of 4", "30% (set by hand)"
    phase: str                       # Progressing, Paused, Aborted, Degraded, Fully shifted, Not started
    revision: str
    started_by: str | None = None
    started_at: datetime | None = None
    stepped_at: datetime | None = None
    canary_pods: str = "?"           # "ready/desired"
    stable_pods: str = "?"
    reserved_cpu: float = 0.0        # what the canary reserves on top of the stable version
    reserved_memory: int = 0
    warnings: list[str] = field(default_factory=list)
    split: MetricsSplit = field(default_factory=MetricsSplit)
    seen: dict[str, Any] = field(default_factory=dict)   # what a Next step button must still find
    objects: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def stable_weight(self) -> int:
        return 100 - self.canary_weight

    @property
    def live(self) -> bool:
        """Still a canary: traffic on it, or its pods still up (Istio); a new revision in flight (Argo)."""
        return bool(self.objects.get("live", True))

    @property
    def in_progress(self) -> bool:
        """Neither at 0 nor at 100: half-promoted, what reminders are about."""
        return 0 < self.canary_weight < 100

    def age(self, now: datetime) -> timedelta | None:
        return now - self.started_at if self.started_at else None

    def idle_for(self, now: datetime) -> timedelta | None:
        """Since the last step through deckhand, else since the canary started."""
        since = max((t for t in (self.started_at, self.stepped_at) if t), default=None)
        return now - since if since else None


@dataclass
class Outcome:
    """What one operation did. `status`: done, failed, busy, moved, gone, refused."""

    action: str
    status: str
    summary: str
    steps: list[str] = field(default_factory=list)
    failed_step: str | None = None
    error: str | None = None
    next_hint: str | None = None
    canary: Canary | None = None
    actor: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "done"


class StepFailed(Exception):
    def __init__(self, step: str, why: str):
        super().__init__(f"{step}: {why}")
        self.step, self.why = step, why


class Refused(Exception):
    """The operation would be unsafe in the cluster's current state; nothing was written."""


class Run:
    """One operation's ordered steps. Each step is audited; the first failure stops the run."""

    def __init__(self, ctx, canary: Canary, actor: str, action: str, progress: Progress):
        self.ctx, self.canary, self.actor, self.action, self.progress = ctx, canary, actor, action, progress
        self.steps: list[str] = []

    def _audit(self, step: str, result: str, params: dict[str, Any]) -> None:
        ref = self.canary.ref
        self.ctx.audit(self.actor, f"canary.{self.action}", result[:500], target=ref.service, cluster=ref.cluster,
                       params={"namespace": ref.namespace, "backend": ref.backend, "step": step,
                               "revision": self.canary.revision, **params})

    def step(self, name: str, write: Callable[[], Any], **params: Any) -> Any:
        self.progress(f"{name}…")
        try:
            result = write()
        except KubeError as exc:
            self._audit(name, f"failed: {exc}", params)
            raise StepFailed(name, str(exc)) from None
        except StepFailed as exc:
            self._audit(name, f"failed: {exc.why}", params)
            raise
        self._audit(name, "ok", params)
        self.steps.append(name)
        return result

    def skip(self, name: str, why: str) -> None:
        """Resuming: the cluster shows this step already done (by an earlier click or by hand)."""
        self._audit(name, f"skipped: {why}", {})
        self.steps.append(f"{name} (already done: {why})")


def annotations_for_step(canary: Canary, actor: str, now: datetime) -> dict[str, str]:
    notes = {STEPPED_AT: iso(now), REVISION: canary.revision}
    if canary.objects.get("annotated_revision") != canary.revision:
        notes.update({STARTED_BY: actor, STARTED_AT: iso(now)})
    return notes


def read_annotations(canary: Canary, notes: dict[str, str]) -> None:
    """Fill started_by/at and stepped_at from our annotations when they describe this revision."""
    if notes.get(REVISION) != canary.revision or not notes.get(STARTED_BY):
        return
    canary.objects["annotated_revision"] = canary.revision
    canary.started_by = notes.get(STARTED_BY) or canary.started_by
    canary.started_at = parse_time(notes.get(STARTED_AT)) or canary.started_at
    canary.stepped_at = parse_time(notes.get(STEPPED_AT))


def containers_images(pod_spec: dict) -> list[str]:
    return [c.get("image", "?") for c in pod_spec.get("containers") or []]


def pods_text(ready: Any, desired: Any) -> str:
    return f"{int(ready or 0)}/{int(desired or 0)}"
