"""Idle detection against the Kubernetes fake and the real Prometheus over backfilled Istio metrics."""
from __future__ import annotations

import socket
import threading
from datetime import timedelta

import pytest

from bot.idle import scan as idle
from bot.idle.scan import scan_cluster, scan_cluster_naive
from tests.fakes.query_gateway import QueryGateway
from tests.harness import DEVOPS, FakeClock
from tests.idle.test_idle_world import CLUSTER, IDLE_KEYS, add_service, digest_messages, idle_bot, mesh, seed


def test_scan_tells_every_kind_of_service_apart_with_a_constant_number_of_calls(bot_factory, prometheus_factory):
    bot = idle_bot(bot_factory, prometheus_factory)
    scan = scan_cluster(bot.ctx, CLUSTER, bot.ctx.now())
    verdicts = {s.key.split("/", 1)[1]: s.verdict for s in scan.services}
    assert verdicts == {
        "shop/checkout": idle.BUSY,                    # HTTP requests
        "shop/ledger-db": idle.BUSY,                   # TCP connections and bytes only
        "shop/coupons": idle.BUSY,                     # its only request was its first: increase() reads 0
        "shop/promo": idle.BUSY,                       # traffic in the last 2 h of the window
        "search/search-api": idle.BUSY,
        "shop/fresh": idle.YOUNG,
        "shop/legacy-export": idle.OPTED_OUT,
        "shop/broken": idle.NO_ENDPOINTS,
        "shop/batch-runner": idle.SCALED_TO_ZERO,
        "shop/no-sidecar": idle.OUTSIDE_MESH,
        "kube-system/metrics-proxy": idle.EXCLUDED,
        "shop/ledger-db-headless": idle.SHARED,        # its StatefulSet serves the busy ledger-db
        "shop/old-reports": idle.IDLE,                 # one request 8 days ago, flat since
        "shop/gift-cards": idle.IDLE,                  # never a series
        "search/indexer-v1": idle.IDLE,                # Argo Rollout
        "misc/orphan": idle.IDLE,
    }
    assert {s.key for s in scan.idle} == IDLE_KEYS
    assert not scan.skipped
    # constant cost: one health query + one query for every signal of every service; one list per kind
    assert scan.queries == 2 and bot.ctx.traffic.queries[CLUSTER] == 2
    assert scan.kube_calls == 5 and bot.ctx.kube.calls[CLUSTER] == 5
    indexer = next(s for s in scan.idle if s.name == "indexer-v1")
    assert (indexer.team, indexer.replicas, indexer.reclaimable_cpu, indexer.reclaimable_memory) == \
        ("search", 4, 8.0, 16 * 2**30)
    assert next(s for s in scan.services if s.name == "ledger-db").traffic["tcp_bytes"] > 0


def test_the_call_count_does_not_grow_with_the_number_of_services(bot_factory, prometheus_factory):
    bot = idle_bot(bot_factory, prometheus_factory)
    for i in range(60):
        add_service(bot.kube[CLUSTER], f"batch-{i:02d}", "jobs", bot.ctx.now(), team="search", cpu="100m")
    scan = scan_cluster(bot.ctx, CLUSTER, bot.ctx.now())
    assert len(scan.idle) == len(IDLE_KEYS) + 60
    assert (scan.queries, scan.kube_calls) == (2, 5)


def test_naive_scan_asks_once_per_candidate_and_agrees(bot_factory, prometheus_factory):
    bot = idle_bot(bot_factory, prometheus_factory)
    fast = scan_cluster(bot.ctx, CLUSTER, bot.ctx.now())
    naive = scan_cluster_naive(bot.ctx, CLUSTER, bot.ctx.now())
    assert {s.key for s in naive.idle} == {s.key for s in fast.idle} == IDLE_KEYS
    assert {s.key for s in naive.no_endpoints} == {s.key for s in fast.no_endpoints} == {f"{CLUSTER}/shop/broken"}
    candidates = sum(1 for s in fast.services if s.verdict not in (
        idle.EXCLUDED, idle.OPTED_OUT, idle.NO_WORKLOADS, idle.SCALED_TO_ZERO, idle.OUTSIDE_MESH))
    assert naive.queries == 1 + candidates


def test_shorter_window_moves_the_line(bot_factory, prometheus_factory):
    """With a 1-day window the service whose first request was 2 days ago has been silent for the window."""
    bot = idle_bot(bot_factory, prometheus_factory, config={"idle": {"window": "1d"}})
    scan = scan_cluster(bot.ctx, CLUSTER, bot.ctx.now())
    assert {s.key for s in scan.idle} == IDLE_KEYS | {f"{CLUSTER}/shop/coupons", f"{CLUSTER}/shop/fresh"}


def test_prometheus_down_skips_the_cluster_flags_nothing_and_alerts_once(bot_factory, prometheus_down_url):
    bot = bot_factory(prometheus={CLUSTER: prometheus_down_url})
    seed(bot.kube[CLUSTER], bot.ctx.now())
    first = bot.run_job("idle-scan")
    assert "prod-a: skipped: metrics unavailable (connection refused)" in first
    second = bot.run_job("idle-scan")
    assert "skipped: metrics unavailable" in second
    bot.flush()
    alerts = list(bot.slack.messages("C0ALERTS").values())
    assert len(alerts) == 1, alerts
    assert "skipped on `prod-a`: metrics unavailable" in alerts[0]["blocks"][0]["text"]["text"]
    assert bot.ctx.store.query("SELECT * FROM idle_services") == []
    assert digest_messages(bot, "C0PAY") == []
    assert bot.ctx.kube.calls[CLUSTER] == 0  # nothing concluded, so nothing listed either


@pytest.fixture
def prometheus_hanging_url():
    """A Prometheus that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(timeout=2)
    for conn in held:
        conn.close()
    listener.close()


def test_prometheus_timeout_skips_the_cluster(bot_factory, prometheus_hanging_url):
    bot = bot_factory(prometheus={CLUSTER: prometheus_hanging_url})
    bot.ctx.traffic.timeout = 0.3
    seed(bot.kube[CLUSTER], bot.ctx.now())
    assert "prod-a: skipped: metrics unavailable (timed out)" in bot.run_job("idle-scan")
    bot.flush()
    assert len(bot.slack.messages("C0ALERTS")) == 1
    assert bot.ctx.store.query("SELECT * FROM idle_services") == []


def test_no_istio_series_is_an_outage_remembered_until_a_scan_succeeds(bot_factory, prometheus_factory):
    server = prometheus_factory(mesh())
    clock = FakeClock(server.eval_time + timedelta(days=3))  # Prometheus answers, but with no fresh Istio data
    bot = bot_factory(prometheus={CLUSTER: server.url}, clock=clock)
    seed(bot.kube[CLUSTER], server.eval_time)
    assert "skipped: metrics unavailable (no Istio series" in bot.run_job("idle-scan")
    bot.run_job("idle-scan")
    bot.flush()
    assert len(bot.slack.messages("C0ALERTS")) == 1
    assert bot.ctx.store.query("SELECT cluster FROM idle_outages") == [{"cluster": CLUSTER}]

    clock.set(server.eval_time)  # metrics are back
    assert "4 idle" in bot.run_job("idle-scan")
    assert bot.ctx.store.query("SELECT cluster FROM idle_outages") == []

    clock.set(server.eval_time + timedelta(days=3))  # a new outage is announced again
    bot.run_job("idle-scan")
    bot.flush()
    outages = [m for m in bot.slack.messages("C0ALERTS").values() if "metrics unavailable" in m["text"]]
    assert len(outages) == 2


def test_kubernetes_failure_fails_the_cluster_and_concludes_nothing(bot_factory, prometheus_factory):
    bot = idle_bot(bot_factory, prometheus_factory)
    bot.kube[CLUSTER].fail("GET", "/deployments", status=503, times=None)
    summary = bot.run_job("idle-scan")
    assert "prod-a: failed:" in summary and "list deployments" in summary and "0 digests posted" in summary
    assert bot.ctx.store.query("SELECT * FROM idle_services") == []


def test_ops_run_idle_scan_posts_a_digest_per_team(bot_factory, prometheus_factory):
    bot = idle_bot(bot_factory, prometheus_factory)
    bot.sender.command("/ops", "run idle-scan", user_id=DEVOPS)
    done = bot.slack.wait_for(lambda: [r for r in bot.slack.responses if "idle-scan` ok" in r.get("text", "")])
    assert "prod-a: 4 idle, 1 without endpoints, 16 services scanned" in done[0]["text"]
    assert "3 digests posted (5 services reported, 0 left the list)" in done[0]["text"]
    bot.flush()
    teams = {channel: [m["text"] for m in digest_messages(bot, channel)] for channel in ("C0PAY", "C0SEARCH", "C0ALERTS")}
    assert teams == {
        "C0PAY": ["Idle services for payments: 2 could free 2.75 cores, 4.8 GiB"],
        "C0SEARCH": ["Idle services for search: 1 could free 8 cores, 16.0 GiB"],
        "C0ALERTS": ["Idle services for unowned: 1 could free 0.1 cores, 0.1 GiB"],  # no team label
    }


def test_a_fleet_scan_asks_every_cluster_side_by_side(bot_factory, prometheus_factory):
    """Two clusters, each with a Prometheus of its own: neither query is answered until both are asked,
    and prod-a's lists are held until prod-b's were answered. One after the other, this cannot finish."""
    server = prometheus_factory(mesh())
    barrier = threading.Barrier(2, timeout=10)
    broken: list[bool] = []

    def both_asked() -> bool:
        try:
            barrier.wait()  # the barrier lets the next round (health, then traffic) meet again by itself
            return True
        except threading.BrokenBarrierError:
            broken.append(True)
            return False

    with QueryGateway(server.url, token=None, hold=both_asked) as a, \
            QueryGateway(server.url, token=None, hold=both_asked) as b:
        bot = bot_factory(clusters=(CLUSTER, "prod-b"), prometheus={CLUSTER: a.url, "prod-b": b.url},
                          clock=FakeClock(server.eval_time), config={})
        seed(bot.kube[CLUSTER], server.eval_time)
        held, other = bot.kube[CLUSTER], bot.kube["prod-b"]
        held.hang("/endpoints", seconds=60)
        released: list[bool] = []

        def release_once_the_other_cluster_is_listed():
            try:
                bot.slack.wait_for(lambda: any(r.path.endswith("/services") and r.status == 200
                                               for r in other.requests), timeout=15)
                released.append(True)
            finally:
                held.release_hangs()

        releaser = threading.Thread(target=release_once_the_other_cluster_is_listed)
        releaser.start()
        summary = bot.run_job("idle-scan")
        releaser.join(20)
    assert released == [True] and broken == []
    assert "prod-a: 4 idle, 1 without endpoints, 16 services scanned" in summary
    assert "prod-b: 0 idle, 0 without endpoints, 0 services scanned" in summary
