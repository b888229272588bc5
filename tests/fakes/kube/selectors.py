"""Label and field selector parsing."""
from __future__ import annotations

import functools
import re
from typing import Any, Callable, Mapping

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
