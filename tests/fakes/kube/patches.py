"""Merge, strategic merge and JSON patches."""
from __future__ import annotations

import copy
import json
from typing import Any

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
    if key is None:  # no patchMergeKey: the list is replaced whole (patchStrategy unset)
        return [strategic_merge_patch({}, i) if isinstance(i, dict) else copy.deepcopy(i) for i in patch]
    for item in patch:
        # apimachinery's strategicpatch refuses an element of a merging list without its merge key
        # (mergepatch.ErrNoMergeKey); the API server answers 422.
        if not isinstance(item, dict) or (key not in item and item.get("$patch") != "replace"):
            shown = "map[" + " ".join(f"{k}:{v}" for k, v in sorted(item.items())) + "]" if isinstance(item, dict) else repr(item)
            raise ValueError(f"map: {shown} does not contain declared merge key: {key}")
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

