"""What the form allows is exactly what is rendered: a deckhand.yaml edited by hand in Git is held to the
modal's rules by /pipeline edit and by the batch image bump; names cannot add YAML keys; rendered objects
are checked against the clusters' schemas and the templates' shape; the PR body is inert Markdown; the
edit's service and team come from the repository. Through the real Slack endpoint and the GitHub fake."""
from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
import yaml

from bot.pipelines.render import ManifestRejected, _environment, render
from tests.harness import DEVOPS, PAY_DEV
from tests.pipelines.test_pipeline_kit import (  # noqa: F401 - pbot is a fixture
    CLUSTERS,
    POINTER,
    REPO,
    ack_body,
    api_form,
    batch_form,
    open_modal,
    pbot,
    request_row,
    seed_pipeline,
    settings,
    spec_of,
    state_values,
    submit,
    validate_objects,
    wait_message,
)

PYTHON = "registry.example.com/batch/python"
NIGHTLY = "services/payments/nightly-report"
# The black-box finding: a hand edit that, rendered raw, put a privileged, root container in a bump PR.
INJECTED_PORT = '8080\n          securityContext: {privileged: true, runAsUser: 0}'


def hand_edit(bot, path: str, **changes) -> None:
    data = yaml.safe_load(bot.github.files(REPO, "main")[path])
    data.update(changes)
    bot.github.commit_files(REPO, "main", {path: yaml.safe_dump(data, sort_keys=False)}, message="hand edit")


def notice_text(view: dict) -> str:
    return json.dumps(view["blocks"], ensure_ascii=False)


def test_edit_refuses_a_privileged_spec_from_git_and_opens_no_pr(pbot):
    seed_pipeline(pbot, api_form())
    hand_edit(pbot, "services/payments/payments-api/deckhand.yaml", port=INJECTED_PORT)
    view = open_modal(pbot, "edit payments-api")
    assert view["callback_id"] == "pipeline_notice"
    text = notice_text(view)
    assert "services/payments/payments-api/deckhand.yaml breaks the form's rules" in text and "port:" in text
    assert pbot.github.pulls(REPO) == []
    listing_before = len(pbot.slack.responses)
    pbot.sender.command("/pipeline", "list", user_id=PAY_DEV)
    listing = pbot.slack.wait_for(lambda: pbot.slack.responses[listing_before:], timeout=15)[-1]
    assert "breaks the form's rules" in json.dumps(listing, ensure_ascii=False)


def test_bump_refuses_when_a_tracking_spec_in_git_is_invalid_and_opens_no_pr(pbot):
    seed_pipeline(pbot, batch_form())
    seed_pipeline(pbot, batch_form(service="weekly-export", team="search", schedule="0 4 * * 1"))
    # Hand-edited into an "api" that still tracks the base image, with a port that is YAML, not a number.
    hand_edit(pbot, f"{NIGHTLY}/deckhand.yaml", kind="api", port=INJECTED_PORT, health_path="/healthz",
              strategy="canary", replicas=1)
    pbot.slack.join("C0OPS")  # DevOps' own channel: the bot was invited there
    pbot.sender.command("/pipeline", f"batch-image bump {PYTHON} 3.12.9", user_id=DEVOPS, channel_id="C0OPS")
    message = wait_message(pbot, "C0OPS", PYTHON, "no pull request was opened")
    text = json.dumps(message["blocks"], ensure_ascii=False)
    assert f"{NIGHTLY}/deckhand.yaml breaks the form's rules" in text and "skipped, never rendered" in text
    assert pbot.github.pulls(REPO) == []
    assert not [b for b in pbot.github.branches(REPO) if b.startswith("deckhand/batch-image/")]
    row = request_row(pbot, f"batch-image:{PYTHON}")
    assert row["state"] == "rejected" and row["pr_number"] is None
    assert not [w for w in pbot.github.writes() if "/git/" in w.path or "/pulls" in w.path]  # nothing was committed


def test_a_service_name_with_a_newline_is_refused_and_can_never_add_keys(pbot):
    open_modal(pbot)
    errors = ack_body(submit(pbot, api_form(service="payments-api\nprivileged: true")))["errors"]
    assert "isn't a valid Kubernetes name" in errors["service"]
    assert pbot.github.pulls(REPO) == []
    # The same name hand-written into Git is refused by edit before anything is rendered.
    seed_pipeline(pbot, api_form())
    hand_edit(pbot, "services/payments/payments-api/deckhand.yaml", service="payments-api\nprivileged: true")
    view = open_modal(pbot, "edit payments-api")
    assert view["callback_id"] == "pipeline_notice" and "service:" in notice_text(view)
    # Even a name the form would refuse (were it ever rendered) cannot add keys: every value is quoted,
    # the comment included.
    hostile = "payments-api\nprivileged: true"
    files = render(replace(spec_of(api_form()), service=hostile), settings())
    text = next(t for p, t in files.items() if p.endswith("/pipeline.yaml"))
    pipeline = yaml.safe_load(text)
    assert set(pipeline) == {"name", "team", "kind", "source", "stages"} and pipeline["name"] == hostile
    assert text.startswith('# CI/CD pipeline for "payments-api\\nprivileged: true", generated')


def test_source_repo_with_credentials_or_variables_is_refused(pbot):
    open_modal(pbot)
    for repo, words in (("https://${CI_REGISTRY_PASSWORD}@evil.example/org/x", "contains a variable"),
                        ("https://deploy:s3cret@github.com/org/x", "carries credentials"),
                        ("org/../payments-api", "isn't a repository")):
        errors = ack_body(submit(pbot, api_form(repo=repo)))["errors"]
        assert words in errors["repo"], (repo, errors)
    assert ack_body(submit(pbot, api_form(repo="https://github.example.com:8443/org/payments-api"))) == {}
    wait_message(pbot, "C0PAY", "payments-api", "is open for review")


def test_the_pr_body_escapes_the_display_name_and_every_value(pbot):
    hostile = "![pwn](https://evil.example/x.png) [click](https://evil.example) @org/admins <img src=x> `tick`"
    pbot.slack.users[PAY_DEV] = {"name": "pat", "display_name": hostile}
    open_modal(pbot)
    assert ack_body(submit(pbot, api_form(env="NOTE=see @org/admins and ![i](https://evil.example/i.png)"))) == {}
    wait_message(pbot, "C0PAY", "payments-api", "is open for review")
    body = pbot.github.pulls(REPO)[0]["body"]
    assert f"Requested in Slack by `` {hostile} ``" in body
    # Outside code spans, nothing a user typed is left to render as a link, image, mention or HTML.
    prose = re.sub(r"(`+)(?:(?!\1).)+?\1", "", body, flags=re.S)
    for dangerous in ("![", "](https://evil", "@org", "<img"):
        assert dangerous not in prose, (dangerous, prose)
    assert "- **Source**: `org/payments-api`" in body and "- `services/payments/payments-api/deckhand.yaml`" in body


def test_edit_takes_service_and_team_from_the_repository_not_the_modal(pbot):
    seed_pipeline(pbot, api_form())  # payments owns payments-api
    pbot.slack.usergroups["S0SEARCH"] = ["U0SEARCHER"]
    view = open_modal(pbot, "edit payments-api")
    tampered = json.dumps({**json.loads(view["private_metadata"]), "team": "search", "digest": ""})
    form = api_form(replicas="5")
    del form["service"], form["team"]
    response = pbot.sender.view_submission("pipeline_submit", values=state_values(form), user_id="U0SEARCHER",
                                           private_metadata=tampered)
    assert response.status_code == 200
    denial = pbot.slack.wait_for(lambda: pbot.slack.ephemerals("U0SEARCHER"), timeout=15)
    assert "only the payments team or DevOps" in json.dumps(denial)
    assert pbot.github.pulls(REPO) == []
    row = pbot.ctx.store.audit_log("payments-api")[0]
    assert (row["actor"], row["action"], row["result"]) == ("U0SEARCHER", "pipeline.edit", "denied")

    # A member of the owning team submitting the same tampered metadata gets a PR for payments.
    assert ack_body(pbot.sender.view_submission("pipeline_submit", values=state_values(form), user_id=PAY_DEV,
                                                private_metadata=tampered)) == {}
    wait_message(pbot, "C0PAY", "payments-api", "is open for review")
    files = pbot.github.pr_files(REPO, pbot.github.pulls(REPO)[0]["number"])
    assert all(path.startswith("services/payments/payments-api/") for path in files)
    assert yaml.safe_load(files["services/payments/payments-api/deckhand.yaml"])["team"] == "payments"


CUSTOM_POD = """apiVersion: "v1"
kind: "Pod"
metadata: {name: {{ (svc ~ "-probe")|q }}, namespace: {{ namespace|q }}}
spec: {restartPolicy: "Never", priorityClassName: {{ env[0][1] }}, containers: [{name: "probe", image: "busybox:1.36"}]}
"""
OPERATOR_HOST_NETWORK = """apiVersion: "v1"
kind: "Pod"
metadata: {name: {{ (svc ~ "-probe")|q }}, namespace: {{ namespace|q }}}
spec: {restartPolicy: "Never", hostNetwork: true, containers: [{name: "probe", image: "busybox:1.36"}]}
"""


def custom_bot(bot_factory, github_fake, tmp_path, template: str, name: str = "probe.yaml.j2"):
    folder = tmp_path / "templates" / "manifests" / "canary"
    folder.mkdir(parents=True)
    (folder / name).write_text(template)
    github_fake.create_repo(REPO, files={"README.md": "deploy manifests\n", "batch-images.yaml": POINTER})
    bot = bot_factory(clusters=CLUSTERS, github_fake=github_fake,
                      config={"pipelines": {"templates": str(tmp_path / "templates"), "kubernetes_version": "1.32"}})
    github_fake.clock = bot.clock
    return bot


def test_a_value_that_gains_host_access_through_a_raw_template_opens_no_pr(bot_factory, github_fake, tmp_path):
    bot = custom_bot(bot_factory, github_fake, tmp_path, CUSTOM_POD)  # prints an env value raw, in flow style
    open_modal(bot)
    assert ack_body(submit(bot, api_form(env="PRIORITY=low, hostNetwork: true"))) == {}
    message = wait_message(bot, "C0PAY", "payments-api", "no pull request was opened")
    text = json.dumps(message["blocks"], ensure_ascii=False)
    assert "services/payments/payments-api/k8s/probe.yaml: Pod payments-api-probe" in text
    assert "spec.hostNetwork" in text and github_fake.pulls(REPO) == []

    # A plain value renders, validates and opens the PR with the operator's extra object.
    assert ack_body(submit(bot, api_form(env="PRIORITY=low"))) == {}
    wait_message(bot, "C0PAY", "payments-api", "is open for review")
    files = github_fake.pr_files(REPO, github_fake.pulls(REPO)[0]["number"])
    assert yaml.safe_load(files["services/payments/payments-api/k8s/probe.yaml"])["spec"]["priorityClassName"] == "low"


def test_the_operators_own_template_may_set_host_access_and_schemas_follow_the_version(bot_factory, github_fake,
                                                                                     tmp_path):
    bot = custom_bot(bot_factory, github_fake, tmp_path, OPERATOR_HOST_NETWORK)
    files = render(spec_of(api_form()), bot.ctx.settings)
    assert yaml.safe_load(files["services/payments/payments-api/k8s/probe.yaml"])["spec"]["hostNetwork"] is True

    # An object the configured Kubernetes no longer serves is refused, naming file and field.
    old_hpa = ('apiVersion: "autoscaling/v2beta2"\nkind: "HorizontalPodAutoscaler"\n'
               'metadata: {name: {{ svc|q }}, namespace: {{ namespace|q }}}\n'
               'spec: {scaleTargetRef: {kind: "Deployment", name: {{ svc|q }}}, maxReplicas: 4}\n')
    (tmp_path / "templates" / "manifests" / "canary" / "hpa.yaml.j2").write_text(old_hpa)
    _environment.cache_clear()
    with pytest.raises(ManifestRejected) as refused:
        render(spec_of(api_form()), bot.ctx.settings)
    assert "services/payments/payments-api/k8s/hpa.yaml: HorizontalPodAutoscaler payments-api" in str(refused.value)
    assert "autoscaling/v2beta2" in str(refused.value) and "1.32" in str(refused.value)
