"""The Kubernetes API server fake against the real kubectl: get, apply (create and strategic-merge
update), delete, as an operator would run them."""
from __future__ import annotations

import json
import os
import subprocess

from tests.test_fake_kube import deployment
from tests.tools import require_tool

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: checkout
  namespace: shop
  labels: {{app: checkout}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: checkout}}}}
  template:
    metadata: {{labels: {{app: checkout}}}}
    spec:
      containers:
      - name: checkout
        image: registry.example/checkout:{tag}
"""


def test_real_kubectl_gets_applies_and_deletes(kube_fake, tmp_path):
    kubectl = require_tool("kubectl")
    kube_fake.add(deployment("web", "default"))
    kubeconfig = kube_fake.kubeconfig(tmp_path / "kubeconfig")
    manifest = tmp_path / "checkout.yaml"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KUBECONFIG": kubeconfig}

    def run(*args: str) -> str:
        proc = subprocess.run([kubectl, "--kubeconfig", kubeconfig, "--cache-dir", str(tmp_path / "cache"), *args],
                              capture_output=True, text=True, timeout=60, env=env)
        assert proc.returncode == 0, f"kubectl {' '.join(args)} failed:\n{proc.stderr}"
        return proc.stdout

    out = run("get", "deployments", "-A")
    assert out.split("\n")[0].split() == ["NAMESPACE", "NAME", "AGE"] and "web" in out

    manifest.write_text(MANIFEST.format(replicas=2, tag="1.0"))
    namespace = tmp_path / "namespace.yaml"
    namespace.write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n")
    assert run("apply", "-f", str(namespace)).strip() == "namespace/shop created"
    assert run("apply", "-f", str(manifest)).strip() == "deployment.apps/checkout created"
    create = kube_fake.writes()[-1]
    assert (create.method, create.path) == ("POST", "/apis/apps/v1/namespaces/shop/deployments")
    assert create.query["fieldValidation"] == "Strict"

    manifest.write_text(MANIFEST.format(replicas=3, tag="1.1"))
    assert run("apply", "-f", str(manifest)).strip() == "deployment.apps/checkout configured"
    update = kube_fake.writes()[-1]
    assert (update.method, update.content_type) == ("PATCH", "application/strategic-merge-patch+json")

    got = json.loads(run("get", "deploy", "checkout", "-n", "shop", "-o", "json"))
    assert got["spec"]["replicas"] == 3 and got["metadata"]["generation"] == 2
    assert got["spec"]["template"]["spec"]["containers"] == [{"name": "checkout",
                                                              "image": "registry.example/checkout:1.1"}]
    assert "kubectl.kubernetes.io/last-applied-configuration" in got["metadata"]["annotations"]

    assert run("delete", "-f", str(manifest)).strip() == 'deployment.apps "checkout" deleted'
    assert kube_fake.get("apps/v1", "deployments", "shop", "checkout") is None
    assert [(w.method, w.status) for w in kube_fake.writes()] == [("POST", 201), ("POST", 201), ("PATCH", 200),
                                                                  ("DELETE", 200)]
