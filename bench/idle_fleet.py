"""Idle scan of a whole fleet: 16 clusters × 5,000 Services (the largest `--sizes` value), the job as
production runs it: `python app.py` (HTTP mode) and a devops user's `/ops run idle-scan`.

Each cluster answers its lists with 5,000 Services, their Deployments and Endpoints (one Kubernetes
fake behind 16 kubeconfig contexts: the bot really lists, holds and classifies 80,000 Services) and
has its own prometheus_url: a counting proxy per cluster in front of ONE real Prometheus holding a
week of hourly Istio counters for those services (60% busy), so the PromQL queries of every cluster
are counted apart. Timed: from sending the command to the job's outcome reaching the response_url.
Peak RSS is the bot's VmHWM from /proc after the scan. Targets: < 10 s wall, <= 4 PromQL queries per
cluster, peak RSS < 300 MB.
"""
from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.common import (
    DEVOPS, Backends, BotProcess, Options, Result, benchmark, cluster_entry, log, wait_quiet, write_config,
)
from bench.fleet import istio_traffic, seed_services

CLUSTERS = 16
TARGET_SECONDS = 10.0
TARGET_QUERIES = 4
TARGET_MB = 300.0
SCAN_TIMEOUT = 300.0
BUSY_RATIO = 0.6


class CountingProxy:
    """Forwards every request to `target` (a Prometheus) and counts the PromQL queries it carried."""

    def __init__(self, target: str):
        self.target = target.rstrip("/")
        self.queries = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    def start(self) -> "CountingProxy":
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.path.startswith("/api/v1/query"):
                    with proxy._lock:
                        proxy.queries += 1
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")}
                request = urllib.request.Request(proxy.target + self.path, data=body, headers=headers,
                                                 method=self.command)
                try:
                    with urllib.request.urlopen(request, timeout=120) as answer:
                        status, payload, ctype = answer.status, answer.read(), answer.headers.get("Content-Type")
                except urllib.error.HTTPError as exc:
                    status, payload, ctype = exc.code, exc.read(), exc.headers.get("Content-Type")
                self.send_response(status)
                self.send_header("Content-Type", ctype or "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                         name="prometheus-proxy").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@benchmark("idle-scan-fleet", order=35)
def idle_scan_fleet(opts: Options) -> list[Result]:
    per_cluster = max(opts.sizes)
    fleet = f"{CLUSTERS} clusters × {per_cluster} services"
    with Backends(opts.workdir) as backends:
        slack = backends.slack_fake()
        kube = backends.kube_fake()
        services = seed_services(kube, per_cluster)
        log(f"idle-scan-fleet: backfilling a week of Istio traffic for {per_cluster} services")
        prometheus = backends.prometheus(istio_traffic(services, busy_ratio=BUSY_RATIO))
        names = [f"cluster-{i:02d}" for i in range(CLUSTERS)]
        proxies = {name: CountingProxy(prometheus.url).start() for name in names}
        try:
            kubeconfig = backends.kubeconfig({name: kube for name in names})
            config = write_config(opts.workdir / "deckhand.yaml",
                                  [cluster_entry(name, kubeconfig, proxies[name].url) for name in names])
            with BotProcess(opts.workdir / "bot", config, slack) as bot:
                time.sleep(1.0)  # startup's background threads (scheduler, outbox) settle
                startup = bot.memory()
                kube.clear_requests()
                url = slack.response_url("C0OPS", None, DEVOPS)
                cpu_before = bot.cpu_seconds()
                started = time.perf_counter()
                answer = bot.sender.command("/ops", "run idle-scan", user_id=DEVOPS, channel_id="C0OPS",
                                            response_url=url)
                replies: list = []
                deadline = time.monotonic() + SCAN_TIMEOUT
                while time.monotonic() < deadline and len(replies) < 2:  # "Running…", then the outcome
                    replies = slack.responses_to(url)
                    time.sleep(0.02)
                seconds = time.perf_counter() - started
                bot_cpu = bot.cpu_seconds() - cpu_before
                after = bot.memory()
                wait_quiet(backends.request_counts, quiet=1.5, limit=60)  # the digests it queued
                peak = bot.memory()
        finally:
            for proxy in proxies.values():
                proxy.stop()
        kube_calls = len(kube.requests)

    outcome = replies[-1].get("text", "") if len(replies) >= 2 else f"no outcome within {SCAN_TIMEOUT:.0f}s"
    log(f"idle-scan-fleet: {fleet} in {seconds:.1f}s (bot CPU {bot_cpu:.1f}s, load {os.getloadavg()}); RSS {startup} -> {after} -> {peak}; {outcome[:300]}")
    queries = {name: proxy.queries for name, proxy in proxies.items()}
    idle_expected = sum(1 for i in range(per_cluster) if i % 10 >= round(BUSY_RATIO * 10))
    problems = []
    if answer.status_code != 200 or " ok:" not in outcome:
        problems.append(f"the scan did not finish ok: {outcome[:300]}")
    found = outcome.count(f"{idle_expected} idle")
    if found != CLUSTERS:
        problems.append(f"{found} of {CLUSTERS} clusters report {idle_expected} idle services")
    details = {"clusters": CLUSTERS, "services_per_cluster": per_cluster, "outcome": outcome[:2000],
               "promql_per_cluster": queries, "kubernetes_requests": kube_calls,
               "bot_cpu_seconds": round(bot_cpu, 2), "load_average": os.getloadavg(),
               "rss_mb": {"startup": startup, "after_scan": after, "after_digests": peak}}
    time_row = Result.below(f"idle scan, {fleet} (wall)", round(seconds, 2), "s", TARGET_SECONDS,
                            calls={"promql": sum(queries.values()), "kubernetes": kube_calls}, details=details)
    query_row = Result.at_most(f"idle scan, {fleet}: PromQL per cluster (max)", max(queries.values()), "queries",
                               TARGET_QUERIES, calls=queries, details={"clusters": CLUSTERS})
    memory_row = Result.below(f"idle scan, {fleet}: peak RSS", peak.get("VmHWM"), "MB", TARGET_MB,
                              details=details["rss_mb"])
    if problems:
        time_row.met = query_row.met = memory_row.met = False
        time_row.details["problem"] = "; ".join(problems)
    return [time_row, query_row, memory_row]
