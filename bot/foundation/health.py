"""`python app.py check`: probe every configured integration, each bounded by a timeout."""
from __future__ import annotations

import concurrent.futures as futures
import threading
from dataclasses import dataclass
from typing import Callable

from bot.foundation.context import Context


@dataclass(frozen=True)
class Probe:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.name}: {'ok' if self.ok else 'failed'}{': ' + self.detail if self.detail else ''}"


def probes(ctx: Context, timeout: float = 8.0) -> list[Probe]:
    checks: list[tuple[str, Callable[[], str]]] = [("database", lambda: _database(ctx))]
    checks.append(("slack", lambda: _slack(ctx)))
    for cluster in ctx.settings.clusters:
        checks.append((f"kubernetes {cluster.name}", lambda c=cluster.name: _kube(ctx, c, timeout)))
    checks.extend(_prometheus_checks(ctx, timeout))
    if ctx.settings.github:
        checks.append(("github", lambda: _github(ctx)))
    results: list[Probe] = []
    pool = futures.ThreadPoolExecutor(max_workers=min(16, len(checks)))
    pending = {name: pool.submit(fn) for name, fn in checks}
    for name, future in pending.items():
        try:
            results.append(Probe(name, True, future.result(timeout=timeout + 2)))
        except futures.TimeoutError:
            results.append(Probe(name, False, f"no answer within {timeout:.0f}s"))
        except Exception as exc:
            results.append(Probe(name, False, str(exc) or type(exc).__name__))
    pool.shutdown(wait=False, cancel_futures=True)
    return results


def _database(ctx: Context) -> str:
    if not ctx.store.writable():
        raise RuntimeError(f"{ctx.store.path} is not writable")
    return f"{ctx.store.path} (schema v{ctx.store.schema_version})"


def _slack(ctx: Context) -> str:
    if ctx.slack is None:
        raise RuntimeError("SLACK_BOT_TOKEN is not set")
    from slack_sdk.errors import SlackApiError

    try:
        answer = ctx.slack.auth_test()
    except SlackApiError as exc:
        raise RuntimeError(f"auth.test: {exc.response.get('error', exc)}") from None
    return f"workspace {answer.get('team')} as {answer.get('user')}"


def _kube(ctx: Context, cluster: str, timeout: float) -> str:
    version = ctx.kube.version(cluster, timeout=timeout)
    return f"Kubernetes {version.get('gitVersion', '?')}"


# Istio series this recent count as "the cluster reports": the same freshness the idle scan wants.
ISTIO_SERIES = ("count(last_over_time(istio_requests_total[1d])) "
                "or count(last_over_time(istio_tcp_connections_opened_total[1d]))")


def _prometheus_checks(ctx: Context, timeout: float) -> list[tuple[str, Callable[[], str]]]:
    """A line per shared endpoint (it answers, authenticated), then a line per cluster (Istio series
    under its label value, or in its own Prometheus). One query per endpoint covers all its clusters."""
    checks: list[tuple[str, Callable[[], str]]] = []
    for endpoint, members in ctx.traffic.endpoints().items():
        if not members[0].shared:
            route = members[0]
            checks.append((f"prometheus {route.cluster}",
                           lambda r=route: _istio_series(ctx, r, _fleet_answer(ctx, [r], timeout))))
            continue
        answers = _Once(lambda m=members: _fleet_answer(ctx, m, timeout))
        checks.append((f"prometheus {endpoint.display}",
                       lambda e=endpoint, n=len(members): _endpoint(ctx, e, n, timeout)))
        for route in members:
            checks.append((f"prometheus {route.cluster}", lambda r=route, a=answers: _istio_series(ctx, r, a())))
    return checks


class _Once:
    """The shared endpoint's answer is computed by the first cluster line that needs it."""

    def __init__(self, compute: Callable[[], dict]):
        self._compute, self._lock, self._value = compute, threading.Lock(), None

    def __call__(self) -> dict:
        with self._lock:
            if self._value is None:
                self._value = self._compute()
            return self._value


def _fleet_answer(ctx: Context, routes: list, timeout: float) -> dict:
    return ctx.traffic.query_many([r.cluster for r in routes], ISTIO_SERIES, ctx.now(), timeout=timeout)


def _endpoint(ctx: Context, endpoint, clusters: int, timeout: float) -> str:
    ctx.traffic.probe(endpoint, timeout=timeout)
    auth = f", authenticated with {endpoint.credentials()}" if endpoint.bearer_token_env or endpoint.headers else ""
    return f"answers{auth}; serves {clusters} cluster{'s' if clusters != 1 else ''}"


def _istio_series(ctx: Context, route, answers: dict) -> str:
    answer = answers[route.cluster]
    if isinstance(answer, Exception):
        raise answer
    count = int(answer[0].value) if answer else 0
    if count <= 0:
        hint = (" (is its Prometheus federated into this endpoint, and is cluster_label_value right?)"
                if route.shared else " (does it scrape the Istio sidecars?)")
        raise RuntimeError(f"no Istio series in the last day at {route.where}{hint}: "
                           "its traffic stays unknown and the idle scan skips it")
    return f"{count} Istio series at {route.where}"


def _github(ctx: Context) -> str:
    if not ctx.secrets.github_token:
        raise RuntimeError("GITHUB_TOKEN is not set")
    where = ctx.gitops.probe()
    # A reviewer who is not a collaborator (or a team that does not exist) makes GitHub refuse the review
    # request with 422 at the worst moment, on a real PR: catch the misconfiguration here instead.
    problems = ctx.gitops.check_reviewers()
    if problems:
        raise RuntimeError(f"{where}: " + "; ".join(problems)
                           + " (fix github.reviewers / github.team_reviewers in the config)")
    asked = len(ctx.settings.github.reviewers) + len(ctx.settings.github.team_reviewers)
    return f"{where}, {asked} reviewer{'s' if asked != 1 else ''} verified" if asked else where
