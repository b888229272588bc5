"""The world the /service tests run in: a payments namespace on the Kubernetes fake, a real
Prometheus backfilled with Istio callers, a GitOps repo on the GitHub fake, and click helpers.
No tests here; tests/deletion/test_service*.py import it."""
from __future__ import annotations

from datetime import timedelta

import pytest

from blocks.service import ACTION_REQUEST
from bot.deletion import lifecycle
from tests.fakes.istio_metrics import IstioMetrics
from tests.harness import DEVOPS, FakeClock

REPO = "org/deploy-manifests"
APPROVALS = "C0APPROVALS"
LEDGER_RPS = 0.5
WEEK = 7 * 86400


def mesh() -> IstioMetrics:
    """8 days at 1 h steps (idle.window is 7d): ledger has an HTTP caller and an unknown TCP caller,
    frontend gets gateway traffic (so the mesh reports), payments-api gets nothing."""
    m = IstioMetrics.recent(timedelta(days=8), step=timedelta(hours=1))
    m.http("ledger", "payments", src_workload="checkout", src_namespace="orders", rps=LEDGER_RPS, histogram=False)
    m.tcp("ledger", "payments", src_workload="unknown", src_namespace="unknown", conn_per_min=2, bytes_per_conn=512)
    m.http("frontend", "web", src_workload="istio-ingressgateway", src_namespace="istio-system", rps=1,
           histogram=False)
    # audit-api: one caller whose first (and only) request came two days ago: increase() reads 0.
    m.first_request_only("audit-api", "payments", at=m.end - timedelta(days=2), src_workload="nightly-audit",
                         src_namespace="reports", histogram=False)
    # legacy-api: a caller's counter that has not moved since long before the window: not traffic.
    hours = int((m.end - m.start).total_seconds() // 3600)
    m.raw("istio_requests_total", {"reporter": "destination", "source_workload": "old-client",
                                   "source_workload_namespace": "orders", "destination_service_name": "legacy-api",
                                   "destination_service_namespace": "payments", "response_code": "200"},
          [(m.start + timedelta(hours=h), 5) for h in range(hours + 1)])
    return m


@pytest.fixture
def mesh_prometheus(prometheus_factory):
    return prometheus_factory(mesh())


def workload(name: str, ns: str, *, app: str, replicas: int = 2, cpu: str = "250m", memory: str = "256Mi",
             kind: str = "Deployment", extra_labels: dict | None = None) -> dict:
    labels = {"app": app, **(extra_labels or {})}
    return {
        "apiVersion": "apps/v1" if kind != "Rollout" else "argoproj.io/v1alpha1", "kind": kind,
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app, "team": "payments"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "app", "image": f"registry/{app}:1",
                                                       "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}},
    }


def service(name: str, ns: str, team: str | None = "payments", selector: dict | None = None) -> dict:
    labels = {"app": name, **({"team": team} if team else {})}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"selector": selector or {"app": name}, "ports": [{"port": 8080}]}}


def cronjob(name: str, ns: str, *, labels: dict | None = None, env: dict | None = None, args: list | None = None,
            env_from: list[str] | None = None, kind: str = "CronJob") -> dict:
    container = {"name": "job", "image": "registry/batch:1"}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if args:
        container["args"] = args
    if env_from:
        container["envFrom"] = [{"configMapRef": {"name": n}} for n in env_from]
    pod = {"template": {"spec": {"containers": [container], "restartPolicy": "Never"}}}
    spec = {"schedule": "0 3 1 * *", "jobTemplate": {"spec": pod}} if kind == "CronJob" else pod
    return {"apiVersion": "batch/v1", "kind": kind, "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": spec}


def virtualservice(name: str, ns: str, *destinations: str) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"hosts": [name], "http": [{"route": [{"destination": {"host": d}, "weight": 100 // len(destinations)}
                                                          for d in destinations]}]}}


def configmap(name: str, ns: str, data: dict, labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "data": data}


def seed_payments(kube) -> None:
    """payments-api (clean, 2 × 250m/256Mi) with everything of its own, and ledger (called) beside it."""
    kube.add_many([
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in ("payments", "orders", "reports", "web")
    ])
    kube.add_many([
        service("payments-api", "payments"),
        workload("payments-api", "payments", app="payments-api"),
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
         "metadata": {"name": "payments-api", "namespace": "payments"},
         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "payments-api"},
                  "minReplicas": 2, "maxReplicas": 4}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "payments-api", "namespace": "payments"},
         "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "payments-api"}}}},
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": {"name": "payments-api", "namespace": "payments"},
         "spec": {"host": "payments-api.payments.svc.cluster.local"}},
        virtualservice("payments-api", "payments", "payments-api"),
        configmap("payments-api-config", "payments", {"LOG_LEVEL": "info"}, {"app": "payments-api"}),
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "payments-api-db", "namespace": "payments",
                                                            "labels": {"app": "payments-api"}}, "data": {}},
        configmap("shared-settings", "payments", {"REGION": "eu"}),  # unlabelled: must survive
        cronjob("payments-api-cleanup", "payments", labels={"app": "payments-api"}),
        service("ledger", "payments"),
        workload("ledger", "payments", app="ledger", replicas=1),
        service("audit-api", "payments"),
        service("legacy-api", "payments"),
    ])


def start(bot_factory, github_fake, prometheus=None, files: dict | None = None, **kwargs):
    """A bot on one cluster with the payments world; the clock sits at the end of the Prometheus data."""
    try:
        github_fake.files(REPO)
    except Exception:  # no such repo yet: this test's first bot
        github_fake.create_repo(REPO, files=files or {"README.md": "deploy manifests\n"})
    url = prometheus.url if prometheus is not None else None
    clock = kwargs.pop("clock", None) or FakeClock(prometheus.eval_time if prometheus is not None else None)
    bot = bot_factory(prometheus={"prod-a": url} if url else None, github_fake=github_fake, clock=clock, **kwargs)
    if not kwargs.get("kube_fakes"):
        seed_payments(bot.kube["prod-a"])
    return bot


def last_response(bot, predicate=lambda r: True):
    return bot.slack.wait_for(lambda: [r for r in bot.slack.responses if predicate(r)])[-1]


def report_of(bot, user: str, text: str, channel: str = "C0PAY") -> dict:
    """Run a /service command and return the report (the reply with blocks)."""
    before = len(bot.slack.responses)
    bot.sender.command("/service", text, user_id=user, channel_id=channel)
    return bot.slack.wait_for(lambda: [r for r in bot.slack.responses[before:] if r.get("blocks")
                                       or (r.get("text") or "").startswith((":grey_question:", ":warning:"))])[-1]


def button(blocks: list[dict], action_id: str) -> dict | None:
    for block in blocks or []:
        for element in block.get("elements") or []:
            if element.get("action_id") == action_id:
                return element
    return None


def request_deletion(bot, user: str, service_name: str = "payments-api") -> lifecycle.DeletionRequest:
    """/service delete → Request deletion → the request row (approval message flushed to Slack)."""
    report = report_of(bot, user, f"delete {service_name} prod-a")
    element = button(report["blocks"], ACTION_REQUEST)
    assert element is not None, report
    before = len(bot.slack.responses)
    bot.sender.block_actions(ACTION_REQUEST, value=element["value"], user_id=user, channel_id="C0PAY",
                             message={"type": "message", "blocks": report["blocks"], "ts": "1.000001"})
    reply = bot.slack.wait_for(lambda: [r for r in bot.slack.responses[before:] if "Requested" in (r.get("text") or "")])
    assert reply[-1]["replace_original"] is True
    req = lifecycle.open_request_for(bot.ctx, "prod-a", "payments", service_name)
    assert req is not None and req.requester == user
    bot.flush()
    return req


def approval_message(bot, request_id: int) -> dict:
    where = lifecycle.message_of(bot.ctx, request_id)
    assert where is not None, "the approval message was not posted"
    return bot.slack.message(*where)


def click(bot, action_id: str, request_id: int, user: str = DEVOPS, **kwargs):
    channel, ts = lifecycle.message_of(bot.ctx, request_id)
    return bot.sender.block_actions(action_id, value=str(request_id), user_id=user, channel_id=channel,
                                    message_ts=ts, **kwargs)


def wait_state(bot, request_id: int, *states: str) -> lifecycle.DeletionRequest:
    return bot.slack.wait_for(lambda: (lambda r: r if r and r.state in states else None)(
        lifecycle.get_request(bot.ctx, request_id)), timeout=10)


def pending_gauge(bot) -> float:
    return bot.ctx.metrics.registry.get_sample_value("deckhand_pending_approvals")


def exists(kube, kind: str, ns: str, name: str) -> bool:
    return kube.get(None, kind, ns, name) is not None
