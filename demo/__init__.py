"""The embedded demo world behind `python app.py demo` (and `make run` on a fresh clone).

Everything deckhand talks to runs on loopback, so every command has something real to show:
two Kubernetes API servers (the HTTP fakes from tests/fakes, a runtime library), a real Prometheus
over backfilled Istio metrics when `prometheus` and `promtool` are installed, and a GitOps repository
served through the same GitHub REST API deckhand uses. What lives there is described in
demo/world.py (services, canaries), demo/mesh.py (traffic) and demo/nodes.py (nodes, join reports).

deckhand itself is not faked: app.py builds the real context, listeners and jobs over this world and
puts the console in front of it. The demo has its own database in a temporary directory (removed at
exit), never ./deckhand.db, and its Slack is the console's pretend one, so nothing reaches real Slack.

    world = demo.start()                 # servers up, config written; world.config is a deckhand.yaml dict
    ...                                  # app.py: build_context(world.settings(), world.secrets, world.db_path,
    world.seed(ctx, hooks)               #   clock=world.clock), then the console (seed runs once it is up)
    world.stop()

The demo's clock stands still at the end of the metrics (Prometheus cannot take backfilled data for
its last ~3 hours), so traffic windows always cover the data however long the session lasts.
"""
from __future__ import annotations

import json
import logging
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from bot.foundation.config import Secrets, parse_settings
from demo import mesh, nodes, world
from tests.fakes.github import GitHubFake, pull_request_event, webhook_headers
from tests.fakes.kube import KubeFake, write_kubeconfig

log = logging.getLogger("deckhand.demo")

REPO = "demo/deploy-manifests"
CLUSTERS = ("prod-a", "prod-b")
Hook = Callable[[bytes, dict], tuple[int, dict]]


class DemoClock:
    """deckhand's clock in the demo: stands at `moment`; `set` moves it (to replay the world's history)."""

    def __init__(self, moment: datetime):
        self.moment = moment
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.moment

    def set(self, moment: datetime) -> None:
        with self._lock:
            self.moment = moment


def config_reviewers() -> list[str]:
    return list(config("", "", "")["github"]["reviewers"])


def config(kubeconfig: str, prometheus_url: str, github_url: str) -> dict[str, Any]:
    """The demo's deckhand.yaml, as a dict (the same keys and checks as a real one)."""
    return {
        "clusters": [{"name": name, "context": name, "kubeconfig": kubeconfig, "prometheus_url": prometheus_url,
                      "istio_api_version": "v1"} for name in CLUSTERS],
        "github": {"api_url": github_url, "repo": REPO, "base_branch": "main", "reviewers": ["octocat"],
                   "labels": ["deckhand"]},
        "channels": {"alerts": "C0ALERTS", "approvals": "C0APPROVALS", "audit": "C0AUDIT"},
        "roles": {"devops": ["U0DEVOPS1", "U0DEVOPS2"]},
        "teams": {"payments": {"members": ["U0PAYDEV"], "channel": "C0PAY"},
                  "shop": {"members": ["U0SHOPDEV"], "channel": "C0SHOP"},
                  "search": {"members": ["U0SEARCHDEV"], "channel": "C0SEARCH"}},
        "canary": {"steps": [10, 25, 50, 100], "stale_after": "72h", "rollout_timeout": "2m"},
        "idle": {"window": "7d", "schedule": "0 10 * * 1-5", "repeat_interval": "7d",
                 "exclude_namespaces": ["kube-system", "istio-system"]},
        "node_join": {"interval": "2m", "not_ready_after": "10m", "startup_timeout": "15m", "max_unhealthy": "40%"},
        "deletion": {"request_ttl": "72h"},
    }


@dataclass
class Demo:
    workdir: Path
    clock: DemoClock
    kube: dict[str, KubeFake]
    github: GitHubFake
    prometheus: Any  # tests.fakes.prometheus.PrometheusServer, or None when not installed
    config: dict[str, Any]
    secrets: Secrets
    startup_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def db_path(self) -> str:
        return str(self.workdir / "deckhand-demo.db")

    def settings(self):
        return parse_settings(self.config, "the demo world")

    # -- after deckhand is up ------------------------------------------------------------------
    def seed(self, ctx, hooks: dict[str, Hook]) -> None:
        """What happened before you arrived: the join script's reports, through the node-join hook's
        own handler (signed like the script signs them), at the moments they were sent."""
        from bot.nodes.reports import sign

        now = self.clock()
        secret = self.secrets.hook_secret or ""
        post = hooks["node-join"]
        signer = lambda ts, raw: sign(secret, ts, raw)  # noqa: E731
        self.clock.set(now - timedelta(minutes=20))  # gpu-3 started joining 20 minutes ago...
        problems = nodes.send_reports(post, signer, self.clock(), nodes.EARLIER)
        self.clock.set(now)  # ...node-7's join failed just now
        problems += nodes.send_reports(post, signer, now, nodes.NOW)
        for problem in problems:
            self.notes.append(f"(demo: a node-join report was refused: {problem})")

    def merge(self, hooks: dict[str, Hook], text: str, say: Callable[[str], None]) -> None:
        """`merge N` at the console: merge pull request N of the demo repository as a reviewer would,
        and deliver GitHub's `pull_request` webhook (signed) to deckhand's /hooks/github handler."""
        number = text.strip().lstrip("#")
        if not number.isdigit():
            open_prs = [f"#{p['number']}" for p in self.github.pulls(REPO) if p["state"] == "open"]
            return say(f"Usage: merge N (open pull requests: {', '.join(open_prs) or 'none'})")
        try:
            pull = self.github.pull(REPO, int(number))
        except (KeyError, LookupError):
            pull = None
        if pull is None:
            return say(f"There is no pull request #{number} in {REPO}.")
        if pull["state"] != "open":
            return say(f"Pull request #{number} is already {'merged' if pull.get('merged') else 'closed'}.")
        self.github.merge(REPO, int(number), merged_by="octocat")
        say(f"(demo) octocat merged #{number} \"{pull['title']}\" in {REPO}; GitHub sends its webhook to deckhand.")
        body = json.dumps(pull_request_event(self.github, REPO, int(number))).encode()
        status, answer = hooks["github"](body, webhook_headers(self.secrets.github_webhook_secret or "", body))
        if status != 200:
            say(f"(demo) deckhand refused the webhook: {status} {answer.get('error') or answer}")

    def console_commands(self, hooks: dict[str, Hook]) -> dict[str, tuple[str, str, Callable[..., None]]]:
        """Console commands of the demo: name -> (usage, what it does, fn(text, say))."""
        return {"merge": ("merge N", "merge pull request N in the demo's GitOps repo (as a reviewer would)",
                          lambda text, say: self.merge(hooks, text, say))}

    def intro(self) -> list[str]:
        traffic = (f"a real Prometheus at {self.prometheus.url} with a week of Istio metrics"
                   if self.prometheus else "no Prometheus (traffic shows as unknown)")
        lines = [f"deckhand demo world (ready in {self.startup_seconds:.1f}s): clusters prod-a and prod-b on "
                 f"loopback, {traffic}, GitOps repo {REPO}; teams payments, shop and search.",
                 "Try: /canary list · /canary checkout · /service deps ledger · /service deps invoices · "
                 "/ops run idle-scan · /ops run node-scan · /ops run canary-reminders · /pipeline create · "
                 "/pipeline list · merge N",
                 f"Clock: {self.clock():%Y-%m-%d %H:%M} UTC (the end of the metrics; it stands still in the demo)."]
        if self.prometheus is None:
            lines.append(mesh.INSTALL_HINT)
        return lines + self.notes

    def stop(self) -> None:
        for fake in self.kube.values():
            fake.stop()
        self.github.stop()
        if self.prometheus is not None:
            self.prometheus.stop(remove=False)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start() -> Demo:
    """Start the world's servers (Kubernetes x2, GitHub, Prometheus when installed) and seed them."""
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="deckhand-demo-"))
    now = mesh.data_end()
    kube = {name: KubeFake().start() for name in CLUSTERS}
    github = GitHubFake().start()
    demo = Demo(workdir=workdir, clock=DemoClock(now), kube=kube, github=github, prometheus=None, config={},
                secrets=Secrets(slack_bot_token=None, slack_signing_secret=None, slack_app_token=None,
                                slack_api_url=None, github_token="demo-" + secrets.token_hex(8),
                                hook_secret=secrets.token_hex(16), github_webhook_secret=secrets.token_hex(16)))
    try:
        # Prometheus backfills and starts in the background while the clusters are seeded.
        holder: dict[str, Any] = {}
        booting = threading.Thread(target=_boot_prometheus, args=(workdir / "prometheus", now, holder),
                                   name="demo-prometheus", daemon=True)
        booting.start()
        kube["prod-a"].add_many([*world.prod_a(now), *nodes.prod_a(now)])
        kube["prod-b"].add_many([*world.prod_b(now), *nodes.prod_b(now)])
        for fake in kube.values():
            world.play_controllers(fake)
        github.valid_tokens = {demo.secrets.github_token}
        github.create_repo(REPO, files={"README.md": "Deployment manifests, one folder per service.\n"})
        # GitHub asks only collaborators to review (422 otherwise): the demo's reviewer is one.
        github.add_collaborators(REPO, *config_reviewers())
        kubeconfig = write_kubeconfig(str(workdir / "kubeconfig"), kube)
        booting.join()
        if "error" in holder:
            demo.notes.append(f"(demo: Prometheus did not start, so traffic shows as unknown: {holder['error']})")
        demo.prometheus = holder.get("server")
        url = demo.prometheus.url if demo.prometheus else _closed_url()
        demo.config = config(kubeconfig, url, github.url)
    except BaseException:
        demo.stop()
        raise
    demo.startup_seconds = time.perf_counter() - started
    return demo


def _boot_prometheus(workdir: Path, end: datetime, holder: dict) -> None:
    try:
        holder["server"] = mesh.start_prometheus(str(workdir), end)
    except Exception as exc:  # promtool or prometheus failed: the demo goes on without traffic
        holder["error"] = str(exc).splitlines()[0][:300]


def _closed_url() -> str:
    """Where no Prometheus listens: queries fail at once with "connection refused", as when it is down."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"
