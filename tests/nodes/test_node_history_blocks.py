"""Golden files for `/nodes` (tests/golden/nodes_overview.json, nodes_cluster.json, nodes_node*.json), Slack's
limits, and the attempt reconstruction and p90 the views are built from."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from blocks import node_history
from blocks.common import MAX_MESSAGE_BLOCKS, MAX_SECTION_TEXT
from bot.nodes import history
from tests.fakes.slack import validate_message_blocks
from tests.golden import assert_golden

NOW = "2026-11-20T12:00:00+00:00"


def valid(payload: dict) -> dict:
    assert validate_message_blocks(payload["blocks"]) == []
    assert len(payload["blocks"]) <= MAX_MESSAGE_BLOCKS
    return payload


def phase(name, status, start, end=None, *, seconds=None, exit_code=None, message="", log_tail="", failures=0):
    return {"phase": name, "status": status, "started_at": start, "ok_at": end if status == "ok" else None,
            "failed_at": end if status == "failed" else None, "seconds": seconds,
            "duration": history.duration_text(seconds) if seconds is not None else None, "failures": failures,
            "exit_code": exit_code, "message": message, "log_tail": log_tail}


def attempt(node="worker-3", outcome="joined", reached="ready", started="2026-11-20T11:40:00+00:00", seconds=95.0,
            slow=False, phases=None):
    return {"cluster": "prod-a", "node": node, "started_at": started, "last_at": started, "reached": reached,
            "last_phase": reached, "last_status": "ok" if outcome == "joined" else "failed", "outcome": outcome,
            "seconds": seconds, "duration": history.duration_text(seconds), "slow": slow,
            "slow_after": "3m20s" if slow else None, "script_version": "1.0.0", "phases": phases or []}


INCIDENT = {"id": 12, "cluster": "prod-a", "node": "worker-9", "reason": "join-failed", "state": "open",
            "summary": "`join` failed (exit code 1): kubeadm join exited with 1", "since": "2026-11-20T11:20:00+00:00",
            "age": "40m", "resolved_at": None, "resolution": None, "acked_by": "U0DEVOPS1",
            "acked_at": "2026-11-20T11:25:00+00:00", "channel": "C0ALERTS", "ts": "1795176000.000100",
            "permalink": "https://example.slack.com/archives/C0ALERTS/p1795176000000100"}


def test_overview_golden_and_an_unreachable_cluster_never_shows_zero_not_ready():
    rows = [{"cluster": "prod-a", "reachable": True, "error": "", "total": 42, "ready": 40, "not_ready": 2,
             "cordoned": 1, "joins_ok": 3, "joins_failed": 1, "joins_running": 1, "open_incidents": 2},
            {"cluster": "prod-b", "reachable": True, "error": "", "total": 12, "ready": 12, "not_ready": 0,
             "cordoned": 0, "joins_ok": 0, "joins_failed": 0, "joins_running": 0, "open_incidents": 0},
            {"cluster": "edge-1", "reachable": False, "error": "edge-1: list nodes failed: 503 etcdserver: request timed out",
             "joins_ok": 0, "joins_failed": 0, "joins_running": 0, "open_incidents": 1}]
    payload = valid(node_history.overview_message(rows, NOW))
    assert_golden("nodes_overview", payload)
    edge = [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"][0].splitlines()[2]
    assert "did not answer" in edge and "NotReady" not in edge


def test_many_clusters_fit_in_fifty_blocks():
    rows = [{"cluster": f"cluster-{n:04d}", "reachable": False, "error": "x" * 300, "joins_ok": 0, "joins_failed": 0,
             "joins_running": 0, "open_incidents": 0} for n in range(2000)]
    payload = valid(node_history.overview_message(rows, NOW))
    assert "more sections not shown" in payload["blocks"][-2]["elements"][0]["text"]


def test_cluster_golden():
    failed = attempt("worker-9", "failed", "join", "2026-11-20T11:19:00+00:00", 61.0, phases=[
        phase("join", "failed", "2026-11-20T11:19:30+00:00", "2026-11-20T11:20:00+00:00", seconds=30, exit_code=1,
              failures=1)])
    view = {"cluster": "prod-a", "now": NOW, "incidents": [INCIDENT, {**INCIDENT, "id": 13, "node": "*",
                                                                     "reason": "unreachable", "acked_by": None,
                                                                     "permalink": None, "ts": None,
                                                                     "summary": "deckhand cannot list this cluster's nodes"}],
            "attempts": [failed, attempt("worker-8", slow=True, seconds=412.0), attempt("worker-7")],
            "attempt_count": 27, "slow_after": "3m20s", "retention": "90d"}
    payload = valid(node_history.cluster_message(view))
    assert_golden("nodes_cluster", payload)
    # Slack reads <…> as a link or a mention even in backticks: placeholders are escaped.
    assert "<node>" not in str(payload) and "&lt;node&gt;" in str(payload)


def node_view(**overrides) -> dict:
    tail = "[preflight] Running pre-flight checks\nerror: <!channel> & <https://evil.example|x> ``` done"
    view = {"cluster": "prod-a", "node": "worker-3", "now": NOW, "reachable": True, "error": "", "exists": True,
            "ready": "True", "cordoned": False, "taints": ["dedicated=gpu:NoSchedule"], "created": "2026-11-20T11:48:00+00:00",
            "kubelet_version": "v1.30.2",
            "conditions": [{"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
                            "message": "kubelet has sufficient memory available", "since": "2026-11-20T11:48:00Z"},
                           {"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status", "since": "2026-11-20T11:49:00Z"}],
            "attempts": [
                attempt(started="2026-11-20T11:47:00+00:00", seconds=95.0, phases=[
                    phase("discovery", "ok", "2026-11-20T11:47:00+00:00", "2026-11-20T11:47:02+00:00", seconds=2),
                    phase("config", "ok", "2026-11-20T11:47:03+00:00", "2026-11-20T11:47:05+00:00", seconds=2),
                    phase("join", "ok", "2026-11-20T11:47:06+00:00", "2026-11-20T11:48:00+00:00", seconds=54),
                    phase("ready", "ok", "2026-11-20T11:48:01+00:00", "2026-11-20T11:48:35+00:00", seconds=34)]),
                attempt(outcome="failed", reached="join", started="2026-11-20T11:30:00+00:00", seconds=70.0, phases=[
                    phase("discovery", "ok", "2026-11-20T11:30:00+00:00", "2026-11-20T11:30:02+00:00", seconds=2),
                    phase("config", "ok", "2026-11-20T11:30:03+00:00", "2026-11-20T11:30:05+00:00", seconds=2),
                    phase("join", "failed", "2026-11-20T11:30:06+00:00", "2026-11-20T11:31:10+00:00", seconds=64,
                          exit_code=1, message="kubeadm join exited with 1", log_tail=tail, failures=1)])],
            "incidents": [{**INCIDENT, "node": "worker-3", "state": "resolved", "age": "18m",
                           "resolved_at": "2026-11-20T11:48:35+00:00", "resolution": "the join script reported `ready` ok"}],
            "silences": [{"by": "U0DEVOPS2", "at": "2026-11-20T11:32:00+00:00", "until": "2026-11-20T15:32:00+00:00",
                          "scope": "node"}],
            "slow_after": "3m20s", "retention": "90d"}
    view.update(overrides)
    return view


def test_node_golden_escapes_the_log_tail():
    payload = valid(node_history.node_message(node_view()))
    assert_golden("nodes_node", payload)
    text = str(payload)
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|x&gt;" in text and "<!channel>" not in text


def test_node_of_an_unreachable_cluster_golden():
    payload = valid(node_history.node_message(node_view(reachable=False, exists=False, error="prod-a: get nodes/worker-3 "
                                                        "failed: connection refused", attempts=[], incidents=[],
                                                        silences=[])))
    assert_golden("nodes_node_unreachable", payload)
    assert "did not answer" in str(payload) and "*Now:* Ready" not in str(payload)


def test_a_node_with_many_long_failures_keeps_every_limit():
    tail = "<&>" * 1365  # 4 KiB that triples when escaped
    failing = attempt(outcome="failed", reached="join", phases=[
        phase("join", "failed", NOW, NOW, seconds=1, exit_code=1, message="m" * 2000, log_tail=tail, failures=3)])
    payload = valid(node_history.node_message(node_view(attempts=[failing] * 40, incidents=[INCIDENT] * 200,
                                                        silences=[node_view()["silences"][0]] * 100)))
    assert "older attempts not shown" in str(payload)
    assert all(len(b["text"]["text"]) <= MAX_SECTION_TEXT for b in payload["blocks"] if b["type"] == "section")


# -- the data the views come from ---------------------------------------------------------------------------
def report_rows(*steps, start=datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)):
    rows = []
    for number, (phase_name, status, offset) in enumerate(steps):
        rows.append({"id": number + 1, "received_at": (start + timedelta(seconds=offset)).isoformat(),
                     "cluster": "prod-a", "node": "worker-3", "phase": phase_name, "status": status, "message": "",
                     "log_tail": "", "exit_code": 1 if status == "failed" else None, "script_version": "1.0.0"})
    return rows


def test_attempts_are_rebuilt_from_reports():
    rows = report_rows(("discovery", "started", 0), ("discovery", "ok", 2), ("config", "started", 3),
                       ("config", "failed", 9),                                  # run 1 stops here
                       ("discovery", "started", 60), ("discovery", "failed", 61),  # run 2 cannot find its cluster
                       ("discovery", "started", 120), ("discovery", "ok", 121), ("config", "started", 122),
                       ("config", "ok", 125), ("join", "started", 126), ("join", "ok", 180), ("ready", "started", 181),
                       ("ready", "ok", 200))
    first, second, third = history.attempts_from(rows)
    assert (first.reached, first.last_status, first.seconds) == ("config", "failed", 9)
    assert first.phases["config"].seconds == 6 and first.phases["discovery"].seconds == 2
    assert (second.reached, second.last_status) == ("discovery", "failed")
    assert third.joined and third.seconds == 80 and third.phases["join"].seconds == 54


def test_p90_needs_enough_samples_and_one_outlier_does_not_set_it():
    assert history.p90([60.0] * 4) is None
    assert abs(history.p90([60.0] * 8 + [400.0]) - 128) < 1e-9
    assert history.duration_text(38) == "38s" and history.duration_text(252) == "4m12s"
    assert history.duration_text(3720) == "1h02m"
