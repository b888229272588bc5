"""The demo's Istio traffic: 8 days of standard Istio metrics backfilled into a real Prometheus.

Prometheus cannot take backfilled samples inside its head block (the last ~3 h), so the data ends a
few hours before now (IstioMetrics.recent) and the demo's clock stands at the data's end. Counters
for the whole week (the idle window is 7d); request histograms only for the last two hours, where the
canaries' p99 is read, which keeps the backfill to a few MB (promtool parses ~60 MB/s).
"""
from __future__ import annotations

import shutil
from datetime import datetime, timedelta

from tests.fakes.istio_metrics import IstioMetrics, default_data_end
from tests.fakes.prometheus import PrometheusServer

INSTALL_HINT = ("Prometheus is not installed, so the demo has no traffic data: canary traffic and service "
                "callers show as unknown, as they would in production with Prometheus down. "
                "Install it with `sudo apt-get install prometheus` (it provides `prometheus` and `promtool`) "
                "and run `make run` again.")


def data_end() -> datetime:
    """Where the demo's clock stands: the end of the metrics, whether or not Prometheus runs."""
    return default_data_end()


def dataset(end: datetime) -> IstioMetrics:
    """Week-long counters (no histograms) for everything that is called; for the canaries, the last two
    hours also from a second caller with latency histograms. Series never repeat a label set."""
    m = IstioMetrics(end - timedelta(days=8), end, step=timedelta(minutes=5))
    recent = end - timedelta(hours=2)
    # prod-a: checkout's canary (v2) fails 8% of requests and is slow; stable (v1) is healthy.
    m.http("checkout", "payments", src_workload="frontend", src_namespace="web", version="v1", rps=6.0,
           histogram=False)
    m.http("checkout", "payments", src_workload="mobile-bff", src_namespace="web", version="v1", rps=1.5,
           latency_ms=120, start=recent)
    m.http("checkout", "payments", src_workload="frontend", src_namespace="web", version="v2", rps=2.5,
           error_ratio=0.08, latency_ms=800, start=recent)
    # shop/cart: the Argo Rollout's stable (v7) and canary (v8) pods.
    cart = {"destination_workload": "cart"}
    m.http("cart", "shop", src_workload="frontend", src_namespace="web", version="v7", rps=3.0, histogram=False,
           labels=cart)
    m.http("cart", "shop", src_workload="mobile-bff", src_namespace="web", version="v7", rps=1.0, latency_ms=50,
           labels=cart, start=recent)
    m.http("cart", "shop", src_workload="frontend", src_namespace="web", version="v8", rps=1.0, latency_ms=60,
           labels=cart, start=recent)
    m.http("ledger", "payments", src_workload="checkout", src_namespace="payments", rps=3.0, histogram=False)
    m.tcp("ledger", "payments", src_workload="billing-worker", src_namespace="orders", conn_per_min=4,
          bytes_per_conn=2048)
    m.http("billing-worker", "orders", src_workload="ledger", src_namespace="payments", rps=0.2, histogram=False)
    m.http("frontend", "web", src_workload="istio-ingressgateway", src_namespace="istio-system", rps=12.0,
           histogram=False)
    # prod-b: search-api's forgotten canary (v4) has had 10% for days; storefront is busy.
    m.http("search-api", "search", src_workload="storefront", src_namespace="web", version="v3", rps=8.0,
           histogram=False)
    m.http("search-api", "search", src_workload="search-ui", src_namespace="web", version="v3", rps=1.0,
           latency_ms=90, start=recent)
    m.http("search-api", "search", src_workload="storefront", src_namespace="web", version="v4", rps=1.0,
           latency_ms=95, start=recent)
    m.http("storefront", "web", src_workload="istio-ingressgateway", src_namespace="istio-system", rps=6.0,
           histogram=False)
    return m


def start_prometheus(workdir: str, end: datetime) -> PrometheusServer | None:
    """A real Prometheus over the demo's data, or None when the binaries are not installed."""
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        return None
    return PrometheusServer(dataset(end), workdir=workdir, startup_timeout=30).start()
