"""The two listeners of `python app.py`: what exists on PORT and HEALTH_PORT in each mode, the limits on
PORT, and refusing to serve HTTP mode without a signing secret. Real processes, real sockets."""
from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys

import requests

from tests.harness import BOT_TOKEN
from tests.processes import ROOT, bot_process, wait_until, write_config  # noqa: F401


def test_http_mode_without_a_signing_secret_refuses_to_start(tmp_path, kube_fake, slack_fake):
    config = write_config(tmp_path, {"prod-a": kube_fake})
    env = {"PATH": "/usr/bin:/bin", "DECKHAND_CONFIG": config, "DECKHAND_DB": str(tmp_path / "d.db"),
           "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": slack_fake.api_url, "HOST": "127.0.0.1",
           "PORT": "1", "SLACK_SIGNING_SECRET": ""}
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60, input="")
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("SLACK_SIGNING_SECRET is not set"), lines
    assert not (tmp_path / "d.db").exists()  # nothing was started


def test_socket_mode_has_no_slack_events_route_and_no_fallback_secret(tmp_path, kube_fake, slack_fake,
                                                                      socket_gateway, bot_process):
    proc = bot_process(write_config(tmp_path, {"prod-a": kube_fake}), str(tmp_path / "d.db"),
                       socket_gateway=socket_gateway)
    from tests.fakes.slack import SlackSender

    # Signed with the secret main used to fall back to: the route itself must not exist.
    forged = SlackSender(proc.url, "unused-in-socket-mode", slack_fake).command("/ops", "help", user_id="U0DEVOPS1")
    assert forged.status_code == 404
    assert requests.get(proc.url + "/healthz", timeout=5).status_code == 404  # probes live on HEALTH_PORT only
    assert requests.get(proc.health_url + "/healthz", timeout=5).json() == {"status": "ok"}
    assert slack_fake.responses == []


def test_health_and_metrics_live_on_health_port_only(tmp_path, kube_fake, slack_fake, bot_process):
    proc = bot_process(write_config(tmp_path, {"prod-a": kube_fake}), str(tmp_path / "d.db"))
    for path in ("/healthz", "/readyz", "/metrics"):
        assert requests.get(proc.url + path, timeout=5).status_code == 404
        assert requests.get(proc.health_url + path, timeout=5).status_code == 200
    assert requests.post(proc.health_url + "/slack/events", timeout=5).status_code == 404
    assert proc.sender.command("/ops", "help").status_code == 200  # Slack and hooks stay on PORT


def test_idle_connections_on_port_cannot_starve_the_probes(tmp_path, kube_fake, slack_fake, bot_process):
    proc = bot_process(write_config(tmp_path, {"prod-a": kube_fake}), str(tmp_path / "d.db"))
    idle = []
    try:
        for _ in range(110):  # more than waitress's default connection_limit (100)
            idle.append(socket.create_connection(("127.0.0.1", proc.port), timeout=5))
        for path in ("/healthz", "/readyz", "/metrics"):
            assert requests.get(proc.health_url + path, timeout=5).status_code == 200
    finally:
        for sock in idle:
            sock.close()


def test_a_body_over_one_mib_is_refused_before_it_is_read(tmp_path, kube_fake, slack_fake, bot_process):
    proc = bot_process(write_config(tmp_path, {"prod-a": kube_fake}), str(tmp_path / "d.db"))
    with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as sock:
        # Announce 1 GiB and send none of it: the answer must come from the headers alone.
        sock.sendall(b"POST /hooks/node-join HTTP/1.1\r\nHost: deckhand\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1073741824\r\n\r\n")
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    just_over = requests.post(proc.url + "/slack/events", data=b"x" * (1024 * 1024 + 1),
                              headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
    assert just_over.status_code == 413
    wait_until(lambda: requests.get(proc.health_url + "/healthz", timeout=5).ok, "the process to stay up")


def test_sigterm_exits_even_with_idle_connections_open(tmp_path, kube_fake, slack_fake, bot_process):
    proc = bot_process(write_config(tmp_path, {"prod-a": kube_fake}), str(tmp_path / "d.db"))
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5)
            for port in (proc.port, proc.port, proc.health_port)]
    keep_alive = requests.Session()  # a client that keeps its connection between requests, as Slack's does
    assert keep_alive.get(proc.health_url + "/healthz", timeout=5).ok
    assert proc.sender.command("/ops", "help").status_code == 200  # the sender's session keeps one too
    try:
        proc.proc.send_signal(signal.SIGTERM)
        # waitress alone would wait for these clients to hang up, until the kubelet's SIGKILL
        assert proc.proc.wait(timeout=25) == 0
    finally:
        for sock in idle:
            sock.close()
        keep_alive.close()
    assert "stopped" in proc.output()


def test_sigterm_finishes_the_http_request_in_progress(tmp_path, kube_fake, slack_fake, github_fake, bot_process):
    import hashlib
    import hmac
    import json
    import threading

    github_fake.create_repo("org/deploy-manifests", files={"README.md": "hi"})
    secret = "webhook-secret-for-shutdown"
    proc = bot_process(write_config(tmp_path, {"prod-a": kube_fake}, github_url=github_fake.url),
                       str(tmp_path / "d.db"), env={"GITHUB_WEBHOOK_SECRET": secret})
    github_fake.hang(path_contains="/pulls/", seconds=3)  # the hook asks GitHub whether #7 is merged
    body = json.dumps({"action": "closed", "number": 7, "pull_request": {"number": 7, "merged": True},
                       "repository": {"full_name": "org/deploy-manifests"}}).encode()
    headers = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "d-1", "Content-Type": "application/json",
               "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}
    answers = []
    sender = threading.Thread(target=lambda: answers.append(
        requests.post(proc.url + "/hooks/github", data=body, headers=headers, timeout=30)))
    sender.start()
    wait_until(lambda: any("/pulls/" in r.path for r in github_fake.requests), "the hook to ask GitHub")
    proc.proc.send_signal(signal.SIGTERM)
    sender.join(timeout=30)
    assert answers and answers[0].status_code == 202, answers  # answered, not cut off by the shutdown
    assert proc.proc.wait(timeout=30) == 0


def _pending_connections(listening: socket.socket) -> int:
    """How many connections wait in a listening socket's accept queue (Linux: for a LISTEN socket,
    struct tcp_info's tcpi_unacked, at byte 24, is the accept queue's length, sk_ack_backlog)."""
    import struct

    return struct.unpack_from("I", listening.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104), 24)[0]


def _trivial_listeners():
    from flask import Flask

    from bot.foundation.serving import create_listeners

    web = Flask("trivial")
    web.add_url_rule("/", "root", lambda: "ok")
    return create_listeners(web, web, host="127.0.0.1", port=0, health_port=0, threads=1)


def _close(listeners) -> None:
    """Close both listeners and every connection they accepted (nothing loops over them in these tests)."""
    listeners.close(timeout=2)
    for server in (listeners.main, listeners.health):
        for dispatcher in list(server._map.values()):
            dispatcher.close()


def test_one_pass_of_the_loop_accepts_every_connection_waiting():
    # waitress alone accepts one connection per pass of its loop; in a busy process each pass can wait
    # milliseconds for the GIL, so the last of a burst of new connections was read 140 ms late.
    listeners = _trivial_listeners()
    server = listeners.main
    clients = [socket.create_connection(("127.0.0.1", server.effective_port), timeout=5) for _ in range(12)]
    try:
        wait_until(lambda: _pending_connections(server.socket) == 12, "the kernel to queue the 12 connections")
        open_before = len(server._map)
        server.asyncore.loop(timeout=5, map=server._map, count=1)
        assert len(server._map) - open_before == 12
        assert _pending_connections(server.socket) == 0
        for client in clients:  # and each is a working connection
            client.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        answers = {client: b"" for client in clients}
        for client in clients:
            client.setblocking(False)

        def all_answered() -> bool:
            server.asyncore.loop(timeout=0.05, map=server._map, count=1)
            for client in clients:
                try:
                    answers[client] += client.recv(4096)
                except BlockingIOError:
                    pass
            return all(a.startswith(b"HTTP/1.1 200") and a.endswith(b"ok") for a in answers.values())

        wait_until(all_answered, "every accepted connection to be answered")
    finally:
        for client in clients:
            client.close()
        _close(listeners)


def test_a_pass_accepts_no_more_than_the_connection_limit():
    listeners = _trivial_listeners()
    server = listeners.main
    server.adj.connection_limit = len(server._map) + 3  # room for three more connections
    clients = [socket.create_connection(("127.0.0.1", server.effective_port), timeout=5) for _ in range(5)]
    try:
        wait_until(lambda: _pending_connections(server.socket) == 5, "the kernel to queue the 5 connections")
        server.asyncore.loop(timeout=5, map=server._map, count=1)
        assert len(server._map) == server.adj.connection_limit
        assert _pending_connections(server.socket) == 2  # left in the backlog, not accepted past the limit
    finally:
        for client in clients:
            client.close()
        _close(listeners)


def test_serving_freezes_the_heap_built_at_startup():
    import gc
    import threading

    built_at_startup = [{"a": 1}]  # a container: the collector tracks it until it is frozen
    listeners = _trivial_listeners()
    frozen_before = gc.get_freeze_count()
    serving = threading.Thread(target=listeners.serve, daemon=True)
    try:
        serving.start()
        wait_until(lambda: gc.get_freeze_count() > frozen_before, "serve() to freeze the startup heap")
        assert not any(o is built_at_startup for o in gc.get_objects())  # no collection traverses it now
        created_later = [{"b": 2}]
        assert any(o is created_later for o in gc.get_objects())  # what comes after is collected as usual
    finally:
        gc.unfreeze()  # the rest of the test session is not this process's startup
        listeners.close_main()
        serving.join(timeout=10)
        _close(listeners)
    assert not serving.is_alive()


def test_waitress_queue_warnings_go_out_once_a_period_summarised(caplog):
    # waitress warns "Task queue depth is N" for every request that finds its threads busy, from the
    # thread that reads requests, holding the lock its workers take work with.
    from waitress.task import ThreadedTaskDispatcher

    from bot.foundation.serving import QueueDepthLog

    now = [1000.0]
    queue_log = logging.getLogger("waitress.queue")
    summary = QueueDepthLog(period=60, clock=lambda: now[0])
    installed, queue_log.filters = queue_log.filters, [summary]  # not the one listeners built earlier installed
    dispatcher = ThreadedTaskDispatcher()  # no threads: every task added waits, as when all are busy
    try:
        with caplog.at_level(logging.WARNING, logger="waitress.queue"):
            for _ in range(12):
                dispatcher.add_task(object())
            assert [r.getMessage() for r in caplog.records] == ["all HTTP threads busy: 1 requests waiting for one"]
            now[0] += 59
            dispatcher.add_task(object())
            assert len(caplog.records) == 1
            now[0] += 1
            dispatcher.add_task(object())
            assert caplog.records[-1].getMessage() == (
                "all HTTP threads busy: 14 requests waiting for one; 12 more times in the last 60 s, at most 14 waiting")
    finally:
        queue_log.filters = installed


def test_the_listeners_summarise_waitress_queue_warnings():
    from bot.foundation.serving import QueueDepthLog

    listeners = _trivial_listeners()
    try:
        assert sum(isinstance(f, QueueDepthLog) for f in logging.getLogger("waitress.queue").filters) == 1
        _close(_trivial_listeners())  # a second pair of listeners adds no second filter
        assert sum(isinstance(f, QueueDepthLog) for f in logging.getLogger("waitress.queue").filters) == 1
    finally:
        _close(listeners)
