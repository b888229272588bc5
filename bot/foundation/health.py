"""`python app.py check`: probe every configured integration, each bounded by a timeout."""
from __future__ import annotations

import concurrent.futures as futures
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
        checks.append((f"prometheus {cluster.name}", lambda c=cluster.name: _prometheus(ctx, c, timeout)))
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


def _prometheus(ctx: Context, cluster: str, timeout: float) -> str:
    ctx.traffic.probe(cluster, timeout=timeout)
    return ctx.settings.cluster(cluster).prometheus_url


def _github(ctx: Context) -> str:
    if not ctx.secrets.github_token:
        raise RuntimeError("GITHUB_TOKEN is not set")
    return ctx.gitops.probe()
