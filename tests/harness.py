"""The bot under test: real settings, real store, real Bolt app and HTTP server, fakes behind it.

    def test_something(bot):                       # one cluster "prod-a" on a Kubernetes fake
        resp = bot.sender.command("/ops", "help")   # signed, to the real /slack/events
        bot.slack.wait_for(lambda: bot.slack.responses)

`bot_factory(clusters=..., config=...)` builds variants: several clusters, a real Prometheus
URL per cluster, config overrides (deep-merged). The clock is a FakeClock: advance it instead
of sleeping.
"""
from __future__ import annotations

import copy
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

DEVOPS = "U0DEVOPS1"
DEVOPS2 = "U0DEVOPS2"
PAY_DEV = "U0PAYDEV"
PAY_DEV2 = "U0PAYDEV2"
OUTSIDER = "U0OUTSIDER"
SIGNING_SECRET = "test-signing-secret-0123456789"
BOT_TOKEN = "xoxb-test-token-deckhand"
GITHUB_TOKEN = "ghp_testtoken0123456789abcdefghijklmn"
HOOK_SECRET = "test-hook-secret-abcdef"
WEBHOOK_SECRET = "test-github-webhook-secret"


class FakeClock:
    def __init__(self, start: datetime | None = None):
        self.moment = start or datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.moment

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        with self._lock:
            self.moment += delta or timedelta(**kwargs)
            return self.moment

    def set(self, moment: datetime) -> None:
        with self._lock:
            self.moment = moment


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_url() -> str:
    """A loopback URL where nothing listens: connection refused at once."""
    return f"http://127.0.0.1:{free_port()}"


def base_config() -> dict[str, Any]:
    return {
        "clusters": [],
        "channels": {"alerts": "C0ALERTS", "approvals": "C0APPROVALS", "audit": "C0AUDIT"},
        "roles": {"devops": [DEVOPS, DEVOPS2]},
        "teams": {
            "payments": {"members": [PAY_DEV, PAY_DEV2], "channel": "C0PAY"},
            "search": {"usergroup": "S0SEARCH", "channel": "C0SEARCH"},
        },
        "github": {"api_url": "http://127.0.0.1:1/api/v3", "repo": "org/deploy-manifests", "base_branch": "main",
                   "reviewers": ["octocat"], "team_reviewers": ["devops"], "labels": ["deckhand"]},
        "canary": {"steps": [10, 25, 50, 100], "stale_after": "72h", "rollout_timeout": "10m"},
        "idle": {"window": "7d", "schedule": "0 10 * * 1-5", "repeat_interval": "7d",
                 "exclude_namespaces": ["kube-system", "istio-system"]},
        "node_join": {"interval": "2m", "not_ready_after": "10m", "startup_timeout": "15m", "max_unhealthy": "40%"},
        "deletion": {"request_ttl": "72h"},
    }


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class Bot:
    ctx: Any
    url: str
    sender: Any
    slack: Any
    clock: FakeClock
    config: dict
    kube: dict[str, Any]  # cluster name -> Kubernetes fake
    github: Any
    server: Any = None
    health_url: str = ""  # HEALTH_PORT: /healthz, /readyz, /metrics
    transport: str = "http"  # or "socket": Slack's payloads arrive as Socket Mode envelopes
    thread: threading.Thread | None = None
    bolt: Any = None
    extra: dict = field(default_factory=dict)

    def stop(self) -> None:
        link = self.extra.pop("socket_mode_link", None)
        if link is not None:
            link.stop()
        health = self.extra.pop("health_server", None)
        if health is not None:
            health.shutdown()
            health.server_close()
        if self.server is not None:
            self.server.shutdown()  # returns once serve_forever has left its loop: no EBADF race
            self.server.server_close()
            self.server = None
        executor = self.ctx.extras.get("listener_executor")
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=False)
        self.ctx.outbox.stop()
        replays = self.ctx.extras.get("slack_replays")
        if replays is not None:
            # As app.shutdown: its writer must be done before the store closes. Closing a connection
            # while another thread executes on it crashes sqlite3 (a segfault seen once in the suite).
            replays.stop()
        self.ctx.store.close()

    def run_job(self, name: str) -> str:
        import jobs

        return jobs.run_now(self.ctx, name, trigger="test")

    def flush(self) -> int:
        """Send what the outbox holds (alerts, digests) now."""
        return self.ctx.outbox.flush(max_seconds=10)

    def kube_fake(self, cluster: str = "prod-a"):
        return self.kube[cluster]


def present_in_workspace(slack_fake, cfg: dict) -> None:
    """What a real install has in Slack: the bot was invited to the config's channels (and only those), and
    the people of the config exist. A test that wants another channel joins it (or leaves one)."""
    channels = list((cfg.get("channels") or {}).values())
    channels += [t["channel"] for t in (cfg.get("teams") or {}).values() if isinstance(t, dict) and t.get("channel")]
    slack_fake.join(*[c for c in channels if c])
    people = [DEVOPS, DEVOPS2, PAY_DEV, PAY_DEV2, OUTSIDER]
    for members in (cfg.get("roles") or {}).values():
        people += [m for m in members or [] if str(m).startswith(("U", "W"))]
    for team in (cfg.get("teams") or {}).values():
        people += [m for m in (team or {}).get("members") or [] if str(m).startswith(("U", "W"))]
    slack_fake.add_users(*people)


def grant_reviewers(github_fake, repo: str | None = None) -> None:
    """Make the base config's reviewers a collaborator of `repo` (default the config's) and its team exist,
    so GitHub accepts the review requests (it answers 422 for anyone else)."""
    github = base_config()["github"]
    repo = repo or github["repo"]
    github_fake.add_collaborators(repo, *github["reviewers"])
    github_fake.add_teams(repo.split("/")[0], *github["team_reviewers"])


def start_bot(tmp_path: Path, slack_fake, kube_fakes: dict[str, Any], *, prometheus: dict[str, str] | None = None,
              github_fake=None, config: dict | None = None, clock: FakeClock | None = None,
              serve: bool = True, db_path: str | None = None, cluster_config: dict[str, dict] | None = None,
              socket_gateway=None, backend_timeout: float = 3.0) -> Bot:
    """`prometheus`: cluster -> its own prometheus_url. A cluster not in it gets a closed URL, unless
    `config` has a top-level `prometheus:` (the shared endpoint), which then serves it.
    `cluster_config`: cluster -> extra keys for its clusters[] entry (cluster_label_value, headers...).
    `socket_gateway` (a started SocketModeGateway): serve Slack over Socket Mode through it instead of
    `/slack/events`, which then does not exist; `bot.sender` sends envelopes, acks read like responses."""
    from tests.fakes.kube import write_kubeconfig
    from tests.fakes.slack import SlackSender

    import app as app_module
    import jobs
    from bot.foundation.config import Secrets, parse_settings
    from bot.foundation.context import build_context

    kubeconfig = write_kubeconfig(str(tmp_path / "kubeconfig"), kube_fakes)
    prometheus = prometheus or {}
    cfg = base_config()
    shared = "prometheus" in (config or {})
    cfg["clusters"] = []
    for name in kube_fakes:
        entry = {"name": name, "context": name, "kubeconfig": kubeconfig, "istio_api_version": "v1"}
        if prometheus.get(name) or not shared:
            entry["prometheus_url"] = prometheus.get(name) or closed_url()
        cfg["clusters"].append({**entry, **(cluster_config or {}).get(name, {})})
    if github_fake is not None:
        cfg["github"]["api_url"] = github_fake.url
        # The base config's reviewers exist on the fake GitHub, as on a well-configured install; a test
        # that configures other reviewers meets GitHub's 422 for them.
        grant_reviewers(github_fake)
    cfg = deep_merge(cfg, config or {})
    settings = parse_settings(cfg, "test.yaml")
    present_in_workspace(slack_fake, cfg)
    secrets = Secrets(
        slack_bot_token=BOT_TOKEN, slack_signing_secret=None if socket_gateway else SIGNING_SECRET,
        slack_app_token=socket_gateway.app_token if socket_gateway else None,
        slack_api_url=slack_fake.api_url, github_token=GITHUB_TOKEN, hook_secret=HOOK_SECRET,
        github_webhook_secret=WEBHOOK_SECRET,
    )
    clock = clock or FakeClock()
    ctx = build_context(settings, secrets, db_path or str(tmp_path / "deckhand.db"), clock=clock,
                        outbox_interval=0.0, github_write_pacing=None, backend_timeout=backend_timeout)
    jobs.attach(ctx)
    bolt = app_module.build_bolt(ctx, workers=8)
    link = None
    if socket_gateway is not None:
        from bot.foundation.socket_mode import SocketModeLink
        from bot.foundation.web import create_web

        link = SocketModeLink(socket_gateway.app_token, slack_fake.api_url, app_module.socket_mode_listener(bolt),
                              ctx.metrics)
        web = create_web(ctx, app_module.hooks(ctx))
    else:
        web = app_module.build_web(ctx, bolt)
    from bot.foundation.web import create_health_web

    health_web = create_health_web(ctx, [link.problem] if link else [])
    bot = Bot(ctx=ctx, url="", sender=None, slack=slack_fake, clock=clock, config=cfg, kube=kube_fakes,
              github=github_fake, bolt=bolt, transport="socket" if link else "http")
    bot.extra["web"] = web
    bot.extra["health_web"] = health_web
    if serve:
        # In-process tests use werkzeug's threaded server because it stops cleanly from another
        # thread; the production server (waitress) is exercised by the tests that run app.py.
        import logging

        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)

        server = make_server("127.0.0.1", 0, web, threaded=True)
        port = server.server_port
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        bot.server, bot.thread, bot.url = server, thread, f"http://127.0.0.1:{port}"
        health = make_server("127.0.0.1", 0, health_web, threaded=True)
        threading.Thread(target=health.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        bot.extra["health_server"], bot.health_url = health, f"http://127.0.0.1:{health.server_port}"
        if link is not None:
            from tests.fakes.slack import SocketModeSender

            bot.extra["socket_mode_link"] = link.start()
            link.want(True)
            socket_gateway.wait_for_connections(1)
            bot.sender = SocketModeSender(socket_gateway, slack_fake)
        else:
            bot.sender = SlackSender(bot.url, SIGNING_SECRET, slack_fake)
    return bot


@pytest.fixture
def bot_factory(tmp_path, slack_fake, kube_fake_factory):
    """`bot_factory(..., transport="socket")` serves Slack over Socket Mode (a gateway on slack_fake)."""
    started: list[Bot] = []
    gateways: list[Any] = []

    def make(clusters: list[str] | tuple[str, ...] = ("prod-a",), transport: str = "http", **kwargs: Any) -> Bot:
        if transport == "socket":
            from tests.fakes.slack import SocketModeGateway

            if not gateways:
                gateways.append(SocketModeGateway(slack_fake).start())
            kwargs["socket_gateway"] = gateways[0]
        fakes = kwargs.pop("kube_fakes", None) or {name: kube_fake_factory() for name in clusters}
        directory = tmp_path / f"bot{len(started)}"
        directory.mkdir()
        bot = start_bot(directory, slack_fake, fakes, **kwargs)
        started.append(bot)
        return bot

    yield make
    for bot in started:
        bot.stop()
    for gateway in gateways:
        gateway.stop()


@pytest.fixture
def bot(bot_factory):
    return bot_factory()
