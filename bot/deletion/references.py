"""How Kubernetes objects name a service: host names in batch pods (env, args, command, ConfigMaps
they read) and route destinations (Istio VirtualServices, Gateway API HTTPRoutes, Ingresses).

Pure functions over object dicts, used by the dependency check (bot/deletion/dependencies.py).
"""
from __future__ import annotations

import re

# A host token: DNS-name characters (plus `_`, so identifiers like `api_v1` stay one word).
# Matching whole tokens means `payments-api` never matches inside `payments-api-v2` or `old.payments-api`.
_HOST_TOKEN = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?")
MAX_EVIDENCE = 120


def host_forms(service: str, namespace: str, *, bare: bool) -> set[str]:
    """Names that reach the Service through cluster DNS. The bare name only resolves from its own
    namespace (the pod's first DNS search domain is `<ns>.svc.cluster.local`), so a bare
    `payments-api` in another namespace means that namespace's payments-api, not this one."""
    forms = {f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"}
    if bare:
        forms.add(service)
    return forms


def mentioned_host(text: str, forms: set[str]) -> str | None:
    for token in _HOST_TOKEN.findall(str(text).lower()):
        if token in forms:
            return token
    return None


def clip(text: str, limit: int = MAX_EVIDENCE) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pod_spec(kind: str, obj: dict) -> dict:
    """The pod template of a Job or CronJob."""
    spec = obj.get("spec") or {}
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return ((spec.get("template") or {}).get("spec")) or {}


def dns_searches_reach(pod: dict, namespace: str) -> bool:
    """A pod's own dnsConfig search domains can make the bare name resolve across namespaces."""
    searches = ((pod.get("dnsConfig") or {}).get("searches")) or []
    return any(s.rstrip(".") in (f"{namespace}.svc.cluster.local", f"{namespace}.svc") for s in searches)


def containers(pod: dict) -> list[dict]:
    return list(pod.get("initContainers") or []) + list(pod.get("containers") or [])


def configmap_refs(pod: dict) -> list[tuple[str, str | None, str]]:
    """(ConfigMap name, key or None for all keys, how it is used) for everything the pod reads."""
    refs = []
    for c in containers(pod):
        for source in c.get("envFrom") or []:
            if (source.get("configMapRef") or {}).get("name"):
                refs.append((source["configMapRef"]["name"], None, f"envFrom of container `{c.get('name')}`"))
        for env in c.get("env") or []:
            ref = ((env.get("valueFrom") or {}).get("configMapKeyRef")) or {}
            if ref.get("name"):
                refs.append((ref["name"], ref.get("key"), f"env `{env.get('name')}` of container `{c.get('name')}`"))
    for volume in pod.get("volumes") or []:
        if (volume.get("configMap") or {}).get("name"):
            refs.append((volume["configMap"]["name"], None, f"volume `{volume.get('name')}`"))
        for source in ((volume.get("projected") or {}).get("sources")) or []:
            if (source.get("configMap") or {}).get("name"):
                refs.append((source["configMap"]["name"], None, f"projected volume `{volume.get('name')}`"))
    return refs


def mention_in_pod(pod: dict, forms: set[str], namespace: str, configmaps: dict) -> str | None:
    for c in containers(pod):
        for env in c.get("env") or []:
            if env.get("value") and mentioned_host(env["value"], forms):
                return f"env `{env.get('name')}` of container `{c.get('name')}`: `{clip(env['value'])}`"
        for part in ("command", "args"):
            text = " ".join(str(x) for x in c.get(part) or [])
            if mentioned_host(text, forms):
                return f"{part} of container `{c.get('name')}`: `{clip(text)}`"
    for name, key, how in configmap_refs(pod):
        data = ((configmaps.get((namespace, name)) or {}).get("data")) or {}
        for k, value in data.items():
            if (key is None or k == key) and mentioned_host(value, forms):
                host = mentioned_host(value, forms)
                return f"ConfigMap `{namespace}/{name}` key `{k}` mentions `{host}` (used as {how})"
    return None


def vs_destinations(vs: dict) -> list[str]:
    spec = vs.get("spec") or {}
    hosts = []
    for kind in ("http", "tcp", "tls"):
        for rule in spec.get(kind) or []:
            for dest in rule.get("route") or []:
                host = (dest.get("destination") or {}).get("host")
                if host:
                    hosts.append(host)
            mirror = (rule.get("mirror") or {}).get("host")
            if mirror:
                hosts.append(mirror)
    return hosts


def httproute_backends(route: dict) -> list[tuple[str, str]]:
    ns = (route.get("metadata") or {}).get("namespace")
    refs = []
    for rule in (route.get("spec") or {}).get("rules") or []:
        backends = list(rule.get("backendRefs") or [])
        for f in rule.get("filters") or []:
            if (f.get("requestMirror") or {}).get("backendRef"):
                backends.append(f["requestMirror"]["backendRef"])
        for ref in backends:
            if (ref.get("kind") or "Service") == "Service" and (ref.get("group") or "") == "":
                refs.append((ref.get("namespace") or ns, ref.get("name")))
    return refs


def ingress_backends(ingress: dict) -> list[str]:
    spec = ingress.get("spec") or {}
    names = []
    default = ((spec.get("defaultBackend") or {}).get("service") or {}).get("name")
    if default:
        names.append(default)
    for rule in spec.get("rules") or []:
        for path in ((rule.get("http") or {}).get("paths")) or []:
            name = (((path.get("backend") or {}).get("service")) or {}).get("name")
            if name:
                names.append(name)
    return names
