"""Fidelity of the Kubernetes fake: each rule of the real API server, exercised with the official client
(and `kubectl` where it adds something), expecting the real server's status code and reason."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
from kubernetes import client

from tests.test_fake_kube import api, deployment, raw, virtual_service  # noqa: F401 - api is a fixture
from tests.tools import require_tool


def error_of(call, *args, **kwargs) -> tuple[int, dict]:
    with pytest.raises(client.ApiException) as err:
        call(*args, **kwargs)
    return err.value.status, json.loads(err.value.body)


def pod(name: str, namespace: str = "default", owner: dict | None = None, finalizers: list | None = None) -> dict:
    meta: dict = {"name": name, "namespace": namespace, "labels": {"app": "web"}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name":
                                    owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
                                    "blockOwnerDeletion": True}]
    if finalizers:
        meta["finalizers"] = finalizers
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "app", "image": "nginx:1.26"}]}}


# -- validation of writes ------------------------------------------------------------------------
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"


def post(fake, path: str, obj: dict) -> tuple[int, dict]:
    """On the wire: the official client (v37) refuses these bodies itself, before sending (pydantic)."""
    status, _, body = raw(fake, "POST", path, json.dumps(obj).encode())
    return status, body


def test_the_official_client_refuses_wrong_types_before_the_server_does(api):
    bad = deployment("web")
    bad["spec"]["replicas"] = "three"
    with pytest.raises(ValueError):
        client.AppsV1Api(api).create_namespaced_deployment("default", bad)


def test_a_value_of_the_wrong_type_is_a_400_like_the_go_decoder_says(kube_fake, api):
    bad = deployment("web")
    bad["spec"]["replicas"] = "three"
    status, body = post(kube_fake, DEPLOYMENTS, bad)
    assert (status, body["reason"]) == (400, "BadRequest")
    assert "cannot unmarshal string into Go struct field" in body["message"] and "spec.replicas" in body["message"]
    assert kube_fake.list("deployments") == []


def test_missing_and_out_of_range_fields_are_a_422_with_every_cause(kube_fake, api):
    apps = client.AppsV1Api(api)
    no_selector = deployment("web")
    del no_selector["spec"]["selector"]
    status, body = post(kube_fake, DEPLOYMENTS, no_selector)
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["message"].startswith('Deployment.apps "web" is invalid: spec.selector: Required value')
    assert body["details"]["causes"] == [{"reason": "FieldValueRequired", "message": "Required value",
                                          "field": "spec.selector"}]

    both = deployment("web", replicas=-1)
    both["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    status, body = post(kube_fake, DEPLOYMENTS, both)
    assert status == 422
    assert [c["field"] for c in body["details"]["causes"]] == ["spec.replicas", "spec.template.metadata.labels"]
    assert "must be greater than or equal to 0" in body["message"] and "does not match template" in body["message"]

    apps.create_namespaced_deployment("default", deployment("web"))
    status, body = error_of(apps.patch_namespaced_deployment_scale, "web", "default", {"spec": {"replicas": -1}})
    assert (status, body["reason"]) == (422, "Invalid") and body["message"].startswith('Scale.autoscaling "web" is invalid')
    status, body = error_of(apps.patch_namespaced_deployment, "web", "default", {"spec": {"replicas": -1}})
    assert status == 422 and body["details"]["causes"][0]["field"] == "spec.replicas"
    assert kube_fake.get("apps/v1", "deployments", "default", "web")["spec"]["replicas"] == 2


def test_unknown_fields_are_dropped_with_a_warning_or_refused_when_strict(kube_fake, api):
    extra = deployment("web")
    extra["spec"]["replicaz"] = 3
    status, headers, body = raw(kube_fake, "POST", "/apis/apps/v1/namespaces/default/deployments?fieldValidation=Strict",
                                json.dumps(extra).encode())
    assert (status, body["reason"]) == (400, "BadRequest")
    assert body["message"] == 'strict decoding error: unknown field "spec.replicaz"'
    status, headers, body = raw(kube_fake, "POST", "/apis/apps/v1/namespaces/default/deployments",
                                json.dumps(extra).encode())
    assert status == 201 and "replicaz" not in body["spec"]
    assert headers["Warning"] == r'299 - "unknown field \"spec.replicaz\""'
    assert "replicaz" not in kube_fake.get("apps/v1", "deployments", "default", "web")["spec"]
    # The official client passes fieldValidation through as the query parameter.
    status, body = error_of(client.AppsV1Api(api).patch_namespaced_deployment, "web", "default",
                            {"spec": {"replicaz": 1}}, field_validation="Strict")
    assert (status, body["message"]) == (400, 'strict decoding error: unknown field "spec.replicaz"')


def test_custom_resources_are_checked_against_their_structural_schema(kube_fake, api):
    crd = client.CustomObjectsApi(api)
    bad = virtual_service("web")
    bad["spec"]["http"][0]["route"][0]["weight"] = "fifty"
    status, body = error_of(crd.create_namespaced_custom_object, "networking.istio.io", "v1", "default",
                            "virtualservices", bad)
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "spec.http[0].route[0].weight"
    assert "spec.http[0].route[0].weight in body must be of type integer" in body["message"]
    crd.create_namespaced_custom_object("networking.istio.io", "v1", "default", "virtualservices", virtual_service("web"))
    status, _ = error_of(crd.patch_namespaced_custom_object, "networking.istio.io", "v1", "default", "virtualservices",
                         "web", {"spec": {"http": [{"route": [{"destination": {"host": "web"}, "weight": 50.5}]}]}})
    assert status == 422
    kube_fake.add({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
                   "spec": {"replicas": 2}, "status": {}})
    status, body = error_of(crd.patch_namespaced_custom_object_status, "argoproj.io", "v1alpha1", "default",
                            "rollouts", "web", {"status": {"abort": "yes"}})
    assert status == 422 and body["details"]["causes"][0]["field"] == "status.abort"


def test_kubectl_apply_meets_strict_field_validation(kube_fake, tmp_path):
    kubectl = require_tool("kubectl")
    kubeconfig = kube_fake.kubeconfig(tmp_path / "kubeconfig")
    manifest = tmp_path / "web.yaml"
    doc = deployment("web")
    doc["spec"]["replicaz"] = 3
    manifest.write_text(json.dumps(doc))
    proc = subprocess.run([kubectl, "--kubeconfig", kubeconfig, "--cache-dir", str(tmp_path / "cache"), "apply", "-f",
                           str(manifest)], capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)})
    assert proc.returncode != 0 and 'unknown field "spec.replicaz"' in proc.stderr
    assert kube_fake.list("deployments") == []


# -- namespaces -------------------------------------------------------------------------------------
def test_a_terminating_namespace_refuses_creates_and_goes_once_empty(kube_fake, api):
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "shop"}})
    core.create_namespaced_pod("shop", pod("held", "shop", finalizers=["example.com/drain"]))
    core.create_namespaced_pod("shop", pod("plain", "shop"))
    answer = core.delete_namespace("shop")
    assert answer["status"]["phase"] == "Terminating" and answer["metadata"]["deletionTimestamp"]
    assert kube_fake.get("v1", "pods", "shop", "plain") is None  # the namespace controller deleted it
    status, body = error_of(core.create_namespaced_pod, "shop", pod("late", "shop"))
    assert (status, body["reason"]) == (403, "Forbidden")
    assert "because it is being terminated" in body["message"]
    assert body["details"]["causes"][0]["reason"] == "NamespaceTerminating"
    assert core.read_namespace("shop").status.phase == "Terminating"  # a finalizer holds the last pod
    kube_fake.remove_finalizers("v1", "pods", "shop", "held")
    assert kube_fake.get("v1", "namespaces", None, "shop") is None
    status, _ = error_of(core.create_namespaced_pod, "shop", pod("later", "shop"))
    assert status == 404


# -- deletion -------------------------------------------------------------------------------------
def test_foreground_keeps_the_owner_terminating_until_its_dependents_are_gone(kube_fake, api):
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    owner = kube_fake.add(deployment("web"))
    core.create_namespaced_pod("default", pod("web-1", owner=owner, finalizers=["example.com/flush"]))
    core.create_namespaced_pod("default", pod("web-2", owner=owner))
    answer = apps.delete_namespaced_deployment("web", "default", propagation_policy="Foreground")
    assert answer["metadata"]["deletionTimestamp"] and "foregroundDeletion" in answer["metadata"]["finalizers"]
    assert kube_fake.get("v1", "pods", "default", "web-2") is None
    assert kube_fake.terminating() == [("Deployment", "default", "web"), ("Pod", "default", "web-1")]
    got = apps.read_namespaced_deployment("web", "default")  # still readable, as "Terminating"
    assert got.metadata.deletion_timestamp is not None
    # A Terminating object takes no new finalizers.
    status, body = error_of(apps.patch_namespaced_deployment, "web", "default",
                            {"metadata": {"finalizers": ["foregroundDeletion", "example.com/new"]}})
    assert status == 422 and "no new finalizers can be added" in body["message"]
    # The pod's controller lets go: the pod goes, then the collector lets the owner go.
    core.patch_namespaced_pod("web-1", "default", {"metadata": {"finalizers": None}})
    assert kube_fake.terminating() == []
    assert kube_fake.get("apps/v1", "deployments", "default", "web") is None


def test_background_removes_the_owner_first_then_its_dependents_and_orphan_keeps_them(kube_fake, api):
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    owner = kube_fake.add(deployment("web"))
    core.create_namespaced_pod("default", pod("web-1", owner=owner))
    status = apps.delete_namespaced_deployment("web", "default", propagation_policy="Background")
    assert status["kind"] == "Status" and status["status"] == "Success"
    assert kube_fake.list("pods") == []
    events = [(e, o["metadata"]["name"]) for _, e, _, o in
              [(h[0], h[1], h[2], h[3].obj) for h in kube_fake._history] if e == "DELETED"]
    assert events == [("DELETED", "web"), ("DELETED", "web-1")]  # owner first, dependents after

    owner = kube_fake.add(deployment("api"))
    core.create_namespaced_pod("default", pod("api-1", owner=owner))
    apps.delete_namespaced_deployment("api", "default", propagation_policy="Orphan")
    orphan = core.read_namespaced_pod("api-1", "default")
    assert orphan.metadata.owner_references is None and kube_fake.get("apps/v1", "deployments", "default", "api") is None


def test_delete_options_are_checked(kube_fake, api):
    kube_fake.add(deployment("web"))
    status, body = error_of(client.AppsV1Api(api).delete_namespaced_deployment, "web", "default",
                            propagation_policy="Sideways")
    assert status == 422 and 'Unsupported value: "Sideways"' in body["message"]


# -- patches -----------------------------------------------------------------------------------------
def test_a_strategic_merge_patch_without_the_merge_key_is_a_422(kube_fake, api):
    kube_fake.add(deployment("web"))
    status, body = error_of(client.AppsV1Api(api).patch_namespaced_deployment, "web", "default",
                            {"spec": {"template": {"spec": {"containers": [{"image": "nginx:1.27"}]}}}})
    assert (status, body["reason"]) == (422, "Invalid")
    assert "does not contain declared merge key: name" in body["message"]
    assert kube_fake.get("apps/v1", "deployments", "default", "web")["spec"]["template"]["spec"]["containers"][0][
        "image"] == "nginx:1.26"


def test_server_side_apply_is_refused_rather_than_faked(kube_fake, tmp_path):
    kube_fake.add(deployment("web"))
    status, _, body = raw(kube_fake, "PATCH", "/apis/apps/v1/namespaces/default/deployments/web?fieldManager=me",
                          json.dumps(deployment("web", replicas=5)).encode(), "application/apply-patch+yaml")
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")
    kubectl = require_tool("kubectl")
    manifest = tmp_path / "web.yaml"
    manifest.write_text(json.dumps(deployment("web", replicas=5)))
    kubeconfig = kube_fake.kubeconfig(tmp_path / "kubeconfig")
    proc = subprocess.run([kubectl, "--kubeconfig", kubeconfig, "--cache-dir", str(tmp_path / "cache"), "apply",
                           "--server-side", "-f", str(manifest)], capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)})
    assert proc.returncode != 0
    assert kube_fake.get("apps/v1", "deployments", "default", "web")["spec"]["replicas"] == 2


# -- reads ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("selector, says", [
    ("app in ()", "values set can't be empty"),
    ("a/b/c=x", "a qualified name must consist of"),
    ("app=" + "x" * 64, "a valid label must be an empty string"),
    ("-app=x", "name part must consist of"),
])
def test_label_selectors_are_parsed_as_strictly_as_the_api_server(kube_fake, api, selector, says):
    status, body = error_of(client.CoreV1Api(api).list_namespaced_pod, "default", label_selector=selector)
    assert (status, body["reason"]) == (400, "BadRequest") and says in body["message"]


def test_unsupported_field_labels_are_a_400(kube_fake, api):
    core = client.CoreV1Api(api)
    status, body = error_of(core.list_namespaced_pod, "default", field_selector="spec.containers=x")
    assert (status, body["message"]) == (400, "field label not supported: spec.containers")
    status, body = error_of(client.AppsV1Api(api).list_namespaced_deployment, "default", field_selector="status.phase=x")
    assert status == 400
    assert core.list_namespaced_pod("default", field_selector="status.phase=Running,metadata.name!=x").items == []
    status, _ = error_of(client.CustomObjectsApi(api).list_namespaced_custom_object, "networking.istio.io", "v1",
                         "default", "virtualservices", field_selector="spec.hosts=x")
    assert status == 400


def test_list_items_carry_no_kind_or_api_version_but_custom_resources_do(kube_fake):
    kube_fake.add(deployment("web"))
    kube_fake.add(virtual_service("web"))
    _, _, body = raw(kube_fake, "GET", "/apis/apps/v1/namespaces/default/deployments")
    assert (body["kind"], body["apiVersion"]) == ("DeploymentList", "apps/v1")
    assert "kind" not in body["items"][0] and "apiVersion" not in body["items"][0]
    _, _, body = raw(kube_fake, "GET", "/apis/networking.istio.io/v1/namespaces/default/virtualservices")
    assert body["items"][0]["kind"] == "VirtualService"
    _, _, got = raw(kube_fake, "GET", "/apis/apps/v1/namespaces/default/deployments/web")
    assert got["kind"] == "Deployment"  # a single GET carries both


def test_a_continue_token_expires_with_its_revision(kube_fake, api):
    core = client.CoreV1Api(api)
    for n in range(3):
        kube_fake.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{n}"}})
    first = core.list_namespaced_config_map("default", limit=2)
    token = first.metadata._continue
    assert token and [c.metadata.name for c in first.items] == ["cm-0", "cm-1"]
    rest = core.list_namespaced_config_map("default", limit=2, _continue=token)
    assert [c.metadata.name for c in rest.items] == ["cm-2"] and rest.metadata.resource_version == first.metadata.resource_version
    kube_fake.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-3"}})
    kube_fake.compact()
    status, body = error_of(core.list_namespaced_config_map, "default", limit=2, _continue=token)
    assert (status, body["reason"]) == (410, "Expired") and "too old" in body["message"]
    status, _ = error_of(core.list_namespaced_config_map, "default", limit=2, _continue="not-a-token")
    assert status == 400
