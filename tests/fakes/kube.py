"""A Kubernetes API server fake for tests.

`KubeFake` is a real HTTP server on a free loopback port that speaks the API server's JSON wire
format well enough for the official `kubernetes` Python client and the real `kubectl` (get, apply,
delete): legacy discovery, a minimal OpenAPI v2/v3, generic CRUD over a registry of resource types
(namespaced and cluster-scoped), label and field selectors, merge / strategic-merge / JSON /
apply patches, the status, scale and approval subresources, resourceVersion conflicts, watches,
and `Status` error bodies with the real reasons.

Tests drive it from Python: seed objects (`add`), read them back (`get`, `list`), assert the exact
order of API writes (`requests`, `writes()`), inject failures (`fail`, `hang`, `latency`) and play
controllers (`on_write`). Writes made through the Python API do not fire `on_write` hooks.

Fixtures: `kube_fake` (function scope) and `kube_fake_factory` (starts more independent fakes).
"""
from __future__ import annotations

import base64
import collections
import copy
import functools
import hashlib
import json
import os
import random
import re
import socket
import string
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-deckhand-fake",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.4",
    "compiler": "gc",
    "platform": "linux/amd64",
}

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUBRESOURCE_VERBS = ("get", "patch", "update")

# Reasons the API server puts in Status bodies, by HTTP code.
REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
    406: "NotAcceptable", 409: "Conflict", 410: "Expired", 413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
    503: "ServiceUnavailable", 504: "Timeout",
}

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
OPENAPI_V2_PROTO = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ------------------------------------------------------------------------------------------------
# Resource types
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResourceType:
    """One served group/version/resource. Versions of a group share storage per plural."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: frozenset[str] = frozenset()
    # The real server answers DELETE with the deleted object for pods, services, namespaces and
    # every custom resource; for most built-ins it answers with a Status.
    delete_returns_object: bool = False
    custom: bool = False  # served from a CRD: no strategic merge patch (415), like the real server

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def storage_key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def qualified(self) -> str:
        """`deployments.apps`, `pods`: how the server names the resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


def _rt(group, version, plural, kind, namespaced=True, short=(), sub=(), cats=(), ret_obj=False, custom=False):
    return ResourceType(
        group=group, version=version, plural=plural, kind=kind, namespaced=namespaced,
        singular=kind.lower(), short_names=tuple(short), categories=tuple(cats),
        subresources=frozenset(sub), delete_returns_object=ret_obj or custom, custom=custom,
    )


ISTIO_KINDS = (
    ("virtualservices", "VirtualService", ("vs",)),
    ("destinationrules", "DestinationRule", ("dr",)),
    ("gateways", "Gateway", ("gw",)),
    ("serviceentries", "ServiceEntry", ("se",)),
)

BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _rt("", "v1", "namespaces", "Namespace", False, ("ns",), ("status",), ret_obj=True),
    _rt("", "v1", "nodes", "Node", False, ("no",), ("status",)),
    _rt("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",), ("status",)),
    _rt("", "v1", "services", "Service", True, ("svc",), ("status",), ("all",), ret_obj=True),
    _rt("", "v1", "endpoints", "Endpoints", True, ("ep",)),
    _rt("", "v1", "pods", "Pod", True, ("po",), ("status", "log", "eviction"), ("all",), ret_obj=True),
    _rt("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    _rt("", "v1", "secrets", "Secret"),
    _rt("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    _rt("", "v1", "events", "Event", True, ("ev",)),
    _rt("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",), ("status",)),
    _rt("apps", "v1", "deployments", "Deployment", True, ("deploy",), ("status", "scale"), ("all",)),
    _rt("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), ("status", "scale"), ("all",)),
    _rt("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ("status", "scale"), ("all",)),
    _rt("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), ("status",), ("all",)),
    _rt("batch", "v1", "jobs", "Job", True, (), ("status",), ("all",)),
    _rt("batch", "v1", "cronjobs", "CronJob", True, ("cj",), ("status",), ("all",)),
    _rt("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True, ("hpa",), ("status",), ("all",)),
    _rt("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",), ("status",)),
    _rt("coordination.k8s.io", "v1", "leases", "Lease"),
    _rt("certificates.k8s.io", "v1", "certificatesigningrequests", "CertificateSigningRequest", False, ("csr",),
        ("status", "approval")),
    _rt("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",), ("status",)),
    _rt("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",)),
    *(_rt("networking.istio.io", v, p, k, True, s, custom=True) for v in ("v1", "v1beta1") for p, k, s in ISTIO_KINDS),
    _rt("argoproj.io", "v1alpha1", "rollouts", "Rollout", True, ("ro",), ("status", "scale"), ("all",), custom=True),
    _rt("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", True, (), ("status",), custom=True),
    _rt("gateway.networking.k8s.io", "v1", "gateways", "Gateway", True, ("gtw",), ("status",), custom=True),
    _rt("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    _rt("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    _rt("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _rt("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
)

SEED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


# ------------------------------------------------------------------------------------------------
# Errors, requests, failure rules
# ------------------------------------------------------------------------------------------------
class ApiError(Exception):
    """Becomes a `Status` body with `code`; raised anywhere inside request handling."""

    def __init__(self, code: int, message: str, reason: str | None = None, details: dict | None = None,
                 headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.code, self.message = code, message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details
        self.headers = dict(headers or {})

    def status(self) -> dict:
        return status_body(self.code, self.message, self.reason, self.details)


def status_body(code: int, message: str, reason: str | None = None, details: dict | None = None) -> dict:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason or REASONS.get(code, "Unknown")}
    if details:
        body["details"] = details
    body["code"] = code
    return body


def _not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, f'{rt.qualified} "{name}" not found', "NotFound",
                    {"name": name, "group": rt.group, "kind": rt.plural})


def _conflict(rt: ResourceType, name: str, why: str = "the object has been modified; please apply your changes "
                                                      "to the latest version and try again") -> ApiError:
    return ApiError(409, f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}', "Conflict",
                    {"name": name, "group": rt.group, "kind": rt.plural})


def _invalid(rt: ResourceType, name: str, field_path: str, why: str) -> ApiError:
    return ApiError(422, f'{rt.kind}.{rt.group or "core"} "{name}" is invalid: {field_path}: {why}', "Invalid",
                    {"name": name, "group": rt.group, "kind": rt.kind,
                     "causes": [{"reason": "FieldValueInvalid", "message": why, "field": field_path}]})


class Headers(dict):
    """Request headers; lookups ignore case like HTTP does (stored lower-cased)."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()):
        super().__init__((k.lower(), v) for k, v in items)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


# Every request deckhand's own gateway (User-Agent deckhand/…) made to any fake in this test session: the RBAC test
# derives the permissions deckhand needs from it (tests/test_zz_permissions.py).
SESSION_CALLS: set[tuple[str, str, str]] = set()


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any  # parsed JSON (or YAML for apply patches); raw text when unparsable; None when empty
    headers: Headers
    timestamp: float
    status: int | None = None  # the HTTP status answered, filled once handled
    injected: bool = False  # answered by `fail()` rather than by the fake's logic

    @property
    def is_write(self) -> bool:
        return self.method not in ("GET", "HEAD", "OPTIONS")


@dataclass
class _Rule:
    method: str | None
    path_contains: str | None
    times: int | None  # None: forever
    status: int = 500
    retry_after: float | int | None = None
    body: Any = None
    message: str | None = None
    seconds: float = 0.0  # for hangs

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method and self.method.upper() != method:
            return False
        return not self.path_contains or self.path_contains in path

    def consume(self) -> None:
        if self.times is not None:
            self.times -= 1

    @property
    def remaining(self) -> int | None:
        return self.times


@dataclass
class _Entry:
    """A stored object plus its cached JSON encoding. Stored dicts are never mutated in place."""

    obj: dict
    raw: bytes | None = None

    def encoded(self) -> bytes:
        raw = self.raw
        if raw is None:
            raw = self.raw = _dumps(self.obj)
        return raw


# ------------------------------------------------------------------------------------------------
# Selectors
# ------------------------------------------------------------------------------------------------
_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"


def _split_top_level(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


@functools.lru_cache(maxsize=512)
def parse_label_selector(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """Compile a label selector (equality- and set-based) into a predicate. ValueError if malformed."""
    reqs: list[Callable[[Mapping[str, str]], bool]] = []
    for req in _split_top_level(selector or ""):
        if m := re.fullmatch(rf"({_KEY})\s+(in|notin)\s*\((.*)\)", req):
            key, op = m.group(1), m.group(3)
            values = {v.strip() for v in m.group(4).split(",")}
            if not values or any(not re.fullmatch(_VALUE, v) for v in values):
                raise ValueError(f"invalid values in {req!r}")
            if op == "in":
                reqs.append(lambda labels, k=key, vs=frozenset(values): labels.get(k) in vs)
            else:
                reqs.append(lambda labels, k=key, vs=frozenset(values): labels.get(k) not in vs)
        elif m := re.fullmatch(rf"!\s*({_KEY})", req):
            reqs.append(lambda labels, k=m.group(1): k not in labels)
        elif m := re.fullmatch(rf"({_KEY})\s*(==|!=|=|>|<)\s*({_VALUE})", req):
            key, op, value = m.group(1), m.group(3), m.group(4)
            if op in ("=", "=="):
                reqs.append(lambda labels, k=key, v=value: labels.get(k) == v)
            elif op == "!=":
                reqs.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                try:
                    bound = int(value)
                except ValueError:
                    raise ValueError(f"{op} needs an integer in {req!r}") from None
                cmp = (lambda a, b: a > b) if op == ">" else (lambda a, b: a < b)

                def numeric(labels, k=key, b=bound, cmp=cmp):
                    try:
                        return cmp(int(labels[k]), b)
                    except (KeyError, ValueError):
                        return False
                reqs.append(numeric)
        elif re.fullmatch(_KEY, req):
            reqs.append(lambda labels, k=req: k in labels)
        else:
            raise ValueError(f"unable to parse requirement: {req!r}")
    return lambda labels: all(r(labels) for r in reqs)


def _field_value(obj: dict, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


@functools.lru_cache(maxsize=512)
def parse_field_selector(selector: str) -> Callable[[dict], bool]:
    """`metadata.name=x,metadata.namespace!=y` (any dotted path, like pods' `status.phase`)."""
    reqs = []
    for req in _split_top_level(selector or ""):
        m = re.fullmatch(r"([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*)", req)
        if not m:
            raise ValueError(f"invalid field selector: {req!r}")
        path, op, value = m.group(1), m.group(2), m.group(3).strip()
        if op == "!=":
            reqs.append(lambda obj, p=path, v=value: _field_value(obj, p) != v)
        else:
            reqs.append(lambda obj, p=path, v=value: _field_value(obj, p) == v)
    return lambda obj: all(r(obj) for r in reqs)


# ------------------------------------------------------------------------------------------------
# Patches
# ------------------------------------------------------------------------------------------------
def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch. Returns a new value; `target` is not modified."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# patchMergeKey of the Kubernetes types' lists that merge rather than replace (from the Go struct tags).
SMP_MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "volumes": "name",
    "env": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath", "imagePullSecrets": "name",
    "conditions": "type", "hostAliases": "ip", "ownerReferences": "uid", "readinessGates": "conditionType",
    "resourceClaims": "name", "topologySpreadConstraints": "topologyKey", "secrets": "name",
}
SMP_PRIMITIVE_MERGE = {"finalizers"}
_DELETE = object()


def _smp_merge_key(field_name: str, *lists: Any) -> str | None:
    if field_name == "ports":  # container ports merge on containerPort, service ports on port
        items = [i for lst in lists if isinstance(lst, list) for i in lst if isinstance(i, dict)]
        return "containerPort" if any("containerPort" in i for i in items) else "port"
    return SMP_MERGE_KEYS.get(field_name)


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge patch for the fields that matter: maps merge, lists with a known patch merge
    key (containers by name, env by name, ...) merge element-wise, other lists are replaced.
    Understands `$patch: replace|delete`, `$setElementOrder/<f>`, `$deleteFromPrimitiveList/<f>`
    and `$retainKeys` as kubectl sends them."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        return strategic_merge_patch({}, {k: v for k, v in patch.items() if k != "$patch"})
    result = dict(target) if isinstance(target, dict) else {}
    orders = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
        elif key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [x for x in result.get(name) or [] if x not in (value or [])]
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is _DELETE:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _smp_list(key, result.get(key), value)
        else:
            result[key] = value
    for name, order in orders.items():
        if isinstance(result.get(name), list):
            result[name] = _smp_order(name, result[name], order)
    if isinstance(patch.get("$retainKeys"), list):
        keep = set(patch["$retainKeys"])
        result = {k: v for k, v in result.items() if k in keep}
    return result


def _smp_list(name: str, current: Any, patch: list) -> list:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [strategic_merge_patch({}, i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    if name in SMP_PRIMITIVE_MERGE:
        out = list(current or [])
        out += [x for x in patch if x not in out]
        return out
    key = _smp_merge_key(name, current, patch)
    if key is None or not all(isinstance(i, dict) and key in i for i in patch):
        return [strategic_merge_patch({}, i) if isinstance(i, dict) else copy.deepcopy(i) for i in patch]
    out = list(current) if isinstance(current, list) else []
    for item in patch:
        idx = next((n for n, cur in enumerate(out) if isinstance(cur, dict) and cur.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del out[idx]
        elif idx is None:
            out.append(strategic_merge_patch({}, item))
        else:
            out[idx] = strategic_merge_patch(out[idx], item)
    return out


def _smp_order(name: str, items: list, order: list) -> list:
    key = _smp_merge_key(name, items, order)

    def ident(x):
        return x.get(key) if key and isinstance(x, dict) else json.dumps(x, sort_keys=True)
    wanted = [ident(o) for o in order]
    rank = {v: n for n, v in enumerate(wanted)}
    ranked = sorted((i for i in items if ident(i) in rank), key=lambda i: rank[ident(i)])
    return ranked + [i for i in items if ident(i) not in rank]


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _resolve(doc: Any, parts: list[str]) -> Any:
    for p in parts:
        if isinstance(doc, list):
            doc = doc[int(p)]
        elif isinstance(doc, dict):
            doc = doc[p]
        else:
            raise KeyError(p)
    return doc


def json_patch(doc: Any, ops: list) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test). ValueError on failure."""
    doc = copy.deepcopy(doc)
    if not isinstance(ops, list):
        raise ValueError("a JSON patch must be a list of operations")
    for op in ops:
        try:
            kind, parts = op["op"], _pointer(op["path"])
            if kind == "test":
                if _resolve(doc, parts) != op["value"]:
                    raise ValueError(f"test failed at {op['path']}")
                continue
            if kind in ("move", "copy"):
                src = _pointer(op["from"])
                value = copy.deepcopy(_resolve(doc, src))
                if kind == "move":
                    doc = _json_patch_remove(doc, src)
                doc = _json_patch_add(doc, parts, value)
            elif kind == "add":
                doc = _json_patch_add(doc, parts, copy.deepcopy(op["value"]))
            elif kind == "remove":
                doc = _json_patch_remove(doc, parts)
            elif kind == "replace":
                _resolve(doc, parts)  # must exist
                doc = _json_patch_remove(doc, parts)
                doc = _json_patch_add(doc, parts, copy.deepcopy(op["value"]))
            else:
                raise ValueError(f"unknown op {kind!r}")
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"cannot apply {op!r}: {exc!r}") from None
    return doc


def _json_patch_add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent, last = _resolve(doc, parts[:-1]), parts[-1]
    if isinstance(parent, list):
        idx = len(parent) if last == "-" else int(last)
        if not 0 <= idx <= len(parent):
            raise IndexError(idx)
        parent.insert(idx, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise TypeError(f"cannot add into {type(parent).__name__}")
    return doc


def _json_patch_remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        return None
    parent, last = _resolve(doc, parts[:-1]), parts[-1]
    if isinstance(parent, list):
        del parent[int(last)]
    else:
        del parent[last]
    return doc


# ------------------------------------------------------------------------------------------------
# The fake
# ------------------------------------------------------------------------------------------------
class KubeFake:
    """An in-memory Kubernetes API server on http://127.0.0.1:<free port>."""

    def __init__(self, *, seed_namespaces: bool = True, strict_namespaces: bool = False, token: str = "fake-token",
                 latency: float = 0.0):
        self.token = token
        # True: creating in a namespace that does not exist is a 404, as on a real cluster
        self.strict_namespaces = strict_namespaces
        self.require_token = False  # True: requests without `Authorization: Bearer <token>` get 401
        self.latency = latency  # seconds added to every response (benchmarks)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._group_versions: dict[str, list[str]] = {}
        self._store: dict[tuple[str, str], dict[tuple[str, str], _Entry]] = {}
        self._rv = 0
        self._history: collections.deque = collections.deque(maxlen=20000)  # (rv, type, key, entry)
        self._requests: list[RecordedRequest] = []
        self._failures: list[_Rule] = []
        self._hangs: list[_Rule] = []
        self._hooks: list[Callable[[str, ResourceType, dict], None]] = []
        self.hook_errors: list[str] = []
        self._logs: dict[tuple[str, str, str | None], str] = {}
        self.deletions: list[dict] = []  # deletes through HTTP: apiVersion, kind, namespace, name, propagationPolicy
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        for rt in BUILTIN_TYPES:
            self._register(rt)
        if seed_namespaces:
            for ns in SEED_NAMESPACES:
                self.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns},
                          "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "KubeFake":
        if self._server is None:
            self._stopping.clear()
            self._server = _Server(("127.0.0.1", 0), _Handler, self)
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"kube-fake-{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        server.shutdown()
        server.server_close()
        with self._lock:
            conns, self._connections = list(self._connections), set()
        for conn in conns:  # idle keep-alive connections: make clients see a closed server
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> "KubeFake":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("KubeFake is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- registry -----------------------------------------------------------------------------
    def register_resource(self, group: str, version: str, plural: str, kind: str, namespaced: bool = True, *,
                          short_names: Iterable[str] = (), status: bool = False, scale: bool = False,
                          categories: Iterable[str] = (), custom: bool = True) -> ResourceType:
        """Serve another resource type (CRD-like by default: DELETE answers with the object)."""
        subs = {"status"} if status else set()
        if scale:
            subs.add("scale")
        rt = ResourceType(group=group, version=version, plural=plural, kind=kind, namespaced=namespaced,
                          singular=kind.lower(), short_names=tuple(short_names), categories=tuple(categories),
                          subresources=frozenset(subs), delete_returns_object=custom, custom=custom)
        self._register(rt)
        return rt

    def _register(self, rt: ResourceType) -> None:
        with self._lock:
            self._types[(rt.group, rt.version, rt.plural)] = rt
            versions = self._group_versions.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
            self._store.setdefault(rt.storage_key, {})

    def resource_types(self) -> list[ResourceType]:
        with self._lock:
            return list(self._types.values())

    def resource_type(self, kind_or_plural: str, api_version: str | None = None) -> ResourceType:
        """Find a type by kind, plural, singular, short name or `plural.group`; ValueError if unknown
        or ambiguous. Of several versions of one group the first registered (preferred) wins."""
        name = kind_or_plural
        group = version = None
        if api_version is not None:
            group, _, version = api_version.rpartition("/")
        elif "." in name:
            name, _, group = name.partition(".")
        lname = name.lower()
        with self._lock:
            found = [rt for rt in self._types.values()
                     if (group is None or rt.group == group) and (version is None or rt.version == version)
                     and (lname in (rt.plural, rt.singular, rt.kind.lower()) or lname in rt.short_names)]
        if not found:
            raise ValueError(f"no resource type {kind_or_plural!r}"
                             + (f" in {api_version!r}" if api_version else "")
                             + "; use register_resource() to serve it")
        keys = {rt.storage_key for rt in found}
        if len(keys) > 1:
            options = ", ".join(sorted(f"{rt.plural}.{rt.group}" if rt.group else rt.plural for rt in found))
            raise ValueError(f"{kind_or_plural!r} is ambiguous ({options}); pass api_version")
        return found[0]

    # -- Python API over the store (no on_write hooks) -----------------------------------------
    def add(self, obj: dict) -> dict:
        """Store (create or overwrite) an object as-is, status included, filling metadata defaults."""
        rt = self._type_of(obj)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            raise ValueError("metadata.name is required")
        if rt.namespaced:
            meta.setdefault("namespace", "default")
        else:
            meta.pop("namespace", None)
        obj["apiVersion"], obj["kind"] = obj.get("apiVersion") or rt.api_version, rt.kind
        with self._lock:
            old = self._store[rt.storage_key].get(self._key(rt, meta.get("namespace"), meta["name"]))
            meta.setdefault("uid", old.obj["metadata"]["uid"] if old else str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", old.obj["metadata"]["creationTimestamp"] if old else _now())
            meta.setdefault("generation", 1)
            meta.pop("resourceVersion", None)
            stored = self._put(rt, obj, "MODIFIED" if old else "ADDED")
        return copy.deepcopy(stored)

    def add_many(self, objs: Iterable[dict]) -> list[dict]:
        return [self.add(o) for o in objs]

    def get(self, api_version: str | None, kind_or_plural: str, namespace: str | None, name: str) -> dict | None:
        rt = self.resource_type(kind_or_plural, api_version)
        with self._lock:
            entry = self._store[rt.storage_key].get(self._key(rt, namespace, name))
        if entry is None:
            return None
        obj = json.loads(entry.encoded())
        if api_version:
            obj["apiVersion"] = rt.api_version
        return obj

    def list(self, kind_or_plural: str, namespace: str | None = None, *, api_version: str | None = None,
             label_selector: str | None = None) -> list[dict]:
        """Objects of a type (all namespaces unless `namespace`), sorted by namespace and name."""
        rt = self.resource_type(kind_or_plural, api_version)
        entries = self._select(rt, namespace, label_selector, None)
        out = [json.loads(e.encoded()) for e in entries]
        if api_version:
            for o in out:
                o["apiVersion"] = rt.api_version
        return out

    def delete(self, api_version: str | None, kind_or_plural: str, namespace: str | None, name: str) -> bool:
        rt = self.resource_type(kind_or_plural, api_version)
        with self._lock:
            entry = self._store[rt.storage_key].pop(self._key(rt, namespace, name), None)
            if entry is None:
                return False
            self._record_event("DELETED", rt, entry.obj)
        return True

    def patch(self, api_version: str | None, kind_or_plural: str, namespace: str | None, name: str,
              patch: dict) -> dict:
        """JSON-merge-patch an object, status included (what a controller would do)."""
        rt = self.resource_type(kind_or_plural, api_version)
        with self._lock:
            entry = self._store[rt.storage_key].get(self._key(rt, namespace, name))
            if entry is None:
                raise KeyError(f"{rt.qualified} {namespace}/{name} not found")
            new = merge_patch(entry.obj, patch)
            new["metadata"] = dict(new["metadata"])
            self._bump_generation(entry.obj, new)
            stored = self._put(rt, new, "MODIFIED")
        return copy.deepcopy(stored)

    def set_status(self, api_version: str | None, kind_or_plural: str, namespace: str | None, name: str,
                   status: dict) -> dict:
        """Replace `.status` of an object (for `on_write` hooks that play a controller)."""
        rt = self.resource_type(kind_or_plural, api_version)
        with self._lock:
            entry = self._store[rt.storage_key].get(self._key(rt, namespace, name))
            if entry is None:
                raise KeyError(f"{rt.qualified} {namespace}/{name} not found")
            new = dict(entry.obj, status=copy.deepcopy(status), metadata=dict(entry.obj["metadata"]))
            stored = self._put(rt, new, "MODIFIED")
        return copy.deepcopy(stored)

    def set_log(self, namespace: str, pod: str, text: str, container: str | None = None) -> None:
        """What `GET .../pods/<pod>/log` answers (per container, or for any container)."""
        with self._lock:
            self._logs[(namespace, pod, container)] = text

    @property
    def resource_version(self) -> int:
        return self._rv

    # -- requests, failures, hooks --------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received, in arrival order."""
        with self._lock:
            return list(self._requests)

    def writes(self) -> list[RecordedRequest]:
        """Non-GET requests in arrival order (injected failures included)."""
        return [r for r in self.requests if r.is_write]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def fail(self, method: str | None = None, path_contains: str | None = None, status: int = 500,
             times: int | None = 1, retry_after: float | int | None = None, body: Any = None,
             message: str | None = None) -> _Rule:
        """Answer the next `times` matching requests (None: all) with `status` and a Status body
        (or `body`: a dict for JSON, str/bytes sent raw). 429 carries `Retry-After` (default 1)."""
        if status == 429 and retry_after is None:
            retry_after = 1
        rule = _Rule(method, path_contains, times, status, retry_after, body, message)
        with self._lock:
            self._failures.append(rule)
        return rule

    def hang(self, path_contains: str | None = None, seconds: float = 30.0, method: str | None = None,
             times: int | None = 1) -> _Rule:
        """Delay matching requests by `seconds` before answering normally (client timeouts)."""
        rule = _Rule(method, path_contains, times, seconds=seconds)
        with self._lock:
            self._hangs.append(rule)
        return rule

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()
            self._hangs.clear()

    def on_write(self, callback: Callable[[str, ResourceType, dict], None]) -> Callable:
        """Call `callback(verb, resource_type, obj)` after each successful write through HTTP, before
        the response is sent. verb: create, update, patch, delete, update_status, patch_status,
        update_scale, patch_scale, update_approval, evict. `obj` is a copy of the stored object (the
        deleted one for delete). Usable as a decorator."""
        with self._lock:
            self._hooks.append(callback)
        return callback

    def remove_on_write(self, callback: Callable) -> None:
        with self._lock:
            self._hooks.remove(callback)

    def check_hooks(self) -> None:
        """Raise if an on_write hook raised (the kube_fake fixture calls this at teardown)."""
        if self.hook_errors:
            raise AssertionError("an on_write hook of the Kubernetes fake raised:\n" + "\n".join(self.hook_errors))

    # -- kubeconfig ---------------------------------------------------------------------------
    def kubeconfig(self, path: str | os.PathLike, context: str = "fake", namespace: str = "default") -> str:
        return write_kubeconfig(path, {context: self}, namespace=namespace)

    # -- store internals (hold self._lock) ------------------------------------------------------
    def _type_of(self, obj: dict) -> ResourceType:
        if not isinstance(obj, dict) or not obj.get("kind") or not obj.get("apiVersion"):
            raise ValueError("an object needs apiVersion and kind")
        return self.resource_type(obj["kind"], obj["apiVersion"])

    @staticmethod
    def _key(rt: ResourceType, namespace: str | None, name: str) -> tuple[str, str]:
        return ((namespace or "default") if rt.namespaced else "", name)

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _put(self, rt: ResourceType, obj: dict, event: str) -> dict:
        rv = self._next_rv()
        obj["metadata"]["resourceVersion"] = str(rv)
        meta = obj["metadata"]
        entry = _Entry(obj)
        self._store[rt.storage_key][self._key(rt, meta.get("namespace"), meta["name"])] = entry
        self._history.append((rv, event, rt.storage_key, entry))
        self._changed.notify_all()
        return obj

    def _record_event(self, event: str, rt: ResourceType, obj: dict) -> None:
        rv = self._next_rv()
        gone = dict(obj, metadata=dict(obj["metadata"], resourceVersion=str(rv)))
        self._history.append((rv, event, rt.storage_key, _Entry(gone)))
        self._changed.notify_all()

    @staticmethod
    def _bump_generation(old: dict, new: dict) -> None:
        def spec(o):
            return {k: v for k, v in o.items() if k not in ("metadata", "status", "apiVersion", "kind")}
        generation = old["metadata"].get("generation", 1)
        new["metadata"]["generation"] = generation + 1 if spec(old) != spec(new) else generation

    def _select(self, rt: ResourceType, namespace: str | None, label_selector: str | None,
                field_selector: str | None) -> list[_Entry]:
        try:
            lmatch = parse_label_selector(label_selector) if label_selector else None
            fmatch = parse_field_selector(field_selector) if field_selector else None
        except ValueError as exc:
            raise ApiError(400, f"unable to parse requirement: {exc}", "BadRequest") from None
        with self._lock:
            items = sorted(self._store[rt.storage_key].items())
        out = []
        for (ns, _), entry in items:
            if namespace and rt.namespaced and ns != namespace:
                continue
            obj = entry.obj
            if lmatch and not lmatch(obj["metadata"].get("labels") or {}):
                continue
            if fmatch and not fmatch(obj):
                continue
            out.append(entry)
        return out

    def _entry_bytes(self, rt: ResourceType, entry: _Entry) -> bytes:
        if entry.obj.get("apiVersion") == rt.api_version:
            return entry.encoded()
        return _dumps(dict(entry.obj, apiVersion=rt.api_version))

    def _as_served(self, rt: ResourceType, obj: dict) -> dict:
        return obj if obj.get("apiVersion") == rt.api_version else dict(obj, apiVersion=rt.api_version)

    def _fire(self, verb: str, rt: ResourceType, obj: dict) -> None:
        with self._lock:
            hooks = list(self._hooks)
        for hook in hooks:
            try:
                hook(verb, rt, copy.deepcopy(obj))
            except Exception:  # noqa: BLE001 - surfaced by check_hooks()
                self.hook_errors.append(traceback.format_exc())

    # -- API operations (raise ApiError) --------------------------------------------------------
    def _api_get(self, rt: ResourceType, ns: str | None, name: str) -> dict:
        with self._lock:
            entry = self._store[rt.storage_key].get(self._key(rt, ns, name))
        if entry is None:
            raise _not_found(rt, name)
        return entry.obj

    def _check_body(self, rt: ResourceType, body: Any, ns: str | None, name: str | None) -> dict:
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request was in an unknown format - accepted media types "
                                "include: application/json, application/yaml", "BadRequest")
        kind = body.get("kind")
        if kind and kind != rt.kind:
            raise ApiError(400, f"the API version in the data ({body.get('apiVersion')}) does not match the "
                                f"expected API version ({rt.api_version}) or kind {kind} != {rt.kind}",
                           "BadRequest")
        api_version = body.get("apiVersion")
        if api_version and api_version.rpartition("/")[0] != rt.group:
            raise ApiError(400, f"the API version in the data ({api_version}) does not match the expected API "
                                f"version ({rt.api_version})", "BadRequest")
        meta = body.get("metadata")
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            raise ApiError(400, "metadata must be an object", "BadRequest")
        meta = dict(meta)
        if rt.namespaced:
            if meta.get("namespace") and ns and meta["namespace"] != ns:
                raise ApiError(400, "the namespace of the provided object does not match the namespace sent "
                                    "on the request", "BadRequest")
            meta["namespace"] = ns or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        if name is not None and meta.get("name") and meta["name"] != name:
            raise ApiError(400, f"the name of the object ({meta['name']}) does not match the name on the URL "
                                f"({name})", "BadRequest")
        if name is not None:
            meta["name"] = name
        obj = dict(body, apiVersion=rt.api_version, kind=rt.kind, metadata=meta)
        return obj

    def _validate_name(self, rt: ResourceType, name: str) -> None:
        if rt.group == "rbac.authorization.k8s.io" or rt.kind == "Event":
            ok = name not in (".", "..") and "/" not in name and "%" not in name
        elif rt.kind == "Namespace":
            ok = len(name) <= 63 and _DNS_LABEL.fullmatch(name) is not None
        else:
            ok = len(name) <= 253 and _DNS_SUBDOMAIN.fullmatch(name) is not None
        if not ok:
            raise _invalid(rt, name, "metadata.name",
                           f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                           "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                           "character")

    def _api_create(self, rt: ResourceType, ns: str | None, body: Any, dry_run: bool) -> dict:
        obj = self._check_body(rt, body, ns, None)
        meta = obj["metadata"]
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
            else:
                raise _invalid(rt, "", "metadata.name", "Required value: name or generateName is required")
        self._validate_name(rt, meta["name"])
        for transient in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(transient, None)
        meta["uid"] = str(uuid.uuid4())
        meta.setdefault("creationTimestamp", _now())
        meta["generation"] = 1
        if rt.has_status:
            obj["status"] = {"phase": "Active"} if rt.kind == "Namespace" else {}
        with self._lock:
            if rt.namespaced and self.strict_namespaces and ("", meta["namespace"]) not in self._store[("", "namespaces")]:
                raise ApiError(404, f'namespaces "{meta["namespace"]}" not found', "NotFound",
                               {"name": meta["namespace"], "kind": "namespaces"})
            if self._key(rt, meta.get("namespace"), meta["name"]) in self._store[rt.storage_key]:
                raise ApiError(409, f'{rt.qualified} "{meta["name"]}" already exists', "AlreadyExists",
                               {"name": meta["name"], "group": rt.group, "kind": rt.plural})
            if dry_run:
                return obj
            return self._put(rt, obj, "ADDED")

    def _finish_update(self, rt: ResourceType, old: dict, new: dict, sub: str | None, expect_rv: str | None,
                       dry_run: bool) -> dict:
        """Common tail of PUT and PATCH: preconditions, status isolation, generation, store."""
        name = old["metadata"]["name"]
        if expect_rv and expect_rv != old["metadata"].get("resourceVersion"):
            raise _conflict(rt, name)
        if sub in ("status", "approval"):
            result = dict(old, status=new.get("status"))
            if result["status"] is None:
                result.pop("status")
            result["metadata"] = dict(old["metadata"])
        else:
            meta = new.get("metadata")
            if not isinstance(meta, dict):
                raise _invalid(rt, name, "metadata", "Required value")
            for fixed in ("name", "namespace"):
                if meta.get(fixed, old["metadata"].get(fixed)) != old["metadata"].get(fixed):
                    raise _invalid(rt, name, f"metadata.{fixed}", "field is immutable")
            result = dict(new, apiVersion=old["apiVersion"], kind=rt.kind)
            result["metadata"] = dict(meta, uid=old["metadata"]["uid"],
                                      creationTimestamp=old["metadata"].get("creationTimestamp"),
                                      name=old["metadata"]["name"])
            if rt.namespaced:
                result["metadata"]["namespace"] = old["metadata"]["namespace"]
            if rt.has_status:
                if "status" in old:
                    result["status"] = old["status"]
                else:
                    result.pop("status", None)
            self._bump_generation(old, result)
        with self._lock:
            current = self._store[rt.storage_key].get(self._key(rt, old["metadata"].get("namespace"), name))
            if current is None:
                raise _not_found(rt, name)
            if current.obj is not old:  # another writer won the race
                raise _conflict(rt, name)
            if dry_run:
                return result
            return self._put(rt, result, "MODIFIED")

    def _api_replace(self, rt: ResourceType, ns: str | None, name: str, sub: str | None, body: Any,
                     dry_run: bool) -> dict:
        with self._lock:  # read-modify-write is atomic, like etcd's GuaranteedUpdate
            old = self._api_get(rt, ns, name)
            if sub == "scale":
                return self._scale_write(rt, old, body, dry_run)
            new = self._check_body(rt, body, ns, name)
            if rt.custom and not new["metadata"].get("resourceVersion"):
                # custom resources do not allow unconditional updates
                raise _invalid(rt, name, "metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update")
            return self._finish_update(rt, old, new, sub, new["metadata"].get("resourceVersion"), dry_run)

    def _api_patch(self, rt: ResourceType, ns: str | None, name: str, sub: str | None, content_type: str,
                   patch: Any, query: dict, dry_run: bool) -> tuple[int, dict]:
        with self._lock:  # patches never conflict unless they carry a resourceVersion
            return self._api_patch_locked(rt, ns, name, sub, content_type, patch, query, dry_run)

    def _api_patch_locked(self, rt: ResourceType, ns: str | None, name: str, sub: str | None, content_type: str,
                          patch: Any, query: dict, dry_run: bool) -> tuple[int, dict]:
        if content_type == APPLY_PATCH:
            if not query.get("fieldManager"):
                raise ApiError(400, "PATCH request with apply content type must have a fieldManager", "BadRequest")
            if not isinstance(patch, dict):
                raise ApiError(400, "apply patches must be a YAML or JSON object", "BadRequest")
            with self._lock:
                exists = self._key(rt, ns, name) in self._store[rt.storage_key]
            if not exists and sub is None:
                body = dict(patch, metadata=dict(patch.get("metadata") or {}, name=name))
                return 201, self._api_create(rt, ns, body, dry_run)
        old = self._api_get(rt, ns, name)
        target = self._scale_of(rt, old) if sub == "scale" else old
        try:
            if content_type == MERGE_PATCH:
                if not isinstance(patch, dict):
                    raise ValueError("a merge patch must be a JSON object")
                new = merge_patch(target, patch)
            elif content_type in (STRATEGIC_PATCH, APPLY_PATCH):
                if not isinstance(patch, dict):
                    raise ValueError("a strategic merge patch must be a JSON object")
                if rt.custom and content_type == STRATEGIC_PATCH:
                    raise ApiError(415, "the body of the request was in an unknown format - accepted media types "
                                        "include: application/json-patch+json, application/merge-patch+json, "
                                        "application/apply-patch+yaml", "UnsupportedMediaType")
                new = strategic_merge_patch(target, patch)
            elif content_type == JSON_PATCH:
                new = json_patch(target, patch)
            else:
                raise ApiError(415, f"the media type {content_type!r} is not supported for PATCH",
                               "UnsupportedMediaType")
        except ValueError as exc:
            raise ApiError(422, f"the server rejected our request due to an error in our request: {exc}",
                           "Invalid", {"name": name, "group": rt.group, "kind": rt.plural}) from None
        if not isinstance(new, dict):
            raise ApiError(422, "the patch did not produce an object", "Invalid")
        if sub == "scale":
            return 200, self._scale_write(rt, old, new, dry_run)
        expect = (new.get("metadata") or {}).get("resourceVersion")
        return 200, self._finish_update(rt, old, new, sub, expect, dry_run)

    def _scale_of(self, rt: ResourceType, obj: dict) -> dict:
        meta = obj["metadata"]
        status = obj.get("status") or {}
        spec = obj.get("spec") or {}
        labels = ((spec.get("selector") or {}).get("matchLabels")) or {}
        return {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "spec": {"replicas": spec.get("replicas", 1)},
            "status": {"replicas": status.get("replicas", 0),
                       "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items()))},
        }

    def _scale_write(self, rt: ResourceType, old: dict, scale: Any, dry_run: bool) -> dict:
        if not isinstance(scale, dict) or not isinstance((scale.get("spec") or {}).get("replicas"), int):
            raise _invalid(rt, old["metadata"]["name"], "spec.replicas", "Required value")
        expect = (scale.get("metadata") or {}).get("resourceVersion")
        new = dict(old, spec=dict(old.get("spec") or {}, replicas=scale["spec"]["replicas"]))
        stored = self._finish_update(rt, old, dict(new, metadata=dict(old["metadata"])), None, expect, dry_run)
        return self._scale_of(rt, stored)

    def _api_delete(self, rt: ResourceType, ns: str | None, name: str, options: dict, dry_run: bool) -> dict:
        with self._lock:
            return self._api_delete_locked(rt, ns, name, options, dry_run)

    def _api_delete_locked(self, rt: ResourceType, ns: str | None, name: str, options: dict, dry_run: bool) -> dict:
        old = self._api_get(rt, ns, name)
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
            raise _conflict(rt, name, f"Precondition failed: UID in precondition: {pre['uid']}, UID in object "
                                      f"meta: {old['metadata']['uid']}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"].get("resourceVersion"):
            raise _conflict(rt, name, "Precondition failed: resourceVersion in precondition does not match")
        if dry_run:
            return old
        with self._lock:
            current = self._store[rt.storage_key].get(self._key(rt, ns, name))
            if current is None or current.obj is not old:
                raise _conflict(rt, name)
            del self._store[rt.storage_key][self._key(rt, ns, name)]
            self._record_event("DELETED", rt, old)
            self.deletions.append({"apiVersion": rt.api_version, "kind": rt.kind,
                                   "namespace": old["metadata"].get("namespace"), "name": name,
                                   "propagationPolicy": options.get("propagationPolicy")})
        return old

    def _deleted_answer(self, rt: ResourceType, obj: dict) -> dict:
        if rt.delete_returns_object:
            return self._as_served(rt, obj)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": obj["metadata"]["name"], "group": rt.group, "kind": rt.plural,
                            "uid": obj["metadata"]["uid"]}}

    # -- discovery ------------------------------------------------------------------------------
    def _group_types(self, group: str, version: str) -> list[ResourceType]:
        with self._lock:
            return [rt for rt in self._types.values() if rt.group == group and rt.version == version]

    def _resource_list(self, group: str, version: str) -> dict | None:
        types = self._group_types(group, version)
        if not types:
            return None
        resources = []
        for rt in types:
            entry = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced, "kind": rt.kind,
                     "verbs": list(rt.verbs)}
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            entry["storageVersionHash"] = base64.b64encode(
                hashlib.sha256(f"{rt.group}/{rt.plural}".encode()).digest()[:8]).decode()
            resources.append(entry)
            for sub in sorted(rt.subresources):
                s = {"name": f"{rt.plural}/{sub}", "singularName": "", "namespaced": rt.namespaced,
                     "kind": rt.kind, "verbs": list(SUBRESOURCE_VERBS)}
                if sub == "scale":
                    s.update(group="autoscaling", version="v1", kind="Scale")
                elif sub == "log":
                    s["verbs"] = ["get"]
                elif sub == "eviction":
                    s.update(group="policy", version="v1", kind="Eviction", verbs=["create"])
                elif sub == "approval":
                    s["verbs"] = ["get", "patch", "update"]
                resources.append(s)
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": resources}

    def _api_group(self, group: str) -> dict | None:
        versions = self._group_versions.get(group)
        if not versions:
            return None
        vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": vs, "preferredVersion": vs[0]}

    def _discovery(self, parts: list[str], accept: str) -> tuple[int, str, bytes]:
        """Legacy discovery. kubectl asks for aggregated discovery (`as=APIGroupDiscoveryList`) first;
        a plain `application/json` answer makes it fall back to per-group-version documents."""
        if parts == ["api"]:
            doc = {"kind": "APIVersions", "versions": ["v1"],
                   "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}]}
        elif parts == ["apis"]:
            groups = [self._api_group(g) for g in self._group_versions if g]
            doc = {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        elif parts[0] == "api" and len(parts) == 2:
            doc = self._resource_list("", parts[1])
        elif parts[0] == "apis" and len(parts) == 2:
            doc = self._api_group(parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            doc = self._resource_list(parts[1], parts[2])
        else:
            doc = None
        if doc is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        return 200, JSON, _dumps(doc)

    def _openapi(self, parts: list[str], accept: str) -> tuple[int, str, bytes]:
        """Just enough OpenAPI for kubectl: v2 has no definitions (so client-side validation finds no
        schema and passes), v3 lists every group-version whose PATCH takes `fieldValidation`, so
        `kubectl apply` (validate=strict) leaves validation to the server instead of failing."""
        if parts == ["openapi", "v2"]:
            if "protobuf" in accept:
                return 200, OPENAPI_V2_PROTO, b"\n\x032.0"  # openapi_v2.Document{swagger: "2.0"}
            return 200, JSON, _dumps({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
                                      "paths": {}, "definitions": {}})
        with self._lock:
            gvs = sorted({(rt.group, rt.version) for rt in self._types.values()})
        if parts == ["openapi", "v3"]:
            paths = {}
            for g, v in gvs:
                p = f"apis/{g}/{v}" if g else f"api/{v}"
                digest = hashlib.sha256(p.encode()).hexdigest()[:16].upper()
                paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={digest}"}
            return 200, JSON, _dumps({"paths": paths})
        if len(parts) >= 4 and parts[:2] == ["openapi", "v3"]:
            rest = parts[2:]
            if rest[0] == "api" and len(rest) == 2:
                g, v = "", rest[1]
            elif rest[0] == "apis" and len(rest) == 3:
                g, v = rest[1], rest[2]
            else:
                g = v = None
            types = self._group_types(g, v) if v else []
            if types:
                paths = {}
                param = {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                for rt in types:
                    base = f"/apis/{g}/{v}" if g else f"/api/{v}"
                    if rt.namespaced:
                        base += "/namespaces/{namespace}"
                    gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
                    paths[f"{base}/{rt.plural}/{{name}}"] = {
                        "patch": {"operationId": f"patch{rt.kind}", "parameters": [param], "responses": {},
                                  "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk}}
                return 200, JSON, _dumps({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
                                          "paths": paths, "components": {"schemas": {}}})
        raise ApiError(404, "the server could not find the requested resource", "NotFound")

    # -- routing --------------------------------------------------------------------------------
    def _parse_resource_path(self, parts: list[str]):
        """(rt, namespace, name, subresource, watch) for /api/v1/... and /apis/g/v/... paths."""
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            group, version, rest = parts[1], parts[2], parts[3:]
        watch = False
        if rest and rest[0] == "watch":
            watch, rest = True, rest[1:]
        ns = None
        with self._lock:
            types = {rt.plural: rt for rt in self._types.values() if rt.group == group and rt.version == version}
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] in types and types[rest[2]].namespaced:
            ns, rest = rest[1], rest[2:]
        if not rest or rest[0] not in types or len(rest) > 3:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        rt = types[rest[0]]
        name = rest[1] if len(rest) >= 2 else None
        sub = rest[2] if len(rest) == 3 else None
        if rt.namespaced and name is not None and ns is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        if sub is not None and sub not in rt.subresources:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        return rt, ns, name, sub, watch

    def _handle(self, handler: "_Handler", method: str, path: str, query: dict[str, str], content_type: str,
                body: Any) -> tuple[int, str, bytes] | None:
        """Answer one request: (status, content type, body), or None when it streamed a watch."""
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        accept = handler.headers.get("Accept", "")
        if not parts:
            return 200, JSON, _dumps({"paths": ["/api", "/api/v1", "/apis", "/openapi/v2", "/openapi/v3", "/version"]})
        if parts == ["version"]:
            return 200, JSON, _dumps(SERVER_VERSION)
        if parts[0] in ("healthz", "livez", "readyz"):
            return 200, "text/plain", b"ok"
        if parts[0] == "openapi":
            return self._openapi(parts, accept)
        if parts[0] not in ("api", "apis") or (parts[0] == "api" and len(parts) < 2):
            if parts == ["api"] or parts == ["apis"]:
                return self._discovery(parts, accept)
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        if (parts[0] == "api" and len(parts) == 2) or (parts[0] == "apis" and len(parts) <= 3):
            if method != "GET":
                raise ApiError(405, "the server does not allow this method on the requested resource",
                               "MethodNotAllowed")
            return self._discovery(parts, accept)

        rt, ns, name, sub, watch = self._parse_resource_path(parts)
        dry_run = query.get("dryRun") == "All"
        watch = watch or query.get("watch") in ("true", "1")

        if method == "GET" and watch:
            self._watch(handler, rt, ns, name, query)
            return None
        if name is None:
            if method == "GET":
                return 200, JSON, self._list_bytes(rt, ns, query)
            if method == "POST":
                obj = self._api_create(rt, ns, body, dry_run)
                if not dry_run:
                    self._fire("create", rt, obj)
                return 201, JSON, _dumps(self._as_served(rt, obj))
            if method == "DELETE":
                deleted = []
                for entry in self._select(rt, ns, query.get("labelSelector"), query.get("fieldSelector")):
                    meta = entry.obj["metadata"]
                    try:
                        deleted.append(self._api_delete(rt, meta.get("namespace"), meta["name"],
                                                        self._delete_options(body, query), dry_run))
                    except ApiError:
                        continue
                    if not dry_run:
                        self._fire("delete", rt, deleted[-1])
                return 200, JSON, _dumps({"kind": rt.list_kind, "apiVersion": rt.api_version,
                                          "metadata": {"resourceVersion": str(self._rv)},
                                          "items": [self._as_served(rt, o) for o in deleted]})
            raise ApiError(405, "the server does not allow this method on the requested resource", "MethodNotAllowed")

        if sub == "log":
            if method != "GET":
                raise ApiError(405, "the server does not allow this method on the requested resource", "MethodNotAllowed")
            self._api_get(rt, ns, name)
            with self._lock:
                text = self._logs.get((ns, name, query.get("container")), self._logs.get((ns, name, None), ""))
            if query.get("tailLines"):
                lines = text.splitlines(keepends=True)
                text = "".join(lines[-int(query["tailLines"]):]) if int(query["tailLines"]) > 0 else ""
            return 200, "text/plain", text.encode()
        if sub == "eviction":
            if method != "POST":
                raise ApiError(405, "the server does not allow this method on the requested resource", "MethodNotAllowed")
            obj = self._api_delete(rt, ns, name, (body or {}).get("deleteOptions") or {}, dry_run)
            if not dry_run:
                self._fire("evict", rt, obj)
            return 201, JSON, _dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                      "code": 201})

        if method == "GET":
            obj = self._api_get(rt, ns, name)
            if sub == "scale":
                return 200, JSON, _dumps(self._scale_of(rt, obj))
            return 200, JSON, _dumps(self._as_served(rt, obj))
        if method == "PUT":
            obj = self._api_replace(rt, ns, name, sub, body, dry_run)
            if not dry_run:
                self._fire("update" if sub is None else f"update_{sub}", rt, self._api_get(rt, ns, name))
            return 200, JSON, _dumps(obj if sub == "scale" else self._as_served(rt, obj))
        if method == "PATCH":
            code, obj = self._api_patch(rt, ns, name, sub, content_type, body, query, dry_run)
            if not dry_run:
                verb = ("create" if code == 201 else "patch") if sub is None else f"patch_{sub}"
                self._fire(verb, rt, self._api_get(rt, ns, name))
            return code, JSON, _dumps(obj if sub == "scale" else self._as_served(rt, obj))
        if method == "DELETE" and sub is None:
            obj = self._api_delete(rt, ns, name, self._delete_options(body, query), dry_run)
            if not dry_run:
                self._fire("delete", rt, obj)
            return 200, JSON, _dumps(self._deleted_answer(rt, obj))
        raise ApiError(405, "the server does not allow this method on the requested resource", "MethodNotAllowed")

    @staticmethod
    def _delete_options(body: Any, query: dict) -> dict:
        options = dict(body) if isinstance(body, dict) else {}
        for key in ("propagationPolicy", "gracePeriodSeconds", "orphanDependents"):
            if key in query and key not in options:
                options[key] = query[key]
        return options

    def _list_bytes(self, rt: ResourceType, ns: str | None, query: dict) -> bytes:
        entries = self._select(rt, ns, query.get("labelSelector"), query.get("fieldSelector"))
        rv = str(self._rv)
        token = None
        if query.get("continue"):
            try:
                start = json.loads(base64.urlsafe_b64decode(query["continue"].encode()))
                start_key = tuple(start["after"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, "continue key is not valid", "BadRequest") from None
            entries = [e for e in entries
                       if (e.obj["metadata"].get("namespace", ""), e.obj["metadata"]["name"]) > start_key]
        remaining = 0
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            limit = 0
        if 0 < limit < len(entries):
            remaining = len(entries) - limit
            entries = entries[:limit]
            last = entries[-1].obj["metadata"]
            token = base64.urlsafe_b64encode(_dumps({"after": [last.get("namespace", ""), last["name"]]})).decode()
        meta = {"resourceVersion": rv}
        if token:
            meta["continue"] = token
            meta["remainingItemCount"] = remaining
        head = _dumps({"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta})[:-1]
        return head + b',"items":[' + b",".join(self._entry_bytes(rt, e) for e in entries) + b"]}"

    def _watch(self, handler: "_Handler", rt: ResourceType, ns: str | None, name: str | None, query: dict) -> None:
        """Stream watch events (chunked JSON lines) until timeoutSeconds, the client leaves or stop()."""
        try:
            lmatch = parse_label_selector(query.get("labelSelector") or "")
            fmatch = parse_field_selector(query.get("fieldSelector") or "")
        except ValueError as exc:
            raise ApiError(400, f"unable to parse requirement: {exc}", "BadRequest") from None
        timeout = float(query.get("timeoutSeconds") or 60)
        deadline = time.monotonic() + timeout

        def wanted(obj: dict) -> bool:
            meta = obj["metadata"]
            if rt.namespaced and ns and meta.get("namespace") != ns:
                return False
            if name and meta.get("name") != name:
                return False
            return lmatch(meta.get("labels") or {}) and fmatch(obj)

        since = query.get("resourceVersion") or "0"
        expired = None
        with self._lock:
            if since == "0":
                initial = [("ADDED", e) for e in self._select(rt, ns, None, None) if wanted(e.obj)]
                last = self._rv
            else:
                try:
                    last = int(since)
                except ValueError:
                    raise ApiError(400, f"invalid resource version: {since!r}", "BadRequest") from None
                initial = []
                if len(self._history) == self._history.maxlen and last < self._history[0][0] - 1:
                    expired = f"too old resource version: {last} ({self._history[0][0] - 1})"
        handler.start_stream(JSON)
        if expired:  # the history no longer reaches back that far: the client must list again
            handler.write_chunk(_dumps({"type": "ERROR", "object": status_body(410, expired, "Expired")}) + b"\n")
            handler.end_stream()
            return
        try:
            for event, entry in initial:
                handler.write_chunk(b'{"type":"' + event.encode() + b'","object":' + self._entry_bytes(rt, entry) + b"}\n")
            while not self._stopping.is_set():
                with self._changed:
                    pending = [h for h in self._history if h[0] > last]
                    if not pending:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._changed.wait(min(left, 0.5))
                        continue
                last = pending[-1][0]
                for _, event, key, entry in pending:
                    if key == rt.storage_key and wanted(entry.obj):
                        handler.write_chunk(b'{"type":"' + event.encode() + b'","object":'
                                            + self._entry_bytes(rt, entry) + b"}\n")
        except OSError:
            handler.close_connection = True
            return
        handler.end_stream()


# ------------------------------------------------------------------------------------------------
# HTTP plumbing
# ------------------------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address, handler, fake: KubeFake):
        self.fake = fake
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-apiserver-fake"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.fake._lock:
            self.server.fake._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.fake._lock:
                self.server.fake._connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = lambda self: self._serve()  # noqa: E731

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        fake = self.server.fake
        method = self.command
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        raw = self._read_body()
        body: Any = None
        bad_body = None
        if raw:
            text = raw.decode("utf-8", "replace")
            try:
                if "yaml" in content_type:
                    body = yaml.safe_load(text)
                elif "protobuf" in content_type:
                    body, bad_body = text, (415, "protobuf is not supported by the fake; send JSON")
                else:
                    body = json.loads(text)
            except (ValueError, yaml.YAMLError) as exc:
                body, bad_body = text, (400, f"the body of the request could not be decoded: {exc}")
        record = RecordedRequest(method=method, path=url.path, query=query, content_type=content_type, body=body,
                                 headers=Headers(self.headers.items()), timestamp=time.time())
        if (self.headers.get("User-Agent") or "").startswith("deckhand/"):
            SESSION_CALLS.add((method, url.path, "watch" if query.get("watch") in ("1", "true") else ""))
        with fake._lock:
            fake._requests.append(record)
            hang = next((r for r in fake._hangs if r.matches(method, url.path)), None)
            if hang:
                hang.consume()
            failure = next((r for r in fake._failures if r.matches(method, url.path)), None)
            if failure:
                failure.consume()
        if fake.latency:
            fake._stopping.wait(fake.latency)
        if hang:
            fake._stopping.wait(hang.seconds)
        if fake._stopping.is_set():
            self.close_connection = True
            return
        if failure:
            record.injected = True
            record.status = failure.status
            headers = {}
            if failure.retry_after is not None:
                headers["Retry-After"] = str(failure.retry_after)
            if failure.body is None:
                details = {"retryAfterSeconds": int(failure.retry_after)} if failure.retry_after is not None else None
                payload = _dumps(status_body(failure.status, failure.message or f"injected failure ({failure.status})",
                                             details=details))
                ctype = JSON
            elif isinstance(failure.body, (bytes, str)):
                payload = failure.body.encode() if isinstance(failure.body, str) else failure.body
                ctype = "text/plain"
            else:
                payload, ctype = _dumps(failure.body), JSON
            self._respond(failure.status, ctype, payload, headers)
            return
        try:
            if fake.require_token and self.headers.get("Authorization") != f"Bearer {fake.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            if bad_body:
                raise ApiError(bad_body[0], bad_body[1])
            answer = fake._handle(self, method, url.path, query, content_type, body)
        except ApiError as exc:
            answer = (exc.code, JSON, _dumps(exc.status()))
            if exc.headers:
                record.status = exc.code
                self._respond(*answer, exc.headers)
                return
        except Exception:  # noqa: BLE001 - a fake bug must reach the test as a 500, not a hang
            answer = (500, JSON, _dumps(status_body(500, "fake kube-apiserver bug:\n" + traceback.format_exc())))
        if answer is None:  # a watch streamed its own response
            record.status = 200
            return
        record.status = answer[0]
        self._respond(*answer)

    def _respond(self, code: int, ctype: str, payload: bytes, headers: Mapping[str, str] | None = None) -> None:
        lines = [f"HTTP/1.1 {code} {self.responses.get(code, ('',))[0]}", f"Content-Type: {ctype}",
                 f"Content-Length: {len(payload)}", "Cache-Control: no-cache, private",
                 f"Date: {self.date_time_string()}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if self.close_connection:
            lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.command != "HEAD":
            data += payload
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def start_stream(self, ctype: str) -> None:
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n"
                f"Cache-Control: no-cache, private\r\nDate: {self.date_time_string()}\r\n\r\n")
        self.wfile.write(head.encode("latin-1"))

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True


# ------------------------------------------------------------------------------------------------
# kubeconfig and fixtures
# ------------------------------------------------------------------------------------------------
def write_kubeconfig(path: str | os.PathLike, fakes: Mapping[str, KubeFake], current_context: str | None = None,
                     namespace: str = "default") -> str:
    """Write a kubeconfig with one context (and cluster and user of the same name) per fake."""
    if not fakes:
        raise ValueError("write_kubeconfig needs at least one fake")
    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": n, "cluster": {"server": f.url, "insecure-skip-tls-verify": True}}
                     for n, f in fakes.items()],
        "users": [{"name": n, "user": {"token": f.token}} for n, f in fakes.items()],
        "contexts": [{"name": n, "context": {"cluster": n, "user": n, "namespace": namespace}} for n in fakes],
        "current-context": current_context or next(iter(fakes)),
    }
    path = os.fspath(path)
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(config, fh, sort_keys=False)
    return path


@pytest.fixture
def kube_fake():
    """A started KubeFake, stopped after the test; fails the test if an on_write hook raised."""
    fake = KubeFake().start()
    try:
        yield fake
    finally:
        fake.stop()
    fake.check_hooks()


@pytest.fixture
def kube_fake_factory():
    """`kube_fake_factory(**KubeFake kwargs)` starts another independent fake; all stop at teardown."""
    fakes: list[KubeFake] = []

    def start(**kwargs: Any) -> KubeFake:
        fake = KubeFake(**kwargs).start()
        fakes.append(fake)
        return fake

    yield start
    for fake in fakes:
        fake.stop()
    for fake in fakes:
        fake.check_hooks()
