"""The Prometheus test fixture: generated Istio metrics, backfilled into and queried from the real server."""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from tests.fakes.istio_metrics import ISTIO_DURATION_BUCKETS, IstioMetrics
from tests.fakes.prometheus import PrometheusServer


def small_mesh() -> IstioMetrics:
    """2 days at a 5 min step. Built by a function so every test gets the same fingerprint (one server)."""
    m = IstioMetrics.recent(timedelta(days=2), step=timedelta(minutes=5))
    m.http("productpage", "bookinfo", src_workload="istio-ingressgateway", src_namespace="istio-system",
           rps=1.0, latency_ms=120)
    m.http("reviews", "bookinfo", src_workload="productpage", rps=2.0, error_ratio=0.1, latency_ms=20)
    m.http("details", "bookinfo", src_workload="productpage", rps=0.5, latency_ms=3000, reporter="both")
    m.tcp("mysql", "db", src_workload="ratings", conn_per_min=6, bytes_per_conn=2048)
    m.first_request_only("ratings", "bookinfo", at=m.end - timedelta(days=1))
    return m


def query(server: PrometheusServer, promql: str, by: str = "destination_service_name") -> dict[str, float]:
    prom = PrometheusConnect(server.url, disable_ssl=True)
    result = prom.custom_query(promql, params={"time": server.eval_time.timestamp()})
    return {r["metric"].get(by, ""): float(r["value"][1]) for r in result}


@pytest.fixture
def small(prometheus_factory) -> PrometheusServer:
    return prometheus_factory(small_mesh())


# ------------------------------------------------------------------ generator (no server)
def test_openmetrics_text_is_well_formed():
    text = small_mesh().openmetrics()
    lines = text.splitlines()
    assert lines[-1] == "# EOF" and text.endswith("# EOF\n")
    families, current, last = [], None, {}
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+) (\d+)$')
    for line in lines[:-1]:
        if line.startswith("# TYPE "):
            _, _, current, mtype = line.split(" ")
            assert current not in families, f"family {current} not grouped together"
            families.append(current)
            assert (mtype == "counter") == (current in {
                "istio_requests", "istio_tcp_connections_opened", "istio_tcp_received_bytes",
                "istio_tcp_sent_bytes"})
            continue
        name, labels, value, ts = sample.match(line).groups()
        assert name.startswith(current + "_"), (name, current)
        key = name + labels
        value, ts = float(value), int(ts)
        if key in last:
            prev_ts, prev_v = last[key]
            assert ts > prev_ts, f"timestamps not increasing for {key}"
            assert value >= prev_v, f"counter not monotonic for {key}"
        last[key] = (ts, value)
    assert families == ["istio_requests", "istio_request_duration_milliseconds",
                        "istio_tcp_connections_opened", "istio_tcp_received_bytes", "istio_tcp_sent_bytes"]
    les = re.findall(r'destination_service_name="productpage".*le="([^"]+)"\} \S+ ' +
                     str(int(small_mesh().end.timestamp())), text)
    assert les == [str(b).removesuffix(".0") for b in ISTIO_DURATION_BUCKETS] + ["+Inf"]
    assert 'response_code' not in next(l for l in lines if l.startswith("istio_tcp_sent_bytes_total"))


def test_fingerprint_and_guards():
    assert small_mesh().fingerprint() == small_mesh().fingerprint()
    assert small_mesh().http("x", "y").fingerprint() != small_mesh().fingerprint()
    with pytest.raises(ValueError):
        IstioMetrics.recent().http("a", "b", response_codes={"200": 0.5})
    with pytest.raises(ValueError):
        IstioMetrics.recent().raw("foo_total", {}, [(2, 1), (1, 2)])
    now = datetime.now(timezone.utc).replace(microsecond=0)
    with pytest.raises(ValueError, match="head block"):
        PrometheusServer(IstioMetrics(now - timedelta(hours=1), now)).start()


# ------------------------------------------------------------------ real Prometheus
def test_increase_of_one_rps_service(small):
    got = query(small, 'sum by (destination_service_name) '
                       '(increase(istio_requests_total{reporter="destination"}[1h]))')
    assert got["productpage"] == pytest.approx(3600, rel=0.01)
    assert got["reviews"] == pytest.approx(7200, rel=0.01)
    assert got["details"] == pytest.approx(1800, rel=0.01)
    assert got["ratings"] == 0  # first request only: the series exists but never increases
    assert "mysql" not in got


def test_error_ratio_and_reporters(small):
    got = query(small, 'sum by (response_code) (increase(istio_requests_total'
                       '{reporter="destination",destination_service_name="reviews"}[1h]))', by="response_code")
    assert got == pytest.approx({"200": 6480, "500": 720}, rel=0.01)
    got = query(small, 'count by (reporter) (istio_requests_total{destination_service_name="details"})',
                by="reporter")
    assert got == {"source": 1, "destination": 1}


def test_tcp_only_service(small):
    got = query(small, 'sum by (destination_service_name) (increase(istio_tcp_connections_opened_total[1h]))')
    assert got == {"mysql": pytest.approx(360, rel=0.01)}
    got = query(small, 'sum by (destination_service_name) (increase(istio_tcp_received_bytes_total[1h]))')
    assert got["mysql"] == pytest.approx(360 * 2048, rel=0.01)


def test_first_request_only_service_is_seen_over_7d(small):
    got = query(small, 'count by (destination_service_name) (count_over_time(istio_requests_total[7d]))')
    assert {"productpage", "reviews", "details", "ratings"} <= set(got)
    got = query(small, 'sum by (destination_service_name) (increase(istio_requests_total[7d]))')
    assert got["ratings"] == 0


@pytest.mark.parametrize("service,latency", [("productpage", 120), ("reviews", 20), ("details", 3000)])
def test_p99_latency(small, service, latency):
    got = query(small, 'histogram_quantile(0.99, sum by (destination_service_name, le) (rate('
                       f'istio_request_duration_milliseconds_bucket{{reporter="destination",'
                       f'destination_service_name="{service}"}}[5m])))')
    assert got[service] == pytest.approx(latency, rel=0.02)


def test_identical_datasets_share_one_server(prometheus_factory, small):
    assert prometheus_factory(small_mesh()) is small


def test_outage_urls_refuse_connections(prometheus_factory, prometheus_down_url):
    # PrometheusConnect retries connection errors 3 times with backoff_factor=1 (~6 s) unless told not to.
    def no_retry(url):
        return PrometheusConnect(url, disable_ssl=True, retry=Retry(total=0))

    with pytest.raises(requests.exceptions.ConnectionError):
        no_retry(prometheus_down_url).custom_query("up")
    m = IstioMetrics.recent(timedelta(hours=2)).http("solo", "x")
    srv = prometheus_factory(m, fresh=True)
    assert query(srv, "count by (destination_service_name) (istio_requests_total)") == {"solo": 1}
    srv.stop()
    assert not srv.running
    with pytest.raises(requests.exceptions.ConnectionError):
        no_retry(srv.url).custom_query("up")


def test_seven_days_of_200_services(prometheus_factory):
    t = time.perf_counter()
    m = IstioMetrics.recent(timedelta(days=7), step=timedelta(hours=1))
    for i in range(200):
        m.http(f"svc-{i:03d}", f"ns-{i % 10}", rps=1 + i % 5, error_ratio=0.05 if i % 4 == 0 else 0,
               latency_ms=10 + i, histogram=i < 50)
    srv = prometheus_factory(m)
    print(f"\n200 services x 7d @1h: {m.series_count()} series; generate {srv.generate_seconds:.2f}s, "
          f"backfill {srv.backfill_seconds:.2f}s, startup {srv.startup_seconds:.2f}s, "
          f"total {time.perf_counter() - t:.2f}s")
    got = query(srv, 'sum by (destination_service_name) '
                     '(increase(istio_requests_total{reporter="destination"}[1h]))')
    assert len(got) == 200
    assert got["svc-007"] == pytest.approx(3 * 3600, rel=0.01)
    got = query(srv, 'count by (destination_service_name) (count_over_time(istio_requests_total[7d]))')
    assert len(got) == 200
    # the whole week is there: first hour's increase at the start of the data
    first = query(srv, 'sum by (destination_service_name) (istio_requests_total{destination_service_name="svc-001"})'
                  ' - sum by (destination_service_name) (istio_requests_total{destination_service_name="svc-001"}'
                  ' offset 6d23h)')
    assert first["svc-001"] == pytest.approx(2 * 3600 * (7 * 24 - 1), rel=0.01)
