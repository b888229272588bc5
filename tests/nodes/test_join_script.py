"""deploy/node-join/join-node.sh, run for real: real bash, curl and openssl against the running bot
over loopback (the real hook verifies every signature), a stub `kubeadm` on PATH, and a small HTTP
server standing in for the discovery service, the join-config store and the kubelet health check."""
from __future__ import annotations

import os
import subprocess
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.harness import HOOK_SECRET
from tests.nodes.nodes_support import alert_messages, open_incidents, text_of
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "node-join" / "join-node.sh"
JOIN_CONFIG = """apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: 10.0.0.1:6443
    token: abcdef.0123456789abcdef
    caCertHashes: ["sha256:0000"]
"""
STUB_KUBEADM = """#!/usr/bin/env bash
# Stub kubeadm: records its arguments and the config it was given, fails when told to.
printf '%s\\n' "$@" > "$STUB_DIR/kubeadm-args"
if [[ "$1" == join && "$2" == --config ]]; then cp "$3" "$STUB_DIR/kubeadm-config"; fi
echo "[preflight] Running pre-flight checks"
if [[ "${STUB_KUBEADM_EXIT:-0}" != 0 ]]; then
  printf 'error execution phase kubelet-start: error uploading crisocket: "timed out"\twaiting in C:\\cri\n' >&2
  exit "$STUB_KUBEADM_EXIT"
fi
echo "This node has joined the cluster"
"""


class Provisioning:
    """The HTTP services a provisioning network offers the node, recording what was asked."""

    def __init__(self):
        self.routes: dict[str, tuple[int, str]] = {
            "/discover?node=node-42": (200, "# deckhand discovery\ncluster=prod-a\nversion=v1.30.2\n"),
            "/join/prod-a/v1.30.2/join.yaml": (200, JOIN_CONFIG),
            "/join/prod-a/v1.30/join.yaml": (200, JOIN_CONFIG),
            "/version/prod-a": (200, '{"major": "1", "minor": "30", "gitVersion": "v1.30.2+vendor.1"}'),
            "/healthz": (200, "ok"),
        }
        self.asked: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.asked.append(self.path)
                status, body = outer.routes.get(self.path, (404, "not found"))
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provisioning():
    services = Provisioning()
    yield services
    services.stop()


@pytest.fixture
def node_env(tmp_path, bot, provisioning):
    """Environment for one run of the script on 'node-42', pointed at the bot and the services."""
    bot.clock.set(datetime.now(timezone.utc))  # the script signs with the real time
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "kubeadm").write_text(STUB_KUBEADM)
    (stubs / "kubeadm").chmod(0o755)
    return {
        "PATH": f"{stubs}:{os.environ['PATH']}", "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
        "STUB_DIR": str(tmp_path), "JOIN_ENV_FILE": str(tmp_path / "absent.env"),
        "DECKHAND_URL": bot.url, "DECKHAND_HOOK_SECRET": HOOK_SECRET, "NODE_NAME": "node-42",
        "DISCOVERY_URL": provisioning.url + "/discover?node={node}",
        "JOIN_CONFIG_URL_TEMPLATE": provisioning.url + "/join/{cluster}/{version}/join.yaml",
        "KUBELET_HEALTHZ_URL": provisioning.url + "/healthz", "READY_TIMEOUT": "5", "READY_POLL": "1",
        "KUBEADM_FLAGS": "--v=2 --ignore-preflight-errors=Swap", "LOG_FILE": str(tmp_path / "join.log"),
        "ALREADY_JOINED_FILE": str(tmp_path / "kubelet.conf"), "REPORT_RETRIES": "0",
    }


def run(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def reports(bot) -> list[tuple[str, str, str]]:
    return [(r["cluster"], r["phase"], r["status"])
            for r in bot.ctx.store.query("SELECT * FROM node_reports ORDER BY id")]


def test_a_successful_join_reports_every_phase_and_the_bot_verifies_each(bot, node_env, tmp_path):
    result = run(node_env)
    assert result.returncode == 0, result.stderr
    assert reports(bot) == [("", "discovery", "started"), ("prod-a", "discovery", "ok"),
                            ("prod-a", "config", "started"), ("prod-a", "config", "ok"),
                            ("prod-a", "join", "started"), ("prod-a", "join", "ok"),
                            ("prod-a", "ready", "started"), ("prod-a", "ready", "ok")]
    args = (tmp_path / "kubeadm-args").read_text().split()
    assert args[:2] == ["join", "--config"] and args[3:] == ["--v=2", "--ignore-preflight-errors=Swap"]
    assert (tmp_path / "kubeadm-config").read_text() == JOIN_CONFIG  # the config for v1.30.2
    assert open_incidents(bot) == [] and bot.ctx.outbox.pending() == 0
    assert "This node has joined the cluster" in (tmp_path / "join.log").read_text()
    assert not list(tmp_path.glob("deckhand-join.*"))  # the temp dir (with the join token) is gone


def test_a_failing_join_reports_failed_with_exit_code_and_log_tail(bot, node_env):
    node_env["STUB_KUBEADM_EXIT"] = "7"
    result = run(node_env)
    assert result.returncode == 7
    assert reports(bot)[-2:] == [("prod-a", "join", "started"), ("prod-a", "join", "failed")]
    failed = bot.ctx.store.query("SELECT * FROM node_reports WHERE status = 'failed'")[0]
    assert failed["exit_code"] == 7 and failed["message"] == "kubeadm join exited with 7"
    assert 'error uploading crisocket: "timed out"\twaiting in C:\\cri' in failed["log_tail"]  # JSON-escaped intact
    assert len(failed["log_tail"].encode()) <= 4096
    bot.flush()
    [message] = alert_messages(bot)
    assert "node-42" in text_of(message) and "error uploading crisocket" in text_of(message)
    assert "exit code 7" in text_of(message)


def test_a_long_log_is_cut_to_its_last_4_kib(bot, node_env, tmp_path):
    (tmp_path / "join.log").write_bytes(("é old line that does not matter\n" * 400).encode())
    node_env["STUB_KUBEADM_EXIT"] = "1"
    assert run(node_env).returncode == 1
    failed = bot.ctx.store.query("SELECT * FROM node_reports WHERE status = 'failed'")[0]
    assert len(failed["log_tail"].encode()) <= 4096 and failed["log_tail"].rstrip().endswith("exited with 1")


def test_cluster_map_and_version_url_with_an_env_file(bot, node_env, provisioning, tmp_path):
    (tmp_path / "cluster-map").write_text("# hostname regex  cluster\n^db-  prod-b\n^node-[0-9]+$  prod-a\n")
    env_file = tmp_path / "join.env"
    (tmp_path / "hook-secret").write_text(HOOK_SECRET + "\n")
    env_file.write_text(f'CLUSTER_MAP="{tmp_path / "cluster-map"}"\nVERSION_URL={provisioning.url}/version/{{cluster}}\n'
                        f"export DECKHAND_HOOK_SECRET_FILE={tmp_path / 'hook-secret'}\n"
                        "NODE_NAME=overridden-by-the-environment\n")
    del node_env["DISCOVERY_URL"], node_env["DECKHAND_HOOK_SECRET"]
    node_env["JOIN_ENV_FILE"] = str(env_file)
    node_env["JOIN_CONFIG_URL_TEMPLATE"] = provisioning.url + "/join/{cluster}/{minor}/join.yaml"
    result = run(node_env)
    assert result.returncode == 0, result.stderr
    assert "/version/prod-a" in provisioning.asked and "/join/prod-a/v1.30/join.yaml" in provisioning.asked
    assert {r["node"] for r in bot.ctx.store.query("SELECT node FROM node_reports")} == {"node-42"}


def test_the_example_env_file_and_cluster_map_work_as_shipped(bot, node_env, provisioning, tmp_path):
    examples = ROOT / "deploy" / "node-join"
    node_env.update({"JOIN_ENV_FILE": str(examples / "join-node.env.example"), "NODE_NAME": "prod-a-wk-3",
                     "CLUSTER_MAP": str(examples / "cluster-map.example"),
                     "VERSION_URL": provisioning.url + "/version/{cluster}",
                     "JOIN_CONFIG_URL_TEMPLATE": provisioning.url + "/join/{cluster}/{minor}/join.yaml"})
    del node_env["DISCOVERY_URL"]
    result = run(node_env)
    assert result.returncode == 0, result.stderr
    assert reports(bot)[-1] == ("prod-a", "ready", "ok")
    args = (tmp_path / "kubeadm-args").read_text().split()
    assert args[3:] == ["--v=2", "--ignore-preflight-errors=Swap"]  # the environment won over the file


def test_no_matching_cluster_is_a_discovery_failure(bot, node_env, tmp_path):
    (tmp_path / "cluster-map").write_text("^db-  prod-b\n")
    del node_env["DISCOVERY_URL"]
    node_env["CLUSTER_MAP"] = str(tmp_path / "cluster-map")
    result = run(node_env)
    assert result.returncode == 3
    failed = bot.ctx.store.query("SELECT * FROM node_reports WHERE status = 'failed'")[0]
    assert (failed["cluster"], failed["phase"]) == ("", "discovery")
    assert "no pattern" in failed["message"] and "node-42" in failed["message"]


def test_a_missing_join_config_is_a_config_failure(bot, node_env, provisioning):
    del provisioning.routes["/join/prod-a/v1.30.2/join.yaml"]
    assert run(node_env).returncode == 4
    failed = bot.ctx.store.query("SELECT * FROM node_reports WHERE status = 'failed'")[0]
    assert failed["phase"] == "config" and "v1.30.2" in failed["message"]
    assert "404" in failed["log_tail"]


def test_a_config_that_is_not_a_join_configuration_is_refused_before_kubeadm(bot, node_env, provisioning, tmp_path):
    provisioning.routes["/join/prod-a/v1.30.2/join.yaml"] = (200, "<html>proxy error</html>")
    assert run(node_env).returncode == 4
    failed = bot.ctx.store.query("SELECT * FROM node_reports WHERE status = 'failed'")[0]
    assert "not a kubeadm JoinConfiguration" in failed["message"]
    assert not (tmp_path / "kubeadm-args").exists()


def test_missing_settings_are_named(bot, node_env):
    del node_env["JOIN_CONFIG_URL_TEMPLATE"]
    result = run(node_env)
    assert result.returncode == 2
    assert "missing settings: JOIN_CONFIG_URL_TEMPLATE" in result.stderr
    failed = bot.ctx.store.query("SELECT * FROM node_reports WHERE status = 'failed'")[0]
    assert "JOIN_CONFIG_URL_TEMPLATE" in failed["message"]


def test_a_wrong_secret_is_rejected_by_the_bot_and_the_join_goes_on(bot, node_env):
    node_env["DECKHAND_HOOK_SECRET"] = "not-the-secret"
    result = run(node_env)
    assert result.returncode == 0
    assert reports(bot) == []
    assert "could not report" in result.stderr


def test_the_script_passes_shellcheck():
    shellcheck = require_tool("shellcheck")
    result = subprocess.run([shellcheck, "--shell=bash", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
