"""/service deps and delete: the dependency check with evidence, against the Kubernetes fake and a
real Prometheus backfilled with Istio callers."""
from __future__ import annotations

import json
from datetime import timedelta

from blocks.service import ACTION_OVERRIDE, ACTION_REQUEST
from bot.deletion.references import host_forms, mentioned_host
from tests.harness import DEVOPS, OUTSIDER, PAY_DEV
from tests.deletion.test_service_world import (LEDGER_RPS, WEEK, button, configmap, cronjob, mesh_prometheus,  # noqa: F401
                                      report_of, start, virtualservice)
from tests.deletion.test_service_world import service as service_object


def text_of(reply: dict) -> str:
    return json.dumps(reply.get("blocks") or reply.get("text"), ensure_ascii=False)


def test_callers_are_reported_with_counts_and_unknown_callers_as_such(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    reply = report_of(bot, PAY_DEV, "delete ledger prod-a")
    text = text_of(reply)
    assert "Deletion is blocked" in text and "2 callers" in text
    assert "`orders/checkout`" in text and f"{round(LEDGER_RPS * WEEK):,} requests" in text
    assert "_unknown caller_ (no sidecar, or plain TCP without mTLS)" in text and "TCP connections" in text
    assert button(reply["blocks"], ACTION_REQUEST) is None and button(reply["blocks"], ACTION_OVERRIDE) is None


def test_a_caller_born_in_the_window_blocks_but_a_counter_flat_since_before_does_not(bot_factory, github_fake,
                                                                                       mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    text = text_of(report_of(bot, PAY_DEV, "deps audit-api prod-a"))
    assert "1 caller" in text and "`reports/nightly-audit` — first called inside the window" in text
    text = text_of(report_of(bot, PAY_DEV, "deps legacy-api prod-a"))
    assert "Nothing depends on `legacy-api`" in text and "old-client" not in text


def test_a_mesh_without_fresh_istio_data_makes_traffic_unknown(bot_factory, github_fake, mesh_prometheus):
    from tests.harness import FakeClock

    later = FakeClock(mesh_prometheus.eval_time + timedelta(days=3))  # newest sample is 3 days old by then
    bot = start(bot_factory, github_fake, mesh_prometheus, clock=later)
    text = text_of(report_of(bot, PAY_DEV, "deps payments-api prod-a"))
    assert "Inbound traffic: unknown" in text and "no Istio series from the last 1d" in text


def test_clean_service_report_lists_what_goes_and_what_it_frees(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    reply = report_of(bot, OUTSIDER, "deps payments-api")
    text = text_of(reply)
    assert "Nothing depends on `payments-api`" in text and "Callers in the last 7d*: none" in text
    assert "0.5 cores, 0.5 GiB" in text  # 2 replicas × 250m / 256Mi
    for item in ("VirtualService `payments-api`", "DestinationRule `payments-api`", "Deployment `payments-api`",
                 "CronJob `payments-api-cleanup`", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                 "ConfigMap `payments-api-config`", "Secret `payments-api-db`", "Service `payments-api`"):
        assert item in text, item
    assert "shared-settings" not in text and "ledger" not in text
    assert button(reply["blocks"], ACTION_REQUEST) is None  # deps only informs


def test_outsider_sees_the_report_but_may_not_request(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    reply = report_of(bot, OUTSIDER, "delete payments-api prod-a")
    assert button(reply["blocks"], ACTION_REQUEST) is None
    assert "only the payments team or DevOps may do this" in text_of(reply)


def test_cronjob_mentioning_the_host_in_env_blocks_but_lookalike_names_do_not(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    kube = bot.kube["prod-a"]
    kube.add_many([
        cronjob("monthly-invoices", "reports", env={"PAYMENTS_URL": "http://payments-api.payments.svc.cluster.local:8080/v1"}),
        cronjob("v2-report", "reports", env={"URL": "http://payments-api-v2.payments:8080"}, args=["--to", "old.payments-api"]),
        cronjob("same-ns-lookalike", "payments", args=["--target", "payments-api2"]),
        cronjob("other-ns-bare", "reports", args=["payments-api"]),  # resolves to reports/payments-api, not ours
    ])
    reply = report_of(bot, PAY_DEV, "delete payments-api prod-a")
    text = text_of(reply)
    assert "Deletion is blocked" in text and "1 batch" in text
    assert "CronJob `reports/monthly-invoices`" in text and "env `PAYMENTS_URL`" in text
    for name in ("v2-report", "same-ns-lookalike", "other-ns-bare"):
        assert name not in text
    assert button(reply["blocks"], ACTION_REQUEST) is None


def test_job_reading_the_host_from_a_configmap_blocks(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    bot.kube["prod-a"].add_many([
        configmap("export-settings", "reports", {"TARGET": "payments-api.payments:8080", "MODE": "full"}),
        cronjob("export-once", "reports", env_from=["export-settings"], kind="Job"),
    ])
    text = text_of(report_of(bot, PAY_DEV, "delete payments-api prod-a"))
    assert "Job `reports/export-once`" in text
    assert "ConfigMap `reports/export-settings` key `TARGET` mentions `payments-api.payments`" in text


def test_foreign_virtualservice_blocks_and_its_own_goes_along(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    bot.kube["prod-a"].add(virtualservice("storefront", "web", "payments-api.payments.svc.cluster.local", "frontend"))
    reply = report_of(bot, PAY_DEV, "delete payments-api prod-a")
    text = text_of(reply)
    assert "1 route" in text and "VirtualService `web/storefront`" in text
    assert "routes to `payments-api.payments.svc.cluster.local` and 1 other destination" in text
    assert "1. _Stop routing_ (2): VirtualService `payments-api`, DestinationRule `payments-api`" in text
    assert button(reply["blocks"], ACTION_REQUEST) is None


def test_ingress_and_httproute_of_others_block(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    bot.kube["prod-a"].add_many([
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "public", "namespace": "payments"},
         "spec": {"rules": [{"host": "pay.example.com", "http": {"paths": [
             {"path": "/api", "pathType": "Prefix", "backend": {"service": {"name": "payments-api", "port": {"number": 8080}}}},
             {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "ledger", "port": {"number": 8080}}}}]}}]}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "edge", "namespace": "web"},
         "spec": {"rules": [{"backendRefs": [{"name": "payments-api", "namespace": "payments", "port": 8080}]}]}},
    ])
    text = text_of(report_of(bot, PAY_DEV, "delete payments-api prod-a"))
    assert "2 routes" in text
    assert "Ingress `payments/public`" in text and "for host `pay.example.com` and 1 other backend" in text
    assert "HTTPRoute `web/edge`" in text


def test_metrics_unavailable_blocks_and_only_devops_gets_the_override(bot_factory, github_fake):
    bot = start(bot_factory, github_fake)  # Prometheus URL where nothing listens
    reply = report_of(bot, PAY_DEV, "delete payments-api prod-a")
    text = text_of(reply)
    assert "Inbound traffic: unknown" in text and "Prometheus did not answer" in text
    assert button(reply["blocks"], ACTION_REQUEST) is None and button(reply["blocks"], ACTION_OVERRIDE) is None
    assert "DevOps can override" in text
    reply = report_of(bot, DEVOPS, "delete payments-api prod-a")
    assert button(reply["blocks"], ACTION_OVERRIDE) is not None


def test_bad_input_gets_specific_answers(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    cases = {
        "delete": "Which service?",
        "deps Payments_API": "is not a Service name",
        "deps payments-api prod-z": "There is no cluster `prod-z`",
        "deps nosuch prod-a": "No Service named `nosuch`",
        "deps billing/payments-api prod-a": "No Service `payments-api` in namespace `billing`",
        "deps a b c": "Too many words",
        "frobnicate": "I don't know `/service frobnicate`",
    }
    for text, expected in cases.items():
        before = len(bot.slack.responses)
        bot.sender.command("/service", text, user_id=PAY_DEV)
        reply = bot.slack.wait_for(lambda: [r for r in bot.slack.responses[before:]
                                            if not (r.get("text") or "").startswith(":mag:")])
        assert expected in reply[-1]["text"], (text, reply[-1]["text"])


def test_same_name_in_two_namespaces_asks_which(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    bot.kube["prod-a"].add(service_object("payments-api", "orders"))
    reply = report_of(bot, PAY_DEV, "deps payments-api prod-a")
    assert "several namespaces" in reply["text"] and "`orders/payments-api prod-a`" in reply["text"]
    reply = report_of(bot, PAY_DEV, "deps payments/payments-api prod-a")
    assert "Nothing depends on" in text_of(reply)


def test_kubernetes_failure_is_explained_with_an_error_id(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    bot.kube["prod-a"].fail("GET", "/cronjobs", status=403, times=None)
    reply = report_of(bot, PAY_DEV, "deps payments-api prod-a")
    assert "Dependency check of payments-api" in reply["text"] and "forbidden" in reply["text"]
    assert "Error id" in reply["text"] and "Traceback" not in reply["text"]


def test_calls_per_check_do_not_grow_with_object_count(bot_factory, github_fake, mesh_prometheus):
    from bot.deletion.dependencies import check

    bot = start(bot_factory, github_fake, mesh_prometheus)
    kube = bot.kube["prod-a"]

    def calls_for_check():
        before, queries = bot.ctx.kube.calls["prod-a"], bot.ctx.traffic.queries["prod-a"]
        check(bot.ctx, "prod-a", "payments", "payments-api")
        return bot.ctx.kube.calls["prod-a"] - before, bot.ctx.traffic.queries["prod-a"] - queries

    kube.add(cronjob("reader-0", "reports", env={"X": "payments-api.payments"}, env_from=["cfg-0"]))
    small = calls_for_check()
    for i in range(1, 40):
        kube.add_many([configmap(f"cfg-{i}", "reports", {"A": "b"}),
                       cronjob(f"reader-{i}", "reports", env_from=[f"cfg-{i}"]),
                       virtualservice(f"vs-{i}", "web", f"svc-{i}"), cronjob(f"job-{i}", "orders", kind="Job")])
    assert calls_for_check() == small
    assert small[1] <= 2


def test_host_tokens_match_whole_names_only():
    forms = host_forms("api", "shop", bare=True)
    assert mentioned_host("http://api:8080/x", forms) == "api"
    assert mentioned_host("https://API.shop.svc.cluster.local/", forms) == "api.shop.svc.cluster.local"
    assert mentioned_host("jdbc://db?host=api.shop.svc", forms) == "api.shop.svc"
    for text in ("api-gateway.shop", "rapid.shop", "api.shop.svc.cluster.local.evil", "my-api", "api2.shop", "api_v1"):
        assert mentioned_host(text, forms) is None, text
    assert mentioned_host("api", host_forms("api", "shop", bare=False)) is None
