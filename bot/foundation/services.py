"""Finding a service by name across the fleet; a service is a Service plus the workloads it selects."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bot.foundation.context import Context
from bot.foundation.kube import SERVICES, KubeError, labels


@dataclass(frozen=True)
class ServiceRef:
    cluster: str
    namespace: str
    name: str
    team: str | None
    selector: dict

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.namespace}/{self.name}"


class ServiceNotFound(Exception):
    pass


def find_service(ctx: Context, name: str, cluster: str | None = None) -> tuple[list[ServiceRef], list[KubeError]]:
    """Services named `name` in one cluster or all (one list call per cluster, by field selector, all at once).

    Returns the matches and the clusters that could not be asked, so callers can say
    "not found in prod-a; prod-b did not answer" instead of a false "not found".
    """
    clusters = [cluster] if cluster else [c.name for c in ctx.settings.clusters]
    found: list[ServiceRef] = []
    errors: list[KubeError] = []

    def ask(name_of_cluster: str) -> list[dict] | KubeError:
        try:
            return ctx.kube.list(name_of_cluster, SERVICES, field_selector=f"metadata.name={name}")
        except KubeError as exc:
            return exc

    # The clusters are asked at once: one after another, a 16-cluster fleet paid 16 round trips
    # before `/service deps` could start (bench/dependency_check.py, 16 clusters).
    if len(clusters) > 1:
        with ThreadPoolExecutor(max_workers=min(8, len(clusters)), thread_name_prefix="find-service") as pool:
            answers = list(pool.map(ask, clusters))
    else:
        answers = [ask(c) for c in clusters]
    for name_of_cluster, items in zip(clusters, answers):
        if isinstance(items, KubeError):
            errors.append(items)
            continue
        for item in items:
            meta = item.get("metadata") or {}
            found.append(ServiceRef(
                cluster=name_of_cluster, namespace=meta.get("namespace", "default"), name=meta.get("name", name),
                team=labels(item).get(ctx.settings.labels.team), selector=(item.get("spec") or {}).get("selector") or {},
            ))
    return found, errors


def describe_lookup_failure(name: str, cluster: str | None, found: list[ServiceRef], errors: list[KubeError]) -> str:
    """One sentence for Slack when a lookup did not give exactly one service."""
    where = f"cluster `{cluster}`" if cluster else "any cluster"
    if found:
        places = ", ".join(f"`{s.cluster}/{s.namespace}`" for s in found)
        return (f"`{name}` exists in several places ({places}); add the cluster, e.g. "
                f"`{name} {found[0].cluster}`.")
    if errors:
        down = "; ".join(str(e) for e in errors)
        return f"`{name}` was not found in the clusters that answered, and some did not: {down}. Try again shortly."
    return f"No Service named `{name}` in {where}. Check the name (it is the Kubernetes Service name)."
