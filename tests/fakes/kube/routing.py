"""Discovery, OpenAPI, request routing, lists and watches of `KubeFake`."""
from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .common import JSON, OPENAPI_V2_PROTO, SERVER_VERSION, _dumps
from .errors import ApiError, status_body
from .resources import SUBRESOURCE_VERBS, ResourceType
from .selectors import field_selector_for, parse_label_selector

if TYPE_CHECKING:
    from .server import _Handler


class _RoutingMixin:
    """The HTTP-facing side of `KubeFake`: discovery, OpenAPI, routing, lists and watches."""

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
            with self._lock:  # check and delete at once, as the API server's budget update is a CAS
                self._check_eviction(ns, name)  # PodDisruptionBudgets (eviction.py)
                obj = self._api_delete(rt, ns, name, (body or {}).get("deleteOptions") or {}, dry_run)
            if not dry_run:
                self._after_eviction(obj)
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
                self._fire("update" if sub is None else f"update_{sub}", rt, self._stored_or(rt, ns, name, obj))
            return 200, JSON, _dumps(obj if sub == "scale" else self._as_served(rt, obj))
        if method == "PATCH":
            code, obj = self._api_patch(rt, ns, name, sub, content_type, body, query, dry_run)
            if not dry_run:
                verb = ("create" if code == 201 else "patch") if sub is None else f"patch_{sub}"
                self._fire(verb, rt, self._stored_or(rt, ns, name, obj))
            return code, JSON, _dumps(obj if sub == "scale" else self._as_served(rt, obj))
        if method == "DELETE" and sub is None:
            obj = self._api_delete(rt, ns, name, self._delete_options(body, query), dry_run)
            if not dry_run:
                self._fire("delete", rt, obj)
            if obj["metadata"].get("deletionTimestamp"):
                # Not gone yet (finalizers, Foreground): the server answers with the Terminating object.
                return 200, JSON, _dumps(self._as_served(rt, obj))
            return 200, JSON, _dumps(self._deleted_answer(rt, obj))
        raise ApiError(405, "the server does not allow this method on the requested resource", "MethodNotAllowed")

    def _stored_or(self, rt: ResourceType, ns: str | None, name: str, written: dict) -> dict:
        """The object as stored after a write, or what was written when the write let it go (the last
        finalizer of a Terminating object removed)."""
        try:
            return self._api_get(rt, ns, name)
        except ApiError:
            return written

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
            # A continue token carries the resourceVersion of the first page (like etcd3's); once that
            # revision is compacted the server answers 410 Expired and the client must list again.
            try:
                start = json.loads(base64.urlsafe_b64decode(query["continue"].encode()))
                start_key, start_rv = tuple(start["after"]), int(start["rv"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, "continue key is not valid: the token is malformed", "BadRequest") from None
            if start_rv < self.compacted_rv:
                raise ApiError(410, "The provided continue parameter is too old to display a consistent list result. "
                                    "You can start a new list without the continue parameter.", "Expired")
            rv = str(start_rv)
            entries = [e for e in entries
                       if (e.obj["metadata"].get("namespace", ""), e.obj["metadata"]["name"]) > start_key]
        remaining = 0
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise ApiError(400, f"limit: Invalid value: {query.get('limit')!r}: must be an integer", "BadRequest") from None
        if 0 < limit < len(entries):
            remaining = len(entries) - limit
            entries = entries[:limit]
            last = entries[-1].obj["metadata"]
            token = base64.urlsafe_b64encode(_dumps({"after": [last.get("namespace", ""), last["name"]],
                                                     "rv": int(rv)})).decode()
        meta = {"resourceVersion": rv}
        if token:
            meta["continue"] = token
            meta["remainingItemCount"] = remaining
        head = _dumps({"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta})[:-1]
        return head + b',"items":[' + b",".join(self._list_item_bytes(rt, e) for e in entries) + b"]}"

    def _list_item_bytes(self, rt: ResourceType, entry) -> bytes:
        """Items of a built-in list carry no kind/apiVersion on the wire (the list's do); custom resources
        are served as unstructured objects and keep theirs."""
        if rt.custom:
            return self._entry_bytes(rt, entry)
        raw = entry.list_raw
        if raw is None:
            raw = entry.list_raw = _dumps({k: v for k, v in entry.obj.items() if k not in ("kind", "apiVersion")})
        return raw

    def _watch(self, handler: "_Handler", rt: ResourceType, ns: str | None, name: str | None, query: dict) -> None:
        """Stream watch events (chunked JSON lines) until timeoutSeconds, the client leaves or stop()."""
        try:
            lmatch = parse_label_selector(query.get("labelSelector") or "")
        except ValueError as exc:
            raise ApiError(400, f"unable to parse requirement: {exc}", "BadRequest") from None
        try:
            fmatch = field_selector_for(rt.kind, rt.custom, query.get("fieldSelector") or "")
        except ValueError as exc:
            raise ApiError(400, str(exc), "BadRequest") from None
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
                elif last < self.compacted_rv:
                    expired = f"too old resource version: {last} ({self.compacted_rv})"
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

