"""Istio traffic from Prometheus (prometheus-api-client): per-cluster Prometheus or one shared query endpoint.

A cluster is reached one of two ways (`Route`):

* its own `clusters[].prometheus_url`: queries go as written;
* the shared `prometheus.url` (Thanos Query, Mimir, Cortex, VictoriaMetrics), where every series
  carries `prometheus.cluster_label`: queries are scoped (bot/foundation/promql.py) to the cluster's
  label value, and aggregations keep the label.

Callers only ever name clusters. `query(cluster, ...)` answers for one; `query_many(clusters, ...)`
asks each endpoint once for all the clusters it serves and hands every cluster its own samples, by
label, so 100 clusters behind one Thanos cost one query, not 100.

Every query is an instant query at an explicit `time` (the injected clock), so windows are
reproducible and tests can query backfilled data. Failures never read as zero: a query that cannot
be answered, or that a query layer answered only in part (Thanos/Mimir `warnings`, VictoriaMetrics
`isPartial`), is MetricsUnavailable for the clusters it concerns, and callers show "unknown".

Tokens come from the environment variable `bearer_token_env` names and only ever travel in the
Authorization header: reasons, logs and metrics name the variable, never the value.
"""
from __future__ import annotations

import json
import os
import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Mapping

from prometheus_api_client import PrometheusConnect
from requests.adapters import Retry

from bot.foundation import decoding, failures
from bot.foundation.config import Cluster, PrometheusAccess, SharedPrometheus
from bot.foundation.promql import ScopeError, quote, scope


# Endpoints a fleet-wide query asks at once (the per-cluster scans fan out as wide).
QUERY_WORKERS = 8

class MetricsUnavailable(Exception):
    """Prometheus could not answer (or answered in part); `str()` is a sentence fit for Slack."""

    def __init__(self, cluster: str, reason: str, partial: bool = False):
        self.cluster, self.reason, self.partial = cluster, reason, partial
        verb = "answered only in part" if partial else "did not answer"
        super().__init__(f"{cluster}: Prometheus {verb} ({reason})")


@dataclass(frozen=True, slots=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Endpoint:
    """One Prometheus-compatible query API and how to authenticate to it (connections are keyed by this)."""

    url: str
    headers: tuple[tuple[str, str], ...] = ()
    bearer_token_env: str | None = None
    ca_file: str | None = None

    @property
    def display(self) -> str:
        """The URL without any user:password@ part, for messages."""
        return re.sub(r"^(https?://)[^/@]*@", r"\1", self.url)

    def credentials(self) -> str:
        """What the endpoint checks, by name only (never a value), for 401/403 messages."""
        parts = [f"the bearer token in ${self.bearer_token_env}"] if self.bearer_token_env else []
        parts += [f"the {name} header" for name, _ in self.headers]
        return " and ".join(parts) or "its credentials (none configured: set bearer_token_env or headers)"


@dataclass(frozen=True)
class Route:
    """Where one cluster's metrics are asked: its own Prometheus, or a shared endpoint under a label."""

    cluster: str
    endpoint: Endpoint
    label: str | None = None        # the cluster label on a shared endpoint
    label_value: str | None = None

    @property
    def shared(self) -> bool:
        return self.label is not None

    @property
    def where(self) -> str:
        if self.shared:
            return f"{self.endpoint.display} under {self.label}={quote(self.label_value or '')}"
        return f"Prometheus of {self.cluster} ({self.endpoint.display})"


def routes(clusters: Iterable[Cluster], shared: SharedPrometheus | None) -> dict[str, Route]:
    out = {}
    for c in clusters:
        if c.prometheus_url:
            out[c.name] = Route(c.name, _endpoint(c.prometheus_url, c))
        elif shared is not None:
            # A cluster's own headers/token/CA layer over the shared ones (a Mimir tenant per cluster,
            # say); it then has an endpoint of its own and is asked on its own.
            access = PrometheusAccess(headers={**shared.headers, **c.headers},
                                      bearer_token_env=c.bearer_token_env or shared.bearer_token_env,
                                      ca_file=c.ca_file or shared.ca_file)
            out[c.name] = Route(c.name, _endpoint(shared.url, access), shared.cluster_label, c.label_value)
    return out


def token_values(clusters: Iterable[Cluster], shared: SharedPrometheus | None,
                 env: Mapping[str, str] | None = None) -> list[str]:
    """The bearer tokens the config points at, for log redaction."""
    env = os.environ if env is None else env
    names = {c.bearer_token_env for c in clusters} | {shared.bearer_token_env if shared else None}
    return [env[n] for n in sorted(n for n in names if n) if env.get(n)]


def _endpoint(url: str, access: PrometheusAccess) -> Endpoint:
    return Endpoint(url, tuple(sorted(access.headers.items())), access.bearer_token_env, access.ca_file)


def _reason(exc: Exception) -> str:
    found = failures.describe(exc)  # the one classifier every gateway uses (bot/foundation/failures.py)
    return "TLS verification failed (check ca_file)" if found == failures.TLS else found


def promql_duration(delta: timedelta) -> str:
    """timedelta -> PromQL range like `7d`, `10m`, `90s`."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"



class Traffic:
    def __init__(self, clusters: Iterable[Cluster], timeout: float = 10.0, *,
                 shared: SharedPrometheus | None = None, env: Mapping[str, str] | None = None):
        clusters = list(clusters)
        self.clusters = {c.name: c for c in clusters}
        self.routes = routes(clusters, shared)
        self.timeout = timeout
        self.env = os.environ if env is None else env
        self.queries: Counter[str] = Counter()   # per cluster: queries that covered it (benchmarks, tests)
        self.requests: Counter[str] = Counter()  # per endpoint URL: HTTP queries actually sent
        self._connections: dict[Endpoint, PrometheusConnect] = {}
        self._lock = threading.Lock()
        self.on_error = None  # optional callback(cluster, reason) for metrics and health
        self.on_answer = None  # optional callback(cluster): its Prometheus answered (health)

    # -- connections --------------------------------------------------------------------------------
    def route(self, cluster: str) -> Route:
        route = self.routes.get(cluster)
        if route is None:
            raise MetricsUnavailable(cluster, "no such cluster in the config")
        return route

    def _prom(self, endpoint: Endpoint) -> PrometheusConnect:
        with self._lock:
            prom = self._connections.get(endpoint)
            if prom is None:
                headers = dict(endpoint.headers)
                if endpoint.bearer_token_env:
                    token = self.env.get(endpoint.bearer_token_env)
                    if not token:
                        raise _Unavailable(f"{endpoint.bearer_token_env} is not set: it holds the bearer token "
                                           f"for {endpoint.display}")
                    headers["Authorization"] = f"Bearer {token}"
                # No retries: a down Prometheus must fail fast so Slack shows "unknown" quickly.
                prom = PrometheusConnect(url=endpoint.url, headers=headers or None, disable_ssl=False,
                                         retry=Retry(total=0), timeout=self.timeout)
                if endpoint.ca_file:
                    prom._session.verify = endpoint.ca_file
                self._connections[endpoint] = prom
            return prom

    def _send(self, endpoint: Endpoint, promql: str, at: datetime | None, timeout: float | None) -> tuple[list, list[str]]:
        """POST /api/v1/query on the client's session: (result, warnings). Raises _Unavailable.

        deckhand sends the request itself (prometheus-api-client's custom_query drops `warnings`, which
        is how Thanos and Mimir say an answer is partial) and POSTs the form (the Prometheus HTTP API
        accepts it), so a query scoped to 100 clusters never meets a proxy's URL length limit.
        """
        prom = self._prom(endpoint)
        form = {"query": promql}
        if at is not None:
            form["time"] = f"{at.timestamp():.3f}"
        self.requests[endpoint.url] += 1
        try:
            response = prom._session.post(f"{prom.url}/api/v1/query", data=form, headers=prom.headers,
                                          timeout=timeout or self.timeout)
        except Exception as exc:  # requests' timeouts and connection errors
            raise _Unavailable(_reason(exc)) from None
        if response.status_code != 200:
            raise _Unavailable(_status_reason(response, endpoint))
        try:
            body = decoding.loads(response.content)
            result = body["data"]["result"]
        except (ValueError, KeyError, TypeError):
            raise _Unavailable("unexpected answer shape") from None
        if body.get("status") != "success" or not isinstance(result, list):
            raise _Unavailable("unexpected answer shape")
        warnings = [str(w) for w in body.get("warnings") or []]
        if body.get("isPartial") is True:  # VictoriaMetrics' flag for the same thing
            warnings.append("the answer is partial (isPartial)")
        return result, warnings

    # -- queries ------------------------------------------------------------------------------------
    def query(self, cluster: str, promql: str, at: datetime, timeout: float | None = None) -> list[Sample]:
        """`promql` as written for one cluster's Prometheus; scoped to it on a shared endpoint."""
        answer = self.query_many([cluster], promql, at, timeout=timeout)[cluster]
        if isinstance(answer, MetricsUnavailable):
            raise answer
        return answer

    def query_many(self, clusters: Iterable[str], promql: str, at: datetime | None,
                   timeout: float | None = None) -> dict[str, list[Sample] | MetricsUnavailable]:
        """One answer per cluster: its samples, or why there are none. One query per endpoint."""
        answers: dict[str, list[Sample] | MetricsUnavailable] = {}
        asks: list[list[Route]] = []  # one query each: a cluster's own endpoint, or a shared one's clusters
        shared: dict[Endpoint, list[Route]] = {}
        for cluster in dict.fromkeys(clusters):
            try:
                route = self.route(cluster)
            except MetricsUnavailable as exc:
                answers[cluster] = exc
                continue
            if not route.shared:
                asks.append([route])
            elif route.endpoint in shared:
                shared[route.endpoint].append(route)
            else:
                asks.append(shared.setdefault(route.endpoint, [route]))
        # Endpoints are asked side by side: sixteen per-cluster Prometheus servers that each take a
        # second over a week of the fleet's series cost one second, not sixteen.
        if len(asks) == 1:
            answers.update(self._ask(asks[0][0].endpoint, asks[0], promql, at, timeout))
        elif asks:
            with ThreadPoolExecutor(max_workers=min(QUERY_WORKERS, len(asks)), thread_name_prefix="promql") as pool:
                for answer in pool.map(lambda members: self._ask(members[0].endpoint, members, promql, at, timeout),
                                       asks):
                    answers.update(answer)
        if self.on_answer:
            for cluster, answer in answers.items():
                if isinstance(answer, list):
                    self.on_answer(cluster)
        return answers

    def _ask(self, endpoint: Endpoint, members: list[Route], promql: str, at: datetime | None,
             timeout: float | None) -> dict[str, list[Sample] | MetricsUnavailable]:
        for route in members:
            self.queries[route.cluster] += 1
        shared = members[0].shared
        try:
            expr = scope(promql, members[0].label, [r.label_value for r in members]) if shared else promql
            result, warnings = self._send(endpoint, expr, at, timeout)
            samples = [_sample(item) for item in result]
        except ScopeError as exc:
            return self._fail_all(members, f"query could not be scoped to the cluster label: {exc}")
        except _Unavailable as exc:
            return self._fail_all(members, exc.reason)
        out: dict[str, list[Sample] | MetricsUnavailable] = {r.cluster: [] for r in members}
        if warnings:
            text = "; ".join(warnings)[:300]
            concerned = members
            if shared and f'{members[0].label}="' in text:
                # Thanos names the store that failed by its external labels: only those clusters are
                # concerned (maybe none of the ones asked here). A warning naming none concerns all.
                concerned = [r for r in members if f'{r.label}="{r.label_value}"' in text]
            for route in concerned:
                out[route.cluster] = self._fail(route.cluster, text, partial=True)
        if not shared:
            if isinstance(out[members[0].cluster], list):
                out[members[0].cluster] = samples
            return out
        by_value = {r.label_value: r.cluster for r in members}
        for sample in samples:
            value = sample.labels.get(members[0].label)
            cluster = by_value.get(value) if value is not None else (
                members[0].cluster if len(members) == 1 else None)
            if cluster is None and value is None:
                # Without the label the sample cannot be attributed; guessing could hide traffic.
                return self._fail_all(members, f"an answer without the {members[0].label} label "
                                               "cannot be attributed to a cluster")
            if cluster is not None and isinstance(out[cluster], list):
                out[cluster].append(sample)
        return out

    def _fail_all(self, members: list[Route], reason: str) -> dict[str, MetricsUnavailable]:
        return {r.cluster: self._fail(r.cluster, reason) for r in members}

    def _fail(self, cluster: str, reason: str, partial: bool = False) -> MetricsUnavailable:
        if self.on_error:
            self.on_error(cluster, "partial answer" if partial else reason)
        return MetricsUnavailable(cluster, reason, partial=partial)

    # -- checks -------------------------------------------------------------------------------------
    def endpoints(self) -> dict[Endpoint, list[Route]]:
        """Every configured endpoint with the clusters it serves, in config order."""
        out: dict[Endpoint, list[Route]] = {}
        for route in self.routes.values():
            out.setdefault(route.endpoint, []).append(route)
        return out

    def probe(self, endpoint: Endpoint, timeout: float = 5.0) -> None:
        """Can deckhand query this endpoint, authenticated? Raises MetricsUnavailable naming the endpoint."""
        try:
            self._send(endpoint, "vector(1)", None, timeout)
        except _Unavailable as exc:
            raise MetricsUnavailable(endpoint.display, exc.reason) from None

    def close(self) -> None:
        with self._lock:
            for prom in self._connections.values():
                prom.close()
            self._connections.clear()


class _Unavailable(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _sample(item: dict) -> Sample:
    try:
        return Sample(item.get("metric", {}), float(item["value"][1]))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise _Unavailable("unexpected answer shape") from None


def _status_reason(response, endpoint: Endpoint) -> str:
    code = response.status_code
    if code == 401:
        return f"401 Unauthorized: {endpoint.display} refused {endpoint.credentials()}"
    if code == 403:
        return f"403 Forbidden: {endpoint.display} does not let {endpoint.credentials()} query it"
    if code in (400, 422):
        try:
            detail = str(json.loads(response.content).get("error", ""))[:200]
        except (ValueError, AttributeError):
            detail = ""
        return f"query rejected: HTTP {code}" + (f" ({detail})" if detail else "")
    # Other bodies are not repeated: a proxy's error page is no help in Slack and could echo headers.
    return f"HTTP {code} from {endpoint.display}"
