"""The world the fleet-endpoint tests share: one real Prometheus holding Istio metrics of several clusters,
each series labelled `cluster`, behind the authenticating query gateway (tests/fakes/query_gateway.py),
the way Thanos Query or Mimir serve a fleet. Helpers only (no tests here).

Clusters as deckhand is configured (`prometheus:` serves them all):

* `prod-a` (label value `prod-a`): shop/checkout and search/search-api busy; shop/gift-cards and
  shop/old-reports idle; payments/ledger has a caller; checkout canary v1 9 req/s, v2 1 req/s.
* `prod-b` (label value `eu-prod-b`, through `cluster_label_value`): the SAME names, other traffic:
  shop/checkout idle, shop/gift-cards busy; payments/ledger without callers; canary v1 3, v2 3 req/s.
* `lab`: configured, but its Prometheus is not federated: no series under `cluster="lab"`.

And `staging`, which deckhand does not manage, has traffic on shop/old-reports and payments/ledger: a
query that forgot the cluster matcher would see it and call old-reports busy.
"""
from __future__ import annotations

from datetime import timedelta

from tests.fakes.istio_metrics import IstioMetrics
from tests.fakes.query_gateway import QueryGateway
from tests.harness import FakeClock
from tests.idle.test_idle_world import add_service

TOKEN = "fleet-token-9f8e7d6c5b4a39281706"
TOKEN_ENV = "DECKHAND_TEST_PROMETHEUS_TOKEN"
TENANT = "ops"
CLUSTERS = ("prod-a", "prod-b", "lab")
LABEL_VALUES = {"prod-a": "prod-a", "prod-b": "eu-prod-b", "lab": "lab"}
A, B, STAGING = {"cluster": "prod-a"}, {"cluster": "eu-prod-b"}, {"cluster": "staging"}


def fleet_mesh() -> IstioMetrics:
    """8 days at a 5 min step: a 7-day idle window has history before it, a 10 min canary rate has samples."""
    m = IstioMetrics.recent(timedelta(days=8), step=timedelta(minutes=5))
    m.http("checkout", "shop", rps=1.0, histogram=False, labels=A)
    m.http("search-api", "search", rps=2.0, histogram=False, labels=A)
    m.http("ledger", "payments", src_workload="checkout", src_namespace="orders", rps=0.5, histogram=False, labels=A)
    m.http("gift-cards", "shop", rps=0.5, histogram=False, labels=B)
    m.http("old-reports", "shop", rps=1.0, histogram=False, labels=STAGING)
    m.http("ledger", "payments", src_workload="batch", src_namespace="jobs", rps=1.0, histogram=False, labels=STAGING)
    for labels, stable, canary in ((A, 9.0, 1.0), (B, 3.0, 3.0)):
        m.http("checkout", "payments", src_workload="frontend", version="v1", rps=stable, latency_ms=120,
               start=m.end - timedelta(hours=2), labels=labels)
        m.http("checkout", "payments", src_workload="frontend", version="v2", rps=canary, latency_ms=800,
               error_ratio=0.2, start=m.end - timedelta(hours=2), labels=labels)
    return m


def shared_config(url: str, token_env: str = TOKEN_ENV) -> dict:
    return {"prometheus": {"url": url, "cluster_label": "cluster", "headers": {"X-Scope-OrgID": TENANT},
                           "bearer_token_env": token_env}}


def seed(kube: dict, now) -> None:
    """The same services in prod-a and prod-b, and in lab (whose metrics are missing)."""
    for name in CLUSTERS:
        fake = kube[name]
        add_service(fake, "checkout", "shop", now, replicas=3, cpu="1", memory="1Gi")
        add_service(fake, "gift-cards", "shop", now, replicas=3, cpu="250m", memory="256Mi")
        add_service(fake, "old-reports", "shop", now, replicas=2, cpu="1", memory="2Gi")
        add_service(fake, "search-api", "search", now, team="search", cpu="1", memory="1Gi")
        add_service(fake, "ledger", "payments", now, replicas=2, cpu="500m", memory="512Mi")


def fleet_bot(bot_factory, prometheus_factory, gateway: QueryGateway, monkeypatch, *, token: str = TOKEN,
              config: dict | None = None, extra_clusters: dict | None = None):
    """A bot whose clusters all use the gateway as `prometheus.url`, its clock at the data's end."""
    monkeypatch.setenv(TOKEN_ENV, token)
    server = prometheus_factory(fleet_mesh())
    cluster_config = {"prod-b": {"cluster_label_value": "eu-prod-b"}, **(extra_clusters or {})}
    bot = bot_factory(clusters=CLUSTERS, config={**shared_config(gateway.url), **(config or {})},
                      cluster_config=cluster_config, clock=FakeClock(server.eval_time))
    seed(bot.kube, server.eval_time)
    return bot


def start_gateway(prometheus_factory) -> QueryGateway:
    return QueryGateway(prometheus_factory(fleet_mesh()).url, token=TOKEN, tenant=TENANT).start()
