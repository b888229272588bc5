"""Kubernetes resource quantities and what a workload reserves (requests × replicas)."""
from __future__ import annotations

import re
from functools import lru_cache
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1), "k": Decimal(10**3),
            "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18)}
_QUANTITY = re.compile(r"^([+]?[0-9]*\.?[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")


def parse_quantity(text: str | int | float) -> Decimal:
    """A Kubernetes quantity ("250m", "512Mi", "1.5", "1e3") as a Decimal; ValueError if malformed."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return Decimal(str(text))
    return _parse(str(text))


@lru_cache(maxsize=1024)  # a fleet has a handful of distinct requests ("100m", "256Mi") over 80,000 pods
def _parse(text: str) -> Decimal:
    match = _QUANTITY.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 250m, 1, 512Mi, 2Gi)")
    number, suffix = match.group(1), match.group(2) or ""
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a Kubernetes quantity") from None
    if suffix in _BINARY:
        return value * _BINARY[suffix]
    if suffix[:1] in ("e", "E"):
        return value * (Decimal(10) ** int(suffix[1:]))
    return value * _DECIMAL[suffix]


def cpu_cores(text) -> float:
    return float(parse_quantity(text))


def memory_bytes(text) -> int:
    return int(parse_quantity(text))


def pod_requests(pod_spec: dict) -> tuple[float, int]:
    """CPU cores and memory bytes one pod requests (app containers; init containers run before)."""
    cpu, memory = 0.0, 0
    for container in pod_spec.get("containers") or []:
        requests = (container.get("resources") or {}).get("requests") or {}
        try:
            cpu += cpu_cores(requests.get("cpu", 0))
            memory += memory_bytes(requests.get("memory", 0))
        except ValueError:
            continue  # the API server validated it; ignore anything odd rather than crash a scan
    return cpu, memory


def workload_reserved(workload: dict) -> tuple[float, int]:
    """requests × replicas for a Deployment, StatefulSet or Rollout (0 replicas reserve nothing)."""
    spec = workload.get("spec") or {}
    replicas = spec.get("replicas")
    replicas = 1 if replicas is None else int(replicas)
    cpu, memory = pod_requests(((spec.get("template") or {}).get("spec")) or {})
    return cpu * replicas, memory * replicas
