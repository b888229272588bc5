"""/pipeline edit and /pipeline list end to end."""
from __future__ import annotations

import json

from tests.harness import DEVOPS, OUTSIDER, PAY_DEV
from tests.pipelines.test_pipeline_kit import (  # noqa: F401 - pbot is a fixture
    REPO,
    ack_body,
    api_form,
    batch_form,
    open_modal,
    pbot,
    request_row,
    seed_pipeline,
    submit,
    validate_objects,
    wait_message,
)

BASE = "services/payments/payments-api"


def edit_form(**overrides) -> dict:
    """What Slack sends from the edit modal: it has no service or team inputs."""
    form = api_form(**overrides)
    del form["service"], form["team"]
    return form


def initial(view: dict, block_id: str):
    element = next(b for b in view["blocks"] if b.get("block_id") == block_id)["element"]
    if "initial_options" in element:
        return [o["value"] for o in element["initial_options"]]
    if "initial_option" in element:
        return element["initial_option"]["value"]
    return element.get("initial_value")


def test_edit_prefills_the_modal_and_proposes_only_the_changed_files(pbot):
    seed_pipeline(pbot, api_form())
    view = open_modal(pbot, "edit payments-api")
    assert view["callback_id"] == "pipeline_submit" and view["title"]["text"] == "Edit pipeline"
    assert {b.get("block_id") for b in view["blocks"]}.isdisjoint({"service", "team"})
    assert initial(view, "kind") == "api" and initial(view, "replicas") == "3"
    assert initial(view, "clusters") == ["prod-a", "prod-b"] and initial(view, "strategy") == "canary"
    assert initial(view, "env") == "LOG_LEVEL=info\nGREETING=yes: no # not a comment"

    assert ack_body(submit(pbot, edit_form(replicas="5"))) == {}
    wait_message(pbot, "C0PAY", "payments-api", "is open for review")
    pull = pbot.github.pulls(REPO)[0]
    assert pull["title"] == "pipeline: edit payments-api (api, canary)"
    files = pbot.github.pr_files(REPO, pull["number"])
    assert sorted(files) == [f"{BASE}/deckhand.yaml", f"{BASE}/k8s/deployment.yaml"]
    merged_view = {**{p: None for p in ()}, **pbot.github.files(REPO, "deckhand/pipeline/payments-api")}
    objects = validate_objects({p: t for p, t in merged_view.items() if p.startswith(BASE)})
    assert objects["Deployment/payments-api"]["spec"]["replicas"] == 5
    assert pbot.ctx.store.audit_log("payments-api")[0]["action"] == "pipeline.edit"


def test_a_no_op_edit_opens_nothing_and_says_so(pbot):
    seed_pipeline(pbot, api_form())
    open_modal(pbot, "edit payments-api")
    writes = len(pbot.github.writes())
    body = ack_body(submit(pbot, edit_form()))
    assert body["response_action"] == "update"
    assert "Nothing changed" in json.dumps(body["view"]["blocks"])
    assert len(pbot.github.writes()) == writes and pbot.github.pulls(REPO) == []
    assert not pbot.slack.calls_to("chat.postMessage")
    # Audited right after the ack, on the submission's own thread.
    [entry] = pbot.slack.wait_for(lambda: pbot.ctx.store.audit_log("payments-api"))
    assert entry["action"] == "pipeline.edit" and entry["result"] == "no change"


def test_changing_the_strategy_removes_the_files_it_no_longer_needs(pbot):
    seed_pipeline(pbot, api_form())
    open_modal(pbot, "edit payments-api")
    submit(pbot, edit_form(strategy="blue-green"))
    wait_message(pbot, "C0PAY", "payments-api", "is open for review")
    files = pbot.github.pr_files(REPO, 1)
    assert files[f"{BASE}/k8s/deployment.yaml"] is None and files[f"{BASE}/k8s/deployment-canary.yaml"] is None
    assert files[f"{BASE}/k8s/deployment-blue.yaml"] and files[f"{BASE}/k8s/deployment-green.yaml"]
    assert f"{BASE}/k8s/service.yaml" not in files  # unchanged by the switch
    after = {p: t for p, t in pbot.github.files(REPO, "deckhand/pipeline/payments-api").items() if "/k8s/" in p}
    assert set(validate_objects(after)) == {"Deployment/payments-api-blue", "Deployment/payments-api-green",
                                            "Service/payments-api", "DestinationRule/payments-api",
                                            "VirtualService/payments-api"}


def test_editing_an_unmerged_pipeline_updates_the_same_pull_request_and_message(pbot):
    open_modal(pbot)
    submit(pbot, api_form())
    first = wait_message(pbot, "C0PAY", "payments-api", "is open for review")
    view = open_modal(pbot, "edit payments-api", user=DEVOPS)
    assert initial(view, "replicas") == "3"  # read from the PR's branch: main does not have it yet
    submit(pbot, edit_form(replicas="4", cpu_limit="2"), user=DEVOPS)
    message = pbot.slack.wait_for(lambda: (lambda m: "is open for review" in m["text"] and m["replies"]
                                           and "last change by" in json.dumps(m["blocks"]) and m)(
        pbot.slack.message("C0PAY", first["ts"])))
    assert request_row(pbot, "pipeline:payments-api")["editor"] == DEVOPS
    assert len(pbot.github.pulls(REPO)) == 1
    pull = pbot.github.pulls(REPO)[0]
    assert pull["title"].startswith("pipeline: create payments-api") and "Dana Ops" in pull["body"]
    files = pbot.github.pr_files(REPO, 1)
    assert len(files) == 7 and "replicas: 4" in files[f"{BASE}/deckhand.yaml"]
    assert "last change by <@U0DEVOPS1>" in json.dumps(message["blocks"])
    assert "submitted a change" in message["replies"][0]["text"]
    assert len([m for m in pbot.slack.messages("C0PAY").values()]) == 1


def test_edit_of_an_unknown_pipeline_or_by_an_outsider_says_why(pbot):
    seed_pipeline(pbot, api_form())
    missing = open_modal(pbot, "edit no-such-service")
    assert missing["callback_id"] == "pipeline_notice"
    assert "no pipeline named `no-such-service`" in json.dumps(missing["blocks"])
    denied = open_modal(pbot, "edit payments-api", user=OUTSIDER)
    assert "can't edit `payments-api`" in json.dumps(denied["blocks"])
    assert pbot.ctx.store.audit_log("payments-api")[0]["result"] == "denied"


def test_list_shows_pipelines_with_kind_strategy_clusters_and_open_prs(pbot):
    seed_pipeline(pbot, api_form())
    seed_pipeline(pbot, api_form(service="search-api", team="search", strategy="blue-green", clusters=["prod-b"]))
    seed_pipeline(pbot, batch_form(service="ledger-close", tag_policy="pinned 1.0"))
    open_modal(pbot)
    submit(pbot, batch_form())
    wait_message(pbot, "C0PAY", "nightly-report", "is open for review")

    pbot.sender.command("/pipeline", "list", user_id=PAY_DEV)
    reply = pbot.slack.wait_for(lambda: pbot.slack.responses)[-1]
    text = json.dumps(reply["blocks"], ensure_ascii=False)
    assert reply["response_type"] == "ephemeral"
    assert "*payments-api* — api, canary · payments · prod-a, prod-b" in text
    assert "*search-api* — api, blue-green · search · prod-b" in text
    assert "*ledger-close* — batch · payments" in text
    assert "*nightly-report* — batch · payments · prod-a, prod-b · <" in text and "PR #1> pending merge" in text

    pbot.sender.command("/pipeline", "list search", user_id=PAY_DEV)
    only = pbot.slack.wait_for(lambda: len(pbot.slack.responses) >= 2 and pbot.slack.responses[-1])
    assert "search-api" in json.dumps(only["blocks"]) and "payments-api" not in json.dumps(only["blocks"])
    pbot.sender.command("/pipeline", "list nope", user_id=PAY_DEV)
    unknown = pbot.slack.wait_for(lambda: len(pbot.slack.responses) >= 3 and pbot.slack.responses[-1])
    assert "There is no team `nope`" in unknown["text"] and "`payments`" in unknown["text"]
