"""Scope a PromQL expression to clusters on a shared query endpoint (Thanos Query, Mimir, VictoriaMetrics).

On such an endpoint every series carries a label naming its cluster (an external label, e.g.
`cluster="prod-a"`). deckhand writes its queries as if it talked to one cluster's Prometheus;
`scope()` rewrites them so that

* every vector selector gets the cluster matcher (`cluster="prod-a"`, or `cluster=~"prod-a|prod-b"`
  for several), so nothing is read from another cluster;
* every aggregation keeps the cluster label: `by (...)` lists get it added, a bare `sum(...)` becomes
  `sum by (cluster) (...)`; `without (...)` keeps it already. So one query can answer for many
  clusters at once, each sample attributed by its label, even when two clusters hold a namespace and
  service of the same name.

Binary operators without `on(...)` match on every label, the cluster label included; `on(...)` and
`ignoring(...)` are left alone (deckhand's queries do not use them).

This is a lexer, not a parser: it knows strings, label-list parentheses, the `[...]` range and
`offset`/`@` modifiers well enough for the expressions deckhand writes (and PromQL generally), and it
refuses what it does not understand (ScopeError) instead of sending an unscoped query.
"""
from __future__ import annotations

import re

AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
GROUPING = {"by", "without"}
LABEL_LISTS = {"on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"} | GROUPING | LABEL_LISTS

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[a-zA-Z0-9]*)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<punct>[(){}\[\],@]|[^\s(){}\[\],@"'`\w]+)
""", re.VERBOSE)


class ScopeError(ValueError):
    """The expression could not be scoped safely; never sent unscoped."""


def _tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise ScopeError(f"cannot read the PromQL at offset {pos}: {expr[pos:pos + 20]!r}")
        out.append((match.lastgroup, match.group()))
        pos = match.end()
    return out


def quote(value: str) -> str:
    """A PromQL double-quoted string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _regex_literal(value: str) -> str:
    # RE2 metacharacters escaped; Prometheus anchors label regexes at both ends.
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", value)


def matcher(label: str, values: list[str] | tuple[str, ...]) -> str:
    """`cluster="a"` for one value, `cluster=~"a|b"` for several (sorted, so the query is stable)."""
    values = sorted(set(values))
    if not values:
        raise ScopeError("no cluster to scope the query to")
    if len(values) == 1:
        return f"{label}={quote(values[0])}"
    return f"{label}=~{quote('|'.join(_regex_literal(v) for v in values))}"


def _next(tokens: list[tuple[str, str]], i: int) -> int:
    """Index of the next significant token at or after i (len(tokens) at the end)."""
    while i < len(tokens) and tokens[i][0] in ("space", "comment"):
        i += 1
    return i


def _closing(tokens: list[tuple[str, str]], i: int) -> int:
    """Index of the parenthesis closing the one at i."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j][1] == "(":
            depth += 1
        elif tokens[j][1] == ")":
            depth -= 1
            if depth == 0:
                return j
    raise ScopeError("unbalanced parentheses")


def scope(expr: str, label: str, values: list[str] | tuple[str, ...]) -> str:
    """`expr` restricted to series whose `label` is one of `values`, aggregations keeping `label`."""
    match = matcher(label, values)
    tokens = _tokens(expr)
    out: list[str] = []
    label_list_until = -1      # inside by/without/on/... ( ... ): identifiers are label names
    in_braces = False
    add_by_at: set[int] = set()  # token index after which " by (label)" goes (bare aggregations)
    extend_by_at: set[int] = set()  # index of a `by` list's closing parenthesis: add the label there
    brackets = 0
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "punct" and text == "{":
            if in_braces:
                raise ScopeError("nested braces")
            in_braces = True
            nxt = _next(tokens, i + 1)
            closes = nxt < len(tokens) and tokens[nxt][1] == "}"
            out.append("{" + match + ("" if closes else ","))
            i += 1
            continue
        if kind == "punct" and text == "}":
            in_braces = False
        elif kind == "punct" and text == "[":
            brackets += 1
        elif kind == "punct" and text == "]":
            brackets -= 1
        elif kind == "ident" and not in_braces and brackets == 0 and i > label_list_until:
            word = text.lower()
            nxt = _next(tokens, i + 1)
            following = tokens[nxt][1] if nxt < len(tokens) else ""
            if word in GROUPING | LABEL_LISTS:
                if following == "(":
                    label_list_until = _closing(tokens, nxt)
                    if word == "by":
                        extend_by_at.add(label_list_until)
            elif word in AGGREGATIONS and following == "(":
                after = _next(tokens, _closing(tokens, nxt) + 1)
                if not (after < len(tokens) and tokens[after][1].lower() in GROUPING):
                    add_by_at.add(i)
            elif word in AGGREGATIONS and following.lower() in GROUPING:
                pass
            elif word in KEYWORDS or following in ("(", "{"):
                pass  # an operator keyword, a function call, or a selector whose braces come next
            else:
                out.append(text + "{" + match + "}")  # a bare metric name: braces with the matcher
                i += 1
                continue
        if i in extend_by_at:
            listed = _current_list(out)
            out.append(")" if label in listed else ("" if not listed else ", ") + label + ")")
            i += 1
            continue
        out.append(text)
        if i in add_by_at:
            out.append(f" by ({label})")
        i += 1
    if in_braces or brackets:
        raise ScopeError("unbalanced braces or brackets")
    return "".join(out)


def _current_list(out: list[str]) -> set[str]:
    """Label names of the `by (` list being written (out ends inside it)."""
    names: list[str] = []
    for text in reversed(out):
        if text == "(":
            break
        names.append(text.strip().strip(","))
    return {n for n in names if n}

