"""/pipeline create end to end: signed Slack requests to the real endpoint, the GitHub and
Kubernetes fakes behind the bot, and every generated object validated."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.harness import DEVOPS, OUTSIDER, PAY_DEV
from tests.pipelines.test_pipeline_kit import (  # noqa: F401 - pbot is a fixture
    REPO,
    ack_body,
    api_form,
    batch_form,
    buttons,
    open_modal,
    pbot,
    request_row,
    submit,
    validate_objects,
    wait_message,
)


def test_create_opens_a_loading_view_then_the_form(pbot):
    open_modal(pbot)
    opened = pbot.slack.calls_to("views.open")[0].args["view"]
    assert opened["callback_id"] == "pipeline_loading" and "submit" not in opened
    form = pbot.slack.views_for(PAY_DEV)[-1]
    ids = [b.get("block_id") for b in form["blocks"] if b["type"] == "input"]
    assert ids == ["service", "team", "kind", "repo", "image", "port", "health_path", "schedule", "tag_policy",
                   "strategy", "clusters", "replicas", "cpu_request", "cpu_limit", "memory_request",
                   "memory_limit", "env"]
    team = next(b for b in form["blocks"] if b.get("block_id") == "team")["element"]
    assert [o["value"] for o in team["options"]] == ["payments"]  # a developer owns only their team's pipelines


def test_create_api_canary_opens_one_pull_request_with_valid_files(pbot):
    open_modal(pbot)
    response = submit(pbot, api_form())
    assert response.status_code == 200 and ack_body(response) == {}
    message = wait_message(pbot, "C0PAY", "payments-api", "is open for review")

    pull = pbot.github.pulls(REPO)
    assert len(pull) == 1
    pull = pull[0]
    assert pull["head"]["ref"] == "deckhand/pipeline/payments-api" and pull["base"]["ref"] == "main"
    assert pull["title"] == "pipeline: create payments-api (api, canary)"
    assert [label["name"] for label in pull["labels"]] == ["deckhand"]
    assert [u["login"] for u in pull["requested_reviewers"]] == ["octocat"]
    assert "Pat Payments" in pull["body"]  # the requester's Slack display name
    permalink = pbot.slack.calls_to("chat.getPermalink")[0].response["permalink"]
    assert f"[Slack message]({permalink})" in pull["body"]
    assert len(pbot.github.log(REPO, "deckhand/pipeline/payments-api")) == 2  # ONE commit on top of main

    files = pbot.github.pr_files(REPO, pull["number"])
    base = "services/payments/payments-api"
    assert sorted(files) == [f"{base}/deckhand.yaml", f"{base}/k8s/deployment-canary.yaml",
                             f"{base}/k8s/deployment.yaml", f"{base}/k8s/destinationrule.yaml",
                             f"{base}/k8s/service.yaml", f"{base}/k8s/virtualservice.yaml", f"{base}/pipeline.yaml"]
    objects = validate_objects(files)
    stable, canary = objects["Deployment/payments-api"], objects["Deployment/payments-api-canary"]
    assert stable["spec"]["replicas"] == 3 and canary["spec"]["replicas"] == 0
    assert stable["spec"]["template"]["metadata"]["labels"]["track"] == "stable"
    container = stable["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/payments/api:latest"
    assert container["env"] == [{"name": "LOG_LEVEL", "value": "info"},
                                {"name": "GREETING", "value": "yes: no # not a comment"}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert {s["name"] for s in objects["DestinationRule/payments-api"]["spec"]["subsets"]} == {"stable", "canary"}
    route = objects["VirtualService/payments-api"]["spec"]["http"][0]["route"]
    assert [(r["destination"]["subset"], r["weight"]) for r in route] == [("stable", 100), ("canary", 0)]
    spec = yaml.safe_load(files[f"{base}/deckhand.yaml"])
    assert spec["clusters"] == ["prod-a", "prod-b"] and spec["kind"] == "api"

    button = buttons(message)["pipeline_view_pr"]
    assert button["url"] == pull["html_url"] and button["text"]["text"] == "View pull request"
    row = request_row(pbot, "pipeline:payments-api")
    assert row["state"] == "open" and row["pr_number"] == pull["number"] and row["requester"] == PAY_DEV
    audit = pbot.ctx.store.audit_log("payments-api")
    assert [(a["action"], a["result"]) for a in audit] == [("pipeline.create", f"opened #{pull['number']}")]


@pytest.mark.parametrize("kind", ["api", "worker"])
def test_create_blue_green(pbot, kind):
    open_modal(pbot)
    form = api_form(service=f"search-{kind}", team="payments", kind=kind, strategy="blue-green")
    submit(pbot, form)
    wait_message(pbot, "C0PAY", f"search-{kind}", "is open for review")
    files = pbot.github.pr_files(REPO, 1)
    objects = validate_objects(files)
    blue, green = objects[f"Deployment/search-{kind}-blue"], objects[f"Deployment/search-{kind}-green"]
    assert blue["spec"]["replicas"] == 3 and green["spec"]["replicas"] == 0
    if kind == "api":
        http = objects[f"VirtualService/search-{kind}"]["spec"]["http"]
        assert http[0]["match"][0]["headers"]["x-deckhand-slot"] == {"exact": "green"}
        assert [(r["destination"]["subset"], r["weight"]) for r in http[1]["route"]] == [("blue", 100), ("green", 0)]
    else:  # a worker takes no traffic: no Service, no Istio routing
        assert set(objects) == {f"Deployment/search-{kind}-blue", f"Deployment/search-{kind}-green"}
        assert "ports" not in blue["spec"]["template"]["spec"]["containers"][0]


def test_create_worker_canary(pbot):
    open_modal(pbot)
    submit(pbot, api_form(service="ledger-worker", kind="worker", port="", health_path=""))
    wait_message(pbot, "C0PAY", "ledger-worker", "is open for review")
    objects = validate_objects(pbot.github.pr_files(REPO, 1))
    assert set(objects) == {"Deployment/ledger-worker", "Deployment/ledger-worker-canary"}


def test_create_batch_tracking_latest_runs_the_pointer_version(pbot):
    open_modal(pbot)
    submit(pbot, batch_form())
    message = wait_message(pbot, "C0PAY", "nightly-report", "is open for review")
    files = pbot.github.pr_files(REPO, 1)
    objects = validate_objects(files)
    assert set(objects) == {"CronJob/nightly-report"}
    cronjob = objects["CronJob/nightly-report"]["spec"]
    assert cronjob["schedule"] == "0 3 * * *" and cronjob["concurrencyPolicy"] == "Forbid"
    container = cronjob["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/batch/python:3.12.1"
    assert "registry.example.com/batch/python:3.12.1" in json.dumps(message["blocks"])


def test_create_batch_pinned(pbot):
    open_modal(pbot)
    submit(pbot, batch_form(service="cleanup", image="registry.example.com/payments/cleanup",
                            tag_policy="pinned 2.0.1", schedule="*/15 * * * *"))
    wait_message(pbot, "C0PAY", "cleanup", "is open for review")
    objects = validate_objects(pbot.github.pr_files(REPO, 1))
    container = objects["CronJob/cleanup"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/payments/cleanup:2.0.1"


def test_every_wrong_field_is_reported_at_once_and_nothing_is_created(pbot):
    open_modal(pbot)
    writes_before = len(pbot.github.writes())
    bad = api_form(service="Payments_API", repo="not a repo", image="Registry/App:1.0", port="70000",
                   health_path="healthz", strategy="", clusters=[], replicas="0", cpu_request="lots",
                   cpu_limit="100m", memory_request="512MB", memory_limit="1", env="PASSWORD=hunter2")
    response = submit(pbot, bad)
    body = ack_body(response)
    assert body["response_action"] == "errors"
    errors = body["errors"]
    assert set(errors) == {"service", "repo", "image", "port", "health_path", "strategy", "clusters", "replicas",
                           "cpu_request", "memory_request", "memory_limit", "env"}
    assert "lowercase" in errors["service"]
    assert "includes a tag" in errors["image"]
    assert "1 to 65535" in errors["port"]
    assert "1 to 20" in errors["replicas"]
    assert "Mi" in errors["memory_request"]
    assert "Secret" in errors["env"]
    assert "`" not in "".join(errors.values())  # plain text under the inputs
    batch = submit(pbot, batch_form(schedule="every night", tag_policy="latest please", kind="batch"))
    batch_errors = ack_body(batch)["errors"]
    assert set(batch_errors) == {"schedule", "tag_policy"} and "5 fields" in batch_errors["schedule"]
    limits = ack_body(submit(pbot, api_form(cpu_request="2", cpu_limit="500m")))["errors"]
    assert limits == {"cpu_limit": "The limit (500m) must be at least the request (2)."}
    assert len(pbot.github.writes()) == writes_before
    assert pbot.ctx.store.query("SELECT * FROM pipeline_requests") == []
    assert not pbot.slack.calls_to("chat.postMessage")


def test_a_name_that_exists_is_refused_in_the_ack_from_cached_names(pbot):
    pbot.kube["prod-b"].add({"apiVersion": "v1", "kind": "Service",
                             "metadata": {"name": "search-api", "namespace": "search"},
                             "spec": {"selector": {"app": "search-api"}, "ports": [{"port": 80}]}})
    from tests.pipelines.test_pipeline_kit import seed_pipeline

    seed_pipeline(pbot, api_form(service="ledger-api"))
    open_modal(pbot)
    calls = len(pbot.github.requests)
    in_cluster = ack_body(submit(pbot, api_form(service="search-api")))["errors"]["service"]
    assert "prod-b/search" in in_cluster and "/pipeline edit search-api" in in_cluster
    in_repo = ack_body(submit(pbot, api_form(service="ledger-api")))["errors"]["service"]
    assert "services/payments/ledger-api" in in_repo
    assert len(pbot.github.requests) == calls  # the ack asked nobody
    track = ack_body(submit(pbot, batch_form(tag_policy="track latest of registry.example.com/batch/ruby")))
    assert "registry.example.com/batch/jvm" in track["errors"]["tag_policy"]


def test_a_name_taken_after_the_cache_refresh_is_caught_before_the_pull_request(pbot):
    open_modal(pbot)
    pbot.kube["prod-a"].add({"apiVersion": "v1", "kind": "Service",
                             "metadata": {"name": "payments-api", "namespace": "legacy"},
                             "spec": {"selector": {"app": "payments-api"}, "ports": [{"port": 80}]}})
    assert ack_body(submit(pbot, api_form())) == {}  # the cache did not know yet
    message = wait_message(pbot, "C0PAY", "payments-api", "no pull request was opened")
    assert "prod-a/legacy" in json.dumps(message["blocks"])
    assert pbot.github.pulls(REPO) == [] and "deckhand/pipeline/payments-api" not in pbot.github.branches(REPO)
    assert request_row(pbot, "pipeline:payments-api")["state"] == "rejected"
    assert pbot.ctx.store.audit_log("payments-api")[0]["result"].startswith("rejected")


def test_devops_may_create_for_any_team_and_outsiders_see_why_not(pbot):
    view = open_modal(pbot, user=DEVOPS, channel="C0OPS")
    team = next(b for b in view["blocks"] if b.get("block_id") == "team")["element"]
    assert [o["value"] for o in team["options"]] == ["payments", "search"]
    notice = open_modal(pbot, user=OUTSIDER)
    assert notice["callback_id"] == "pipeline_notice" and "aren't in any team" in json.dumps(notice["blocks"])
    assert pbot.ctx.store.audit_log()[0]["result"] == "denied"
    # A forged submission for a team the user is not in is refused on the team field, in the ack.
    answer = submit(pbot, api_form(service="sneaky-api", team="search"), user=PAY_DEV).json()
    assert answer["response_action"] == "errors"
    assert "only the search team or DevOps" in answer["errors"]["team"]
    assert pbot.github.pulls(REPO) == []
