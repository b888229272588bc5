"""Per-version traffic of a canary from Istio's metrics: request rate, success rate, p99 latency.

Two instant queries per canary (not per version): one over `istio_requests_total` grouped by the
version label and response code, one `histogram_quantile` over
`istio_request_duration_milliseconds_bucket` grouped by the version label. Both use
`reporter="destination"`: the server-side proxy sees every request exactly once, whoever calls.
When Prometheus cannot answer the numbers are unknown — never zero.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from bot.canary.model import Canary
from bot.foundation.traffic import MetricsUnavailable, promql_duration

WINDOW = timedelta(minutes=10)


@dataclass(frozen=True)
class VersionStats:
    rps: float
    success: float | None   # share of non-5xx responses; None without requests
    p99_ms: float | None    # None without requests


@dataclass(frozen=True)
class CanaryTraffic:
    stable: VersionStats | None
    canary: VersionStats | None
    unknown: str | None = None   # why there are no numbers (Prometheus down, versions indistinguishable)
    window: timedelta = WINDOW


def canary_traffic(ctx, canary: Canary) -> CanaryTraffic:
    split = canary.split
    if split.unknown:
        return CanaryTraffic(None, None, split.unknown)
    window, at, cluster = promql_duration(WINDOW), ctx.now(), canary.ref.cluster
    try:
        requests = ctx.traffic.query(
            cluster,
            f"sum by ({split.label}, response_code) "
            f"(rate(istio_requests_total{{{split.selector}}}[{window}]))", at)
        latency = ctx.traffic.query(
            cluster,
            f"histogram_quantile(0.99, sum by ({split.label}, le) "
            f"(rate(istio_request_duration_milliseconds_bucket{{{split.selector}}}[{window}])))", at)
    except MetricsUnavailable as exc:
        return CanaryTraffic(None, None, str(exc))
    total = {"stable": 0.0, "canary": 0.0}
    good = {"stable": 0.0, "canary": 0.0}
    for sample in requests:
        role = split.role(sample.labels)
        if role is None:
            continue
        total[role] += sample.value
        if not sample.labels.get("response_code", "").startswith("5"):
            good[role] += sample.value
    p99: dict[str, float] = {}
    for sample in latency:
        role = split.role(sample.labels)
        if role is not None and not math.isnan(sample.value):
            p99[role] = max(p99.get(role, 0.0), sample.value)  # several versions in one role: the worst
    stats = {role: VersionStats(total[role], good[role] / total[role] if total[role] > 0 else None,
                                p99.get(role) if total[role] > 0 else None) for role in total}
    return CanaryTraffic(stats["stable"], stats["canary"])
