"""Label and field selector parsing."""
from __future__ import annotations

import functools
import re
from typing import Any, Callable, Mapping

# ------------------------------------------------------------------------------------------------
# Selectors
# ------------------------------------------------------------------------------------------------
# Label keys and values as k8s.io/apimachinery/pkg/util/validation checks them: an optional DNS subdomain
# prefix (at most 253) and "/", then a name of at most 63 characters; values at most 63, may be empty.
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_KEY = r"[^\s=!<>(),]+"  # split first, then checked by _check_key
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"


def _check_key(key: str) -> str:
    prefix, slash, name = key.rpartition("/")
    if key.count("/") > 1:
        raise ValueError(f"key {key!r}: a qualified name must consist of alphanumeric characters, '-', '_' or '.' "
                         "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')")
    if slash and (not prefix or len(prefix) > 253 or not re.fullmatch(_PREFIX, prefix)):
        raise ValueError(f"key {key!r}: prefix part must be a lowercase RFC 1123 subdomain")
    if not name or len(name) > 63 or not re.fullmatch(_NAME, name):
        raise ValueError(f"key {key!r}: name part must consist of alphanumeric characters, '-', '_' or '.', and "
                         "must start and end with an alphanumeric character (at most 63 characters)")
    return key


def _check_value(value: str, req: str) -> str:
    if len(value) > 63 or not re.fullmatch(_VALUE, value):
        raise ValueError(f"values[0][{value}]: Invalid value: {value!r}: a valid label must be an empty string or "
                         f"consist of alphanumeric characters, '-', '_' or '.' (at most 63) in {req!r}")
    return value


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
            key, op = _check_key(m.group(1)), m.group(2)
            if not m.group(3).strip():
                raise ValueError(f"for 'in', 'notin' operators, values set can't be empty in {req!r}")
            values = {_check_value(v.strip(), req) for v in m.group(3).split(",")}
            if op == "in":
                reqs.append(lambda labels, k=key, vs=frozenset(values): labels.get(k) in vs)
            else:
                reqs.append(lambda labels, k=key, vs=frozenset(values): labels.get(k) not in vs)
        elif m := re.fullmatch(rf"!\s*({_KEY})", req):
            reqs.append(lambda labels, k=_check_key(m.group(1)): k not in labels)
        elif m := re.fullmatch(rf"({_KEY})\s*(==|!=|=|>|<)\s*([^\s]*)", req):
            key, op, value = _check_key(m.group(1)), m.group(2), _check_value(m.group(3), req)
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
            reqs.append(lambda labels, k=_check_key(req): k in labels)
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


# Field labels each kind supports beyond metadata.name and metadata.namespace (the API server's
# `AddFieldLabelConversionFunc`s, pkg/apis/*/v1/conversion.go); anything else is a 400
# `field label not supported`. Custom resources support only the two metadata fields (without
# CRD selectableFields, which the CRDs deckhand reads do not declare).
FIELD_LABELS: dict[str, frozenset[str]] = {
    "Pod": frozenset({"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                      "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs", "status.nominatedNodeName"}),
    "Event": frozenset({"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                        "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                        "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"}),
    "Secret": frozenset({"type"}),
    "Namespace": frozenset({"status.phase"}),
    "Node": frozenset({"spec.unschedulable"}),
    "ReplicaSet": frozenset({"status.replicas"}),
    "Job": frozenset({"status.successful"}),
    "CertificateSigningRequest": frozenset({"spec.signerName"}),
    "Service": frozenset({"spec.clusterIP", "spec.type"}),
}
_META_LABELS = frozenset({"metadata.name", "metadata.namespace"})


def field_selector_for(kind: str, custom: bool, selector: str) -> Callable[[dict], bool]:
    """parse_field_selector, refusing field labels `kind` does not support as the API server does."""
    allowed = _META_LABELS | (frozenset() if custom else FIELD_LABELS.get(kind, frozenset()))
    for req in _split_top_level(selector or ""):
        m = re.fullmatch(r"([^=!\s]+)\s*(==|!=|=)\s*(.*)", req)
        if m is None:
            raise ValueError(f"invalid selector: '{selector}'; can't understand '{req}'")
        if m.group(1) not in allowed:
            raise ValueError(f"field label not supported: {m.group(1)}")
    return parse_field_selector(selector)
