"""deckhand as a real OS process for tests that must kill it: `python app.py` serving HTTP on a free
loopback port, configured against the in-test fakes, logging to a file. No tests here.

    proc = bot_process(config, db)          # started, /readyz (HEALTH_PORT) answered 200
    proc.sender.command("/ops", "help")     # signed Slack requests to its real endpoint
    proc.kill()                             # SIGKILL: no shutdown code runs
"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import requests
import yaml

from tests.fakes.kube import write_kubeconfig
from tests.fakes.slack import SlackSender
from tests.harness import BOT_TOKEN, GITHUB_TOKEN, SIGNING_SECRET, base_config, closed_url, deep_merge, free_port

ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate: Callable[[], Any], what: str, deadline: float = 20.0, interval: float = 0.02) -> Any:
    """Poll `predicate` until it returns something truthy; fail naming `what` after `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:.0f}s waiting for {what}")
        time.sleep(interval)


def write_config(directory: Path, kube_fakes: dict, *, github_url: str | None = None,
                 prometheus: dict[str, str] | None = None, overrides: dict | None = None) -> str:
    """deckhand.yaml for the fakes: one cluster per Kubernetes fake (same names as the harness uses)."""
    kubeconfig = write_kubeconfig(str(directory / "kubeconfig"), kube_fakes)
    cfg = base_config()
    cfg["clusters"] = [{"name": name, "context": name, "kubeconfig": kubeconfig,
                        "prometheus_url": (prometheus or {}).get(name) or closed_url(), "istio_api_version": "v1"}
                       for name in kube_fakes]
    cfg["github"]["api_url"] = github_url or closed_url()
    cfg = deep_merge(cfg, overrides or {})
    path = directory / "deckhand.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


class BotProcess:
    """`socket_gateway`: Socket Mode through that gateway (SLACK_APP_TOKEN set, no signing secret), and
    `sender` sends envelopes. `env` adds or overrides variables (a None value removes one)."""

    def __init__(self, config: str, db: str, slack_fake, log: Path, *, socket_gateway=None,
                 env: dict | None = None):
        self.config, self.db, self.slack, self.log_path = config, db, slack_fake, log
        self.port, self.health_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.health_url = f"http://127.0.0.1:{self.health_port}"
        self.gateway = socket_gateway
        self.extra_env = env or {}
        if socket_gateway is not None:
            from tests.fakes.slack import SocketModeSender

            self.sender = SocketModeSender(socket_gateway, slack_fake)
        else:
            self.sender = SlackSender(self.url, SIGNING_SECRET, slack_fake)
        self.proc: subprocess.Popen | None = None

    def start(self, deadline: float = 30.0, wait: str = "ready") -> "BotProcess":
        """Start and wait until /readyz answers 200 (`wait="ready"`) or /healthz answers (`wait="live"`)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SLACK_", "GITHUB_", "DECKHAND_", "KUBERNETES_"))}
        env.update({"DECKHAND_CONFIG": self.config, "DECKHAND_DB": self.db, "SLACK_API_URL": self.slack.api_url,
                    "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                    "GITHUB_TOKEN": GITHUB_TOKEN, "HOST": "127.0.0.1", "PORT": str(self.port),
                    "HEALTH_PORT": str(self.health_port)})
        if self.gateway is not None:
            env["SLACK_APP_TOKEN"] = self.gateway.app_token
            del env["SLACK_SIGNING_SECRET"]
        for key, value in self.extra_env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
        probe = self._ready if wait == "ready" else self._live
        wait_until(probe, f"deckhand on port {self.health_port} to be {wait}", deadline)
        return self

    def _alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"deckhand exited with {self.proc.returncode}:\n{self.output()}")

    def _ready(self) -> bool:
        """/readyz 200 and, in Socket Mode, the link to Slack up (its state is a detail, not readiness)."""
        self._alive()
        try:
            answer = requests.get(self.health_url + "/readyz", timeout=1)
        except requests.RequestException:
            return False
        return answer.status_code == 200 and answer.json().get("slack", "ok") == "ok"

    def _live(self) -> bool:
        self._alive()
        try:
            return requests.get(self.health_url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def readyz(self) -> requests.Response:
        return requests.get(self.health_url + "/readyz", timeout=5)

    def metrics(self) -> str:
        return requests.get(self.health_url + "/metrics", timeout=5).text

    def kill(self) -> None:
        """SIGKILL: no signal handler, no finally block, no clean close of the database."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        assert self.proc.returncode == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def bot_process(tmp_path, slack_fake):
    """`bot_process(config, db)` starts deckhand as a process; every one still running is stopped at
    teardown, and their logs are printed (pytest shows them when the test failed)."""
    started: list[BotProcess] = []

    def start(config: str, db: str, *, wait: str = "ready", **kwargs: Any) -> BotProcess:
        proc = BotProcess(config, db, slack_fake, tmp_path / f"deckhand-{len(started)}.log", **kwargs)
        started.append(proc)
        return proc.start(wait=wait)

    yield start
    for proc in started:
        proc.stop()
    for n, proc in enumerate(started):
        print(f"----- deckhand process {n} (exit {proc.proc.returncode if proc.proc else None}) -----")
        print(proc.output()[-20000:])


def db_rows(db: str, sql: str, params: tuple = ()) -> list[dict]:
    """Read the bot's database from the test (WAL: readers never block the bot)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def button_on(message: dict | None, action_id: str) -> dict | None:
    """The element with `action_id` on a message as Slack shows it now (None: not clickable)."""
    for block in (message or {}).get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("action_id") == action_id:
                return element
    return None


def press(proc: BotProcess, channel: str, ts: str, action_id: str, user: str) -> requests.Response:
    """Click a button that is on the message right now, as Slack would send the click."""
    element = button_on(proc.slack.message(channel, ts), action_id)
    assert element is not None, f"no {action_id} button on {channel}/{ts}: {proc.slack.message(channel, ts)}"
    response = proc.sender.block_actions(action_id, user_id=user, channel_id=channel, message_ts=ts)
    assert response.status_code == 200, response.text
    return response
