"""The pipeline spec and rendering as plain functions: every field's check, deckhand.yaml round
trips, stable bytes, every kind/strategy validated against Kubernetes' schemas, team templates."""
from __future__ import annotations

import dataclasses

import pytest

from bot.foundation.config import parse_settings
from bot.pipelines.render import RenderError, bump_pointer, parse_pointer, render
from bot.pipelines.form import Known, check_form, parse_env
from bot.pipelines.spec import SpecError, dump_spec, load_spec
from tests.harness import base_config
from tests.pipelines.test_pipeline_kit import CLUSTERS, POINTER, api_form, batch_form, settings, spec_of, validate_objects

PYTHON = "registry.example.com/batch/python"


def errors_for(form: dict, **kwargs) -> dict:
    spec, errors = check_form(form, kwargs.pop("settings", None) or settings(), **kwargs)
    assert (spec is None) == bool(errors)
    return errors


@pytest.mark.parametrize("overrides, field, says", [
    ({"service": "a" * 57}, "service", "at most 56"),
    ({"service": "1api"}, "service", "start with a letter"),
    ({"service": ""}, "service", "Enter the service name"),
    ({"kind": "cron"}, "kind", "api (serves HTTP), worker"),
    ({"team": "marketing"}, "team", "payments, search"),
    ({"repo": "just-a-name"}, "repo", "owner/name"),
    ({"image": "registry.example.com/Team/App"}, "image", "Use lowercase"),
    ({"image": "registry.example.com/app@sha256:abc"}, "image", "digest"),
    ({"image": "registry.example.com:5000/app:1.0"}, "image", "`registry.example.com:5000/app`"),
    ({"port": "http"}, "port", "1 to 65535"),
    ({"port": ""}, "port", "container port"),
    ({"health_path": "/health check"}, "health_path", "no spaces"),
    ({"tag_policy": "track latest of registry.example.com/batch/python"}, "tag_policy", "Only batch"),
    ({"tag_policy": "pinned"}, "tag_policy", "isn't a tag policy"),
    ({"tag_policy": "pinned v1/2"}, "tag_policy", "isn't an image tag"),
    ({"strategy": "rolling"}, "strategy", "canary or blue-green"),
    ({"clusters": ["prod-z"]}, "clusters", "Unknown cluster prod-z"),
    ({"replicas": "21"}, "replicas", "1 to 20"),
    ({"cpu_request": "0"}, "cpu_request", "at least `1m`"),
    ({"cpu_request": "250 millicores"}, "cpu_request", "millicores like `250m`"),
    ({"memory_limit": "2GB"}, "memory_limit", "`Gi`"),
    ({"memory_request": "100"}, "memory_request", "did you mean `100Mi`?"),
    ({"memory_request": "1Gi", "memory_limit": "512Mi"}, "memory_limit", "at least the request (1Gi)"),
    ({"env": "A=1\nA=2"}, "env", "`A` is set twice"),
    ({"env": "just words"}, "env", "has no `=`"),
    ({"env": "1BAD=x"}, "env", "isn't an environment variable name"),
    ({"env": "DB_PASSWORD=x"}, "env", "looks like a secret"),
    ({"env": "\n".join(f"V{i}=x" for i in range(51))}, "env", "more than 50"),
])
def test_each_field_says_what_is_wrong(overrides, field, says):
    errors = errors_for(api_form(**overrides))
    assert list(errors) == [field] and says in errors[field]


@pytest.mark.parametrize("overrides, field, says", [
    ({"service": "n" * 53}, "service", "at most 52 (CronJobs add an 11-character suffix"),
    ({"schedule": "*/5 * * * * *"}, "schedule", "5 fields"),
    ({"schedule": "61 * * * *"}, "schedule", "5 fields"),
    ({"schedule": "CRON_TZ=UTC 0 3 * * *"}, "schedule", "time zone"),
    ({"schedule": ""}, "schedule", "needs a cron schedule"),
    ({"tag_policy": ""}, "tag_policy", "needs an image tag policy"),
])
def test_batch_fields(overrides, field, says):
    errors = errors_for(batch_form(**overrides))
    assert list(errors) == [field] and says in errors[field]


def test_fields_that_do_not_apply_to_a_kind_are_ignored_and_good_forms_pass():
    assert errors_for(batch_form(port="nonsense", strategy="", replicas="lots")) == {}
    assert errors_for(batch_form(schedule="@daily")) == {}
    assert errors_for(api_form(kind="worker", port="", health_path="", schedule="garbage")) == {}
    assert errors_for(api_form(repo="https://github.com/org/app.git", image="localhost:5000/app")) == {}
    assert errors_for(api_form(repo="git@github.com:org/app.git", cpu_request="0.5", memory_limit="1.5Gi")) == {}


def test_configured_replica_bound_and_known_names_and_base_images():
    cfg = base_config()
    cfg["clusters"] = [{"name": c, "prometheus_url": "http://127.0.0.1:1"} for c in CLUSTERS]
    cfg["pipelines"] = {"max_replicas": 5}
    assert "1 to 5" in errors_for(api_form(replicas="6"), settings=parse_settings(cfg))["replicas"]
    known = Known(existing=lambda n: "in the GitOps repo (`x`)" if n == "payments-api" else None,
                  base_images=frozenset({PYTHON}))
    assert "already exists in the GitOps repo" in errors_for(api_form(), known=known)["service"]
    assert errors_for(api_form(), known=known, mode="edit") == {}  # an edit is of something that exists
    other = errors_for(batch_form(tag_policy="track latest of registry.example.com/batch/go"), known=known)
    assert f"Known base images: `{PYTHON}`" in other["tag_policy"]


def test_env_keeps_order_and_skips_comments():
    pairs, problem = parse_env("# comment\nB=2\n\nA = x=y \n")
    assert problem is None and pairs == (("B", "2"), ("A", "x=y"))


@pytest.mark.parametrize("form", [api_form(), batch_form(), batch_form(tag_policy="pinned 1.0", env=""),
                                  api_form(kind="worker", strategy="blue-green", port="", health_path="")])
def test_deckhand_yaml_round_trips(form):
    spec = spec_of(form)
    assert load_spec(dump_spec(spec)) == spec


def test_unreadable_deckhand_yaml_names_the_problem():
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec("a: [", "services/x/deckhand.yaml")
    with pytest.raises(SpecError, match="version 7 is not supported"):
        load_spec("version: 7\n")
    with pytest.raises(SpecError, match="required field 'image'"):
        load_spec("version: 1\nservice: a\nteam: t\nkind: api\nrepo: o/r\n")


MATRIX = [api_form(), api_form(strategy="blue-green"), api_form(kind="worker", port="", health_path=""),
          api_form(kind="worker", strategy="blue-green", port="", health_path=""),
          batch_form(), batch_form(tag_policy="pinned 2.0", env="")]


@pytest.mark.parametrize("form", MATRIX, ids=["api-canary", "api-blue-green", "worker-canary", "worker-blue-green",
                                              "batch-track", "batch-pinned"])
def test_every_kind_and_strategy_renders_valid_stable_objects(form):
    spec = spec_of(form)
    pointer = parse_pointer(POINTER)
    first = render(spec, settings(), pointer)
    assert first == render(dataclasses.replace(spec), settings(), dict(pointer))  # same input, same bytes
    objects = validate_objects(first)
    assert objects and all(o["metadata"]["namespace"] == "payments" for o in objects.values())
    for obj in objects.values():
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "deckhand"
    assert all(text.endswith("\n") and not text.endswith("\n\n") for text in first.values())


def test_namespace_and_path_come_from_config():
    cfg = base_config()
    cfg["clusters"] = [{"name": c, "prometheus_url": "http://127.0.0.1:1"} for c in CLUSTERS]
    cfg["pipelines"] = {"path": "apps/{service}", "namespace": "{team}-{service}"}
    files = render(spec_of(api_form()), parse_settings(cfg), {})
    assert "apps/payments-api/k8s/service.yaml" in files
    assert {o["metadata"]["namespace"] for o in validate_objects(files).values()} == {"payments-payments-api"}


def test_a_team_template_directory_overrides_single_templates(tmp_path):
    folder = tmp_path / "manifests" / "canary"
    folder.mkdir(parents=True)
    (folder / "service.yaml.j2").write_text(
        '{% if kind == "api" %}\napiVersion: v1\nkind: Service\nmetadata:\n  name: {{ svc|q }}\n'
        '  namespace: {{ namespace|q }}\n  annotations:\n    team.example.com/owner: {{ team|q }}\n'
        'spec:\n  selector:\n    app: {{ svc|q }}\n  ports:\n    - port: {{ spec.port }}\n{% endif %}\n')
    (folder / "pdb.yaml.j2").write_text(
        'apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: {{ svc|q }}\n'
        '  namespace: {{ namespace|q }}\nspec:\n  minAvailable: 1\n  selector:\n    matchLabels:\n'
        '      app: {{ svc|q }}\n')
    cfg = base_config()
    cfg["clusters"] = [{"name": c, "prometheus_url": "http://127.0.0.1:1"} for c in CLUSTERS]
    cfg["pipelines"] = {"templates": str(tmp_path)}
    files = render(spec_of(api_form()), parse_settings(cfg), {})
    objects = validate_objects(files)
    assert objects["Service/payments-api"]["metadata"]["annotations"] == {"team.example.com/owner": "payments"}
    assert "PodDisruptionBudget/payments-api" in objects and "VirtualService/payments-api" in objects


@pytest.mark.parametrize("template, says", [
    ("{{ no_such_variable }}", "template manifests/canary/broken.yaml.j2 failed"),
    ("key: [unclosed", "produced invalid YAML"),
    ("just: a mapping", "not a Kubernetes object"),
])
def test_a_broken_team_template_is_named(tmp_path, template, says):
    folder = tmp_path / "manifests" / "canary"
    folder.mkdir(parents=True)
    (folder / "broken.yaml.j2").write_text(template)
    cfg = base_config()
    cfg["clusters"] = [{"name": c, "prometheus_url": "http://127.0.0.1:1"} for c in CLUSTERS]
    cfg["pipelines"] = {"templates": str(tmp_path)}
    with pytest.raises(RenderError, match=says.replace("[", r"\[")):
        render(spec_of(api_form()), parse_settings(cfg), {})


def test_bumping_the_pointer_changes_one_line_and_keeps_comments():
    bumped = bump_pointer(POINTER, PYTHON, "3.12.4")
    old, new = POINTER.splitlines(), bumped.splitlines()
    assert [i for i, (a, b) in enumerate(zip(old, new)) if a != b] == [1]
    assert new[1] == f'{PYTHON}: "3.12.4"  # the shared Python runner'
    added = bump_pointer(POINTER, "registry.example.com/batch/go", "1.23")
    assert parse_pointer(added) == {**parse_pointer(POINTER), "registry.example.com/batch/go": "1.23"}
    assert parse_pointer(bump_pointer(None, PYTHON, "1")) == {PYTHON: "1"}
