"""The store behind `KubeFake`: internals and the API operations (create, update, patch, delete)."""
from __future__ import annotations

import copy
import random
import re
import string
import traceback
import uuid
from dataclasses import dataclass
from typing import Any

from .common import _DNS_LABEL, _DNS_SUBDOMAIN, APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, _dumps, _now
from .errors import ApiError, _conflict, _invalid, _not_found
from .patches import json_patch, merge_patch, strategic_merge_patch
from .resources import ResourceType
from .selectors import field_selector_for, parse_label_selector
from .validation import check_scale, check_write


@dataclass
class _Entry:
    """A stored object plus its cached JSON encoding. Stored dicts are never mutated in place."""

    obj: dict
    raw: bytes | None = None
    list_raw: bytes | None = None  # as a list item: without kind/apiVersion

    def encoded(self) -> bytes:
        raw = self.raw
        if raw is None:
            raw = self.raw = _dumps(self.obj)
        return raw


class _StoreMixin:
    """Store internals and API operations of `KubeFake` (which owns the state they use)."""

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
        except ValueError as exc:
            raise ApiError(400, f"unable to parse requirement: {exc}", "BadRequest") from None
        try:
            fmatch = field_selector_for(rt.kind, rt.custom, field_selector) if field_selector else None
        except ValueError as exc:
            raise ApiError(400, str(exc), "BadRequest") from None
        # `metadata.name=<n>` (how clients look one object up across namespaces) is matched on the
        # stored key, without evaluating selectors over every object: the API server answers it from
        # its cache in milliseconds, and a slow fake would make fleet-wide lookups look slow.
        only_name = re.fullmatch(r"metadata\.name==?([^,!=]+)", (field_selector or "").strip())
        with self._lock:
            if only_name:
                items = sorted((k, v) for k, v in self._store[rt.storage_key].items() if k[1] == only_name.group(1))
            else:
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

    def _validated(self, rt: ResourceType, obj: dict) -> dict:
        """`obj` as the server would store it, or ApiError; warnings go to the request's `Warning` header."""
        request = self._request_context
        stored, warnings = check_write(rt, obj, getattr(request, "field_validation", None))
        if warnings and hasattr(request, "warnings"):
            request.warnings += warnings
        return stored

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
        obj = self._validated(rt, obj)
        meta = obj["metadata"]
        with self._lock:
            if rt.namespaced and self.strict_namespaces and ("", meta["namespace"]) not in self._store[("", "namespaces")]:
                raise ApiError(404, f'namespaces "{meta["namespace"]}" not found', "NotFound",
                               {"name": meta["namespace"], "kind": "namespaces"})
            if rt.namespaced:
                self._refuse_in_terminating_namespace(rt, meta["namespace"], meta["name"])
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
            self._keep_deletion_state(rt, old, result)
        result = self._validated(rt, result)
        with self._lock:
            current = self._store[rt.storage_key].get(self._key(rt, old["metadata"].get("namespace"), name))
            if current is None:
                raise _not_found(rt, name)
            if current.obj is not old:  # another writer won the race
                raise _conflict(rt, name)
            if dry_run:
                return result
            stored = self._put(rt, result, "MODIFIED")
            if stored["metadata"].get("deletionTimestamp"):
                self._gc_pending = True  # a finalizer may have been removed: the object may go now
                self._collect_garbage()
            return stored

    @staticmethod
    def _keep_deletion_state(rt: ResourceType, old: dict, new: dict) -> None:
        """deletionTimestamp is the server's to set; a Terminating object takes no new finalizers."""
        meta, was = new["metadata"], old["metadata"]
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            if key in was:
                meta[key] = was[key]
            else:
                meta.pop(key, None)
        added = [f for f in meta.get("finalizers") or [] if f not in (was.get("finalizers") or [])]
        if was.get("deletionTimestamp") and added:
            raise _invalid(rt, was["name"], "metadata.finalizers",
                           f"Forbidden: no new finalizers can be added if the object is being deleted, found new "
                           f"finalizers []string{{{', '.join(repr(f).replace(chr(39), chr(34)) for f in added)}}}")

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
            # Server-side apply needs field ownership (managedFields, conflicts between managers), which this
            # fake does not model; answering as a server without it does keeps a client from believing it
            # applied. kubectl's default (client-side) apply uses strategic merge patches and works.
            raise ApiError(415, "the body of the request was in an unknown format - accepted media types include: "
                                "application/json-patch+json, application/merge-patch+json, "
                                "application/strategic-merge-patch+json (server-side apply is not supported by this "
                                "fake)", "UnsupportedMediaType")
        old = self._api_get(rt, ns, name)
        target = self._scale_of(rt, old) if sub == "scale" else old
        try:
            if content_type == MERGE_PATCH:
                if not isinstance(patch, dict):
                    raise ValueError("a merge patch must be a JSON object")
                new = merge_patch(target, patch)
            elif content_type == STRATEGIC_PATCH:
                if not isinstance(patch, dict):
                    raise ValueError("a strategic merge patch must be a JSON object")
                if rt.custom:
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
        if not isinstance(scale, dict) or "replicas" not in (scale.get("spec") or {}):
            raise _invalid(rt, old["metadata"]["name"], "spec.replicas", "Required value")
        check_scale(rt, old["metadata"]["name"], scale["spec"]["replicas"])
        expect = (scale.get("metadata") or {}).get("resourceVersion")
        new = dict(old, spec=dict(old.get("spec") or {}, replicas=scale["spec"]["replicas"]))
        stored = self._finish_update(rt, old, dict(new, metadata=dict(old["metadata"])), None, expect, dry_run)
        return self._scale_of(rt, stored)

    def _deleted_answer(self, rt: ResourceType, obj: dict) -> dict:
        if rt.delete_returns_object:
            return self._as_served(rt, obj)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": obj["metadata"]["name"], "group": rt.group, "kind": rt.plural,
                            "uid": obj["metadata"]["uid"]}}


def _precondition(rt: ResourceType, ns: str | None, name: str, why: str) -> str:
    """The StorageError text the real server wraps in its Conflict: etcd key and all."""
    where = "/".join(p for p in ((rt.group if rt.custom else ""), rt.plural, ns or "", name) if p)
    return (f"StorageError: invalid object, Code: 4, Key: /registry/{where}, ResourceVersion: 0, "
            f"AdditionalErrorMsg: Precondition failed: {why}")
