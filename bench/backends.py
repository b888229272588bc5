"""Backends for benchmarks, all on 127.0.0.1: the HTTP fakes from tests/fakes used as libraries, the
real Prometheus, a deliberately slow Prometheus, and the bot itself as a `python app.py` subprocess
(or in-process, through the test harness, when a benchmark needs ctx's call counters)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fakes.github import GitHubFake  # noqa: E402
from tests.fakes.kube import KubeFake, write_kubeconfig  # noqa: E402
from tests.fakes.slack import SlackFake, SlackSender  # noqa: E402
from tests.harness import (  # noqa: E402
    BOT_TOKEN, GITHUB_TOKEN, HOOK_SECRET, SIGNING_SECRET, WEBHOOK_SECRET, base_config, deep_merge, free_port,
)

GITOPS_REPO = "org/deploy-manifests"


class SlowPrometheus:
    """A Prometheus that answers every query after `delay` seconds with an empty vector.

    Stands in for an overloaded Prometheus in the ack benchmark: whatever deckhand asks, it waits.
    `stop()` releases requests still waiting, so shutdown never hangs on it.
    """

    def __init__(self, delay: float = 1.0):
        self.delay = delay
        self.hits = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    def start(self) -> "SlowPrometheus":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if self.path.startswith("/-/ready") or self.path.startswith("/-/healthy"):
                    body = b"Prometheus Server is Ready.\n"
                else:
                    with fake._lock:
                        fake.hits += 1
                    fake._stopping.wait(fake.delay)
                    body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         name="slow-prometheus", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class Backends:
    """Everything one benchmark starts, stopped together on exit (a context manager)."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.slack: SlackFake | None = None
        self.kube: list[KubeFake] = []
        self.github: GitHubFake | None = None
        self.slow_prometheus_servers: list[SlowPrometheus] = []
        self.prometheus_servers: list[Any] = []
        self._stack = ExitStack()

    def __enter__(self) -> "Backends":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def slack_fake(self, latency: float = 0.0) -> SlackFake:
        self.slack = SlackFake(latency=latency).start()
        self._stack.callback(self.slack.stop)
        return self.slack

    def kube_fake(self, latency: float = 0.0) -> KubeFake:
        fake = KubeFake(latency=latency).start()
        self._stack.callback(fake.stop)
        self.kube.append(fake)
        return fake

    def github_fake(self, latency: float = 0.0, repo: str = GITOPS_REPO) -> GitHubFake:
        fake = GitHubFake().start()
        self._stack.callback(fake.stop)
        fake.create_repo(repo, files={"README.md": "deploy manifests\n"})
        fake.latency = latency
        self.github = fake
        return fake

    def slow_prometheus(self, delay: float = 1.0) -> SlowPrometheus:
        server = SlowPrometheus(delay).start()
        self._stack.callback(server.stop)
        self.slow_prometheus_servers.append(server)
        return server

    def prometheus(self, metrics: Any) -> Any:
        """The real Prometheus over `metrics` (an IstioMetrics), backfilled with promtool."""
        from tests.fakes.prometheus import PrometheusServer

        server = PrometheusServer(metrics, workdir=self.workdir / f"prometheus{len(self.prometheus_servers)}")
        server.start()
        self._stack.callback(server.stop)
        self.prometheus_servers.append(server)
        return server

    def kubeconfig(self, contexts: dict[str, KubeFake], name: str = "kubeconfig") -> str:
        """One context per cluster name; several names may point at the same fake."""
        return write_kubeconfig(str(self.workdir / name), contexts)

    def request_counts(self) -> dict[str, int]:
        """Requests each backend has seen so far (for costs, and to tell when the bot went quiet)."""
        counts: dict[str, int] = {}
        if self.slack is not None:
            counts["slack"] = len(self.slack.calls) + len(self.slack.responses)
        if self.kube:
            counts["kubernetes"] = sum(len(f.requests) for f in self.kube)
        if self.github is not None:
            counts["github"] = len(self.github.requests)
        if self.slow_prometheus_servers or self.prometheus_servers:
            counts["prometheus"] = (sum(s.hits for s in self.slow_prometheus_servers)
                                    + sum(prometheus_queries(s.url) for s in self.prometheus_servers))
        return counts


def prometheus_queries(url: str) -> int:
    """PromQL queries a real Prometheus has answered, from its own /metrics (it counts per handler)."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0
    total = 0.0
    for line in text.splitlines():
        if line.startswith("prometheus_http_requests_total{") and (
                'handler="/api/v1/query"' in line or 'handler="/api/v1/query_range"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def cluster_entry(name: str, kubeconfig: str, prometheus_url: str, context: str | None = None) -> dict[str, Any]:
    return {"name": name, "context": context or name, "kubeconfig": kubeconfig, "prometheus_url": prometheus_url,
            "istio_api_version": "v1"}


def write_config(path: Path, clusters: list[dict[str, Any]], github_url: str | None = None,
                 overrides: dict[str, Any] | None = None) -> str:
    """A deckhand.yaml like the tests' (same users, teams, channels), with these clusters."""
    cfg = base_config()
    cfg["clusters"] = clusters
    if github_url:
        cfg["github"]["api_url"] = github_url
    cfg = deep_merge(cfg, overrides or {})
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return str(path)


class BotProcess:
    """`python app.py` in HTTP mode on 127.0.0.1:<free port>, as production runs it.

    Output goes to a log file (a pipe nobody reads would fill and stall the bot). `script` lets a
    benchmark run a wrapper (bench/profiled_app.py) instead of app.py; `env` adds variables.
    """

    def __init__(self, workdir: Path, config_path: str, slack: SlackFake, *, env: dict[str, str] | None = None,
                 script: str = "app.py", startup_timeout: float = 60.0):
        self.workdir = Path(workdir)
        self.config_path = config_path
        self.slack = slack
        self.extra_env = env or {}
        self.script = script
        self.startup_timeout = startup_timeout
        self.port, self.health_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.health_url = f"http://127.0.0.1:{self.health_port}"  # /healthz, /readyz, /metrics
        self.log_path = self.workdir / "bot.log"
        self.proc: subprocess.Popen | None = None
        self.sender = SlackSender(self.url, SIGNING_SECRET, slack)
        self.startup_seconds = 0.0

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SLACK_", "GITHUB_", "DECKHAND_", "KUBERNETES_SERVICE_"))}
        env.update({
            "HOST": "127.0.0.1", "PORT": str(self.port), "HEALTH_PORT": str(self.health_port),
            "DECKHAND_CONFIG": self.config_path,
            "DECKHAND_DB": str(self.workdir / "deckhand.db"), "SLACK_API_URL": self.slack.api_url,
            "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "GITHUB_TOKEN": GITHUB_TOKEN,
            "DECKHAND_HOOK_SECRET": HOOK_SECRET, "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        return env

    def start(self) -> "BotProcess":
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_path, "w", encoding="utf-8")
        started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, self.script], cwd=ROOT, env=self.env(), stdout=log_file,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log_file.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the bot exited with {self.proc.returncode} during startup:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.health_url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        self.startup_seconds = time.perf_counter() - started
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the bot did not answer /healthz within {self.startup_timeout:.0f}s:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None, "start() first"
        return self.proc.pid

    def memory(self) -> dict[str, float]:
        """VmRSS (now) and VmHWM (peak) of the bot process, in MB, from /proc/<pid>/status."""
        out = {}
        with open(f"/proc/{self.pid}/status", encoding="utf-8") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = round(int(rest.split()[0]) / 1024, 1)  # kB -> MB
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU time the bot process has used so far (all its threads)."""
        with open(f"/proc/{self.pid}/stat", encoding="utf-8") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (the bot drains and exits 0), SIGKILL if it takes longer than `timeout`."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> "BotProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def in_process_bot(workdir: Path, slack: SlackFake, kube_fakes: dict[str, KubeFake], **kwargs: Any):
    """The bot built in this process by tests/harness.start_bot (real Bolt + waitress when serve=True).

    Use it when a benchmark needs ctx (ctx.kube.calls, ctx.traffic.queries, jobs.run_now) or a
    FakeClock set to a backfilled Prometheus's eval_time. Call `.stop()` when done.
    """
    from tests.harness import start_bot

    Path(workdir).mkdir(parents=True, exist_ok=True)
    return start_bot(Path(workdir), slack, kube_fakes, **kwargs)
