"""The one object every listener and job receives: settings, store, gateways and the clock.

Built once by app.py (`build_context`); tests build it with fakes behind the same gateways.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.foundation.access import Access
from bot.foundation.config import Secrets, Settings
from bot.foundation import integrations
from bot.foundation.gitops import GitOps
from bot.foundation.integrations import IntegrationHealth
from bot.foundation.kube import KubeGateway
from bot.foundation.logs import redact_deep, remember_secrets
from bot.foundation.metrics import Metrics
from bot.foundation.outbox import Outbox
from bot.foundation.store import Audit, Store, utcnow
from bot.foundation.traffic import Traffic

log = logging.getLogger("deckhand")


class RedactingWebClient(WebClient):
    """Every Web API call's arguments pass through the one redactor (bot/foundation/logs.py): an error
    text that quotes an upstream which echoed a token must not carry it into a channel."""

    def api_call(self, api_method: str, *, data: dict | None = None, params: dict | None = None,
                 json: dict | None = None, **kwargs: Any):
        return super().api_call(api_method, data=redact_deep(data), params=redact_deep(params),
                                json=redact_deep(json), **kwargs)


def slack_client(token: str | None, base_url: str | None, timeout: int = 10) -> WebClient:
    """slack_sdk client with retries on 429 (after Retry-After), 5xx and dropped connections."""
    kwargs: dict[str, Any] = {"token": token, "timeout": timeout}
    if base_url:
        kwargs["base_url"] = base_url if base_url.endswith("/") else base_url + "/"
    client = RedactingWebClient(**kwargs)
    client.retry_handlers = [
        ConnectionErrorRetryHandler(max_retry_count=2),
        RateLimitErrorRetryHandler(max_retry_count=3),
        ServerErrorRetryHandler(max_retry_count=2),
    ]
    return client


@dataclass
class Context:
    settings: Settings
    secrets: Secrets
    store: Store
    slack: WebClient | None
    kube: KubeGateway
    traffic: Traffic
    gitops: GitOps | None
    access: Access
    outbox: Outbox
    metrics: Metrics
    clock: Callable[[], datetime] = utcnow
    bot_user_id: str | None = None
    # Set by app.py: run a job now by name (used by /ops run and the console).
    run_job: Callable[[str, str], str] | None = None
    # Set by the leader election: False while another instance holds the lease.
    is_leader: Callable[[], bool] = lambda: True
    # Why this instance cannot take part in leader election at all (a misconfigured lease), or None.
    leader_problem: Callable[[], str | None] = lambda: None
    # Set by app.py: other features' handlers for closed deckhand pull requests, by branch prefix:
    # prefix -> (feature name, handler(ctx, branch, number, merged) -> str). The GitHub webhook and
    # the poller (bot/pipelines) route to them without importing another feature.
    pull_request_handlers: dict[str, tuple[str, Callable[..., Any]]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    # Each integration's state as last seen (logs, /metrics, /readyz details).
    health: IntegrationHealth = field(default_factory=IntegrationHealth)

    def now(self) -> datetime:
        return self.clock()

    def audit(self, actor: str, action: str, result: str, **fields: Any) -> int:
        return self.store.audit(Audit(actor=actor, action=action, result=result, **fields))


class JobFailed(Exception):
    """A scheduled job could not do its work for a reason it can say in words (every cluster unreachable,
    GitHub down). jobs.run_now records it as `failed` with this text, logged without a traceback: it is
    the world's fault, not a bug."""


def new_error_id() -> str:
    return uuid.uuid4().hex[:8]


def build_context(
    settings: Settings, secrets: Secrets, db_path: str, clock: Callable[[], datetime] = utcnow,
    *, outbox_interval: float = 1.0, github_write_pacing: float | None = 0.5, backend_timeout: float = 10.0,
) -> Context:
    remember_secrets(secrets.values())
    store = Store(db_path, clock=clock)
    metrics = Metrics()
    slack = slack_client(secrets.slack_bot_token, secrets.slack_api_url) if secrets.slack_bot_token else None

    def group_members(group: str) -> list[str]:
        if slack is None:
            return []
        return list(slack.usergroups_users_list(usergroup=group).get("users") or [])

    health = IntegrationHealth(metrics)

    def kube_failed(cluster: str, status: int | str) -> None:
        metrics.backend_errors.labels(backend="kubernetes", kind=str(status or "unreachable")).inc()
        if integrations.serious(status):
            health.failed(f"kubernetes {cluster}", str(status) if status else "unreachable")

    def prometheus_failed(cluster: str, reason: str) -> None:
        # The kind only (no host name) as the label value: a label must have few values.
        metrics.backend_errors.labels(backend="prometheus", kind=reason.split(":")[0].split(" for ")[0][:40]).inc()
        health.failed(f"prometheus {cluster}", reason)

    def github_failed(status: int | str) -> None:
        metrics.backend_errors.labels(backend="github", kind=str(status or "unreachable")).inc()
        if integrations.serious(status):
            health.failed("github", str(status) if status else "unreachable")

    kube = KubeGateway(settings.clusters, timeout=backend_timeout, protected=settings.protected_namespaces,
                       own_lease=settings.lease.name)
    kube.on_error, kube.on_answer = kube_failed, lambda cluster: health.ok(f"kubernetes {cluster}")
    traffic = Traffic(settings.clusters, timeout=backend_timeout, shared=settings.prometheus)
    traffic.on_error, traffic.on_answer = prometheus_failed, lambda cluster: health.ok(f"prometheus {cluster}")
    from bot.foundation import gitops as gitops_module

    gitops_module.on_error, gitops_module.on_answer = github_failed, lambda: health.ok("github")
    gitops = (GitOps(settings.github, secrets.github_token, timeout=backend_timeout + 5,
                     seconds_between_writes=github_write_pacing) if settings.github else None)
    return Context(
        settings=settings, secrets=secrets, store=store, slack=slack, kube=kube, traffic=traffic,
        gitops=gitops, access=Access(settings, group_members if slack else None),
        outbox=Outbox(store, slack, min_interval=outbox_interval, metrics=metrics, health=health),
        metrics=metrics, clock=clock, health=health,
    )
