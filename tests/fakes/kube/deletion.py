"""Deletion as the API server and its garbage collector do it.

- An object with finalizers is not removed by DELETE: it gets `metadata.deletionTimestamp` (it is
  "Terminating"), the DELETE answers 200 with that object, and it goes only once every finalizer has
  been removed (by whatever controller owns it: a test, through `patch`/`set_finalizers` or an update).
- `propagationPolicy: Foreground` adds the `foregroundDeletion` finalizer: the garbage collector deletes
  the dependents (objects whose `ownerReferences` name the owner's uid) first and drops the finalizer
  when none is left, so the owner stays Terminating while any dependent does.
- `Background` (the default for most kinds) removes the owner at once and its dependents after.
  `Orphan` adds the `orphan` finalizer; the dependents lose their ownerReference and stay.
- Deleting a Namespace makes it Terminating (`status.phase`); everything in it is deleted, creates in it
  are refused with 403 `NamespaceTerminating`, and it goes once it is empty.
  (https://kubernetes.io/docs/concepts/architecture/garbage-collection/,
  https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/)

The real collector runs asynchronously; the fake runs it to a fixed point inside the request, after the
write, so a test sees the settled state at once and any object still Terminating is Terminating because
something holds it.
"""
from __future__ import annotations

from typing import Any

from .common import _now
from .errors import ApiError, _conflict
from .resources import ResourceType
from .store import _precondition

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


class _DeletionMixin:
    """Deletion and garbage collection of `KubeFake` (state: `_store`, `_lock`)."""

    def _api_delete(self, rt: ResourceType, ns: str | None, name: str, options: dict, dry_run: bool) -> dict:
        with self._lock:
            return self._api_delete_locked(rt, ns, name, options, dry_run)

    def _api_delete_locked(self, rt: ResourceType, ns: str | None, name: str, options: dict, dry_run: bool) -> dict:
        old = self._api_get(rt, ns, name)
        pre = options.get("preconditions") or {}
        # The real server checks preconditions in storage (k8s.io/apiserver storage.Preconditions.Check)
        # and turns the StorageError into a 409 Conflict whose message carries it verbatim.
        if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
            raise _conflict(rt, name, _precondition(rt, ns, name, f"UID in precondition: {pre['uid']}, UID in "
                                                                  f"object meta: {old['metadata']['uid']}"))
        if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"].get("resourceVersion"):
            raise _conflict(rt, name, _precondition(
                rt, ns, name, f"ResourceVersion in precondition: {pre['resourceVersion']}, ResourceVersion in "
                              f"object meta: {old['metadata'].get('resourceVersion')}"))
        policy = self._propagation(rt, options)
        if dry_run:
            return old
        self.deletions.append({"apiVersion": rt.api_version, "kind": rt.kind,
                               "namespace": old["metadata"].get("namespace"), "name": name,
                               "propagationPolicy": options.get("propagationPolicy")})
        result = self._begin_delete(rt, old, policy)
        self._collect_garbage()
        return result

    @staticmethod
    def _propagation(rt: ResourceType, options: dict) -> str:
        policy = options.get("propagationPolicy")
        orphan = options.get("orphanDependents")
        if policy is not None and orphan is not None:
            raise ApiError(422, "DeleteOptions.meta.k8s.io \"\" is invalid: [propagationPolicy: Invalid value: "
                                f"\"{policy}\": orphanDependents and deletionPropagation cannot be both set]", "Invalid")
        if policy is None:
            if orphan in (True, "true"):
                return "Orphan"
            return "Background"
        if policy not in ("Foreground", "Background", "Orphan"):
            raise ApiError(422, f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: '
                                f'"{policy}": supported values: "Foreground", "Background", "Orphan"', "Invalid")
        return policy

    def _begin_delete(self, rt: ResourceType, old: dict, policy: str) -> dict:
        """Mark or remove one object; returns what the DELETE answers with (hold the lock)."""
        meta = old["metadata"]
        if meta.get("deletionTimestamp"):
            return old  # already Terminating: a second DELETE changes nothing
        finalizers = list(meta.get("finalizers") or [])
        if policy == "Foreground" and FOREGROUND not in finalizers:
            finalizers.append(FOREGROUND)
        if policy == "Orphan" and ORPHAN not in finalizers:
            finalizers.append(ORPHAN)
        if rt.kind == "Namespace" or finalizers:
            new_meta = dict(meta, deletionTimestamp=_now(), deletionGracePeriodSeconds=0, finalizers=finalizers)
            if not finalizers:
                new_meta.pop("finalizers")
            marked = dict(old, metadata=new_meta)
            if rt.kind == "Namespace":
                marked["status"] = dict(old.get("status") or {}, phase="Terminating")
            stored = self._put(rt, marked, "MODIFIED")
            self._gc_pending = True
            if rt.kind == "Namespace":
                self._empty_namespace(meta["name"])
            return stored
        self._remove(rt, old)
        return old

    def _remove(self, rt: ResourceType, obj: dict) -> None:
        """The object is gone now; its dependents are collected after it (Background)."""
        meta = obj["metadata"]
        self._store[rt.storage_key].pop(self._key(rt, meta.get("namespace"), meta["name"]), None)
        self._record_event("DELETED", rt, obj)
        self._deleted_uids.add(meta.get("uid"))
        self._gc_pending = True

    def _empty_namespace(self, namespace: str) -> None:
        for rt, obj in self._every_object():
            if rt.namespaced and obj["metadata"].get("namespace") == namespace:
                self._begin_delete(rt, obj, "Background")

    def _every_object(self) -> list[tuple[ResourceType, dict]]:
        seen, out = set(), []
        for rt in list(self._types.values()):
            if rt.storage_key in seen:
                continue
            seen.add(rt.storage_key)
            out += [(rt, e.obj) for e in list(self._store[rt.storage_key].values())]
        return out

    def _collect_garbage(self) -> None:
        """Run the garbage collector and the namespace controller until nothing changes (hold the lock).
        Only owners deleted through this fake count as gone: a seeded dependent whose ownerReference
        names an owner the test never created is left alone."""
        while self._gc_pending:
            self._gc_pending = False
            objects = self._every_object()
            uids = {o["metadata"].get("uid") for _, o in objects}
            owned: dict[Any, list[tuple[ResourceType, dict]]] = {}
            for rt, obj in objects:
                for ref in obj["metadata"].get("ownerReferences") or []:
                    owned.setdefault(ref.get("uid"), []).append((rt, obj))
            for rt, obj in objects:
                obj = self._current((rt, obj))
                if obj is None:
                    continue
                meta = obj["metadata"]
                refs = meta.get("ownerReferences") or []
                if not meta.get("deletionTimestamp"):
                    owner_uids = {r.get("uid") for r in refs}
                    if refs and owner_uids & self._deleted_uids and not owner_uids & uids:
                        self._begin_delete(rt, obj, "Background")  # every owner is gone
                    continue
                finalizers = list(meta.get("finalizers") or [])
                dependents = [d for d in owned.get(meta.get("uid"), []) if self._current(d) is not None]
                if FOREGROUND in finalizers:
                    for drt, dep in dependents:
                        if not dep["metadata"].get("deletionTimestamp"):
                            self._begin_delete(drt, dep, "Foreground")
                    if not [d for d in dependents if self._current(d) is not None]:
                        finalizers.remove(FOREGROUND)
                if ORPHAN in finalizers:
                    for drt, dep in dependents:
                        self._disown(drt, dep, meta.get("uid"))
                    finalizers.remove(ORPHAN)
                if finalizers != list(meta.get("finalizers") or []):
                    new_meta = dict(meta, finalizers=finalizers)
                    if not finalizers:
                        new_meta.pop("finalizers")
                    obj = self._put(rt, dict(obj, metadata=new_meta), "MODIFIED")
                    self._gc_pending = True
                if not obj["metadata"].get("finalizers") and (
                        rt.kind != "Namespace" or self._namespace_empty(obj["metadata"]["name"])):
                    # The namespace controller empties the namespace and clears its spec finalizer itself.
                    self._remove(rt, obj)

    def _current(self, pair: tuple[ResourceType, dict]) -> dict | None:
        rt, obj = pair
        meta = obj["metadata"]
        entry = self._store[rt.storage_key].get(self._key(rt, meta.get("namespace"), meta["name"]))
        if entry is None or entry.obj["metadata"].get("uid") != meta.get("uid"):
            return None
        return entry.obj

    def _namespace_empty(self, namespace: str) -> bool:
        return not any(ns == namespace for rt in list(self._types.values()) if rt.namespaced
                       for (ns, _) in list(self._store[rt.storage_key]))

    def _disown(self, rt: ResourceType, obj: dict, owner_uid: Any) -> None:
        current = self._current((rt, obj))
        if current is None:
            return
        refs = [r for r in current["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid]
        meta = dict(current["metadata"], ownerReferences=refs)
        if not refs:
            meta.pop("ownerReferences")
        self._put(rt, dict(current, metadata=meta), "MODIFIED")

    def _refuse_in_terminating_namespace(self, rt: ResourceType, namespace: str, name: str) -> None:
        entry = self._store[("", "namespaces")].get(("", namespace))
        if entry is not None and entry.obj["metadata"].get("deletionTimestamp"):
            raise ApiError(403, f'{rt.qualified} "{name}" is forbidden: unable to create new content in namespace '
                                f"{namespace} because it is being terminated", "Forbidden",
                           {"name": name, "group": rt.group, "kind": rt.plural,
                            "causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace",
                                        "message": f"namespace {namespace} is being terminated"}]})
