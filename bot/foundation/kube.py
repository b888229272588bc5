"""Multi-cluster Kubernetes gateway on the official client.

We speak raw JSON through the official ApiClient (auth, TLS, kubeconfig handling are the
client's) instead of its generated models: a fleet scan lists thousands of objects and model
deserialization costs more than the HTTP round-trip, and CRDs (Istio, Argo Rollouts) have no
models anyway. Every call has a timeout and every failure becomes a KubeError that says which
cluster, what call and why, in words a person can act on.
"""
from __future__ import annotations

import json
import os
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from bot.foundation import decoding, failures, integrations
from bot.foundation.config import Cluster


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
SERVICES = Resource("", "v1", "services", "Service")
ENDPOINTS = Resource("", "v1", "endpoints", "Endpoints")
PODS = Resource("", "v1", "pods", "Pod")
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
SECRETS = Resource("", "v1", "secrets", "Secret")
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
STATEFULSETS = Resource("apps", "v1", "statefulsets", "StatefulSet")
CRONJOBS = Resource("batch", "v1", "cronjobs", "CronJob")
JOBS = Resource("batch", "v1", "jobs", "Job")
HPAS = Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler")
PDBS = Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
CSRS = Resource("certificates.k8s.io", "v1", "certificatesigningrequests", "CertificateSigningRequest", namespaced=False)
INGRESSES = Resource("networking.k8s.io", "v1", "ingresses", "Ingress")
HTTPROUTES = Resource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")
ROLLOUTS = Resource("argoproj.io", "v1alpha1", "rollouts", "Rollout")


def istio(plural: str, version: str = "v1") -> Resource:
    kinds = {
        "virtualservices": "VirtualService",
        "destinationrules": "DestinationRule",
        "gateways": "Gateway",
        "serviceentries": "ServiceEntry",
    }
    return Resource("networking.istio.io", version, plural, kinds[plural])


class KubeError(Exception):
    """A Kubernetes call failed. `str()` is a sentence fit for Slack."""

    def __init__(self, cluster: str, action: str, status: int, reason: str, message: str):
        self.cluster, self.action, self.status, self.reason, self.message = cluster, action, status, reason, message
        super().__init__(f"{cluster}: {action} failed: {_explain(status, reason, message)}")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def precondition_failed(self) -> bool:
        """A DELETE's uid/resourceVersion precondition did not hold: the object is not the one read."""
        # The API server's text: 'Operation cannot be fulfilled on …: StorageError: invalid object, …
        # AdditionalErrorMsg: Precondition failed: UID in precondition: …' (k8s.io/apiserver storage).
        return self.status == 409 and any(marker in (self.message or "") for marker in
                                          ("Precondition failed", "StorageError: invalid object"))

    @property
    def protected(self) -> bool:
        return self.reason == PROTECTED


PROTECTED = "ProtectedNamespace"


def _explain(status: int, reason: str, message: str) -> str:
    if reason == PROTECTED:
        return message
    if reason == "Config":
        return f"deckhand's kubeconfig is not usable: {message}"
    if status == 0:
        return f"the API server did not answer ({message})"
    hints = {
        401: "deckhand's credentials were rejected — check its kubeconfig or token",
        403: "forbidden — deckhand's ServiceAccount lacks RBAC for this; see deploy/kubernetes",
        404: "not found",
        409: "conflict — the object changed meanwhile; try again",
        422: "the API server rejected the change as invalid",
        429: "the API server is throttling requests; try again in a minute",
    }
    hint = hints.get(status) or ("the API server had an internal error" if status >= 500 else reason)
    return f"{hint} ({status}{': ' + message if message else ''})"


class KubeGateway:
    """One ApiClient per cluster, created lazily; raw JSON in and out.

    Writes to a protected namespace (`protected_namespaces`) are refused here, before any request is
    made, whatever feature asks: this is the one door every write goes through. Two exceptions, neither
    a change to what runs there: deckhand's own leader-election Lease (in deckhand's own, protected,
    namespace), and evicting a pod from a node being drained (node waves), which goes through the
    Eviction API so the pod's PodDisruptionBudget decides, exactly as `kubectl drain` would."""

    def __init__(self, clusters: Iterable[Cluster], timeout: float = 10.0, protected: Iterable[str] = (),
                 own_lease: str = "deckhand"):
        self.clusters = {c.name: c for c in clusters}
        self.timeout = timeout
        self.protected = frozenset(protected)
        self.own_lease = own_lease
        self.calls: Counter[str] = Counter()  # per cluster, for benchmarks and /metrics
        self._clients: dict[str, k8s.ApiClient] = {}
        self._lock = threading.Lock()
        self.on_error = None  # optional callback(cluster, status or failure kind) for metrics and health
        self.on_answer = None  # optional callback(cluster): the API server answered (health)

    # -- clients -------------------------------------------------------------------------------
    def _client(self, cluster: str) -> k8s.ApiClient:
        with self._lock:
            api = self._clients.get(cluster)
            if api is not None:
                return api
            spec = self.clusters.get(cluster)
            if spec is None:
                raise KubeError(cluster, "connect", 404, "UnknownCluster",
                                f"no cluster named {cluster!r} in the config (known: {', '.join(self.clusters)})")
            configuration = k8s.Configuration()
            try:
                if spec.kubeconfig or spec.context:
                    k8s_config.load_kube_config(
                        config_file=spec.kubeconfig, context=spec.context,
                        client_configuration=configuration, persist_config=False,
                    )
                else:
                    k8s_config.load_incluster_config(client_configuration=configuration)
            except (ConfigException, OSError, TypeError, ValueError) as exc:
                self._failed(cluster, "kubeconfig")
                raise KubeError(cluster, "load kubeconfig", 0, "Config", _config_problem(spec, exc)) from None
            configuration.retries = 0  # our own timeout bounds the call; urllib3 must not multiply it
            api = k8s.ApiClient(configuration)
            api.user_agent = "deckhand/1 (kubernetes-python)"  # names us in the API server's audit log
            self._clients[cluster] = api
            return api

    def istio(self, cluster: str, plural: str) -> Resource:
        spec = self.clusters.get(cluster)
        return istio(plural, spec.istio_api_version if spec else "v1")

    # -- raw calls -----------------------------------------------------------------------------
    def request(
        self, cluster: str, method: str, path: str, *, query: dict[str, Any] | None = None,
        body: Any = None, content_type: str = "application/json", action: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        action = action or f"{method} {path}"
        self._refuse_protected(cluster, method, path, action, body)
        api = self._client(cluster)
        self.calls[cluster] += 1
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            serialized = api.param_serialize(
                method=method, resource_path=path, query_params=params,
                header_params=headers, body=body, auth_settings=["BearerToken"],
            )
            response = api.call_api(*serialized, _request_timeout=timeout or self.timeout)
            data = response.read()
        except k8s.ApiException as exc:
            self._failed(cluster, exc.status or 0)
            if exc.status and not integrations.serious(exc.status):
                self._answered(cluster)
            raise KubeError(cluster, action, exc.status or 0, exc.reason or "", _status_message(exc.body)) from None
        except Exception as exc:  # urllib3 timeouts, refused connections, DNS
            self._failed(cluster, failures.kind(exc))
            raise KubeError(cluster, action, 0, type(exc).__name__, failures.describe(exc)) from None
        if response.status >= 400:
            self._failed(cluster, response.status)
            if not integrations.serious(response.status):
                self._answered(cluster)
            raise KubeError(cluster, action, response.status, response.reason or "", _status_message(data))
        self._answered(cluster)
        if not data:
            return None
        try:
            return decoding.loads(data)
        except ValueError:
            raise KubeError(cluster, action, response.status, "BadResponse", "the answer was not JSON") from None

    def _refuse_protected(self, cluster: str, method: str, path: str, action: str, body: Any) -> None:
        if method in ("GET", "HEAD") or not self.protected:
            return
        parts = path.split("?", 1)[0].strip("/").split("/")
        namespace = parts[parts.index("namespaces") + 1] if "namespaces" in parts[:4] and \
            parts.index("namespaces") + 1 < len(parts) else None
        if namespace not in self.protected:
            return
        created = ((body or {}).get("metadata") or {}).get("name") if isinstance(body, dict) else None
        if path == LEASES.path(namespace, self.own_lease) or (path == LEASES.path(namespace) and
                                                             created == self.own_lease):
            return  # deckhand's own leader-election Lease (lease.name), nothing else in coordination.k8s.io
        if method == "POST" and path.startswith(PODS.path(namespace)) and path.endswith("/eviction"):
            return  # a node drain (waves): the Eviction API honours PodDisruptionBudgets, as `kubectl drain` does
        raise KubeError(cluster, action, 403, PROTECTED,
                        f"`{namespace}` is a protected namespace (protected_namespaces in deckhand's config); "
                        "deckhand never writes there, whoever asks")

    def _failed(self, cluster: str, status: int | str) -> None:
        if self.on_error:
            self.on_error(cluster, status)

    def _answered(self, cluster: str) -> None:
        if self.on_answer:
            self.on_answer(cluster)

    # -- typed helpers -------------------------------------------------------------------------
    def list(
        self, cluster: str, resource: Resource, namespace: str | None = None,
        label_selector: str | None = None, field_selector: str | None = None,
    ) -> list[dict]:
        """All items across pages (one call unless the server pages)."""
        items: list[dict] = []
        token = None
        while True:
            page = self.request(
                cluster, "GET", resource.path(namespace),
                query={"labelSelector": label_selector, "fieldSelector": field_selector, "limit": 5000,
                       "continue": token},
                action=f"list {resource.plural}" + (f" in {namespace}" if namespace else ""),
            ) or {}
            for item in page.get("items") or []:
                # List items omit apiVersion/kind; fill them so callers can treat them like gets.
                item.setdefault("apiVersion", resource.api_version)
                item.setdefault("kind", resource.kind)
                items.append(item)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    def get(self, cluster: str, resource: Resource, namespace: str | None, name: str) -> dict | None:
        try:
            return self.request(cluster, "GET", resource.path(namespace, name),
                                action=f"get {resource.kind} {_ref(namespace, name)}")
        except KubeError as exc:
            if exc.not_found:
                return None
            raise

    def create(self, cluster: str, resource: Resource, namespace: str | None, body: dict) -> dict:
        return self.request(cluster, "POST", resource.path(namespace), body=body,
                            action=f"create {resource.kind} {_ref(namespace, body['metadata']['name'])}")

    def replace(self, cluster: str, resource: Resource, namespace: str | None, body: dict,
                subresource: str | None = None) -> dict:
        name = body["metadata"]["name"]
        return self.request(cluster, "PUT", resource.path(namespace, name, subresource), body=body,
                            action=f"replace {resource.kind} {_ref(namespace, name)}")

    def patch(
        self, cluster: str, resource: Resource, namespace: str | None, name: str, body: Any,
        *, kind: str = "merge", subresource: str | None = None,
    ) -> dict:
        content_type = {
            "merge": "application/merge-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "json": "application/json-patch+json",
        }[kind]
        what = f"patch {resource.kind}{'/' + subresource if subresource else ''} {_ref(namespace, name)}"
        return self.request(cluster, "PATCH", resource.path(namespace, name, subresource), body=body,
                            content_type=content_type, action=what)

    def delete(self, cluster: str, resource: Resource, namespace: str | None, name: str,
               propagation: str = "Foreground", uid: str | None = None,
               resource_version: str | None = None) -> str:
        """"deleted" when the object went at once, "terminating" when the API server only marked it (it
        answers with the object carrying `metadata.deletionTimestamp`: finalizers hold it, or Foreground
        propagation waits for its dependents), "already gone" on 404 (deleting twice is safe).
        With `uid` (and `resource_version`) the API server deletes only that very object, else 409."""
        state, _ = self.delete_state(cluster, resource, namespace, name, propagation, uid, resource_version)
        return state

    def delete_state(self, cluster: str, resource: Resource, namespace: str | None, name: str,
                     propagation: str = "Foreground", uid: str | None = None,
                     resource_version: str | None = None) -> tuple[str, list[str]]:
        """delete(), plus the finalizers still holding a Terminating object. Repeating a DELETE on a
        Terminating object changes nothing and answers with it again, so this is also how deckhand watches
        an object go with no more rights than `delete` (no `get` on Secrets)."""
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        preconditions = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        if preconditions:
            options["preconditions"] = preconditions
        try:
            answer = self.request(
                cluster, "DELETE", resource.path(namespace, name), body=options,
                action=f"delete {resource.kind} {_ref(namespace, name)}",
            )
        except KubeError as exc:
            if exc.not_found:
                return "already gone", []
            raise
        meta = (answer.get("metadata") or {}) if isinstance(answer, dict) and answer.get("kind") != "Status" else {}
        if meta.get("deletionTimestamp"):
            return "terminating", [str(f) for f in meta.get("finalizers") or []]
        return "deleted", []

    def version(self, cluster: str, timeout: float | None = None) -> dict:
        return self.request(cluster, "GET", "/version", action="get /version", timeout=timeout)

    def close(self) -> None:
        with self._lock:
            for api in self._clients.values():
                try:
                    api.close()
                except Exception:
                    pass
            self._clients.clear()


def _ref(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _status_message(body: Any) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not body:
        return ""
    try:
        return str(json.loads(body).get("message", ""))[:500]  # a precondition Conflict runs to ~300
    except (ValueError, AttributeError):
        return str(body)[:300]


def _config_problem(spec: Cluster, exc: Exception) -> str:
    """What is wrong with the cluster's kubeconfig, named (the client only says "Invalid kube-config file")."""
    text = str(exc)
    if not (spec.kubeconfig or spec.context):
        return f"not running in a cluster (no service account token), and neither `context:` nor `kubeconfig:` is set ({text[:120]})"
    candidates = [spec.kubeconfig] if spec.kubeconfig else \
        [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p] or [os.path.expanduser("~/.kube/config")]
    if not any(os.path.exists(p) for p in candidates):
        return f"kubeconfig file {', '.join(candidates)} not found"
    if spec.context and ("Expected object with name" in text or "context" in text.lower()):
        return f"context {spec.context!r} not found in {', '.join(candidates)}"
    return text[:300]


# -- small helpers over object dicts used across features ---------------------------------------
def meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def labels(obj: dict) -> dict:
    return meta(obj).get("labels") or {}


def annotations(obj: dict) -> dict:
    return meta(obj).get("annotations") or {}


def parse_time(text: str | None) -> datetime | None:
    """A Kubernetes timestamp (RFC 3339, `Z` or offset) as an aware datetime; None if absent or malformed."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def selector_matches(selector: dict[str, str] | None, pod_labels: dict[str, str]) -> bool:
    """A Service selector matches a pod template when every key/value is present."""
    if not selector:
        return False
    return all(pod_labels.get(k) == v for k, v in selector.items())
