"""pytest fixtures over the HTTP fakes and the real Prometheus.

tests/fakes/ is a runtime library that the demo world (demo/) uses as well, so it imports no pytest;
the fixtures that start and stop its servers around a test live here (loaded through ``pytest_plugins``
in tests/conftest.py):

* ``kube_fake`` / ``kube_fake_factory(**KubeFake kwargs)``: started Kubernetes fakes, stopped at teardown;
  a test fails if an ``on_write`` hook raised.
* ``slack_fake``: a started SlackFake.
* ``socket_gateway``: a started Socket Mode gateway (tests/fakes/slack/socket_mode.py) on ``slack_fake``.
* ``github_fake``: a started GitHubFake; the test fails if the fake itself crashed handling a request.
* ``prometheus_factory(metrics, *, fresh=False) -> PrometheusServer``: servers are shared within the session
  by ``metrics.fingerprint()``, so identical datasets start Prometheus once. Do not stop a shared server;
  ask for ``fresh=True`` to get a private one (stopped at the test's teardown) for outage-mid-test cases.
  On test failure the logs of the servers the test used are printed. Missing binaries fail the test
  (never skip) with install instructions.
* ``prometheus_down_url``: ``http://127.0.0.1:<port>`` where nothing listens (connection refused).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest

from tests.fakes.github import GitHubFake
from tests.fakes.kube import KubeFake
from tests.fakes.prometheus import IstioMetrics, PrometheusMissing, PrometheusServer, require_binaries, unreachable_url
from tests.fakes.slack import SlackFake, SocketModeGateway


@pytest.fixture
def kube_fake():
    """A started KubeFake, stopped after the test; fails the test if an on_write hook raised."""
    fake = KubeFake().start()
    try:
        yield fake
    finally:
        fake.stop()
    fake.check_hooks()


@pytest.fixture
def kube_fake_factory():
    """`kube_fake_factory(**KubeFake kwargs)` starts another independent fake; all stop at teardown."""
    fakes: list[KubeFake] = []

    def start(**kwargs: Any) -> KubeFake:
        fake = KubeFake(**kwargs).start()
        fakes.append(fake)
        return fake

    yield start
    for fake in fakes:
        fake.stop()
    for fake in fakes:
        fake.check_hooks()


@pytest.fixture
def slack_fake():
    """A started SlackFake, stopped after the test."""
    fake = SlackFake().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def socket_gateway(slack_fake):
    """A started SocketModeGateway answering apps.connections.open on `slack_fake`, stopped after the test."""
    gateway = SocketModeGateway(slack_fake).start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def github_fake():
    """A started GitHubFake, stopped after the test (which fails if the fake itself crashed)."""
    fake = GitHubFake().start()
    try:
        yield fake
    finally:
        fake.stop()
    assert not fake.errors, "the GitHub fake crashed handling a request:\n" + "\n".join(fake.errors)


def _require_prometheus() -> None:
    try:
        require_binaries()
    except PrometheusMissing as exc:
        pytest.fail(str(exc), pytrace=False)


class _Pool:
    """Session cache: fingerprint -> running server, least recently used stopped beyond ``limit``."""

    def __init__(self, limit: int = 8):
        self.limit = limit
        self.servers: OrderedDict[str, PrometheusServer] = OrderedDict()

    def get(self, metrics: IstioMetrics) -> PrometheusServer:
        key = metrics.fingerprint()
        srv = self.servers.get(key)
        if srv is not None and srv.running:
            self.servers.move_to_end(key)
            return srv
        if srv is not None:
            srv.stop()
        srv = PrometheusServer(metrics).start()
        self.servers[key] = srv
        while len(self.servers) > self.limit:
            _, old = self.servers.popitem(last=False)
            old.stop()
        return srv

    def close(self) -> None:
        while self.servers:
            self.servers.popitem()[1].stop()


_USED = pytest.StashKey[list]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the logs of the Prometheus servers the test used to its report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for srv in item.stash.get(_USED, []):
            rep.sections.append((
                f"prometheus {srv.url} ({rep.when})",
                f"{srv!r} backfill={srv.backfill_seconds:.2f}s startup={srv.startup_seconds:.2f}s "
                f"workdir={srv.workdir}\n{srv.log()}",
            ))


@pytest.fixture(scope="session")
def _prometheus_pool():
    pool = _Pool()
    yield pool
    pool.close()


@pytest.fixture
def prometheus_factory(request, _prometheus_pool):
    """``prometheus_factory(metrics, *, fresh=False) -> PrometheusServer`` (see module docstring)."""
    _require_prometheus()
    used: list[PrometheusServer] = request.node.stash.setdefault(_USED, [])
    private: list[PrometheusServer] = []

    def factory(metrics: IstioMetrics, *, fresh: bool = False) -> PrometheusServer:
        if fresh:
            srv = PrometheusServer(metrics)
            private.append(srv)
            srv.start()
        else:
            srv = _prometheus_pool.get(metrics)
        used.append(srv)
        return srv

    yield factory
    for srv in private:
        srv.stop()


@pytest.fixture
def prometheus_down_url() -> str:
    """Base URL of a Prometheus that is down (connection refused)."""
    return unreachable_url()
