"""Golden files for /pipeline's Block Kit (tests/golden/pipeline_*.json): read them to see the UI.
Each is also checked against the Slack fake's Block Kit validation (limits, required fields)."""
from __future__ import annotations

import json

import pytest

from blocks.pipeline import list_message, loading_modal, notice_modal, pipeline_modal, request_message
from bot.pipelines.requests import request_card
from bot.pipelines.form import DEFAULT_FORM, form_from_spec
from tests.fakes.slack import validate_message_blocks, validate_view
from tests.golden import assert_golden
from tests.pipelines.test_pipeline_kit import api_form, batch_form, spec_of

PR = "https://github.example.com/org/deploy-manifests/pull/7"


def row(**overrides) -> dict:
    spec = spec_of(api_form())
    base = {"id": 3, "action": "create", "target": "payments-api", "team": "payments", "state": "open",
            "requester": "U0PAYDEV", "editor": "U0PAYDEV", "pr_number": 7, "pr_url": PR, "error": None,
            "spec": json.dumps(spec.to_dict()), "files": json.dumps(["a", "b", "c"]),
            "detail": json.dumps({"image": "registry.example.com/payments/api:latest"})}
    base.update(overrides)
    return base


def check_view(name: str, view: dict) -> None:
    assert validate_view(view, require_modal=True) == []
    assert_golden(name, view)


def check_message(name: str, payload: dict) -> None:
    assert validate_message_blocks(payload["blocks"]) == []
    assert payload["text"] and "<" not in payload["text"]  # the notification text is plain
    assert_golden(name, payload)


def test_create_modal():
    view = pipeline_modal(mode="create", teams=["payments", "search"], clusters=["prod-a", "prod-b"],
                          values=DEFAULT_FORM, metadata='{"mode": "create", "channel": "C0PAY"}', max_replicas=20)
    assert len(view["title"]["text"]) <= 24
    check_view("pipeline_create_modal", view)


def test_edit_modal_is_prefilled():
    spec = spec_of(batch_form())
    view = pipeline_modal(mode="edit", teams=["payments"], clusters=["prod-a", "prod-b"], values=form_from_spec(spec),
                          metadata="{}", max_replicas=20, service=spec.service, team=spec.team)
    check_view("pipeline_edit_modal", view)


def test_loading_and_notice_modals():
    check_view("pipeline_loading_modal", loading_modal("Create pipeline"))
    check_view("pipeline_notice_modal", notice_modal("Edit pipeline", "There is no pipeline named `x`."))


@pytest.mark.parametrize("name, overrides", [
    ("pipeline_request_proposing", {"state": "proposing", "pr_number": None, "pr_url": None, "files": "[]"}),
    ("pipeline_request_open", {}),
    ("pipeline_request_merged", {"state": "merged", "editor": "U0DEVOPS1"}),
    ("pipeline_request_closed", {"state": "closed"}),
    ("pipeline_request_failed", {"state": "failed", "pr_number": None, "pr_url": None, "files": "[]",
                                 "error": "GitHub: create the commit failed: deckhand's GITHUB_TOKEN was rejected "
                                          "(expired or revoked); ask DevOps to rotate it (401: Bad credentials). "
                                          "Nothing was changed. Once DevOps has fixed it, press *Try again*"}),
    ("pipeline_request_rejected", {"state": "rejected", "pr_number": None, "pr_url": None,
                                   "error": "`payments-api` already exists as a Service in `prod-a/legacy`, so no "
                                            "pull request was opened."}),
    ("pipeline_request_noop", {"action": "edit", "state": "noop", "pr_number": None, "pr_url": None,
                               "detail": json.dumps({"note": "Nothing differs from what `main` already has."})}),
])
def test_request_message(name, overrides):
    check_message(name, request_message(request_card(row(**overrides))))


def test_bump_message_lists_the_affected_batches():
    bump = row(action="bump", target="registry.example.com/batch/python", team=None,
               spec=json.dumps({"image": "registry.example.com/batch/python", "version": "3.12.4"}),
               detail=json.dumps({"affected": ["nightly-report", "weekly-export"], "previous": "3.12.1",
                                  "version": "3.12.4"}))
    check_message("pipeline_bump_open", request_message(request_card(bump)))


def test_list_message():
    entries = [
        {"service": "payments-api", "team": "payments", "kind": "api", "strategy": "canary",
         "clusters": ["prod-a", "prod-b"], "pr_number": None, "pr_url": None, "pending": False},
        {"service": "nightly-report", "team": "payments", "kind": "batch", "strategy": None,
         "clusters": ["prod-a"], "pr_number": 4, "pr_url": PR, "pending": True},
        {"service": "search-api", "team": "search", "kind": "api", "strategy": "blue-green",
         "clusters": ["prod-b"], "pr_number": 5, "pr_url": PR, "pending": False},
    ]
    check_message("pipeline_list", list_message(entries, None, ["services/x/y/deckhand.yaml: not valid YAML"]))
    check_message("pipeline_list_empty", list_message([], "search"))


def test_a_long_list_stays_within_slack_limits():
    entries = [{"service": f"service-{i:04d}-with-a-long-name", "team": "payments", "kind": "api",
                "strategy": "canary", "clusters": ["prod-a", "prod-b", "prod-c"], "pr_number": i,
                "pr_url": f"{PR}{i}", "pending": False} for i in range(2000)]
    payload = list_message(entries, None)
    assert validate_message_blocks(payload["blocks"]) == []
    assert len(payload["blocks"]) == 50 and "narrow it with `/pipeline list &lt;team&gt;`" in json.dumps(payload["blocks"])
