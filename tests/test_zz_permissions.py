"""Least privilege, derived from what the code actually does.

Every Kubernetes request deckhand's gateway made during this test session (recorded by the
Kubernetes fake, User-Agent deckhand/…) must be allowed by deploy/kubernetes RBAC, and with the
whole suite run every RBAC rule must have been needed. Likewise every Slack Web API method the bot
called maps to the bot scopes in the Slack app manifests, and no declared scope goes unused.

This file is named test_zz_* so it runs after the feature tests that produce the calls.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.fakes.kube import SESSION_CALLS
from tests.fakes.slack import SESSION_METHODS

ROOT = Path(__file__).resolve().parent.parent
RBAC_FILES = [ROOT / "deploy/kubernetes/access/clusterrole.yaml", ROOT / "deploy/kubernetes/leader-election.yaml",
              ROOT / "deploy/kubernetes/components/waves/clusterrole.yaml"]
FEATURE_TESTS = {"test_service.py", "test_service_approval.py", "test_canary_istio.py", "test_canary_argo.py",
                 "test_idle_detection.py", "test_nodes_scan.py", "test_leader.py", "test_pipeline_create.py",
                 "test_waves.py"}

# Slack Web API method -> the bot scope it needs (https://api.slack.com/methods); None = no scope.
METHOD_SCOPES = {
    "auth.test": None, "chat.postMessage": "chat:write", "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write", "chat.delete": "chat:write", "chat.getPermalink": None,
    "views.open": None, "views.update": None, "views.push": None, "views.publish": None,
    "users.info": "users:read", "usergroups.users.list": "usergroups:read",
    "conversations.info": "channels:read", "conversations.replies": "channels:history",
    "conversations.open": "im:write", "reactions.add": "reactions:write",
}


def full_suite(request) -> bool:
    collected = {Path(str(item.fspath)).name for item in request.session.items}
    return FEATURE_TESTS <= collected


def rbac_rules() -> set[tuple[str, str, str]]:
    allowed = set()
    for path in RBAC_FILES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in ("ClusterRole", "Role"):
                for rule in doc.get("rules") or []:
                    for group in rule.get("apiGroups") or []:
                        for resource in rule.get("resources") or []:
                            for verb in rule.get("verbs") or []:
                                allowed.add((group, resource, verb))
    return allowed


def classify(method: str, path: str, watch: str) -> tuple[str, str, str] | None:
    """HTTP request -> (apiGroup, resource[/subresource], verb) as RBAC sees it; None for discovery."""
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[0] == "apis" and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None  # /version, /api, /apis: discovery, allowed to every authenticated user
    if not rest:
        return None
    if rest[0] == "namespaces" and len(rest) >= 3:
        rest = rest[2:]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    named = len(rest) > 1
    verb = {"GET": "get" if named else ("watch" if watch else "list"), "POST": "create", "PUT": "update",
            "PATCH": "patch", "DELETE": "delete" if named else "deletecollection"}[method]
    return group, resource, verb


def test_every_kubernetes_call_deckhand_made_is_allowed_by_its_rbac():
    allowed = rbac_rules()
    used = {c for c in (classify(*call) for call in SESSION_CALLS) if c}
    missing = sorted(used - allowed)
    assert not missing, f"deckhand called these but deploy/kubernetes RBAC does not allow them: {missing}"


def test_no_rbac_rule_goes_unused(request):
    if not full_suite(request):
        pytest.skip("derives unused rules only when the whole suite ran (make test)")
    used = {c for c in (classify(*call) for call in SESSION_CALLS) if c}
    unused = sorted(rbac_rules() - used)
    assert not unused, f"RBAC grants these but no test saw deckhand use them: {unused}"


def manifest_scopes(name: str) -> set[str]:
    manifest = yaml.safe_load((ROOT / "deploy/slack" / name).read_text())
    return set(manifest["oauth_config"]["scopes"]["bot"])


def test_slack_scopes_cover_every_method_the_bot_called(request):
    unknown = sorted(m for m in SESSION_METHODS if m not in METHOD_SCOPES)
    assert not unknown, f"add these Slack methods to METHOD_SCOPES with their scope: {unknown}"
    needed = {METHOD_SCOPES[m] for m in SESSION_METHODS} - {None}
    for name in ("manifest.yaml", "manifest-http.yaml"):
        declared = manifest_scopes(name)
        assert needed <= declared, f"{name} lacks scopes {sorted(needed - declared)}"
        if full_suite(request):
            assert declared == needed | {"commands"}, f"{name} declares unused scopes {sorted(declared - needed - {'commands'})}"
