"""Resource types the Kubernetes fake serves: `ResourceType` and the built-in registry."""
from __future__ import annotations

from dataclasses import dataclass

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUBRESOURCE_VERBS = ("get", "patch", "update")


# ------------------------------------------------------------------------------------------------
# Resource types
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResourceType:
    """One served group/version/resource. Versions of a group share storage per plural."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: frozenset[str] = frozenset()
    # The real server answers DELETE with the deleted object for pods, services, namespaces and
    # every custom resource; for most built-ins it answers with a Status.
    delete_returns_object: bool = False
    custom: bool = False  # served from a CRD: no strategic merge patch (415), like the real server

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def storage_key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def qualified(self) -> str:
        """`deployments.apps`, `pods`: how the server names the resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


def _rt(group, version, plural, kind, namespaced=True, short=(), sub=(), cats=(), ret_obj=False, custom=False):
    return ResourceType(
        group=group, version=version, plural=plural, kind=kind, namespaced=namespaced,
        singular=kind.lower(), short_names=tuple(short), categories=tuple(cats),
        subresources=frozenset(sub), delete_returns_object=ret_obj or custom, custom=custom,
    )


ISTIO_KINDS = (
    ("virtualservices", "VirtualService", ("vs",)),
    ("destinationrules", "DestinationRule", ("dr",)),
    ("gateways", "Gateway", ("gw",)),
    ("serviceentries", "ServiceEntry", ("se",)),
)

BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _rt("", "v1", "namespaces", "Namespace", False, ("ns",), ("status",), ret_obj=True),
    _rt("", "v1", "nodes", "Node", False, ("no",), ("status",)),
    _rt("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",), ("status",)),
    _rt("", "v1", "services", "Service", True, ("svc",), ("status",), ("all",), ret_obj=True),
    _rt("", "v1", "endpoints", "Endpoints", True, ("ep",)),
    _rt("", "v1", "pods", "Pod", True, ("po",), ("status", "log", "eviction"), ("all",), ret_obj=True),
    _rt("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    _rt("", "v1", "secrets", "Secret"),
    _rt("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    _rt("", "v1", "events", "Event", True, ("ev",)),
    _rt("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",), ("status",)),
    _rt("apps", "v1", "deployments", "Deployment", True, ("deploy",), ("status", "scale"), ("all",)),
    _rt("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), ("status", "scale"), ("all",)),
    _rt("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ("status", "scale"), ("all",)),
    _rt("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), ("status",), ("all",)),
    _rt("batch", "v1", "jobs", "Job", True, (), ("status",), ("all",)),
    _rt("batch", "v1", "cronjobs", "CronJob", True, ("cj",), ("status",), ("all",)),
    _rt("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True, ("hpa",), ("status",), ("all",)),
    _rt("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",), ("status",)),
    _rt("coordination.k8s.io", "v1", "leases", "Lease"),
    _rt("certificates.k8s.io", "v1", "certificatesigningrequests", "CertificateSigningRequest", False, ("csr",),
        ("status", "approval")),
    _rt("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",), ("status",)),
    _rt("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",)),
    *(_rt("networking.istio.io", v, p, k, True, s, custom=True) for v in ("v1", "v1beta1") for p, k, s in ISTIO_KINDS),
    _rt("argoproj.io", "v1alpha1", "rollouts", "Rollout", True, ("ro",), ("status", "scale"), ("all",), custom=True),
    _rt("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", True, (), ("status",), custom=True),
    _rt("gateway.networking.k8s.io", "v1", "gateways", "Gateway", True, ("gtw",), ("status",), custom=True),
    _rt("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    _rt("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    _rt("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _rt("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
)

SEED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
