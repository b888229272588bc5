"""Socket Mode as a real process (`python app.py` with SLACK_APP_TOKEN) against the gateway fake: Slack down
at start, refresh, abrupt drops by RST and by FIN, only the leader connected, failover, SIGTERM."""
from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.harness import DEVOPS
from tests.processes import bot_process, wait_until, write_config  # noqa: F401
from tests.deletion.test_service_world import seed_payments


def metric(proc, name: str) -> float:
    for line in proc.metrics().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            if line.startswith(name + " ") or name.endswith("}"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def sample(proc, series: str) -> float:
    """One series' value (`name{labels}` exactly as exposed), 0 when absent."""
    for line in proc.metrics().splitlines():
        if line.rsplit(" ", 1)[0] == series:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def ops_help_works(proc) -> None:
    before = len(proc.slack.responses)
    ack = proc.sender.command("/ops", "help", user_id=DEVOPS)
    assert ack.status_code == 200
    reply = proc.slack.wait_for(lambda: proc.slack.responses[before:], timeout=15)[0]
    assert "deckhand commands" in reply["text"]


def test_slack_down_at_start_serves_health_at_once_then_connects_and_commands_work(
        tmp_path, kube_fake, slack_fake, socket_gateway, bot_process):
    socket_gateway.outage()  # apps.connections.open answers HTTP 500
    config = write_config(tmp_path, {"prod-a": kube_fake})
    proc = bot_process(config, str(tmp_path / "d.db"), socket_gateway=socket_gateway, wait="live")
    # Ready all the while (the hooks work, Slack posts wait in the outbox); the link's state is a detail.
    ready = wait_until(lambda: (r := proc.readyz()).status_code == 200 and "attempt 3" in r.text and r.json(),
                       "three failed attempts reported by /readyz", deadline=30)
    assert ready["slack"] == ("connecting (attempt 3, last error: apps.connections.open answered "
                              "internal_error (HTTP 500))") and ready["problems"] == []
    assert socket_gateway.connections() == []
    # hooks are served meanwhile (this one is not configured: no DECKHAND_HOOK_SECRET)
    hook = requests.post(proc.url + "/hooks/node-join", data=b"{}", timeout=5)
    assert hook.status_code == 503 and hook.json()

    socket_gateway.outage(False)
    socket_gateway.wait_for_connections(1, timeout=60)
    wait_until(lambda: proc.readyz().json()["slack"] == "ok", "/readyz to show the link connected")
    ops_help_works(proc)
    failures = sample(proc, "deckhand_socket_mode_connect_failures_total")
    assert failures >= 2 and sample(proc, "deckhand_socket_mode_connected") == 1.0
    log = proc.output()
    failed_lines = [line for line in log.splitlines() if "connecting to Slack failed" in line]
    assert len(failed_lines) == failures  # each failure logged once, with its cause
    assert all("internal_error (HTTP 500)" in line for line in failed_lines)
    assert "Traceback" not in log


@pytest.mark.parametrize("reason", ["refresh_requested", "warning"])
def test_a_disconnect_frame_opens_the_new_connection_before_the_old_one_closes(
        reason, tmp_path, kube_fake, slack_fake, socket_gateway, bot_process):
    proc = bot_process(write_config(tmp_path, {"prod-a": kube_fake}), str(tmp_path / "d.db"),
                       socket_gateway=socket_gateway)
    [old] = socket_gateway.wait_for_connections(1)
    socket_gateway.disconnect(reason, grace=30)
    [new] = socket_gateway.wait_for_connections(1, opened_after=old.opened_at)
    assert new.opened_at < old.closed_at  # no gap: the old one closed only once the new one was up
    if reason == "warning":  # Slack does not close it on a warning: deckhand closes it itself, cleanly
        assert old.close_reason.startswith("client closed")
    ops_help_works(proc)
    assert sample(proc, f'deckhand_socket_mode_reconnects_total{{reason="{reason}"}}') == 1.0


@pytest.mark.parametrize("how", ["rst", "fin"])
def test_an_abrupt_drop_is_noticed_and_replaced(how, tmp_path, kube_fake, slack_fake, socket_gateway, bot_process):
    proc = bot_process(write_config(tmp_path, {"prod-a": kube_fake}), str(tmp_path / "d.db"),
                       socket_gateway=socket_gateway)
    [old] = socket_gateway.wait_for_connections(1)
    socket_gateway.drop(how)
    # websocket-client sees both at once (bot/foundation/socket_mode.py); the built-in client took 60 s
    # for a FIN, so this deadline tells the two apart without timing anything.
    socket_gateway.wait_for_connections(1, opened_after=old.closed_at, timeout=20)
    ops_help_works(proc)
    assert sample(proc, 'deckhand_socket_mode_reconnects_total{reason="dropped"}') == 1.0
    assert socket_gateway.problems == []


def lease_config(tmp_path, kube_fake, duration: str = "2s") -> str:
    # The Lease's namespace must exist, as on a real cluster (the fake answers 404 otherwise).
    kube_fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "deckhand"}})
    config = Path(write_config(tmp_path, {"prod-a": kube_fake}))
    data = yaml.safe_load(config.read_text())
    data["lease"] = {"cluster": "prod-a", "namespace": "deckhand", "name": "deckhand", "duration": duration}
    config.write_text(yaml.safe_dump(data))
    return str(config)


def holder(kube_fake) -> str | None:
    lease = kube_fake.get("coordination.k8s.io/v1", "leases", "deckhand", "deckhand")
    return (lease or {}).get("spec", {}).get("holderIdentity")


def test_only_the_leader_connects_and_failover_moves_the_connection(
        tmp_path, kube_fake, slack_fake, socket_gateway, bot_process):
    config = lease_config(tmp_path, kube_fake)
    first = bot_process(config, str(tmp_path / "first.db"), socket_gateway=socket_gateway,
                        env={"POD_NAME": "first"})
    assert holder(kube_fake) == "first"
    socket_gateway.wait_for_connections(1)
    second = bot_process(config, str(tmp_path / "second.db"), socket_gateway=socket_gateway,
                         env={"POD_NAME": "second"}, wait="live")
    standby = wait_until(lambda: (r := second.readyz()).status_code == 503 and r.json(), "the standby to settle")
    assert standby["leader"] is False and not any(p.startswith("slack:") for p in standby["problems"])
    assert sample(second, "deckhand_socket_mode_connected") == 0.0
    [only] = socket_gateway.wait_for_connections(1)  # still one: the standby opened none
    assert socket_gateway.tickets_issued == 1

    first.kill()  # SIGKILL: no release, the lease must expire; the kernel closes its socket
    wait_until(lambda: not only.open, "the dead leader's connection to close")
    socket_gateway.wait_for_connections(1, opened_after=only.opened_at, timeout=30)
    wait_until(lambda: second.readyz().status_code == 200, "the new leader to be ready")
    assert holder(kube_fake) == "second" and sample(second, "deckhand_socket_mode_connected") == 1.0
    ops_help_works(second)


def test_a_leader_that_loses_the_lease_closes_its_connection(
        tmp_path, kube_fake, slack_fake, socket_gateway, bot_process):
    proc = bot_process(lease_config(tmp_path, kube_fake, duration="3s"), str(tmp_path / "d.db"),
                       socket_gateway=socket_gateway, env={"POD_NAME": "first"})
    [conn] = socket_gateway.wait_for_connections(1)
    # Another instance takes the lease (as after a partition): renewed now, for a long time.
    lease = kube_fake.get("coordination.k8s.io/v1", "leases", "deckhand", "deckhand")
    lease["spec"].update({"holderIdentity": "intruder", "leaseDurationSeconds": 3600,
                          "renewTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())})
    kube_fake.add(lease)
    wait_until(lambda: not conn.open, "the connection to close when the lease is lost", deadline=30)
    assert conn.close_reason.startswith("client closed")
    assert socket_gateway.connections() == []
    assert wait_until(lambda: (r := proc.readyz()).status_code == 503 and r.json(), "standby")["leader"] is False


def test_sigterm_closes_the_socket_first_then_finishes_running_work(
        tmp_path, kube_fake, slack_fake, socket_gateway, bot_process):
    seed_payments(kube_fake)
    proc = bot_process(write_config(tmp_path, {"prod-a": kube_fake}), str(tmp_path / "d.db"),
                       socket_gateway=socket_gateway)
    [conn] = socket_gateway.wait_for_connections(1)
    kube_fake.hang(path_contains="payments", seconds=6)  # the work after the ack takes a while
    ack = proc.sender.command("/service", "deps payments-api prod-a", user_id=DEVOPS)
    assert ack.status_code == 200
    wait_until(lambda: any("payments" in r.path for r in kube_fake.requests), "the work to reach Kubernetes")
    proc.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: not conn.open, "the socket to close")
    assert conn.close_reason.startswith("client closed")
    def reports():
        return [r for r in proc.slack.responses if r.get("blocks") and "Checking" not in (r.get("text") or "")]

    assert reports() == []  # closed while the work was still running...
    reply = proc.slack.wait_for(reports, timeout=30)[0]  # ...which then finished
    assert "payments-api" in str(reply["blocks"])
    assert proc.proc.wait(timeout=30) == 0
    log = proc.output()
    assert log.index("Socket Mode connection closed") < log.index("stopped")
    assert socket_gateway.tickets_issued == 1  # it did not reconnect on the way out
    assert re.search(r"received SIGTERM", log) and "Traceback" not in log
