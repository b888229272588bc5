"""Istio traffic from Prometheus (prometheus-api-client).

Every query is an instant query at an explicit `time` (the injected clock), so windows are
reproducible and tests can query backfilled data. Failures never read as zero: a query that
cannot be answered raises MetricsUnavailable, and callers show "unknown" and refuse to
conclude anything from the absence of data.
"""
from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from requests.adapters import Retry

from bot.foundation.config import Cluster


class MetricsUnavailable(Exception):
    """Prometheus could not answer; `str()` is a sentence fit for Slack."""

    def __init__(self, cluster: str, reason: str):
        self.cluster, self.reason = cluster, reason
        super().__init__(f"{cluster}: Prometheus did not answer ({reason})")


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


def _reason(exc: Exception) -> str:
    text = str(exc).lower()
    if "timed out" in text or "timeout" in text:
        return "timed out"
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text:
        return "host not found"
    return type(exc).__name__


def promql_duration(delta: timedelta) -> str:
    """timedelta -> PromQL range like `7d`, `10m`, `90s`."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class Traffic:
    def __init__(self, clusters: Iterable[Cluster], timeout: float = 10.0):
        self.clusters = {c.name: c for c in clusters}
        self.timeout = timeout
        self.queries: Counter[str] = Counter()  # per cluster, for benchmarks and /metrics
        self._connections: dict[str, PrometheusConnect] = {}
        self._lock = threading.Lock()
        self.on_error = None  # optional callback(cluster, reason) for metrics

    def _prom(self, cluster: str) -> PrometheusConnect:
        with self._lock:
            prom = self._connections.get(cluster)
            if prom is None:
                spec = self.clusters.get(cluster)
                if spec is None:
                    raise MetricsUnavailable(cluster, "no such cluster in the config")
                # No retries: a down Prometheus must fail fast so Slack shows "unknown" quickly.
                prom = PrometheusConnect(url=spec.prometheus_url, disable_ssl=False,
                                         retry=Retry(total=0), timeout=self.timeout)
                self._connections[cluster] = prom
            return prom

    def query(self, cluster: str, promql: str, at: datetime, timeout: float | None = None) -> list[Sample]:
        prom = self._prom(cluster)
        self.queries[cluster] += 1
        try:
            result = prom.custom_query(promql, params={"time": at.timestamp()}, timeout=timeout or self.timeout)
        except PrometheusApiClientException as exc:
            raise self._fail(cluster, f"query rejected: {str(exc)[:200]}") from None
        except Exception as exc:  # requests' timeouts and connection errors, bad JSON
            raise self._fail(cluster, _reason(exc)) from None
        samples = []
        for item in result or []:
            try:
                samples.append(Sample(item.get("metric", {}), float(item["value"][1])))
            except (KeyError, IndexError, TypeError, ValueError):
                raise self._fail(cluster, "unexpected answer shape") from None
        return samples

    def _fail(self, cluster: str, reason: str) -> MetricsUnavailable:
        if self.on_error:
            self.on_error(cluster, reason)
        return MetricsUnavailable(cluster, reason)

    def has_istio(self, cluster: str, at: datetime, window: timedelta) -> bool:
        """Any Istio request or TCP series at all in the window? No series = no evidence."""
        samples = self.query(
            cluster,
            f"count(count_over_time({{__name__=~\"istio_requests_total|istio_tcp_connections_opened_total\"}}"
            f"[{promql_duration(window)}]))",
            at,
        )
        return bool(samples) and samples[0].value > 0

    def probe(self, cluster: str, timeout: float = 5.0) -> None:
        prom = self._prom(cluster)
        try:
            response = prom._session.get(f"{prom.url}/-/ready", timeout=timeout)
        except Exception as exc:
            raise MetricsUnavailable(cluster, _reason(exc)) from None
        if response.status_code != 200:
            raise MetricsUnavailable(cluster, f"/-/ready answered {response.status_code}")

    def close(self) -> None:
        with self._lock:
            for prom in self._connections.values():
                prom.close()
            self._connections.clear()
