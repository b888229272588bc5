"""Least privilege, derived from what the code actually does.

Every Kubernetes request deckhand's gateway made during this test session (recorded by the
Kubernetes fake, User-Agent deckhand/…) must be allowed by deploy/kubernetes RBAC, and with the
whole suite run every RBAC rule must have been needed. Likewise every Slack Web API method the bot
called maps to the bot scopes in the Slack app manifests, and no declared scope goes unused.

This file is named test_zz_* so it runs after the feature tests that produce the calls.
"""
from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Grant:
    """One (apiGroup, resource, verb) a rule allows, where it allows it: a Role's rules hold only in
    its own namespace, and a rule with resourceNames only for requests that name one of them (so never
    for create, list or watch, which carry no name: the RBAC docs' "resourceNames" caveat)."""

    namespace: str | None  # None: a ClusterRole's rule, every namespace and cluster-scoped resources
    group: str
    resource: str
    verb: str
    names: frozenset[str] | None  # None: any name
    source: str

    def allows(self, call: "KubeCall") -> bool:
        if (self.group, self.resource, self.verb) != (call.group, call.resource, call.verb):
            return False
        if self.namespace is not None and call.namespace != self.namespace:
            return False
        return self.names is None or (call.name is not None and call.name in self.names)


@dataclass(frozen=True)
class KubeCall:
    """One HTTP request as RBAC sees it."""

    group: str
    resource: str  # resource[/subresource]
    verb: str
    namespace: str | None
    name: str | None


def rbac_grants() -> list[Grant]:
    grants = []
    for path in RBAC_FILES:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") not in ("ClusterRole", "Role"):
                continue
            namespace = doc["metadata"]["namespace"] if doc["kind"] == "Role" else None
            for n, rule in enumerate(doc.get("rules") or []):
                names = frozenset(rule["resourceNames"]) if rule.get("resourceNames") else None
                source = f"{path.name}: {doc['kind']} {doc['metadata']['name']} rule {n}"
                for group in rule.get("apiGroups") or []:
                    for resource in rule.get("resources") or []:
                        for verb in rule.get("verbs") or []:
                            grants.append(Grant(namespace, group, resource, verb, names, source))
    return grants


def classify(method: str, path: str, watch: str) -> KubeCall | None:
    """HTTP request -> what RBAC checks; None for discovery."""
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[0] == "apis" and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None  # /version, /api, /apis: discovery, allowed to every authenticated user
    if not rest:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    elif rest[0] == "namespaces" and len(rest) == 2:
        namespace = rest[1]  # a Namespace object is in its own namespace for RBAC
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    name = rest[1] if len(rest) > 1 else None
    verb = {"GET": "get" if name else ("watch" if watch else "list"), "POST": "create", "PUT": "update",
            "PATCH": "patch", "DELETE": "delete" if name else "deletecollection"}[method]
    return KubeCall(group, resource, verb, namespace, name)


def deckhand_calls() -> set[KubeCall]:
    calls = {c for c in (classify(*call) for call in SESSION_CALLS) if c}
    if not calls:
        pytest.skip("no Kubernetes calls by deckhand were recorded in this session (run the feature tests "
                    "with this file, or the whole suite): nothing to check")
    return calls


def test_every_kubernetes_call_deckhand_made_is_allowed_by_its_rbac():
    grants = rbac_grants()
    missing = sorted({(c.namespace, c.group, c.resource, c.verb, c.name) for c in deckhand_calls()
                      if not any(g.allows(c) for g in grants)}, key=str)
    assert not missing, ("deckhand called these (namespace, group, resource, verb, name) but deploy/kubernetes "
                         f"RBAC does not allow them: {missing}")


def test_no_rbac_rule_goes_unused(request):
    if not full_suite(request):
        pytest.skip("derives unused rules only when the whole suite ran (make test)")
    calls = deckhand_calls()
    unused = sorted({(g.source, g.group, g.resource, g.verb) for g in rbac_grants()
                     if not any(g.allows(c) for c in calls)})
    assert not unused, f"RBAC grants these but no test saw deckhand use them: {unused}"


def test_the_rbac_model_scopes_roles_and_resource_names():
    """The checker itself: a Role's rule does not reach other namespaces, resourceNames bind names."""
    role = [g for g in rbac_grants() if g.source.startswith("leader-election.yaml")]
    lease = dict(group="coordination.k8s.io", resource="leases")
    assert any(g.allows(KubeCall(**lease, verb="get", namespace="deckhand", name="deckhand")) for g in role)
    assert not any(g.allows(KubeCall(**lease, verb="get", namespace="other", name="deckhand")) for g in role)
    assert not any(g.allows(KubeCall(**lease, verb="update", namespace="deckhand", name="someone-else"))
                   for g in role)
    assert any(g.allows(KubeCall(**lease, verb="create", namespace="deckhand", name=None)) for g in role)
    assert classify("GET", "/apis/coordination.k8s.io/v1/namespaces/deckhand/leases/deckhand", "") == \
        KubeCall("coordination.k8s.io", "leases", "get", "deckhand", "deckhand")
    assert classify("PATCH", "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/web/status", "") == \
        KubeCall("argoproj.io", "rollouts/status", "patch", "shop", "web")


def manifest_scopes(name: str) -> set[str]:
    manifest = yaml.safe_load((ROOT / "deploy/slack" / name).read_text())
    return set(manifest["oauth_config"]["scopes"]["bot"])


def test_slack_scopes_cover_every_method_the_bot_called(request):
    if not SESSION_METHODS:
        pytest.skip("no Slack Web API calls by deckhand were recorded in this session (run the feature tests "
                    "with this file, or the whole suite): nothing to check")
    unknown = sorted(m for m in SESSION_METHODS if m not in METHOD_SCOPES)
    assert not unknown, f"add these Slack methods to METHOD_SCOPES with their scope: {unknown}"
    needed = {METHOD_SCOPES[m] for m in SESSION_METHODS} - {None}
    for name in ("manifest.yaml", "manifest-http.yaml"):
        declared = manifest_scopes(name)
        assert needed <= declared, f"{name} lacks scopes {sorted(needed - declared)}"
        if full_suite(request):
            assert declared == needed | {"commands"}, f"{name} declares unused scopes {sorted(declared - needed - {'commands'})}"
