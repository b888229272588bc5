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

Fixtures `kube_fake` and `kube_fake_factory` live in tests/fixtures.py: this package is a runtime
library (the demo world in demo/ uses it too) and imports no pytest.

It refuses what a real API server refuses: writes are validated against the real v1.32 schemas
(`validation`), namespaces must exist, deletion follows finalizers, propagation policies and namespace
termination (`deletion`), and selectors, patches and continue tokens are checked as strictly.
tests/test_fake_kube_rules.py holds one fidelity test per rule.

Modules: `resources` (the resource type registry), `selectors`, `patches`, `validation`, `deletion`, `errors`, `recording`
(recorded requests and injected failures), `store` and `routing` (the two halves of `KubeFake`'s
behaviour), `server` (`KubeFake` and its HTTP plumbing) and `kubeconfig`. This package re-exports every public name.
"""
from __future__ import annotations

from .common import (APPLY_PATCH, JSON, JSON_PATCH, MERGE_PATCH, OPENAPI_V2_PROTO, SERVER_VERSION,
                     STRATEGIC_PATCH)
from .errors import REASONS, ApiError, status_body
from .kubeconfig import write_kubeconfig
from .patches import SMP_MERGE_KEYS, SMP_PRIMITIVE_MERGE, json_patch, merge_patch, strategic_merge_patch
from .recording import SESSION_CALLS, Headers, RecordedRequest
from .resources import ALL_VERBS, BUILTIN_TYPES, ISTIO_KINDS, SEED_NAMESPACES, SUBRESOURCE_VERBS, ResourceType
from .selectors import parse_field_selector, parse_label_selector
from .server import KubeFake

__all__ = [
    "ALL_VERBS", "APPLY_PATCH", "BUILTIN_TYPES", "ISTIO_KINDS", "JSON", "JSON_PATCH", "MERGE_PATCH",
    "OPENAPI_V2_PROTO", "REASONS", "SEED_NAMESPACES", "SERVER_VERSION", "SESSION_CALLS", "SMP_MERGE_KEYS",
    "SMP_PRIMITIVE_MERGE", "STRATEGIC_PATCH", "SUBRESOURCE_VERBS", "ApiError", "Headers", "KubeFake",
    "RecordedRequest", "ResourceType", "json_patch", "merge_patch",
    "parse_field_selector", "parse_label_selector", "status_body", "strategic_merge_patch", "write_kubeconfig",
]
