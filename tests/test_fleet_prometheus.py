"""One query endpoint for the whole fleet: the real Prometheus holding several clusters' Istio metrics under a
`cluster` label, behind an authenticating gateway (bearer token and tenant header), through the real app.
See tests/test_fleet_world.py for who has traffic where."""
from __future__ import annotations

import json
import logging
import re

import pytest
import requests

from bot.foundation.promql import scope
from bot.idle import scan as idle
from bot.idle.scan import health_query, scan_fleet, traffic_query
from tests.canary.test_canary_fixtures import CHANNEL, istio_canary, post_card
from tests.deletion.test_service_world import report_of
from tests.fakes.query_gateway import QueryGateway
from tests.harness import DEVOPS, PAY_DEV
from tests.idle.test_idle_world import digest_messages
from tests.test_fleet_world import CLUSTERS, TENANT, TOKEN, TOKEN_ENV, fleet_bot, fleet_mesh, shared_config


@pytest.fixture
def gateway(prometheus_factory):
    with QueryGateway(prometheus_factory(fleet_mesh()).url, token=TOKEN, tenant=TENANT) as gw:
        yield gw


def text_of(reply: dict) -> str:
    return json.dumps(reply.get("blocks") or reply.get("text"), ensure_ascii=False)


# -- idle scan ----------------------------------------------------------------------------------------
def test_idle_scan_asks_the_endpoint_twice_for_all_clusters_and_keeps_same_names_apart(
        bot_factory, prometheus_factory, gateway, monkeypatch):
    bot = fleet_bot(bot_factory, prometheus_factory, gateway, monkeypatch)
    gateway.clear()
    fleet = scan_fleet(bot.ctx, CLUSTERS, bot.ctx.now())
    assert fleet.queries == 2 and len(gateway.queries()) == 2  # health, then traffic: not 2 per cluster
    assert gateway.queries(authorized=False) == []
    health, traffic = gateway.queries()  # every selector scoped; traffic only for clusters that report
    assert 'count by (cluster)(last_over_time(istio_requests_total{cluster=~"eu-prod-b|lab|prod-a"}' in health
    assert traffic.count('{cluster=~"eu-prod-b|prod-a",reporter="destination"}') == 7
    assert "destination_service_name, cluster)" in traffic
    scans = {s.cluster: s for s in fleet.scans}
    verdicts = {name: {s.key.split("/", 1)[1]: s.verdict for s in scan.services} for name, scan in scans.items()
                if not scan.skipped}
    assert verdicts["prod-a"] == {"shop/checkout": idle.BUSY, "shop/gift-cards": idle.IDLE,
                                  "shop/old-reports": idle.IDLE,  # busy in staging only: not ours
                                  "search/search-api": idle.BUSY, "payments/ledger": idle.BUSY}
    assert verdicts["prod-b"] == {"shop/checkout": idle.IDLE, "shop/gift-cards": idle.BUSY,
                                  "shop/old-reports": idle.IDLE, "search/search-api": idle.IDLE,
                                  "payments/ledger": idle.IDLE}
    assert scans["prod-a"].services[0].cluster == "prod-a"
    # lab answers nothing under its label: unknown, never idle, and the reason says where to look
    assert scans["lab"].skipped and scans["lab"].services == []
    assert 'no Istio series under cluster="lab"' in scans["lab"].skipped_reason
    assert "cluster_label_value" in scans["lab"].skipped_reason


def test_fleet_answers_equal_per_cluster_answers_from_the_real_prometheus(
        bot_factory, prometheus_factory, gateway, monkeypatch):
    """The scoping rewrite must not change what a query means: split by label == asked one by one."""
    bot = fleet_bot(bot_factory, prometheus_factory, gateway, monkeypatch)
    at, window = bot.ctx.now(), bot.ctx.settings.idle.window
    for promql in (health_query(window), traffic_query(window)):
        together = bot.ctx.traffic.query_many(["prod-a", "prod-b"], promql, at)
        for cluster in ("prod-a", "prod-b"):
            alone = bot.ctx.traffic.query(cluster, promql, at)
            key = lambda s: sorted(s.labels.items())  # noqa: E731
            assert sorted(together[cluster], key=key) == sorted(alone, key=key) and alone


def test_job_reports_the_missing_cluster_in_the_digest_and_the_alerts_channel(
        bot_factory, prometheus_factory, gateway, monkeypatch):
    bot = fleet_bot(bot_factory, prometheus_factory, gateway, monkeypatch)
    summary = bot.run_job("idle-scan")
    assert "prod-a: 2 idle" in summary and "prod-b: 4 idle" in summary
    assert 'lab: skipped: metrics unavailable (no Istio series under cluster="lab"' in summary
    bot.flush()
    rows = bot.ctx.store.query("SELECT cluster, namespace, service FROM idle_services ORDER BY 1, 2, 3")
    assert {r["cluster"] for r in rows} == {"prod-a", "prod-b"}
    assert {"cluster": "prod-b", "namespace": "shop", "service": "checkout"} in rows
    assert {"cluster": "prod-a", "namespace": "shop", "service": "checkout"} not in rows
    digest = text_of(digest_messages(bot, "C0PAY")[0])
    assert "Not scanned: `lab` (metrics unavailable: no Istio series under cluster=\\\"lab\\\"" in digest
    alerts = [m["text"] for m in bot.slack.messages("C0ALERTS").values()]
    assert any("skipped on lab" in t for t in alerts) and not any("prod-a" in t for t in alerts)


def test_wrong_token_is_a_named_401_and_flags_nothing(bot_factory, prometheus_factory, gateway, monkeypatch, caplog):
    bot = fleet_bot(bot_factory, prometheus_factory, gateway, monkeypatch, token="not-the-right-token-123456")
    with caplog.at_level(logging.DEBUG):
        summary = bot.run_job("idle-scan")
    for cluster in CLUSTERS:
        assert f"{cluster}: skipped: metrics unavailable (401 Unauthorized: {gateway.url} refused the bearer " \
               f"token in ${TOKEN_ENV} and the X-Scope-OrgID header)" in summary
    assert bot.ctx.store.query("SELECT * FROM idle_services") == []
    assert gateway.queries() == [] and len(gateway.queries(authorized=False)) == 1  # one query, refused
    bot.flush()
    posted = json.dumps(bot.slack.messages("C0ALERTS"))
    assert "401 Unauthorized" in posted
    metrics = requests.get(bot.health_url + "/metrics", timeout=5).text
    assert 'backend="prometheus",kind="401 Unauthorized"' in metrics
    for text in (summary, posted, metrics, caplog.text):
        assert "not-the-right-token" not in text and TOKEN not in text


def test_missing_tenant_header_is_refused_too(bot_factory, prometheus_factory, gateway, monkeypatch):
    bot = fleet_bot(bot_factory, prometheus_factory, gateway, monkeypatch,
                    config={"prometheus": {"url": gateway.url, "headers": {}, "bearer_token_env": TOKEN_ENV}})
    summary = bot.run_job("idle-scan")
    assert "prod-a: skipped: metrics unavailable (401 Unauthorized" in summary
    assert bot.ctx.store.query("SELECT * FROM idle_services") == []


def test_unset_token_variable_is_named(bot_factory, prometheus_factory, gateway, monkeypatch):
    bot = fleet_bot(bot_factory, prometheus_factory, gateway, monkeypatch)
    monkeypatch.delenv(TOKEN_ENV)
    summary = bot.run_job("idle-scan")
    assert f"prod-a: skipped: metrics unavailable ({TOKEN_ENV} is not set: it holds the bearer token" in summary
    assert gateway.requests == []


def test_thanos_warnings_naming_one_cluster_make_only_it_unknown(bot_factory, prometheus_factory, gateway, monkeypatch):
    bot = fleet_bot(bot_factory, prometheus_factory, gateway, monkeypatch)
    gateway.warnings = ['partial response: fetch series for {cluster="eu-prod-b", replica="0"}: store unavailable']
    summary = bot.run_job("idle-scan")
    assert "prod-a: 2 idle" in summary
    assert "prod-b: skipped: metrics unavailable (partial response: fetch series" in summary
    rows = bot.ctx.store.query("SELECT DISTINCT cluster FROM idle_services")
    assert rows == [{"cluster": "prod-a"}]


def test_warnings_or_partial_flags_naming_no_cluster_make_every_cluster_unknown(
        bot_factory, prometheus_factory, gateway, monkeypatch):
    bot = fleet_bot(bot_factory, prometheus_factory, gateway, monkeypatch)
    gateway.warnings = ["No StoreAPIs matched for this query"]
    fleet = scan_fleet(bot.ctx, CLUSTERS, bot.ctx.now())
    assert all(s.skipped and not s.services for s in fleet.scans)
    assert "No StoreAPIs matched" in fleet.scans[0].skipped_reason
    gateway.warnings, gateway.partial = [], True  # VictoriaMetrics' isPartial
    fleet = scan_fleet(bot.ctx, CLUSTERS, bot.ctx.now())
    assert all(s.skipped and "partial" in s.skipped_reason for s in fleet.scans)


def test_a_cluster_with_its_own_prometheus_url_is_asked_there_unscoped(
        bot_factory, prometheus_factory, gateway, monkeypatch):
    from tests.idle.test_idle_world import mesh

    own = prometheus_factory(mesh())  # prod-a's data of the idle tests, no cluster label at all
    bot = fleet_bot(bot_factory, prometheus_factory, gateway, monkeypatch,
                    extra_clusters={"lab": {"prometheus_url": own.url}})
    gateway.clear()
    fleet = scan_fleet(bot.ctx, CLUSTERS, bot.ctx.now())
    scans = {s.cluster: s for s in fleet.scans}
    assert fleet.queries == 4  # two on the gateway for prod-a and prod-b, two on lab's own Prometheus
    assert bot.ctx.traffic.requests[own.url] == 2 and len(gateway.queries()) == 2
    assert all('"lab"' not in q and 'cluster=~"eu-prod-b|prod-a"' in q for q in gateway.queries())
    assert {s.name for s in scans["lab"].idle} == {"gift-cards", "old-reports", "ledger"}
    assert {s.name for s in scans["prod-a"].idle} == {"gift-cards", "old-reports"}


# -- deletion and canary through the shared endpoint ---------------------------------------------------
def test_dependency_check_sees_only_the_clusters_own_callers(bot_factory, prometheus_factory, gateway, monkeypatch):
    bot = fleet_bot(bot_factory, prometheus_factory, gateway, monkeypatch)
    text = text_of(report_of(bot, PAY_DEV, "deps ledger prod-a"))
    assert "1 caller" in text and "`orders/checkout`" in text and "jobs/batch" not in text
    text = text_of(report_of(bot, PAY_DEV, "deps ledger prod-b"))
    assert "Nothing depends on `ledger`" in text and "orders/checkout" not in text and "jobs/batch" not in text
    text = text_of(report_of(bot, PAY_DEV, "deps ledger lab"))
    assert "Inbound traffic: unknown" in text and f'{gateway.url} under cluster=\\"lab\\" has no Istio series' in text
    assert all('cluster="' in q or 'cluster=~"' in q for q in gateway.queries())


def test_canary_card_shows_the_clusters_own_versions(bot_factory, prometheus_factory, gateway, monkeypatch):
    bot = fleet_bot(bot_factory, prometheus_factory, gateway, monkeypatch)
    for cluster in ("prod-a", "prod-b"):
        istio_canary(bot.kube[cluster], weight=10)
    rows = {}
    for cluster in ("prod-a", "prod-b"):
        card = post_card(bot, f"checkout {cluster}", user=DEVOPS, channel=CHANNEL)
        table = re.search(r"```(.*?)```", text_of(card)).group(1).replace("\\n", "\n")
        rows[cluster] = {line.split()[0]: line.split()[1:3] for line in table.splitlines()[1:]}
    assert rows["prod-a"] == {"stable": ["9.00", "100.0%"], "canary": ["1.00", "80.0%"]}
    assert rows["prod-b"] == {"stable": ["3.00", "100.0%"], "canary": ["3.00", "80.0%"]}


def test_canary_card_with_partial_answer_says_unknown_never_zero(bot_factory, prometheus_factory, gateway, monkeypatch):
    bot = fleet_bot(bot_factory, prometheus_factory, gateway, monkeypatch)
    istio_canary(bot.kube["prod-b"], weight=10)
    gateway.warnings = ["receive: partial response"]
    text = text_of(post_card(bot, "checkout prod-b", user=DEVOPS, channel=CHANNEL))
    assert "*unknown* — prod-b: Prometheus answered only in part (receive: partial response)" in text
    assert "0.00" not in text and "0.0%" not in text


# -- the scoping rewrite itself -------------------------------------------------------------------------
@pytest.mark.parametrize("expr, expected", [
    ("up", 'up{cluster="a"}'),
    ("sum(rate(x[5m]))", 'sum by (cluster)(rate(x{cluster="a"}[5m]))'),
    ("sum(rate(x[5m])) by (job)", 'sum(rate(x{cluster="a"}[5m])) by (job, cluster)'),
    ("sum without (pod) (x)", 'sum without (pod) (x{cluster="a"})'),
    ('x{job="a{b}"} offset 1h', 'x{cluster="a",job="a{b}"} offset 1h'),
    ('{__name__=~"a|b"}', '{cluster="a",__name__=~"a|b"}'),
    ("topk(3, x) by (cluster)", 'topk(3, x{cluster="a"}) by (cluster)'),
    ("a / on(job) b", 'a{cluster="a"} / on(job) b{cluster="a"}'),
    ("x{}", 'x{cluster="a"}'),
])
def test_scope_adds_the_matcher_to_every_selector_and_the_label_to_every_aggregation(expr, expected):
    assert scope(expr, "cluster", ["a"]) == expected


def test_scope_escapes_values_and_refuses_what_it_cannot_read():
    from bot.foundation.promql import ScopeError

    assert scope("x", "cluster", ['we"ird', "a.b"]) == 'x{cluster=~"a\\\\.b|we\\"ird"}'
    for broken in ("sum(x", "x{a=\"b\"", "x[5m"):
        with pytest.raises(ScopeError):
            scope(broken, "cluster", ["a"])


# -- python app.py check ----------------------------------------------------------------------------------
def check_lines(tmp_path, kube_fake, slack_fake, gateway, token: str) -> tuple[int, dict[str, str], str]:
    import yaml

    from tests.harness import base_config
    from tests.test_app import base_env, run_app

    kubeconfig = kube_fake.kubeconfig(str(tmp_path / "kubeconfig"), context="prod-a")
    cfg = base_config()
    cfg["clusters"] = [{"name": name, "context": "prod-a", "kubeconfig": kubeconfig} for name in CLUSTERS]
    cfg["clusters"][1]["cluster_label_value"] = "eu-prod-b"
    cfg.update(shared_config(gateway.url))
    path = tmp_path / "deckhand.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = base_env(tmp_path, str(path), slack_fake)
    env[TOKEN_ENV] = token
    result = run_app(["check"], env)
    lines = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines())
    return result.returncode, lines, result.stdout + result.stderr


def test_check_verifies_the_endpoint_its_authentication_and_each_clusters_series(
        tmp_path, kube_fake, slack_fake, gateway):
    code, lines, output = check_lines(tmp_path, kube_fake, slack_fake, gateway, TOKEN)
    assert code == 1, output  # lab has no series
    assert lines[f"prometheus {gateway.url}"] == (f"ok: answers, authenticated with the bearer token in ${TOKEN_ENV} "
                                                  "and the X-Scope-OrgID header; serves 3 clusters")
    assert re.fullmatch(rf'ok: \d+ Istio series at {gateway.url} under cluster="prod-a"', lines["prometheus prod-a"])
    assert re.fullmatch(rf'ok: \d+ Istio series at {gateway.url} under cluster="eu-prod-b"', lines["prometheus prod-b"])
    assert lines["prometheus lab"].startswith(f'failed: no Istio series in the last day at {gateway.url} under '
                                              'cluster="lab" (is its Prometheus federated into this endpoint')
    assert TOKEN not in output
    assert len(gateway.queries()) == 2  # vector(1) for the endpoint, one count by cluster for all three


def test_check_names_a_refused_token(tmp_path, kube_fake, slack_fake, gateway):
    code, lines, output = check_lines(tmp_path, kube_fake, slack_fake, gateway, "wrong-token-abcdef123456")
    assert code == 1
    assert lines[f"prometheus {gateway.url}"] == (f"failed: {gateway.url}: Prometheus did not answer (401 Unauthorized: "
                                                  f"{gateway.url} refused the bearer token in ${TOKEN_ENV} and the "
                                                  "X-Scope-OrgID header)")
    assert "401 Unauthorized" in lines["prometheus prod-a"] and "Traceback" not in output
    assert "wrong-token-abcdef123456" not in output
