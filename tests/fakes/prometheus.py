"""The real Prometheus, over backfilled Istio metrics.

``PrometheusServer(metrics).start()`` writes ``metrics`` (an :class:`IstioMetrics`) as OpenMetrics, runs
``promtool tsdb create-blocks-from openmetrics`` into a fresh TSDB directory, starts ``prometheus`` on a
free loopback port over it (no scrape targets, 100y retention) and polls ``/-/ready`` with a deadline.

Query at ``server.eval_time`` (the last sample instant; data ends >= 4 h before real now because backfill
must stay clear of the head block). Bot code takes an injected clock: set it to ``server.now``.

A runtime library (the demo world in demo/ uses it too; no pytest import here). The pytest fixtures
``prometheus_factory`` and ``prometheus_down_url`` live in tests/fixtures.py; there missing binaries make
the test fail (never skip) with install instructions.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tests.fakes.istio_metrics import DATA_END, ISTIO_DURATION_BUCKETS, IstioMetrics  # noqa: F401 (re-export)

__all__ = [
    "IstioMetrics",
    "PrometheusServer",
    "PrometheusError",
    "PrometheusMissing",
    "require_binaries",
    "unreachable_url",
    "free_port",
    "DATA_END",
]

INSTALL_HINT = (
    "The real Prometheus is required for these tests (never skipped). Install it with: "
    "apt-get install -y prometheus   (provides /usr/bin/prometheus and /usr/bin/promtool)"
)

#: promtool rounds this down to its largest compatible block range (2h*3^9 ~ 4.5 years), so a whole
#: dataset lands in one block: one parse pass less per extra block, nothing for Prometheus to compact.
MAX_BLOCK_DURATION = "100000h"

#: Backfilled data must end this far before real now (promtool must not write the head block range).
HEAD_MARGIN = timedelta(hours=3)

_MINIMAL_CONFIG = """\
# deckhand test Prometheus: serves backfilled blocks only; scrapes nothing, alerts nowhere.
global:
  scrape_interval: 1h
  evaluation_interval: 1h
scrape_configs: []
"""


class PrometheusError(RuntimeError):
    """promtool or prometheus failed; the message carries the relevant log."""


class PrometheusMissing(PrometheusError):
    """``prometheus`` or ``promtool`` is not on PATH; the message says how to install it."""


def require_binaries() -> tuple[str, str]:
    """Paths of (promtool, prometheus); raises PrometheusMissing with install instructions if either is missing."""
    promtool, prometheus = shutil.which("promtool"), shutil.which("prometheus")
    if not promtool or not prometheus:
        missing = [n for n, p in (("promtool", promtool), ("prometheus", prometheus)) if not p]
        raise PrometheusMissing(f"{', '.join(missing)} not found on PATH. {INSTALL_HINT}")
    return promtool, prometheus


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unreachable_url() -> str:
    """URL of a Prometheus that is down: a loopback port nothing listens on (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"


def _tail(path: Path, limit: int = 8000) -> str:
    try:
        data = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return data if len(data) <= limit else "...\n" + data[-limit:]


class PrometheusServer:
    """A real Prometheus serving ``metrics``. Use ``start()``/``stop()`` or as a context manager.

    Attributes after ``start()``: ``url``, ``port``, ``eval_time``/``now`` (aware UTC datetime of the last
    sample), ``generate_seconds``, ``backfill_seconds``, ``startup_seconds``, ``workdir``.
    """

    def __init__(self, metrics: IstioMetrics, *, workdir: str | os.PathLike | None = None,
                 startup_timeout: float = 60.0, keep_input: bool = False):
        self.metrics = metrics
        self.eval_time: datetime = metrics.end
        self.now: datetime = self.eval_time
        self.startup_timeout = startup_timeout
        self.keep_input = keep_input
        self._own_workdir = workdir is None
        self.workdir: Path | None = Path(workdir) if workdir is not None else None
        self.port: int | None = None
        self.url: str | None = None
        self.generate_seconds = self.backfill_seconds = self.startup_seconds = 0.0
        self._proc: subprocess.Popen | None = None
        self._log_file = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "PrometheusServer":
        if self.eval_time > datetime.now(timezone.utc) - HEAD_MARGIN:
            raise ValueError(
                f"dataset ends at {self.eval_time.isoformat()}, less than {HEAD_MARGIN} before now: backfill "
                "cannot write Prometheus's head block range. Use IstioMetrics.recent() (ends at DATA_END)."
            )
        promtool, prometheus = require_binaries()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="deckhand-prom-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        data, src = self.workdir / "data", self.workdir / "input.om"
        self.log_path = self.workdir / "prometheus.log"

        t0 = time.perf_counter()
        self.metrics.write_openmetrics(src)
        t1 = time.perf_counter()
        res = subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet",
             f"--max-block-duration={MAX_BLOCK_DURATION}", str(src), str(data)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
        )
        self.generate_seconds, self.backfill_seconds = t1 - t0, time.perf_counter() - t1
        if res.returncode != 0:
            raise PrometheusError(f"promtool backfill failed (rc={res.returncode}, input kept at {src}):\n"
                                  f"{res.stdout}\n{res.stderr}")
        if not self.keep_input:
            src.unlink()
        config = self.workdir / "prometheus.yml"
        config.write_text(_MINIMAL_CONFIG)

        t2 = time.perf_counter()
        for attempt in range(3):  # the free port can be taken between probing and binding
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            self._spawn(prometheus, config, data)
            if self._wait_ready():
                break
            log = _tail(self.log_path)
            self._kill()
            if "address already in use" not in log or attempt == 2:
                raise PrometheusError(f"prometheus did not become ready at {self.url}:\n{log}")
        self.startup_seconds = time.perf_counter() - t2
        return self

    def _spawn(self, prometheus: str, config: Path, data: Path) -> None:
        self._log_file = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            [prometheus,
             f"--config.file={config}",
             f"--storage.tsdb.path={data}",
             "--storage.tsdb.retention.time=100y",  # backfilled blocks are "old": never delete them
             f"--web.listen-address=127.0.0.1:{self.port}",
             f"--web.external-url=http://127.0.0.1:{self.port}/",  # no hostname lookup
             "--log.level=info"],
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            cwd=self.workdir, start_new_session=True,
        )

    def _wait_ready(self) -> bool:
        """Poll /-/ready until the deadline; False if the process died or the deadline passed."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            try:
                with opener.open(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            try:  # doubles as the poll interval and as "did it exit?"
                self._proc.wait(timeout=0.02)
                return False
            except subprocess.TimeoutExpired:
                pass
        return False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        """Prometheus's log so far (tail)."""
        return _tail(self.log_path) if hasattr(self, "log_path") else "(not started)"

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self, remove: bool = True) -> None:
        """Stop Prometheus (its URL then refuses connections) and delete the workdir we created."""
        self._kill()
        if remove and self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "PrometheusServer":
        return self.start() if not self.running else self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<PrometheusServer {self.url} eval_time={self.eval_time.isoformat()} running={self.running}>"
