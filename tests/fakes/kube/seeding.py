"""The Kubernetes fake's Python API over its store: what tests seed, read back and change the way a
controller would, without HTTP and without on_write hooks."""
from __future__ import annotations

import copy
import json
import uuid
from typing import Iterable

from .common import _now
from .patches import merge_patch


class SeedingMixin:
    """Test-side API of KubeFake (mixed into it); each call takes the fake's lock like a request does."""

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

    def _stored(self, rt, namespace: str | None, name: str):
        """The store's entry for an object (the caller holds the lock); KeyError when there is none."""
        entry = self._store[rt.storage_key].get(self._key(rt, namespace, name))
        if entry is None:
            raise KeyError(f"{rt.qualified} {namespace}/{name} not found")
        return entry

    def patch(self, api_version: str | None, kind_or_plural: str, namespace: str | None, name: str,
              patch: dict) -> dict:
        """JSON-merge-patch an object, status included (what a controller would do)."""
        rt = self.resource_type(kind_or_plural, api_version)
        with self._lock:
            entry = self._stored(rt, namespace, name)
            new = merge_patch(entry.obj, patch)
            new["metadata"] = dict(new["metadata"])
            self._bump_generation(entry.obj, new)
            stored = self._put(rt, new, "MODIFIED")
            if stored["metadata"].get("deletionTimestamp"):
                # A controller dropping its finalizer from a Terminating object: it may go now.
                self._gc_pending = True
                self._collect_garbage()
        return copy.deepcopy(stored)

    def remove_finalizers(self, api_version: str | None, kind_or_plural: str, namespace: str | None, name: str,
                          *finalizers: str) -> dict | None:
        """Play the controller that owns `finalizers` (all when none given): drop them from the object. A
        Terminating object with no finalizer left is removed (then None is returned)."""
        rt = self.resource_type(kind_or_plural, api_version)
        with self._lock:
            entry = self._stored(rt, namespace, name)
            keep = [f for f in entry.obj["metadata"].get("finalizers") or [] if finalizers and f not in finalizers]
            self.patch(api_version, kind_or_plural, namespace, name, {"metadata": {"finalizers": keep or None}})
        return self.get(api_version, kind_or_plural, namespace, name)

    def terminating(self) -> list[tuple[str, str | None, str]]:
        """(kind, namespace, name) of every object with a deletionTimestamp, sorted."""
        with self._lock:
            return sorted((rt.kind, o["metadata"].get("namespace"), o["metadata"]["name"])
                          for rt, o in self._every_object() if o["metadata"].get("deletionTimestamp"))

    def set_status(self, api_version: str | None, kind_or_plural: str, namespace: str | None, name: str,
                   status: dict) -> dict:
        """Replace `.status` of an object (for `on_write` hooks that play a controller)."""
        rt = self.resource_type(kind_or_plural, api_version)
        with self._lock:
            entry = self._stored(rt, namespace, name)
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

    def compact(self) -> int:
        """Compact history up to now, as etcd does every few minutes: continue tokens and watches from an
        older resourceVersion are answered 410 Expired. Returns the compacted revision."""
        with self._lock:
            self.compacted_rv = self._rv
        return self.compacted_rv
