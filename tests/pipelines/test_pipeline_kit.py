"""Helpers for the pipeline tests (no tests of its own): a bot wired to the GitHub fake, modal
values as Slack sends them, and validation of generated Kubernetes objects."""
from __future__ import annotations

import json

import kubernetes_validate
import pytest
import yaml

from bot.foundation.config import parse_settings
from bot.pipelines.catalog import catalog
from bot.pipelines.render import render
from bot.pipelines.form import check_form
from tests.harness import DEVOPS, PAY_DEV, base_config

REPO = "org/deploy-manifests"
# A Kubernetes version kubernetes-validate ships schemas for (the Kubernetes fake says 1.32).
K8S_VERSION = "1.32.0"
POINTER = ('# Batch base images -> current version.\n'
           'registry.example.com/batch/python: "3.12.1"  # the shared Python runner\n'
           'registry.example.com/batch/jvm: "21.0.2"\n')
CLUSTERS = ("prod-a", "prod-b")


@pytest.fixture
def pbot(bot_factory, github_fake):
    github_fake.create_repo(REPO, files={"README.md": "deploy manifests\n", "batch-images.yaml": POINTER})
    bot = bot_factory(clusters=CLUSTERS, github_fake=github_fake)
    github_fake.clock = bot.clock
    bot.slack.users[PAY_DEV] = {"name": "pat", "display_name": "Pat Payments", "real_name": "Pat Doe"}
    bot.slack.users[DEVOPS] = {"name": "dana", "display_name": "Dana Ops"}
    bot.slack.usergroups["S0SEARCH"] = []
    return bot


def api_form(**overrides) -> dict:
    form = {"service": "payments-api", "team": "payments", "kind": "api", "repo": "org/payments-api",
            "image": "registry.example.com/payments/api", "port": "8080", "health_path": "/healthz",
            "schedule": "", "tag_policy": "", "strategy": "canary", "clusters": ["prod-a", "prod-b"],
            "replicas": "3", "cpu_request": "250m", "cpu_limit": "1", "memory_request": "256Mi",
            "memory_limit": "512Mi", "env": "LOG_LEVEL=info\nGREETING=yes: no # not a comment"}
    form.update(overrides)
    return form


def batch_form(**overrides) -> dict:
    form = api_form(service="nightly-report", kind="batch", image="registry.example.com/batch/python",
                    port="", health_path="", schedule="0 3 * * *",
                    tag_policy="track latest of registry.example.com/batch/python", strategy="", replicas="",
                    env="REPORT=daily")
    form.update(overrides)
    return form


def state_values(form: dict) -> dict:
    """Modal values shaped like Slack's view.state.values."""
    values = {}
    for field, value in form.items():
        if field in ("team", "kind", "strategy"):
            values[field] = {"value": {"selected_option": {"value": value} if value else None}}
        elif field == "clusters":
            values[field] = {"value": {"selected_options": [{"value": c} for c in value]}}
        else:
            values[field] = {"value": value}
    return values


def settings():
    cfg = base_config()
    cfg["clusters"] = [{"name": c, "prometheus_url": "http://127.0.0.1:1"} for c in CLUSTERS]
    return parse_settings(cfg, "test.yaml")


def spec_of(form: dict):
    spec, errors = check_form(form, settings())
    assert not errors, errors
    return spec


def seed_pipeline(bot, form: dict, pointer: dict | None = None) -> dict[str, str]:
    """Commit a pipeline to the repo's main branch as if an earlier PR had been merged."""
    files = render(spec_of(form), bot.ctx.settings, pointer or {"registry.example.com/batch/python": "3.12.1"})
    bot.github.commit_files(REPO, "main", files, message=f"pipeline for {form['service']}")
    return files


def open_modal(bot, text: str = "create", user: str = PAY_DEV, channel: str = "C0PAY") -> dict:
    """Run the command and wait until the form (not the loading view) is up and the names are cached."""
    before = bot.slack.calls_to("views.update")
    bot.sender.command("/pipeline", text, user_id=user, channel_id=channel)
    bot.slack.wait_for(lambda: len(bot.slack.calls_to("views.update")) > len(before))
    view = bot.slack.wait_for(lambda: [v for v in bot.slack.views_for(user) if v["callback_id"] in
                                       ("pipeline_submit", "pipeline_notice")])[-1]
    if view["callback_id"] == "pipeline_submit":
        bot.slack.wait_for(lambda: catalog(bot.ctx).ready)
    return view


def submit(bot, form: dict, user: str = PAY_DEV, view_id: str | None = None, **kwargs):
    return bot.sender.view_submission("pipeline_submit", values=state_values(form), user_id=user,
                                      view_id=view_id, **kwargs)


def messages_about(bot, channel: str, target: str) -> list[dict]:
    return [m for m in bot.slack.messages(channel).values() if target in m.get("text", "")]


def wait_message(bot, channel: str, target: str, state_words: str, timeout: float = 10.0) -> dict:
    """The requester's message once its text says `state_words` (e.g. "is open for review")."""
    return bot.slack.wait_for(lambda: next((m for m in messages_about(bot, channel, target)
                                            if state_words in m["text"]), None), timeout=timeout)


def request_row(bot, key: str) -> dict:
    rows = bot.ctx.store.query("SELECT * FROM pipeline_requests WHERE key = ?", [key])
    return rows[0] if rows else None


def buttons(message: dict) -> dict[str, dict]:
    return {e["action_id"]: e for b in message.get("blocks") or [] if b["type"] == "actions" for e in b["elements"]}


def validate_objects(files: dict[str, str | None]) -> dict[str, dict]:
    """Validate every generated Kubernetes object: built-in kinds against Kubernetes' own schemas,
    Istio CRDs (not in kubernetes-validate's schemas) structurally. Returns kind/name -> object."""
    objects: dict[str, dict] = {}
    for path, text in sorted(files.items()):
        if text is None or "/k8s/" not in path:
            continue
        for obj in yaml.safe_load_all(text):
            objects[f"{obj['kind']}/{obj['metadata']['name']}"] = obj
            if obj["apiVersion"].startswith("networking.istio.io/"):
                check_istio(obj)
            else:
                kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    subsets = {o["metadata"]["name"]: {s["name"] for s in o["spec"]["subsets"]}
               for o in objects.values() if o["kind"] == "DestinationRule"}
    for obj in objects.values():
        if obj["kind"] == "VirtualService":
            for route in obj["spec"]["http"]:
                for dest in route["route"]:
                    assert dest["destination"]["subset"] in subsets[dest["destination"]["host"]]
    return objects


def check_istio(obj: dict) -> None:
    assert obj["apiVersion"] == "networking.istio.io/v1"
    meta, spec = obj["metadata"], obj["spec"]
    assert meta["name"] and meta["namespace"]
    if obj["kind"] == "DestinationRule":
        assert set(spec) == {"host", "subsets"}
        for subset in spec["subsets"]:
            assert set(subset) == {"name", "labels"} and all(isinstance(v, str) for v in subset["labels"].values())
    elif obj["kind"] == "VirtualService":
        assert set(spec) == {"hosts", "http"} and spec["hosts"]
        for route in spec["http"]:
            assert set(route) <= {"name", "match", "route"}
            weights = [d.get("weight") for d in route["route"]]
            if len(weights) > 1:
                assert sum(weights) == 100 and all(isinstance(w, int) and 0 <= w <= 100 for w in weights)
            for dest in route["route"]:
                assert set(dest["destination"]) == {"host", "subset"}
    else:
        raise AssertionError(f"unexpected Istio kind {obj['kind']}")


def ack_body(response) -> dict:
    return json.loads(response.text) if response.text else {}
