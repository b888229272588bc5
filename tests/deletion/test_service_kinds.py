"""Deletion plans hold every kind a service can own: StatefulSets, Argo Rollouts, Jobs, its own
HTTPRoute and Ingress — all removed on approval (and so all needed in deckhand's RBAC)."""
from __future__ import annotations

from blocks.service import ACTION_APPROVE
from tests.harness import DEVOPS, PAY_DEV
from tests.deletion.test_service_world import (click, cronjob, exists, mesh_prometheus, request_deletion, service,  # noqa: F401
                                      start, wait_state, workload)


def test_statefulset_rollout_job_httproute_and_ingress_of_a_service_are_deleted(bot_factory, github_fake,
                                                                                  mesh_prometheus):
    bot = start(bot_factory, github_fake, prometheus=mesh_prometheus)
    kube = bot.kube["prod-a"]
    kube.add_many([
        service("reports-api", "payments"),
        workload("reports-api", "payments", app="reports-api", kind="StatefulSet", replicas=1),
        workload("reports-api-canary", "payments", app="reports-api", kind="Rollout", replicas=1),
        cronjob("reports-api-backfill", "payments", labels={"app": "reports-api"}, kind="Job"),
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": "reports-api", "namespace": "payments", "labels": {"app": "reports-api"}},
         "spec": {"parentRefs": [{"name": "public", "namespace": "istio-system"}],
                  "rules": [{"backendRefs": [{"name": "reports-api", "port": 8080}]}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
         "metadata": {"name": "reports-api", "namespace": "payments", "labels": {"app": "reports-api"}},
         "spec": {"rules": [{"host": "reports.example.com", "http": {"paths": [
             {"path": "/", "pathType": "Prefix",
              "backend": {"service": {"name": "reports-api", "port": {"number": 8080}}}}]}}]}},
    ])
    request = request_deletion(bot, PAY_DEV, "reports-api")
    click(bot, ACTION_APPROVE, request.id, user=DEVOPS)
    assert wait_state(bot, request.id, "deleted").state == "deleted"
    for kind, name in (("services", "reports-api"), ("statefulsets", "reports-api"), ("rollouts", "reports-api-canary"),
                       ("jobs", "reports-api-backfill"), ("httproutes", "reports-api"), ("ingresses", "reports-api")):
        assert not exists(kube, kind, "payments", name), f"{kind}/{name} survived"
    assert exists(kube, "services", "payments", "ledger")  # the neighbour is untouched
