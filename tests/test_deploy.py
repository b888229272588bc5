"""Install artefacts: the kustomize base renders offline and every object validates against real
Kubernetes schemas; the Deployment is safe to run; the Dockerfile builds a slim non-root image;
the Slack manifests declare exactly the commands the code registers."""
from __future__ import annotations

import ast
import os
import posixpath
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from bot.foundation.config import Secrets, parse_settings
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
# The oldest and the newest minor the fleet runs; kubernetes-validate ships both schema sets.
SCHEMA_VERSIONS = ("1.28.0", "1.32.0")


def kustomize(path: Path) -> list[dict]:
    kubectl = require_tool("kubectl")
    proc = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ.get("PATH", "")})  # offline: no kubeconfig, no network
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return kustomize(KUBE)


@pytest.fixture(scope="module")
def remote() -> list[dict]:
    return kustomize(KUBE / "remote-cluster")


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


# -- Kubernetes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_every_rendered_object_validates(base, remote, version):
    example = yaml.safe_load((KUBE / "secret.example.yaml").read_text())
    for obj in base + remote + [example]:
        kubernetes_validate.validate(obj, version, strict=True)  # raises with the failing path
    kinds = {o["kind"] for o in base}
    assert kinds == {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                     "ConfigMap", "PersistentVolumeClaim", "Deployment", "Service", "NetworkPolicy"}
    assert {o["kind"] for o in remote} == {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                           "Secret"}
    for role in ("deckhand", "deckhand-waves"):  # the same rights in every cluster
        assert one(remote, "ClusterRole", role) == one(base, "ClusterRole", role)
    token = one(remote, "Secret")
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"]["kubernetes.io/service-account.name"] == \
        one(remote, "ServiceAccount")["metadata"]["name"]
    assert all(o["metadata"].get("namespace") == "deckhand" for o in base
               if o["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"))


def narrowed(tmp_path: Path, target: Path) -> list[dict]:
    """An overlay outside deploy/kubernetes (kustomize refuses one inside the base it builds on) that
    adds the optional namespaced-writes component, as README's "Narrowing RBAC per namespace" shows."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [os.path.relpath(target, overlay)],
        "components": [os.path.relpath(KUBE / "components" / "namespaced-writes", overlay)]}))
    return kustomize(overlay)


def rules_of(role: dict) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


@pytest.mark.parametrize("target", ["base", "remote-cluster"])
def test_the_namespaced_writes_component_moves_every_write_into_per_namespace_role_bindings(base, tmp_path, target):
    objects = narrowed(tmp_path, KUBE if target == "base" else KUBE / "remote-cluster")
    for obj in objects:
        for version in SCHEMA_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
    read, write = one(objects, "ClusterRole", "deckhand"), one(objects, "ClusterRole", "deckhand-write")
    # Nothing lost, nothing added: the read and write roles split the base role exactly.
    assert rules_of(read) | rules_of(write) == rules_of(one(base, "ClusterRole", "deckhand"))
    assert not rules_of(read) & rules_of(write)
    assert {verb for _, _, verb in rules_of(read)} <= {"get", "list"}
    assert {verb for _, _, verb in rules_of(write)} <= {"patch", "delete"}
    # The cluster-wide binding grants reads only; writes come from RoleBindings in listed namespaces.
    # (Node waves keep their own cluster-wide binding: nodes are cluster-scoped and a drain evicts from
    # every namespace.)
    cluster_bindings = {b["roleRef"]["name"] for b in objects if b["kind"] == "ClusterRoleBinding"}
    assert "deckhand" in cluster_bindings and "deckhand-write" not in cluster_bindings
    writes = [o for o in objects if o["kind"] == "RoleBinding" and o["roleRef"]["name"] == "deckhand-write"]
    assert writes and all(b["roleRef"]["kind"] == "ClusterRole" for b in writes)
    account = one(objects, "ServiceAccount")["metadata"]
    protected = set(parse_settings({"clusters": [{"name": "a", "prometheus_url": "http://x"}],
                                    "channels": {"alerts": "C1", "approvals": "C2"}}).protected_namespaces)
    for binding in writes:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"],
                                        "namespace": account["namespace"]}]
        assert binding["metadata"]["namespace"] not in protected | {account["namespace"]}


def container_of(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(container: dict) -> dict:
    return {e["name"]: e for e in container.get("env") or []}


def mount_for(container: dict, path: str) -> dict:
    """The volumeMount whose mountPath contains `path`."""
    mounts = [m for m in container["volumeMounts"] if path == m["mountPath"] or path.startswith(m["mountPath"] + "/")]
    assert mounts, f"nothing is mounted at {path}"
    return max(mounts, key=lambda m: len(m["mountPath"]))


def test_deployment_is_one_recreated_non_root_pod_with_probes_and_limits(base):
    deployment = one(base, "Deployment", "deckhand")
    spec, pod = deployment["spec"], deployment["spec"]["template"]["spec"]
    container = container_of(deployment)
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "health"  # their own listener: PORT cannot starve them
    assert str(ports["http"]) == env_of(container)["PORT"]["value"]
    assert str(ports["health"]) == env_of(container)["HEALTH_PORT"]["value"]
    scrape = deployment["spec"]["template"]["metadata"]["annotations"]
    assert scrape["prometheus.io/port"] == str(ports["health"]) and scrape["prometheus.io/path"] == "/metrics"

    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])

    volumes = {v["name"]: v for v in pod["volumes"]}
    env = env_of(container)
    # the SQLite file sits on the PVC, writable; /tmp is writable for the Kubernetes client's temp files
    db_mount = mount_for(container, env["DECKHAND_DB"]["value"])
    assert not db_mount.get("readOnly")
    pvc = one(base, "PersistentVolumeClaim")
    assert volumes[db_mount["name"]]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "emptyDir" in volumes[mount_for(container, "/tmp")["name"]]

    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"  # protected
    example = yaml.safe_load((KUBE / "secret.example.yaml").read_text())
    assert container["envFrom"] == [{"secretRef": {"name": example["metadata"]["name"]}}]
    assert pod["serviceAccountName"] == one(base, "ServiceAccount")["metadata"]["name"]
    assert container["image"].startswith("registry.example.com/") and ":" in container["image"]

    service = one(base, "Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]  # probes and metrics stay off it


def test_network_policy_admits_only_what_each_port_needs(base):
    policy = one(base, "NetworkPolicy", "deckhand")
    deployment = one(base, "Deployment", "deckhand")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ports = {p["name"] for p in container_of(deployment)["ports"]}
    rules = {}
    for rule in policy["spec"]["ingress"]:
        for port in rule["ports"]:
            assert port["port"] in ports and port["protocol"] == "TCP"
            rules[port["port"]] = rule.get("from")
    assert set(rules) == ports == {"http", "health"}
    assert rules["http"] is None  # Slack, GitHub (via the ingress) and nodes' host network; each authenticated
    assert rules["health"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def test_mounted_config_is_valid_and_its_kubeconfig_paths_are_mounted(base):
    deployment = one(base, "Deployment", "deckhand")
    container, pod = container_of(deployment), deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_path = env_of(container)["DECKHAND_CONFIG"]["value"]
    mount = mount_for(container, config_path)
    configmap = one(base, "ConfigMap", volumes[mount["name"]]["configMap"]["name"])  # the generated, hashed name
    text = configmap["data"][posixpath.relpath(config_path, mount["mountPath"])]
    settings = parse_settings(yaml.safe_load(text), "deckhand.yaml")
    assert text == (KUBE / "deckhand.yaml").read_text()
    example = yaml.safe_load((ROOT / "deploy" / "deckhand.example.yaml").read_text())
    assert set(yaml.safe_load(text)) == set(example), "deploy/kubernetes/deckhand.yaml drifted from the example"
    assert any(c.kubeconfig is None and c.context is None for c in settings.clusters), "no in-cluster entry"
    for cluster in settings.clusters:
        if cluster.kubeconfig:
            kube_mount = mount_for(container, cluster.kubeconfig)
            secret = volumes[kube_mount["name"]]["secret"]
            assert kube_mount.get("readOnly") and secret["optional"] is True
            assert posixpath.relpath(cluster.kubeconfig, kube_mount["mountPath"]) == "config"
    role = one(base, "Role")
    lease_rules = [r for r in role["rules"] if "leases" in r["resources"]]
    assert {v for r in lease_rules for v in r["verbs"]} == {"get", "create", "update"}
    assert all(r.get("resourceNames", [settings.lease.name]) == [settings.lease.name] for r in lease_rules)


def test_rbac_binds_the_service_account_and_never_grants_wildcards_or_escalation(base):
    account = one(base, "ServiceAccount")["metadata"]
    for binding_kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        for binding in [o for o in base if o["kind"] == binding_kind]:
            assert binding["roleRef"]["kind"] == role_kind
            one(base, role_kind, binding["roleRef"]["name"])
            assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"],
                                            "namespace": account["namespace"]}]
    waves = {(g, r, v) for rule in one(base, "ClusterRole", "deckhand-waves")["rules"] for g in rule["apiGroups"]
             for r in rule["resources"] for v in rule["verbs"]}
    assert waves == {("", "nodes", "patch"), ("", "pods", "list"), ("", "pods/eviction", "create")}
    rules = one(base, "ClusterRole", "deckhand")["rules"]
    granted = {(group, resource, verb) for r in rules for group in r["apiGroups"] for resource in r["resources"]
               for verb in r["verbs"]}
    assert not any("*" in item for item in granted)
    assert not {verb for _, _, verb in granted} & {"create", "update", "escalate", "bind", "impersonate", "watch"}
    assert ("", "secrets", "get") not in granted and ("", "secrets", "list") in granted
    assert ("certificates.k8s.io", "certificatesigningrequests/approval", "update") not in granted
    assert ("argoproj.io", "rollouts/status", "patch") in granted
    assert ("networking.istio.io", "virtualservices", "patch") in granted


def test_waves_rights_come_from_one_component_that_can_be_left_out(tmp_path):
    import shutil

    copy = tmp_path / "kubernetes"
    shutil.copytree(KUBE, copy)
    kustomization = yaml.safe_load((copy / "kustomization.yaml").read_text())
    assert kustomization["components"] == ["components/waves"]
    del kustomization["components"]
    (copy / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    without = kustomize(copy)
    assert not [o for o in without if o["metadata"]["name"] == "deckhand-waves"]
    assert one(without, "ClusterRole", "deckhand")


def test_secret_example_names_every_secret_the_app_reads_and_holds_no_values():
    read: list[str] = []

    class Recording(dict):
        def get(self, key, default=None):
            read.append(key)
            return default

    Secrets.from_env(Recording())
    example = yaml.safe_load((KUBE / "secret.example.yaml").read_text())
    assert set(example["stringData"]) == set(read) - {"SLACK_API_URL"}
    assert all(value == "" for value in example["stringData"].values())
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    assert "secret.example.yaml" not in kustomization["resources"] and "secretGenerator" not in kustomization


# -- container image ----------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_builds_wheels_apart_and_runs_pinned_requirements_as_non_root():
    build, final = dockerfile_stages()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", (ROOT / "Dockerfile").read_text(), re.M))
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", args["PYTHON_IMAGE"])
    assert " AS build" in build[0] and any("pip wheel" in line for line in build)
    final_text = "\n".join(final)
    assert not re.search(r"\b(gcc|build-essential|g\+\+|make|apt-get install)\b", final_text)
    assert "COPY requirements.txt" in final_text
    assert re.search(r"pip install --no-index --find-links=/wheels -r requirements\.txt", final_text)
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", line), f"not pinned: {line}"
    user = [line for line in final if line.startswith("USER ")][-1].split()[1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0
    deployment_uid = yaml.safe_load((KUBE / "deployment.yaml").read_text())["spec"]["template"]["spec"][
        "securityContext"]["runAsUser"]
    assert int(uid) == deployment_uid
    assert final[-1] == 'CMD ["python", "app.py"]'
    assert 'VOLUME ["/data"]' in final and "DECKHAND_DB=/data/" in final_text


def test_image_carries_every_local_package_the_app_imports_and_nothing_ignored():
    _, final = dockerfile_stages()
    copied = {line.split()[1].rstrip("/") for line in final if line.startswith("COPY ") and "--from" not in line}
    local = {p.name for p in ROOT.iterdir() if p.is_dir() and any(p.glob("*.py"))}  # bot/, blocks/: namespace packages
    needed, files = set(), [ROOT / "app.py"]
    while files:  # the local packages app.py reaches, following imports
        for node in ast.walk(ast.parse(files.pop().read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            for package in {n.split(".")[0] for n in names} & local - needed:
                needed.add(package)
                files.extend((ROOT / package).rglob("*.py"))
    assert needed >= {"bot", "commands", "blocks", "jobs"}
    # The demo world (demo/, and the fakes in tests/ it runs on) is for a clone, not for production:
    # the image leaves it out, and `python app.py demo` there says so (tests/test_demo.py).
    assert {"demo", "tests"} <= needed and not {"demo", "tests"} & copied
    assert needed - {"demo", "tests"} | {"app.py"} <= copied
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for must in (".git", ".venv", "tests", "*.db", "deckhand.yaml"):
        assert must in ignored
    assert not copied & set(ignored)


# -- Slack app manifests ------------------------------------------------------------------------------


def manifests() -> dict[str, dict]:
    return {name: yaml.safe_load((ROOT / "deploy" / "slack" / name).read_text())
            for name in ("manifest.yaml", "manifest-http.yaml")}


def registered(decorator: str) -> set[str]:
    """What the listener modules register with app.<decorator>(...): literals and module constants."""
    import importlib

    found = set()
    for path in (ROOT / "commands").glob("*.py"):
        module = None
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == decorator \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "app" and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant):
                    found.add(arg.value)
                elif isinstance(arg, ast.Name):
                    module = module or importlib.import_module(f"commands.{path.stem}")
                    found.add(getattr(module, arg.id))
                else:
                    pytest.fail(f"{path.name}: cannot tell which {decorator} {ast.unparse(arg)} registers")
    return found


def test_every_slash_command_in_the_code_is_declared_in_both_manifests_with_its_summary():
    from commands import help_lines

    commands = registered("command")
    assert commands and commands == {c for c, _, _ in help_lines()}
    summaries = {c: (s, " | ".join(u)) for c, u, s in help_lines()}
    for name, manifest in manifests().items():
        declared = {c["command"]: c for c in manifest["features"]["slash_commands"]}
        assert set(declared) == commands, name
        for command, (summary, usage) in summaries.items():
            assert declared[command]["description"] == summary, f"{name} {command}"
            assert declared[command]["usage_hint"] == usage, f"{name} {command}"
            assert len(command) <= 32


def test_both_manifests_declare_the_same_scopes_events_and_surfaces():
    socket, http = manifests()["manifest.yaml"], manifests()["manifest-http.yaml"]
    for manifest in (socket, http):
        scopes = manifest["oauth_config"]["scopes"]["bot"]
        assert len(scopes) == len(set(scopes)) and "commands" in scopes and "chat:write" in scopes
        assert manifest["oauth_config"]["scopes"].keys() == {"bot"}  # no user-token scopes
        events = manifest["settings"]["event_subscriptions"]["bot_events"]
        assert "app_home_opened" in events and registered("event") <= set(events)
        assert manifest["features"]["app_home"]["home_tab_enabled"] is True
        assert manifest["settings"]["interactivity"]["is_enabled"] is True
        info = manifest["display_information"]
        assert len(info["description"]) <= 140 and 175 <= len(info["long_description"]) <= 4000
    assert sorted(socket["oauth_config"]["scopes"]["bot"]) == sorted(http["oauth_config"]["scopes"]["bot"])
    assert socket["display_information"] == http["display_information"]
    assert socket["features"]["app_home"] == http["features"]["app_home"]
    assert socket["settings"]["event_subscriptions"]["bot_events"] == http["settings"]["event_subscriptions"]["bot_events"]
    assert socket["settings"]["socket_mode_enabled"] is True and http["settings"]["socket_mode_enabled"] is False
    # Socket Mode has no request URLs; HTTP mode sends everything to the one /slack/events route
    assert "request_url" not in socket["settings"]["event_subscriptions"]
    urls = [http["settings"]["event_subscriptions"]["request_url"], http["settings"]["interactivity"]["request_url"],
            *[c["url"] for c in http["features"]["slash_commands"]]]
    assert all(url == "https://deckhand.example.com/slack/events" for url in urls)
    assert all("url" not in c for c in socket["features"]["slash_commands"])
