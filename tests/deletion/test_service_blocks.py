"""Block Kit for /service: golden files (tests/golden/service_*.json) and Slack's limits."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest

from blocks.service import (ACTION_APPROVE, ACTION_OVERRIDE, ACTION_REQUEST, ACTION_RESUME, loading_text,
                            override_modal, report_message, request_message, requested_text)
from bot.deletion.dependencies import Blocker, Caller, DependencyReport, Finding
from bot.deletion.lifecycle import DeletionRequest, Step
from tests.fakes.slack import validate_message_blocks, validate_view
from tests.golden import assert_golden
from tests.deletion.test_service_world import button

CREATED = datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)
EXPIRES = datetime(2026, 11, 23, 9, 30, tzinfo=timezone.utc)
DELETED = [
    Finding("VirtualService", "payments", "payments-api", "routes to `payments-api`", "networking.istio.io/v1/virtualservices", 1),
    Finding("DestinationRule", "payments", "payments-api", "host `payments-api.payments.svc.cluster.local`",
            "networking.istio.io/v1/destinationrules", 1),
    Finding("Deployment", "payments", "payments-api", "2 replicas", "apps/v1/deployments", 2),
    Finding("CronJob", "payments", "payments-api-cleanup", "labelled with the service's app", "batch/v1/cronjobs", 2),
    Finding("Service", "payments", "payments-api", "", "/v1/services", 3),
    Finding("ConfigMap", "payments", "payments-api-config", "labelled app=payments-api", "/v1/configmaps", 3),
]


def clean_report(**changes) -> DependencyReport:
    report = DependencyReport(cluster="prod-a", namespace="payments", service="payments-api", team="payments",
                              app="payments-api", window="7d", checked_at="2026-11-20T09:00:00+00:00",
                              deleted=list(DELETED), cpu_cores=0.5, memory_bytes=512 * 2**20)
    return replace(report, **changes)


def blocked_report() -> DependencyReport:
    return clean_report(
        callers=[Caller("checkout", "orders", requests=302400), Caller("unknown", "unknown", tcp_connections=20160,
                                                                      tcp_bytes=10321920)],
        batches=[Finding("CronJob", "reports", "monthly-invoices",
                         "env `PAYMENTS_URL` of container `job`: `http://payments-api.payments.svc.cluster.local:8080/v1`",
                         "batch/v1/cronjobs")],
        routes=[Finding("VirtualService", "web", "storefront",
                        "routes to `payments-api.payments.svc.cluster.local` and 1 other destination",
                        "networking.istio.io/v1/virtualservices")],
        notes=["Rollout API (argoproj.io/v1alpha1) is not installed in prod-a."])


def unknown_report() -> DependencyReport:
    return clean_report(traffic_unknown="prod-a: Prometheus did not answer (connection refused); callers over the "
                                        "last 7d are unknown")


def request(state: str = "pending", **changes) -> DeletionRequest:
    plan = [Step(f.phase, f.kind, f.namespace, f.name, f.api) for f in DELETED]
    req = DeletionRequest(id=7, cluster="prod-a", namespace="payments", service="payments-api", team="payments",
                          requester="U0PAYDEV", source="command", state=state, report=clean_report(),
                          created_at=CREATED, expires_at=EXPIRES, plan=plan)
    return replace(req, **changes)


def checked(message: dict) -> dict:
    assert validate_message_blocks(message["blocks"]) == []
    return message


def test_report_clean_with_request_button():
    message = checked(report_message(clean_report(), mode="delete", can_request=True))
    assert button(message["blocks"], ACTION_REQUEST) is not None
    assert_golden("service_report_clean", message)


def test_report_blocked_with_evidence():
    message = checked(report_message(blocked_report(), mode="delete", can_request=True, can_override=True))
    assert button(message["blocks"], ACTION_REQUEST) is None and button(message["blocks"], ACTION_OVERRIDE) is None
    assert_golden("service_report_blocked", message)


def test_report_unknown_traffic_offers_devops_the_override():
    message = checked(report_message(unknown_report(), mode="delete", can_request=True, can_override=True))
    assert button(message["blocks"], ACTION_OVERRIDE) is not None
    assert_golden("service_report_unknown_traffic", message)


def test_report_deps_mode_and_denial():
    assert_golden("service_report_deps", checked(report_message(clean_report(), mode="deps")))
    message = checked(report_message(clean_report(), mode="delete", can_request=False,
                                     denial="You can't request this deletion: only the payments team or DevOps may do this."))
    assert button(message["blocks"], ACTION_REQUEST) is None
    assert_golden("service_report_denied", message)


@pytest.mark.parametrize("state", ["pending", "approved", "deleting", "deleted", "failed", "rejected", "expired",
                                   "refused", "awaiting_merge", "cancelled"])
def test_approval_message_in_every_state(state):
    req = request(state, decided_by=None if state in ("pending", "expired") else "U0DEVOPS2")
    if state in ("deleting", "deleted", "failed"):
        results = {"deleting": ["deleted", "already gone", "", "", "", ""], "deleted": ["deleted"] * 6,
                   "failed": ["deleted", "deleted", "deleted", "failed", "", ""]}[state]
        req.plan = [replace(s, result=r, detail="prod-a: delete CronJob payments/payments-api-cleanup failed: the "
                                                 "API server had an internal error (500)" if r == "failed" else "")
                    for s, r in zip(req.plan, results)]
    if state == "failed":
        req.note = "CronJob payments/payments-api-cleanup: the API server had an internal error (500)"
    if state == "refused":
        req.note = "the re-check found 1 new blocker"
        req.changes = [Blocker("batch", "CronJob:reports/quarter-close", "CronJob reports/quarter-close",
                               "env `API` of container `job`: `payments-api.payments.svc:8080`")]
    if state in ("awaiting_merge", "cancelled"):
        req.branch, req.pr_number = "deckhand/delete/payments-api", 42
        req.pr_url = "https://github.example/org/deploy-manifests/pull/42"
    message = checked(request_message(req))
    assert (button(message["blocks"], ACTION_APPROVE) is not None) == (state == "pending")
    assert (button(message["blocks"], ACTION_RESUME) is not None) == (state == "failed")
    assert_golden(f"service_request_{state}", message)


def test_approval_message_with_an_override():
    req = request(report=unknown_report(), requester="U0DEVOPS1",
                  override_reason="Access logs for 30 days show no requests; payments confirmed")
    message = checked(request_message(req))
    assert "Overridden by <@U0DEVOPS1>" in str(message["blocks"])
    assert_golden("service_request_overridden", message)


def test_override_modal():
    view = override_modal("payments-api", "prod-a", '{"c":"prod-a","n":"payments","s":"payments-api","src":"command"}')
    assert validate_view(view, require_modal=True) == []
    assert_golden("service_override_modal", view)


def test_requested_texts():
    req = request()
    assert_golden("service_requested", {"created": requested_text(req, True, "C0APPROVALS"),
                                        "existing": requested_text(req, False, "C0APPROVALS"),
                                        "loading": loading_text("payments-api", "prod-a")})


def test_huge_reports_stay_within_slack_limits():
    report = blocked_report()
    report.callers = [Caller(f"caller-{i}", f"ns-{i % 7}", requests=1000 + i) for i in range(400)]
    report.batches = [replace(report.batches[0], name=f"job-{i}", evidence="env `X`: `" + "x" * 300 + "`")
                      for i in range(300)]
    report.routes = [replace(report.routes[0], name=f"vs-{i}") for i in range(200)]
    report.deleted = [replace(DELETED[5], name=f"cm-{i}") for i in range(500)] + DELETED
    for message in (report_message(report, mode="delete", can_request=True),
                    request_message(request("failed", report=report, plan=[Step(3, "ConfigMap", "payments", f"cm-{i}",
                                                                                  "/v1/configmaps", "deleted")
                                                                             for i in range(500)]))):
        checked(message)
        assert len(message["blocks"]) <= 50
        text = str(message["blocks"])
        assert "and 388 more" in text or "and 485 more" in text
