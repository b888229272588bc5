"""The Kubernetes API server fake behaves like the real one for the official client and kubectl."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
import urllib3
from kubernetes import client, config, watch
from kubernetes.client import rest

from tests.fakes.kube import (KubeFake, json_patch, parse_label_selector, strategic_merge_patch,
                              write_kubeconfig)


def deployment(name: str, namespace: str = "default", labels: dict | None = None, image: str = "nginx:1.26",
               replicas: int = 2) -> dict:
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "app", "image": image},
                                                 {"name": "sidecar", "image": "envoy:1.30"}]}},
        },
    }


def virtual_service(name: str, namespace: str = "default", weight: int = 100, labels: dict | None = None) -> dict:
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name}},
        "spec": {"hosts": [name], "http": [{"route": [{"destination": {"host": name, "subset": "stable"},
                                                       "weight": weight}]}]},
    }


@pytest.fixture
def api(kube_fake, tmp_path):
    """An official-client ApiClient on the fake, with urllib3 retries off (as the bot configures it)."""
    path = kube_fake.kubeconfig(tmp_path / "kubeconfig")
    api_client = config.new_client_from_config(config_file=path, context="fake")
    api_client.configuration.retries = 0
    api_client.rest_client = rest.RESTClientObject(api_client.configuration)
    yield api_client
    api_client.close()


def raw(fake: KubeFake, method: str, path: str, body: bytes | None = None,
        content_type: str = "application/json") -> tuple[int, dict, dict]:
    req = urllib.request.Request(fake.url + path, data=body, method=method, headers={"Content-Type": content_type})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, whatever the env says
    try:
        with opener.open(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


# -- official client ---------------------------------------------------------------------------------
def test_deployment_create_read_list_patch_delete(kube_fake, api):
    apps = client.AppsV1Api(api)
    created = apps.create_namespaced_deployment("default", deployment("web", labels={"app": "web", "tier": "front"}))
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert created.metadata.generation == 1 and int(created.metadata.resource_version) > 0
    apps.create_namespaced_deployment("default", deployment("db", labels={"app": "db", "tier": "back"}))
    with pytest.raises(client.ApiException) as err:  # namespaces are enforced, as on a real cluster
        apps.create_namespaced_deployment("shop", deployment("cart", "shop"))
    assert err.value.status == 404 and json.loads(err.value.body)["message"] == 'namespaces "shop" not found'
    client.CoreV1Api(api).create_namespace({"metadata": {"name": "shop"}})
    apps.create_namespaced_deployment("shop", deployment("cart", "shop", labels={"app": "cart", "tier": "front"}))

    got = apps.read_namespaced_deployment("web", "default")
    assert got.spec.template.spec.containers[0].image == "nginx:1.26"

    def names(**kw):
        return [d.metadata.name for d in apps.list_deployment_for_all_namespaces(**kw).items]
    assert names() == ["db", "web", "cart"]  # sorted by namespace, then name, like etcd keys
    assert names(label_selector="tier=front") == ["web", "cart"]
    assert names(label_selector="tier==front,app!=cart") == ["web"]
    assert names(label_selector="app in (db, cart)") == ["db", "cart"]
    assert names(label_selector="app notin (db),tier") == ["web", "cart"]
    assert names(label_selector="!tier") == []
    assert names(field_selector="metadata.namespace=shop") == ["cart"]
    assert names(field_selector="metadata.name!=web") == ["db", "cart"]
    listed = apps.list_namespaced_deployment("default")
    assert [d.metadata.name for d in listed.items] == ["db", "web"]
    assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)

    # JSON merge patch: maps merge, lists replace.
    merged = apps.patch_namespaced_deployment("web", "default", {"metadata": {"labels": {"tier": None, "v": "2"}},
                                                                   "spec": {"replicas": 4}},
                                              _content_type="application/merge-patch+json")
    assert merged.metadata.labels == {"app": "web", "v": "2"}
    assert merged.spec.replicas == 4 and merged.metadata.generation == 2

    # Strategic merge patch (the client's default for a dict body): containers merge by name.
    patched = apps.patch_namespaced_deployment(
        "web", "default", {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}})
    containers = {c.name: c.image for c in patched.spec.template.spec.containers}
    assert containers == {"app": "nginx:1.27", "sidecar": "envoy:1.30"}
    assert patched.metadata.generation == 3
    assert kube_fake.get("apps/v1", "Deployment", "default", "web")["spec"]["template"]["spec"]["containers"][0][
        "image"] == "nginx:1.27"

    # A metadata-only change keeps the generation.
    relabelled = apps.patch_namespaced_deployment("web", "default", {"metadata": {"annotations": {"a": "b"}}})
    assert relabelled.metadata.generation == 3

    # Foreground: the server answers with the object, marked for deletion and held by the foregroundDeletion
    # finalizer; with no dependents the garbage collector lets it go at once.
    answer = apps.delete_namespaced_deployment("web", "default", propagation_policy="Foreground")
    assert answer["kind"] == "Deployment" and answer["metadata"]["deletionTimestamp"]
    assert answer["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert kube_fake.get("apps/v1", "deployments", "default", "web") is None
    status = apps.delete_namespaced_deployment("db", "default")  # Background, no finalizers: gone at once
    assert status["kind"] == "Status" and status["status"] == "Success" and status["details"]["name"] == "db"
    assert [d["propagationPolicy"] for d in kube_fake.deletions[-2:]] == ["Foreground", None]
    with pytest.raises(client.ApiException) as err:
        apps.read_namespaced_deployment("web", "default")
    assert err.value.status == 404

    base = "/apis/apps/v1/namespaces"
    assert [(r.method, r.path) for r in kube_fake.writes()] == [
        ("POST", f"{base}/default/deployments"),
        ("POST", f"{base}/default/deployments"),
        ("POST", f"{base}/shop/deployments"),
        ("POST", "/api/v1/namespaces"),
        ("POST", f"{base}/shop/deployments"),
        ("PATCH", f"{base}/default/deployments/web"),
        ("PATCH", f"{base}/default/deployments/web"),
        ("PATCH", f"{base}/default/deployments/web"),
        ("DELETE", f"{base}/default/deployments/web"),
        ("DELETE", f"{base}/default/deployments/db"),
    ]
    assert [r.content_type for r in kube_fake.writes() if r.method == "PATCH"] == [
        "application/merge-patch+json", "application/strategic-merge-patch+json",
        "application/strategic-merge-patch+json"]
    assert kube_fake.writes()[-2].query["propagationPolicy"] == "Foreground"


def test_virtual_service_through_custom_objects_api(kube_fake, api):
    co = client.CustomObjectsApi(api)
    args = ("networking.istio.io", "v1", "default", "virtualservices")
    created = co.create_namespaced_custom_object(*args, virtual_service("reviews", labels={"team": "a"}))
    assert created["metadata"]["generation"] == 1 and created["apiVersion"] == "networking.istio.io/v1"
    co.create_namespaced_custom_object(*args, virtual_service("ratings", labels={"team": "b"}))

    assert co.get_namespaced_custom_object(*args, "reviews")["spec"]["hosts"] == ["reviews"]
    listed = co.list_namespaced_custom_object(*args, label_selector="team in (a)")
    assert listed["kind"] == "VirtualServiceList" and listed["metadata"]["resourceVersion"]
    assert [i["metadata"]["name"] for i in listed["items"]] == ["reviews"]

    # The default content type for custom objects is a JSON merge patch: lists are replaced whole.
    routes = [{"destination": {"host": "reviews", "subset": "stable"}, "weight": 90},
              {"destination": {"host": "reviews", "subset": "canary"}, "weight": 10}]
    patched = co.patch_namespaced_custom_object(*args, "reviews", {"spec": {"http": [{"route": routes}]}})
    assert patched["spec"]["http"][0]["route"] == routes and patched["metadata"]["generation"] == 2
    assert kube_fake.writes()[-1].content_type == "application/merge-patch+json"

    # Like the real API server, custom resources refuse strategic merge patches.
    with pytest.raises(client.ApiException) as err:
        co.patch_namespaced_custom_object(*args, "reviews", {"spec": {"hosts": ["x"]}},
                                          _content_type="application/strategic-merge-patch+json")
    assert err.value.status == 415 and json.loads(err.value.body)["reason"] == "UnsupportedMediaType"

    # v1 and v1beta1 are two views of the same objects.
    beta = co.get_namespaced_custom_object("networking.istio.io", "v1beta1", "default", "virtualservices", "reviews")
    assert beta["apiVersion"] == "networking.istio.io/v1beta1" and beta["spec"]["http"][0]["route"] == routes

    deleted = co.delete_namespaced_custom_object(*args, "reviews")
    assert deleted["metadata"]["name"] == "reviews"  # custom resources answer DELETE with the object
    assert [v["metadata"]["name"] for v in kube_fake.list("virtualservices")] == ["ratings"]


def test_json_patch_and_cluster_scoped_nodes(kube_fake, api):
    core = client.CoreV1Api(api)
    kube_fake.add_many([{"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node-{i}", "labels": {"pool": p}}}
                        for i, p in enumerate(["a", "a", "b"])])
    assert [n.metadata.name for n in core.list_node(label_selector="pool=a").items] == ["node-0", "node-1"]
    node = core.patch_node("node-2", [{"op": "add", "path": "/spec", "value": {"unschedulable": True}},
                                      {"op": "replace", "path": "/metadata/labels/pool", "value": "c"}])
    assert node.spec.unschedulable is True and node.metadata.labels == {"pool": "c"}
    assert kube_fake.writes()[-1].content_type == "application/json-patch+json"
    status, _, body = raw(kube_fake, "PATCH", "/api/v1/nodes/node-2",
                          json.dumps([{"op": "remove", "path": "/metadata/labels/missing"}]).encode(),
                          "application/json-patch+json")
    assert status == 422 and body["reason"] == "Invalid"


def test_status_subresource_is_isolated(kube_fake, api):
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment("default", deployment("web"))
    assert kube_fake.get("apps/v1", "Deployment", "default", "web")["status"] == {}  # create drops status

    # A status write changes only .status and keeps the generation.
    after_status = apps.patch_namespaced_deployment_status(
        "web", "default", {"spec": {"replicas": 9}, "status": {"replicas": 2, "readyReplicas": 2}})
    assert after_status.status.ready_replicas == 2
    assert after_status.spec.replicas == 2 and after_status.metadata.generation == 1

    # A write to the main resource ignores .status.
    current = apps.read_namespaced_deployment("web", "default")
    current.status.ready_replicas = 0
    current.spec.replicas = 3
    replaced = apps.replace_namespaced_deployment("web", "default", current)
    assert replaced.status.ready_replicas == 2 and replaced.spec.replicas == 3
    assert replaced.metadata.generation == 2
    stored = kube_fake.get("apps/v1", "Deployment", "default", "web")
    assert stored["status"] == {"replicas": 2, "readyReplicas": 2} and stored["spec"]["replicas"] == 3


def test_stale_resource_version_replace_is_a_conflict(kube_fake, api):
    core = client.CoreV1Api(api)
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "settings"}, "data": {"a": "1"}})
    stale = cm.metadata.resource_version
    fresh = core.replace_namespaced_config_map("settings", "default",
                                               {"metadata": {"name": "settings", "resourceVersion": stale},
                                                "data": {"a": "2"}})
    assert int(fresh.metadata.resource_version) > int(stale)
    with pytest.raises(client.ApiException) as err:
        core.replace_namespaced_config_map("settings", "default", {"metadata": {"name": "settings",
                                                                                "resourceVersion": stale},
                                                                   "data": {"a": "3"}})
    assert err.value.status == 409
    body = json.loads(err.value.body)
    assert body["reason"] == "Conflict" and body["details"] == {"name": "settings", "group": "", "kind": "configmaps"}
    assert "the object has been modified" in body["message"]
    assert kube_fake.get("v1", "ConfigMap", "default", "settings")["data"] == {"a": "2"}

    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_config_map("default", {"metadata": {"name": "settings"}})
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "AlreadyExists"


def test_delete_preconditions_refuse_a_recreated_or_changed_object(kube_fake, api):
    """DeleteOptions.preconditions as the real API server answers them: 409 Conflict carrying the
    storage layer's "Precondition failed" text; the object stays. Matching preconditions delete."""
    apps = client.AppsV1Api(api)
    old = apps.create_namespaced_deployment("default", deployment("web"))
    apps.delete_namespaced_deployment("web", "default")
    new = apps.create_namespaced_deployment("default", deployment("web"))  # same name, new identity
    assert new.metadata.uid != old.metadata.uid
    with pytest.raises(client.ApiException) as err:
        apps.delete_namespaced_deployment("web", "default", body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=old.metadata.uid)))
    assert err.value.status == 409
    body = json.loads(err.value.body)
    assert body["kind"] == "Status" and body["reason"] == "Conflict"
    assert body["details"] == {"name": "web", "group": "apps", "kind": "deployments"}
    assert body["message"] == (
        'Operation cannot be fulfilled on deployments.apps "web": StorageError: invalid object, Code: 4, '
        f"Key: /registry/deployments/default/web, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: "
        f"UID in precondition: {old.metadata.uid}, UID in object meta: {new.metadata.uid}")

    stale = new.metadata.resource_version
    apps.patch_namespaced_deployment("web", "default", {"metadata": {"labels": {"touched": "yes"}}})
    current = apps.read_namespaced_deployment("web", "default").metadata.resource_version
    with pytest.raises(client.ApiException) as err:
        apps.delete_namespaced_deployment("web", "default", body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=new.metadata.uid, resource_version=stale)))
    assert err.value.status == 409
    assert json.loads(err.value.body)["message"].endswith(
        f"Precondition failed: ResourceVersion in precondition: {stale}, ResourceVersion in object meta: {current}")
    assert kube_fake.get("apps/v1", "Deployment", "default", "web")["metadata"]["uid"] == new.metadata.uid
    assert len(kube_fake.deletions) == 1  # only the first, unconditional delete landed

    apps.delete_namespaced_deployment("web", "default", body=client.V1DeleteOptions(
        preconditions=client.V1Preconditions(uid=new.metadata.uid, resource_version=current)))
    assert kube_fake.get("apps/v1", "Deployment", "default", "web") is None


def test_error_bodies_are_status_objects(kube_fake, api):
    with pytest.raises(client.ApiException) as err:
        client.AppsV1Api(api).read_namespaced_deployment("ghost", "default")
    assert err.value.status == 404
    assert json.loads(err.value.body) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'deployments.apps "ghost" not found', "reason": "NotFound",
        "details": {"name": "ghost", "group": "apps", "kind": "deployments"}, "code": 404,
    }
    status, _, body = raw(kube_fake, "GET", "/apis/apps/v1/namespaces/default/widgets")
    assert status == 404 and body["kind"] == "Status" and body["reason"] == "NotFound"
    status, _, body = raw(kube_fake, "POST", "/api/v1/namespaces/default/configmaps", b"{not json")
    assert status == 400 and body["reason"] == "BadRequest"
    status, _, body = raw(kube_fake, "POST", "/api/v1/namespaces/default/configmaps", b'{"metadata":{"name":"Bad_Name"}}')
    assert status == 422 and body["reason"] == "Invalid" and body["code"] == 422
    status, _, body = raw(kube_fake, "GET", "/api/v1/pods?labelSelector=a%20in%20(")
    assert status == 400


def test_injected_429_carries_retry_after(kube_fake, api):
    core = client.CoreV1Api(api)
    kube_fake.fail(method="GET", path_contains="/configmaps", status=429, retry_after=7)
    with pytest.raises(client.ApiException) as err:
        core.list_namespaced_config_map("default")
    assert err.value.status == 429 and err.value.headers["Retry-After"] == "7"
    body = json.loads(err.value.body)
    assert body["reason"] == "TooManyRequests" and body["details"]["retryAfterSeconds"] == 7
    assert core.list_namespaced_config_map("default").items == []  # times=1: the next call succeeds
    hits = [(r.status, r.injected) for r in kube_fake.requests if r.path.endswith("/configmaps")]
    assert hits == [(429, True), (200, False)]

    kube_fake.fail(method="POST", status=503, times=2)
    for _ in range(2):
        with pytest.raises(client.ApiException) as err:
            core.create_namespaced_config_map("default", {"metadata": {"name": "x"}})
        assert err.value.status == 503
    assert core.create_namespaced_config_map("default", {"metadata": {"name": "x"}}).metadata.name == "x"
    assert [w.status for w in kube_fake.writes()] == [503, 503, 201]


def test_hang_makes_the_client_time_out(kube_fake, api):
    kube_fake.hang("/api/v1/namespaces/default/secrets", seconds=30)
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.MaxRetryError) as err:
        client.CoreV1Api(api).list_namespaced_secret("default", _request_timeout=0.3)
    assert isinstance(err.value.reason, urllib3.exceptions.ReadTimeoutError)
    assert time.monotonic() - started < 5
    assert client.CoreV1Api(api).list_namespaced_secret("default").items == []


def test_on_write_hook_plays_the_deployment_controller(kube_fake, api):
    @kube_fake.on_write
    def controller(verb, rt, obj):
        if rt.kind == "Deployment" and verb in ("create", "update", "patch", "update_scale", "patch_scale"):
            replicas = obj["spec"]["replicas"]
            kube_fake.set_status("apps/v1", "Deployment", obj["metadata"]["namespace"], obj["metadata"]["name"],
                                 {"observedGeneration": obj["metadata"]["generation"], "replicas": replicas,
                                  "updatedReplicas": replicas, "readyReplicas": replicas})

    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment("default", deployment("web", replicas=3))
    apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 5}})
    got = apps.read_namespaced_deployment("web", "default")
    assert got.status.observed_generation == got.metadata.generation == 2
    assert got.status.ready_replicas == 5


def test_watch_streams_changes(kube_fake, api):
    core = client.CoreV1Api(api)
    kube_fake.add({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "labels": {"app": "a"}}})
    rv = core.list_namespaced_pod("default").metadata.resource_version
    kube_fake.add({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p2", "labels": {"app": "a"}}})
    kube_fake.delete("v1", "pods", "default", "p1")
    w = watch.Watch()
    seen = []
    for event in w.stream(core.list_namespaced_pod, "default", resource_version=rv, label_selector="app=a",
                          timeout_seconds=1):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 2:
            w.stop()
    assert seen == [("ADDED", "p2"), ("DELETED", "p1")]


def test_list_pages_with_limit_and_continue(kube_fake, api):
    kube_fake.add_many({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{i:02d}", "namespace": "x"}}
                       for i in range(25))
    core = client.CoreV1Api(api)
    names, token = [], None
    while True:
        page = core.list_service_for_all_namespaces(limit=10, _continue=token)
        names += [s.metadata.name for s in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert names == [f"svc-{i:02d}" for i in range(25)]
    assert len(kube_fake.list("svc", "x")) == 25


def test_kubeconfig_with_several_contexts(kube_fake_factory, tmp_path):
    east, west = kube_fake_factory(), kube_fake_factory()
    east.add(deployment("api"))
    path = write_kubeconfig(tmp_path / "config", {"east": east, "west": west})
    for context, expected in (("east", ["api"]), ("west", [])):
        with config.new_client_from_config(config_file=path, context=context) as api_client:
            items = client.AppsV1Api(api_client).list_deployment_for_all_namespaces().items
            assert [d.metadata.name for d in items] == expected
    assert east.requests[-1].headers["Authorization"] == "Bearer fake-token"


def test_custom_resources_need_resource_version_on_replace(kube_fake, api):
    co = client.CustomObjectsApi(api)
    args = ("argoproj.io", "v1alpha1", "default", "rollouts")
    co.create_namespaced_custom_object(*args, {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                                               "metadata": {"name": "web"}, "spec": {"replicas": 1}})
    with pytest.raises(client.ApiException) as err:
        co.replace_namespaced_custom_object(*args, "web", {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                                                           "metadata": {"name": "web"}, "spec": {"replicas": 2}})
    assert err.value.status == 422 and "resourceVersion" in json.loads(err.value.body)["message"]
    current = co.get_namespaced_custom_object(*args, "web")
    current["spec"]["replicas"] = 2
    assert co.replace_namespaced_custom_object(*args, "web", current)["metadata"]["generation"] == 2


def test_concurrent_patches_all_land(kube_fake, api):
    from concurrent.futures import ThreadPoolExecutor
    kube_fake.add(deployment("web"))
    apps = client.AppsV1Api(api)

    def annotate(i):
        apps.patch_namespaced_deployment("web", "default", {"metadata": {"annotations": {f"k{i}": "v"}}})
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(annotate, range(16)))
    stored = kube_fake.get("apps/v1", "Deployment", "default", "web")
    assert len(stored["metadata"]["annotations"]) == 16
    assert [r.status for r in kube_fake.writes()] == [200] * 16


def test_strict_namespaces_and_pod_logs(kube_fake_factory, tmp_path):
    fake = kube_fake_factory(strict_namespaces=True)
    with config.new_client_from_config(config_file=fake.kubeconfig(tmp_path / "kc"), context="fake") as api_client:
        core = client.CoreV1Api(api_client)
        with pytest.raises(client.ApiException) as err:
            core.create_namespaced_pod("nowhere", {"metadata": {"name": "p"}, "spec": {"containers": []}})
        assert err.value.status == 404 and json.loads(err.value.body)["message"] == 'namespaces "nowhere" not found'
        core.create_namespaced_pod("default", {"metadata": {"name": "p"}, "spec": {"containers": []}})
        fake.set_log("default", "p", "one\ntwo\nthree\n")
        assert core.read_namespaced_pod_log("p", "default", tail_lines=2) == "two\nthree\n"


# -- helpers -----------------------------------------------------------------------------------------
def test_selector_and_patch_helpers():
    match = parse_label_selector("env in (prod,stage), tier!=db, !legacy, app")
    assert match({"env": "prod", "app": "x"})
    assert not match({"env": "prod", "app": "x", "legacy": "1"})
    assert not match({"env": "dev", "app": "x"})
    assert not match({"env": "prod", "app": "x", "tier": "db"})
    with pytest.raises(ValueError):
        parse_label_selector("a in ")

    target = {"spec": {"containers": [{"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}]},
                                      {"name": "b", "image": "1"}], "finalizers": ["f1"]}}
    patch = {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                      "containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}]},
                                     {"name": "c", "$patch": "delete"}],
                      "finalizers": ["f2"]}}
    out = strategic_merge_patch(target, patch)
    assert [c["name"] for c in out["spec"]["containers"]] == ["b", "a"]
    assert out["spec"]["containers"][1]["env"] == [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]
    assert out["spec"]["finalizers"] == ["f1", "f2"]
    assert target["spec"]["containers"][0]["env"] == [{"name": "X", "value": "1"}]  # input untouched
    assert json_patch({"a": [1, 3]}, [{"op": "add", "path": "/a/1", "value": 2},
                                      {"op": "test", "path": "/a/0", "value": 1}]) == {"a": [1, 2, 3]}
