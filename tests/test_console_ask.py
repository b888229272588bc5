"""`/nodes` and `/idle` in the terminal console, over a pipe as a real process, through the same listeners."""
from __future__ import annotations

from datetime import datetime, timezone

from tests.nodes.nodes_support import node
from tests.test_console import chat, console_env, write_config


def test_nodes_and_idle_answer_in_the_console_and_its_buttons_work(tmp_path, kube_fake):
    kube_fake.add(node("worker-1", datetime.now(timezone.utc)))
    script = "\n".join(["/nodes", "/nodes prod-a worker-1", "/nodes wave now", "/idle", "click 1", "/idle savings"]) + "\n"
    result = chat(["console"], script, console_env(tmp_path, write_config(tmp_path, kube_fake)))
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in out + result.stderr
    overview = out.split("> /nodes\n", 1)[1].split("> /nodes prod-a worker-1", 1)[0]
    assert "== Nodes per cluster ==" in overview and "*prod-a* — 1/1 Ready · 0 NotReady" in overview
    story = out.split("> /nodes prod-a worker-1", 1)[1].split("> /nodes wave now", 1)[0]
    assert "== worker-1 in prod-a ==" in story and "*Now:* Ready" in story and "*Join attempts (0)*" in story
    # `/nodes wave` opens the planner's modal (tests/nodes/test_waves.py); with words after it, usage.
    assert "`/nodes wave` takes no arguments" in out and "*Usage of /nodes:*" in out
    idle = out.split("> /idle\n", 1)[1].split("> click 1", 1)[0]
    assert "No idle scan has run yet" in idle and "[1] Run a fresh scan" in idle
    # The fresh scan is the idle-scan job with its guard: Prometheus is down here, so nothing is concluded.
    fresh = out.split("> click 1", 1)[1].split("> /idle savings", 1)[0]
    assert "deckhand replaced its message" in fresh and "skipped: metrics unavailable" in fresh
    assert "not scanned since" in fresh and ":tada:" not in fresh
    assert "== Reclaimed and still idle ==" in out.split("> /idle savings", 1)[1]
