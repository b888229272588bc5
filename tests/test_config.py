"""Config: the example validates; every kind of mistake names the file, the key path and the problem."""
from datetime import timedelta

from pathlib import Path
import pytest
import yaml

from bot.foundation.config import ConfigError, load_settings, parse_duration, parse_settings

EXAMPLE = "deploy/deckhand.example.yaml"


def example() -> dict:
    return yaml.safe_load(Path(EXAMPLE).read_text())


def problems(data, name="deckhand.yaml") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(data, name)
    return caught.value.problems


def test_shipped_example_validates():
    settings = load_settings(EXAMPLE)
    assert [c.name for c in settings.clusters] == ["prod-a", "prod-b"]
    assert settings.canary.stale_after == timedelta(hours=72)
    assert settings.idle.window == timedelta(days=7)
    assert settings.node_join.max_unhealthy == pytest.approx(0.4)
    assert settings.clusters[1].istio_api_version == "v1beta1"
    assert settings.protected_namespaces[:4] == ["kube-system", "kube-public", "kube-node-lease", "istio-system"]
    assert settings.pipelines.kubernetes_version == "1.32"


def test_protected_namespaces_default_and_always_include_deckhands_own(monkeypatch, tmp_path):
    from bot.foundation import config
    data = example()
    del data["protected_namespaces"]
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.setattr(config, "SERVICEACCOUNT_NAMESPACE", str(tmp_path / "absent"))
    assert parse_settings(data).protected_namespaces == list(config.BUILTIN_PROTECTED)
    # In a pod: the ServiceAccount's namespace file names deckhand's namespace.
    mounted = tmp_path / "namespace"
    mounted.write_text("ops-tools\n")
    monkeypatch.setattr(config, "SERVICEACCOUNT_NAMESPACE", str(mounted))
    assert parse_settings(data).protected_namespaces == [*config.BUILTIN_PROTECTED, "ops-tools"]
    # POD_NAMESPACE (the Deployment sets it) wins, and an operator's own list still gets it.
    monkeypatch.setenv("POD_NAMESPACE", "deckhand")
    assert parse_settings({**data, "protected_namespaces": ["payments"]}).protected_namespaces == ["payments", "deckhand"]
    settings = parse_settings(data)
    assert settings.is_protected("deckhand") and settings.is_protected("kube-system")
    assert not settings.is_protected("payments") and not settings.is_protected(None)


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["clusters"][1].update(prometheus_url="prometheus:9090"), "deckhand.yaml: clusters[1].prometheus_url: not a URL"),
    (lambda d: d.update(colour="blue"), "deckhand.yaml: colour: unknown key"),
    (lambda d: d["canary"].update(stale_after="three days"), "deckhand.yaml: canary.stale_after: 'three days' is not a duration"),
    (lambda d: d["channels"].pop("alerts"), "deckhand.yaml: channels.alerts: required key is missing"),
    (lambda d: d["roles"].update(devops=["alice"]), "deckhand.yaml: roles.devops: 'alice' is not a Slack user"),
    (lambda d: d["idle"].update(schedule="every monday"), "deckhand.yaml: idle.schedule: 'every monday' is not a cron expression"),
    (lambda d: d["clusters"][0].update(istio_api_version="v2"), "deckhand.yaml: clusters[0].istio_api_version: Input should be 'v1' or 'v1beta1'"),
    (lambda d: d["node_join"].update(max_unhealthy="140%"), "deckhand.yaml: node_join.max_unhealthy: must be between 0% and 100%"),
    (lambda d: d["canary"].update(steps=[50, 10]), "deckhand.yaml: canary.steps: must be increasing percentages"),
    (lambda d: d.update(protected_namespaces="kube-system"), "deckhand.yaml: protected_namespaces: must be a list"),
    (lambda d: d.update(protected_namespaces=["Kube_System"]), "deckhand.yaml: protected_namespaces: 'Kube_System' is not a namespace name"),
    (lambda d: d["pipelines"].update(kubernetes_version=1.3), "deckhand.yaml: pipelines.kubernetes_version: write the version quoted"),
    (lambda d: d["pipelines"].update(kubernetes_version="1.20"), "deckhand.yaml: pipelines.kubernetes_version: no Kubernetes schemas for 1.20"),
    (lambda d: d["clusters"][0].update(name="Prod_A"), "deckhand.yaml: clusters[0].name: must be a DNS-1123 label"),
    (lambda d: d["github"].update(repo="just-a-name"), "deckhand.yaml: github.repo: must be owner/name"),
    (lambda d: d["clusters"].append(dict(d["clusters"][0])), "duplicate cluster name 'prod-a'"),
])
def test_bad_config_names_file_path_and_problem(mutate, expected):
    data = example()
    mutate(data)
    assert any(expected in p for p in problems(data)), problems(data)


def test_every_problem_is_reported_at_once():
    data = example()
    data["clusters"][0]["prometheus_url"] = "nope"
    data["deletion"]["request_ttl"] = "soon"
    data["extra"] = 1
    assert len(problems(data)) == 3


def test_unreadable_and_malformed_files(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(missing)
    broken = tmp_path / "deckhand.yaml"
    broken.write_text("clusters: [\n  - name: a\n")
    with pytest.raises(ConfigError, match=r"deckhand.yaml: line \d+, column \d+: invalid YAML"):
        load_settings(broken)
    broken.write_text("")
    with pytest.raises(ConfigError, match="the file is empty"):
        load_settings(broken)
    broken.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_settings(broken)


@pytest.mark.parametrize("text, seconds", [("72h", 259200), ("7d", 604800), ("10m", 600), ("1h30m", 5400),
                                           ("45s", 45), ("2w", 1209600), (90, 90)])
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "ten minutes", "10x", "-5m", True])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_secrets_never_in_repr():
    from bot.foundation.config import Secrets

    secrets = Secrets.from_env({"SLACK_BOT_TOKEN": "xoxb-secret-value", "GITHUB_TOKEN": "ghp_abc"})
    assert "xoxb-secret-value" not in repr(secrets) and "ghp_abc" not in repr(secrets)
    assert set(secrets.values()) == {"xoxb-secret-value", "ghp_abc"}


# -- Prometheus: per cluster, or one query endpoint for the fleet ------------------------------------------
def fleet(**prometheus) -> dict:
    data = example()
    data["prometheus"] = {"url": "http://thanos-query.monitoring:9090", **prometheus}
    for cluster in data["clusters"]:
        cluster.pop("prometheus_url")
    return data


def test_shared_endpoint_serves_clusters_without_their_own_url():
    data = fleet(headers={"X-Scope-OrgID": "ops"}, bearer_token_env="PROMETHEUS_TOKEN", ca_file="/etc/ca.pem")
    data["clusters"][1]["cluster_label_value"] = "eu-prod-b"
    data["clusters"].append({"name": "lab", "prometheus_url": "http://prometheus.lab:9090",
                             "bearer_token_env": "LAB_TOKEN"})
    settings = parse_settings(data)
    assert settings.prometheus.cluster_label == "cluster" and settings.prometheus.url.endswith(":9090")
    assert [c.label_value for c in settings.clusters] == ["prod-a", "eu-prod-b", "lab"]

    from bot.foundation.traffic import Traffic, token_values

    traffic = Traffic(settings.clusters, shared=settings.prometheus, env={})
    shared = traffic.route("prod-a")
    assert shared.shared and shared.endpoint == traffic.route("prod-b").endpoint  # one connection, one query
    assert dict(shared.endpoint.headers) == {"X-Scope-OrgID": "ops"} and shared.endpoint.ca_file == "/etc/ca.pem"
    assert not traffic.route("lab").shared and traffic.route("lab").endpoint.bearer_token_env == "LAB_TOKEN"
    with_token = Traffic(settings.clusters, shared=settings.prometheus, env={"PROMETHEUS_TOKEN": "t1"})
    assert with_token._prom(shared.endpoint)._session.verify == "/etc/ca.pem"  # TLS checked against ca_file
    from bot.foundation.traffic import MetricsUnavailable

    with pytest.raises(MetricsUnavailable, match="LAB_TOKEN is not set: it holds the bearer token"):
        traffic.query("lab", "up", None)
    assert token_values(settings.clusters, settings.prometheus, {"PROMETHEUS_TOKEN": "t1", "LAB_TOKEN": "t2"}) == \
        ["t2", "t1"]


def test_a_cluster_header_layers_over_the_shared_ones_and_gets_its_own_endpoint():
    data = fleet(headers={"X-Scope-OrgID": "ops"})
    data["clusters"][1]["headers"] = {"X-Scope-OrgID": "prod-b"}
    from bot.foundation.traffic import Traffic

    traffic = Traffic(parse_settings(data).clusters, shared=parse_settings(data).prometheus, env={})
    assert dict(traffic.route("prod-b").endpoint.headers) == {"X-Scope-OrgID": "prod-b"}
    assert traffic.route("prod-a").endpoint != traffic.route("prod-b").endpoint


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["clusters"][0].pop("prometheus_url"),
     "deckhand.yaml: clusters[0].prometheus_url: required key is missing (or set prometheus.url"),
    (lambda d: d["clusters"][0].update(cluster_label_value="x"),
     "deckhand.yaml: clusters[0].cluster_label_value: only used on the shared prometheus.url"),
    (lambda d: d.update(prometheus={"cluster_label": "cluster"}), "deckhand.yaml: prometheus.url: required key is missing"),
    (lambda d: d.update(prometheus={"url": "thanos:9090"}), "deckhand.yaml: prometheus.url: not a URL"),
    (lambda d: d.update(prometheus={"url": "http://t:9090", "cluster_label": "k8s-cluster"}),
     "deckhand.yaml: prometheus.cluster_label: 'k8s-cluster' is not a Prometheus label name"),
    (lambda d: d.update(prometheus={"url": "http://t:9090", "bearer_token_env": "abc def"}),
     "deckhand.yaml: prometheus.bearer_token_env: must be the name of an environment variable"),
    (lambda d: d.update(prometheus={"url": "http://t:9090", "headers": {"Authorization": "Bearer x"}}),
     "deckhand.yaml: prometheus.headers: Authorization cannot be set here"),
    (lambda d: d.update(prometheus={"url": "http://t:9090", "token": "x"}), "deckhand.yaml: prometheus.token: unknown key"),
    (lambda d: d["clusters"][0].update(headers={"X-Org": "a\nb"}), "clusters[0].headers: the value of X-Org must be one line"),
])
def test_bad_prometheus_config(mutate, expected):
    data = example()
    mutate(data)
    assert any(expected in p for p in problems(data)), problems(data)


def test_two_clusters_under_one_label_value_are_an_error():
    data = fleet()
    data["clusters"][1]["cluster_label_value"] = "prod-a"
    assert any("clusters[1].cluster_label_value: 'prod-a' is also cluster 'prod-a'" in p for p in problems(data))


def test_the_commented_fleet_block_of_the_example_validates_when_uncommented():
    lines = Path(EXAMPLE).read_text().splitlines()
    start = lines.index("# prometheus:")
    block = ["prometheus:"] + [line[1:] for line in lines[start + 1:] if line.startswith("#   ")]
    data = example()
    data.update(yaml.safe_load("\n".join(block)))
    settings = parse_settings(data)
    assert settings.prometheus.bearer_token_env == "PROMETHEUS_TOKEN"
    assert settings.prometheus.headers == {"X-Scope-OrgID": "ops"}
