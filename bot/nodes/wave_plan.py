"""Planning a node maintenance wave: which nodes go out in which batch, never taking a role below its floor.

Pure functions over what the API server sends (Nodes, Pods, PodDisruptionBudgets) and a `WaveSpec`.
The same rules run twice: once for the plan a person approves, and again before every batch from a
fresh read of the cluster (bot/nodes/waves.py), because a node may have gone NotReady for reasons of
its own since the plan was made.

Availability of a role = its nodes that are Ready and schedulable. A batch may take at most
`max_unavailable` of a role out at once, and only while `available - batch >= floor` (kured's one node
under a lock, system-upgrade-controller's per-plan concurrency and Cluster API's maxUnavailable are the
anchors: here both limits apply per role). What `kubectl drain` refuses without --force or
--delete-emptydir-data (a pod with no controller, a pod with local storage) makes a node blocked: it
is listed with the reason and left out. A PodDisruptionBudget that allows no disruption now is a
warning, not a blocker: the drain retries its evictions until the budget allows them.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.foundation.kube import annotations, labels, meta

DRAIN = "drain"        # drain only: hand the node back with a button
REJOIN = "rejoin"      # drain, then wait for the node to be reinstalled and rejoin (join reports + Ready)
PROCEDURES = {DRAIN: "Drain only (hand back by a button)", REJOIN: "Drain, then wait for reinstall and rejoin"}
SELECTORS = {"labels": "Label selector", "names": "Node names", "kubelet": "Kubelet version older than"}
NO_ROLE = "(no role)"
MIRROR = "kubernetes.io/config.mirror"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class SpecError(ValueError):
    """A wave field that does not parse; `field` names the modal field."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


# -- budgets -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """A count or a percentage of a role's nodes ("1", "25%")."""

    value: int
    percent: bool = False

    def of(self, total: int, *, round_up: bool) -> int:
        if not self.percent:
            return self.value
        exact = total * self.value / 100
        return math.ceil(exact) if round_up else math.floor(exact)

    def __str__(self) -> str:
        return f"{self.value}%" if self.percent else str(self.value)


def parse_budget(field_name: str, text: str, *, allow_zero: bool) -> Budget:
    raw = (text or "").strip()
    match = re.fullmatch(r"(\d{1,4})(%?)", raw)
    if not match:
        raise SpecError(field_name, f"Write a number of nodes (`2`) or a percentage (`25%`), not `{raw[:40]}`.")
    value, percent = int(match.group(1)), bool(match.group(2))
    if percent and value > 100:
        raise SpecError(field_name, "A percentage cannot be above 100%.")
    if value == 0 and not allow_zero:
        raise SpecError(field_name, "At least one node must be allowed out at a time, or the wave never moves.")
    return Budget(value, percent)


# -- maintenance window -----------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """Days and hours in a time zone, e.g. `mon-fri 22:00-06:00 Europe/Berlin` (end before start: overnight)."""

    days: frozenset[int]
    start: time
    end: time
    zone: str

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(self.zone))
        clock = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            return local.weekday() in self.days and self.start <= clock < self.end
        # Overnight: the part after midnight belongs to the window that opened the evening before.
        if clock >= self.start:
            return local.weekday() in self.days
        return clock < self.end and (local.weekday() - 1) % 7 in self.days

    def next_open(self, moment: datetime) -> datetime:
        """The first minute at or after `moment` inside the window (searched minute by minute over a week)."""
        local = moment.astimezone(ZoneInfo(self.zone)).replace(second=0, microsecond=0)
        for step in range(0, 8 * 24 * 60, 15):
            candidate = local + timedelta(minutes=step)
            if self.contains(candidate):
                return candidate
        return local

    def __str__(self) -> str:
        runs: list[list[int]] = []
        for day in sorted(self.days):
            if runs and runs[-1][-1] == day - 1:
                runs[-1].append(day)
            else:
                runs.append([day])
        days = ",".join(DAYS[r[0]] if len(r) == 1 else f"{DAYS[r[0]]}-{DAYS[r[-1]]}" for r in runs)
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M} {self.zone}"


def parse_window(text: str) -> Window | None:
    raw = " ".join((text or "").split())
    if not raw:
        return None
    match = re.fullmatch(r"(?i)([a-z,\-]+)\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})(?:\s+(\S+))?", raw)
    if not match:
        raise SpecError("window", "Write days, hours and a time zone, e.g. `mon-fri 22:00-06:00 Europe/Berlin` "
                                  "(time zone optional, UTC by default).")
    days: set[int] = set()
    for part in match.group(1).lower().split(","):
        ends = part.split("-")
        if any(e[:3] not in DAYS for e in ends) or len(ends) > 2 or not part:
            raise SpecError("window", f"`{part[:20]}` is not a day or a range of days (mon, tue, …, sun).")
        first, last = DAYS.index(ends[0][:3]), DAYS.index(ends[-1][:3])
        days.update((first + i) % 7 for i in range((last - first) % 7 + 1))
    h1, m1, h2, m2 = (int(match.group(i)) for i in range(2, 6))
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
        raise SpecError("window", "Hours run from 00:00 to 24:00.")
    zone = match.group(6) or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SpecError("window", f"`{zone[:40]}` is not a time zone name (e.g. Europe/Berlin, UTC).") from None
    start, end = time(h1, m1), time(0, 0) if h2 == 24 else time(h2, m2)
    if start == end and h2 != 24:
        raise SpecError("window", "The window opens and closes at the same minute.")
    return Window(frozenset(days), start, end, zone)


# -- the spec ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WaveSpec:
    cluster: str
    selector_kind: str          # labels | names | kubelet
    selector: str
    role_label: str
    max_unavailable: Budget
    floor: Budget
    procedure: str              # drain | rejoin
    node_timeout: timedelta
    window: Window | None = None
    traffic_guard: float | None = None   # pause while the cluster's Istio requests/s is above this

    def as_dict(self) -> dict:
        return {"cluster": self.cluster, "selector_kind": self.selector_kind, "selector": self.selector,
                "role_label": self.role_label, "max_unavailable": str(self.max_unavailable),
                "floor": str(self.floor), "procedure": self.procedure,
                "node_timeout": int(self.node_timeout.total_seconds()),
                "window": str(self.window) if self.window else "", "traffic_guard": self.traffic_guard}

    @classmethod
    def from_dict(cls, data: dict) -> "WaveSpec":
        return cls(cluster=data["cluster"], selector_kind=data["selector_kind"], selector=data["selector"],
                   role_label=data["role_label"],
                   max_unavailable=parse_budget("max_unavailable", data["max_unavailable"], allow_zero=False),
                   floor=parse_budget("floor", data["floor"], allow_zero=True), procedure=data["procedure"],
                   node_timeout=timedelta(seconds=data["node_timeout"]), window=parse_window(data["window"]),
                   traffic_guard=data.get("traffic_guard"))


# -- nodes -------------------------------------------------------------------------------------
def node_ready(node: dict) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def schedulable(node: dict) -> bool:
    return not (node.get("spec") or {}).get("unschedulable")


def available(node: dict) -> bool:
    return node_ready(node) and schedulable(node)


def kubelet_version(node: dict) -> str:
    return ((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion") or ""


def role_of(node: dict, role_label: str) -> str:
    """`node-role.kubernetes.io/*` takes the suffix of the first such label key (sorted); a plain key its value."""
    node_labels = labels(node)
    if role_label.endswith("*"):
        prefix = role_label[:-1]
        roles = sorted(k[len(prefix):] for k in node_labels if k.startswith(prefix) and k[len(prefix):])
        return roles[0] if roles else NO_ROLE
    return node_labels.get(role_label) or NO_ROLE


def version_tuple(text: str) -> tuple[int, ...] | None:
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", (text or "").strip())
    return tuple(int(g or 0) for g in match.groups()) if match else None


_REQUIREMENT = re.compile(r"\s*(!?)\s*([A-Za-z0-9._/\-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9._\-]*)|"
                          r"\s(in|notin)\s*\(([^)]*)\))?\s*")


def parse_selector(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """Kubernetes label selector syntax (equality and set based) -> requirements; SpecError when malformed."""
    requirements = []
    parts = re.split(r",(?![^(]*\))", text or "")
    for part in parts:
        match = _REQUIREMENT.fullmatch(part)
        if not part.strip() or not match:
            raise SpecError("selector", f"`{part.strip()[:60]}` is not a label selector requirement "
                                        "(e.g. `node-role.kubernetes.io/worker`, `zone=dc1`, `rack in (r1,r2)`).")
        negate, key, op, value, set_op, values = match.groups()
        if negate and (op or set_op):
            raise SpecError("selector", f"`!{key}` takes no value.")
        if set_op:
            items = tuple(v.strip() for v in values.split(",") if v.strip())
            if not items:
                raise SpecError("selector", f"`{key} {set_op} ()` needs at least one value.")
            requirements.append((key, set_op, items))
        elif op:
            requirements.append((key, "!=" if op == "!=" else "=", (value,)))
        else:
            requirements.append((key, "!" if negate else "exists", ()))
    return requirements


def selector_matches(requirements, node_labels: dict[str, str]) -> bool:
    for key, op, values in requirements:
        present, value = key in node_labels, node_labels.get(key)
        if (op == "exists" and not present) or (op == "!" and present) or (op == "=" and value != values[0]) \
                or (op == "!=" and value == values[0]) or (op == "in" and value not in values) \
                or (op == "notin" and present and value in values):
            return False
    return True


def check_selection(kind: str, text: str) -> None:
    """Raise SpecError when the selection cannot be understood (no cluster needed)."""
    if kind == "labels":
        parse_selector(text)
    elif kind == "names":
        names = _names(text)
        if not names:
            raise SpecError("selector", "List at least one node name.")
        bad = [n for n in names if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", n)]
        if bad:
            raise SpecError("selector", f"`{bad[0][:60]}` is not a node name (lowercase DNS subdomain).")
    elif kind == "kubelet":
        if version_tuple(text) is None:
            raise SpecError("selector", "Write a kubelet version such as `1.30` or `v1.30.2`.")
    else:
        raise SpecError("selector_kind", "Choose how to select nodes.")


def _names(text: str) -> list[str]:
    return [n for n in re.split(r"[\s,]+", (text or "").strip()) if n]


def select(nodes: list[dict], spec: WaveSpec) -> tuple[list[dict], list[str]]:
    """(the nodes the spec selects, names listed but not in the cluster)."""
    if spec.selector_kind == "names":
        wanted = _names(spec.selector)
        by_name = {meta(n).get("name"): n for n in nodes}
        return [by_name[n] for n in wanted if n in by_name], [n for n in wanted if n not in by_name]
    if spec.selector_kind == "kubelet":
        limit = version_tuple(spec.selector)
        return [n for n in nodes if (version_tuple(kubelet_version(n)) or (0,)) < limit], []
    requirements = parse_selector(spec.selector)
    return [n for n in nodes if selector_matches(requirements, labels(n))], []


# -- pods on a node ------------------------------------------------------------------------------
def controller_of(pod: dict) -> dict | None:
    for ref in meta(pod).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def skipped_by_drain(pod: dict) -> str | None:
    """Why `kubectl drain` leaves this pod alone (DaemonSet, mirror, finished, already terminating)."""
    owner = controller_of(pod)
    if owner and owner.get("kind") == "DaemonSet":
        return "DaemonSet"
    if MIRROR in annotations(pod):
        return "mirror pod"
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return "finished"
    if meta(pod).get("deletionTimestamp"):
        return "terminating"
    return None


def pod_ref(pod: dict) -> str:
    return f"{meta(pod).get('namespace')}/{meta(pod).get('name')}"


def drain_blocker(pod: dict) -> str | None:
    """What `kubectl drain` refuses without --force / --delete-emptydir-data; deckhand never forces."""
    if skipped_by_drain(pod):
        return None
    if controller_of(pod) is None:
        return f"pod `{pod_ref(pod)}` has no controller: evicting it would lose it for good"
    if any("emptyDir" in v for v in (pod.get("spec") or {}).get("volumes") or []):
        return f"pod `{pod_ref(pod)}` keeps data in local storage (emptyDir)"
    return None


def pods_by_node(pods: list[dict]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            found.setdefault(node, []).append(pod)
    return found


def budget_warnings(pods: list[dict], pdbs: list[dict]) -> list[str]:
    """PodDisruptionBudgets covering these pods that allow no disruption now (the drain will wait on them)."""
    found = []
    for pdb in pdbs:
        status, spec = pdb.get("status") or {}, pdb.get("spec") or {}
        if status.get("disruptionsAllowed", 1) > 0:
            continue
        match_labels = (spec.get("selector") or {}).get("matchLabels") or {}
        namespace = meta(pdb).get("namespace")
        if any(meta(p).get("namespace") == namespace and match_labels
               and all(labels(p).get(k) == v for k, v in match_labels.items())
               and not skipped_by_drain(p) for p in pods):
            found.append(f"PodDisruptionBudget `{namespace}/{meta(pdb).get('name')}` allows no disruption now "
                         f"({status.get('currentHealthy', '?')} healthy, {status.get('desiredHealthy', '?')} needed)")
    return found


# -- the plan ----------------------------------------------------------------------------------
@dataclass
class RoleAvailability:
    role: str
    total: int
    before: int      # Ready and schedulable before the batch
    after: int       # ... while the batch is out
    floor: int


@dataclass
class Batch:
    nodes: list[str]
    roles: list[RoleAvailability]


@dataclass
class Plan:
    batches: list[Batch] = field(default_factory=list)
    blocked: dict[str, str] = field(default_factory=dict)     # node -> why it is left out
    warnings: dict[str, list[str]] = field(default_factory=dict)   # node -> what the drain will wait for
    missing: list[str] = field(default_factory=list)
    estimate: timedelta = timedelta(0)

    @property
    def nodes(self) -> list[str]:
        return [n for b in self.batches for n in b.nodes]

    def as_dict(self) -> dict:
        return {"batches": [{"nodes": b.nodes, "roles": [vars(r) for r in b.roles]} for b in self.batches],
                "blocked": self.blocked, "warnings": self.warnings, "missing": self.missing,
                "estimate": int(self.estimate.total_seconds())}

    @classmethod
    def from_dict(cls, data: dict) -> "Plan":
        return cls(batches=[Batch(b["nodes"], [RoleAvailability(**r) for r in b["roles"]]) for b in data["batches"]],
                   blocked=data["blocked"], warnings=data["warnings"], missing=data["missing"],
                   estimate=timedelta(seconds=data["estimate"]))


@dataclass
class RoleLimits:
    total: int
    available: int
    floor: int
    max_out: int

    @property
    def allowance(self) -> int:
        return max(0, min(self.max_out, self.available - self.floor))


def role_limits(nodes: list[dict], spec: WaveSpec) -> dict[str, RoleLimits]:
    limits: dict[str, RoleLimits] = {}
    for node in nodes:
        role = role_of(node, spec.role_label)
        entry = limits.setdefault(role, RoleLimits(0, 0, 0, 0))
        entry.total += 1
        entry.available += available(node)
    for entry in limits.values():
        entry.floor = spec.floor.of(entry.total, round_up=True)
        entry.max_out = max(1, spec.max_unavailable.of(entry.total, round_up=False))
    return limits


def plan(spec: WaveSpec, nodes: list[dict], pods: list[dict], pdbs: list[dict],
         per_node: timedelta = timedelta(minutes=5)) -> Plan:
    """Batches in order, each role's availability before/after each batch, and what is left out and why.

    `per_node` is how long one node is expected to be out (drain, plus reinstall and rejoin for REJOIN)."""
    chosen, missing = select(nodes, spec)
    result = Plan(missing=missing)
    on_node = pods_by_node(pods)
    limits = role_limits(nodes, spec)
    queues: dict[str, list[dict]] = {}
    for node in sorted(chosen, key=lambda n: meta(n).get("name")):
        name = meta(node)["name"]
        blockers = [b for b in (drain_blocker(p) for p in on_node.get(name, [])) if b]
        if blockers:
            result.blocked[name] = blockers[0] + (f" (and {len(blockers) - 1} more)" if len(blockers) > 1 else "")
            continue
        warnings = budget_warnings(on_node.get(name, []), pdbs)
        if warnings:
            result.warnings[name] = warnings
        queues.setdefault(role_of(node, spec.role_label), []).append(node)
    chunks: dict[str, list[list[dict]]] = {}
    for role, queue in queues.items():
        down = [n for n in queue if not available(n)]      # already out: taking them costs nothing
        up = [n for n in queue if available(n)]
        allowance = limits[role].allowance
        if up and allowance == 0:
            lim = limits[role]
            for node in up:
                result.blocked[meta(node)["name"]] = (
                    f"role `{role}` has {lim.available} of {lim.total} nodes available and a floor of {lim.floor}: "
                    "taking one more out would break it")
            up = []
        role_chunks = [up[i:i + allowance] for i in range(0, len(up), allowance)] if up else []
        if down:
            role_chunks = [down + (role_chunks[0] if role_chunks else [])] + role_chunks[1:]
        if role_chunks:
            chunks[role] = role_chunks
    rounds = max((len(c) for c in chunks.values()), default=0)
    for index in range(rounds):
        names, roles = [], []
        for role in sorted(chunks):
            if index >= len(chunks[role]):
                continue
            members = chunks[role][index]
            names.extend(meta(n)["name"] for n in members)
            lim = limits[role]
            out = sum(1 for n in members if available(n))
            roles.append(RoleAvailability(role, lim.total, lim.available, lim.available - out, lim.floor))
        result.batches.append(Batch(sorted(names), roles))
    result.estimate = per_node * rounds
    return result


def batch_fits(batch_nodes: list[str], nodes: list[dict], spec: WaveSpec) -> list[str]:
    """Before a batch starts, from a fresh read: the roles it would take below their floor (empty = go)."""
    limits = role_limits(nodes, spec)
    by_name = {meta(n).get("name"): n for n in nodes}
    out: dict[str, int] = {}
    for name in batch_nodes:
        node = by_name.get(name)
        if node is not None and available(node):
            role = role_of(node, spec.role_label)
            out[role] = out.get(role, 0) + 1
    problems = []
    for role, count in sorted(out.items()):
        lim = limits[role]
        if lim.available - count < lim.floor:
            problems.append(f"`{role}` has {lim.available} of {lim.total} available; taking {count} out would "
                            f"leave {lim.available - count}, below its floor of {lim.floor}")
    return problems
