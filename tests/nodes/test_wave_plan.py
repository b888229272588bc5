"""The wave planner's rules (pure), the wave card's golden files, and the Kubernetes fake's Eviction API
checked with the real `kubectl drain`."""
from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from blocks import waves as wave_blocks
from bot.nodes.wave_plan import (Budget, SpecError, WaveSpec, batch_fits, parse_budget, parse_selector, parse_window,
                                 plan, role_of, selector_matches)
from bot.nodes.waves import Wave
from tests.golden import assert_golden
from tests.nodes.waves_support import pdb, pod, role_node

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=timezone.utc)  # a Wednesday


def spec(**overrides) -> WaveSpec:
    values = dict(cluster="prod-a", selector_kind="labels", selector="kubernetes.io/hostname",
                  role_label="node-role.kubernetes.io/*", max_unavailable=Budget(1), floor=Budget(50, True),
                  procedure="rejoin", node_timeout=timedelta(minutes=45))
    values.update(overrides)
    return WaveSpec(**values)


def fleet(**roles: int) -> list[dict]:
    return [role_node(f"{role}-{i}", role, NOW) for role, count in roles.items() for i in range(1, count + 1)]


def test_percentages_round_the_safe_way():
    assert Budget(50, True).of(3, round_up=True) == 2        # a floor of 50% of 3 keeps 2
    assert Budget(25, True).of(6, round_up=False) == 1       # at most 25% of 6 out: 1
    assert parse_budget("floor", "0", allow_zero=True) == Budget(0)
    for bad in ("", "-1", "1.5", "101%", "two"):
        with pytest.raises(SpecError):
            parse_budget("floor", bad, allow_zero=True)
    with pytest.raises(SpecError, match="never moves"):
        parse_budget("max_unavailable", "0%", allow_zero=False)


def test_a_small_role_goes_one_node_at_a_time_and_a_role_at_its_floor_is_left_out():
    nodes = fleet(master=3, worker=8, infra=2)
    result = plan(spec(max_unavailable=Budget(3), floor=Budget(2)), nodes, [], [])
    per_batch = [{role_of(n, "node-role.kubernetes.io/*") for n in nodes if n["metadata"]["name"] in b.nodes}
                 for b in result.batches]
    assert len(result.batches) == 3   # master: 3 at one a time; worker: 8 at 3 per batch (floor 2 allows 3)
    assert all("master" in roles for roles in per_batch)
    assert [len(b.nodes) for b in result.batches] == [4, 4, 3]
    assert set(result.blocked) == {"infra-1", "infra-2"} and "floor of 2" in result.blocked["infra-1"]
    master = next(r for r in result.batches[0].roles if r.role == "master")
    assert (master.before, master.after, master.total, master.floor) == (3, 2, 3, 2)


def test_nodes_already_down_cost_nothing_and_go_first():
    nodes = fleet(worker=4)
    nodes[0] = role_node("worker-1", "worker", NOW, ready="False")
    result = plan(spec(floor=Budget(2)), nodes, [], [])
    assert result.batches[0].nodes == ["worker-1", "worker-2"] and not result.blocked
    worker = result.batches[0].roles[0]
    assert (worker.before, worker.after) == (3, 2), "the NotReady node was already out of the 3 available"
    assert len(result.batches) == 3


def test_pods_kubectl_drain_refuses_block_a_node_and_budgets_only_warn():
    nodes = fleet(worker=4)
    pods = [pod("lonely", "worker-1", owner=None), pod("cache", "worker-2", extra_spec={"volumes": [{"name": "t", "emptyDir": {}}]}),
            pod("agent", "worker-3", owner="DaemonSet", extra_spec={"volumes": [{"name": "t", "emptyDir": {}}]}),
            pod("web-1", "worker-4")]
    budget = dict(pdb("web", "web", 1), status={"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1})
    result = plan(spec(floor=Budget(1)), nodes, pods, [budget])
    assert "no controller" in result.blocked["worker-1"] and "emptyDir" in result.blocked["worker-2"]
    assert "worker-3" in result.nodes, "a DaemonSet pod with local storage does not block (drain skips it)"
    assert "worker-4" in result.nodes and "allows no disruption" in result.warnings["worker-4"][0]


def test_selection_by_names_kubelet_version_and_set_based_selectors():
    nodes = fleet(worker=3)
    nodes[1]["status"]["nodeInfo"]["kubeletVersion"] = "v1.31.1"
    nodes[2]["metadata"]["labels"]["rack"] = "r2"
    assert plan(spec(selector_kind="kubelet", selector="1.30", floor=Budget(0)), nodes, [], []).nodes == \
        ["worker-1", "worker-3"]
    named = plan(spec(selector_kind="names", selector="worker-2, ghost", floor=Budget(0)), nodes, [], [])
    assert named.nodes == ["worker-2"] and named.missing == ["ghost"]
    rack = parse_selector("rack in (r1, r2),node-role.kubernetes.io/worker,!gpu")
    assert [selector_matches(rack, n["metadata"]["labels"]) for n in nodes] == [False, False, True]
    for bad in ("rack in ()", "a=b=c", "!gpu=1", ",", "key with space"):
        with pytest.raises(SpecError):
            parse_selector(bad)


def test_a_batch_fits_only_while_the_fresh_cluster_keeps_the_floor():
    nodes = fleet(worker=3)
    assert batch_fits(["worker-1"], nodes, spec(floor=Budget(2))) == []
    nodes[2] = role_node("worker-3", "worker", NOW, ready="False")
    assert "below its floor of 2" in batch_fits(["worker-1"], nodes, spec(floor=Budget(2)))[0]


def test_windows_cover_overnight_hours_and_time_zones():
    window = parse_window("mon-fri 22:00-06:00 Europe/Berlin")
    berlin_wed_23 = datetime(2026, 11, 18, 22, 0, tzinfo=timezone.utc)   # 23:00 CET, Wednesday
    berlin_sat_01 = datetime(2026, 11, 21, 0, 0, tzinfo=timezone.utc)    # 01:00 Saturday: Friday's night
    berlin_sun_01 = datetime(2026, 11, 22, 0, 0, tzinfo=timezone.utc)    # 01:00 Sunday: Saturday's night, closed
    assert window.contains(berlin_wed_23) and window.contains(berlin_sat_01)
    assert not window.contains(berlin_sun_01) and not window.contains(NOW)
    assert window.next_open(NOW).strftime("%a %H:%M") == "Wed 22:00"
    assert parse_window("") is None and str(parse_window("sat 00:00-24:00")) == "sat 00:00-00:00 UTC"
    for bad in ("weekends", "mon 25:00-26:00", "mon 10:00-10:00", "mon-fri 22:00-06:00 Mars/Olympus"):
        with pytest.raises(SpecError):
            parse_window(bad)


def wave(state: str, result, **extra) -> Wave:
    return Wave(id=7, cluster="prod-a", state=state, spec=spec(window=parse_window("mon-fri 22:00-06:00 UTC"),
                                                               traffic_guard=2000.0),
                plan=result, requested_by="U0DEVOPS1", started_by=extra.get("started_by"), batch=extra.get("batch", 0),
                waiting=extra.get("waiting"), note=extra.get("note"), created_at=NOW, updated_at=NOW)


def test_plan_card_golden():
    nodes = fleet(master=3, worker=4, infra=2)
    pods = [pod("lonely", "worker-4", owner=None)]
    result = plan(spec(floor=Budget(2)), nodes, pods, [])
    assert_golden("wave_planned", wave_blocks.card(wave("planned", result), [], None, NOW))


def test_running_card_golden_with_hostile_node_text_escaped():
    nodes = fleet(worker=4)
    result = plan(spec(floor=Budget(1), max_unavailable=Budget(2)), nodes, [], [])
    rows = [{"node": "worker-1", "batch": 0, "phase": "draining",
             "detail": {"pods_left": 2, "waiting_on": "`default/web-1`: <!channel> Cannot evict pod as it would "
                                                      "violate the pod's disruption budget."}},
            {"node": "worker-2", "batch": 0, "phase": "drained", "detail": {}},
            {"node": "worker-3", "batch": 1, "phase": "queued", "detail": {}}]
    body = wave_blocks.card(wave("running", result, started_by="U0DEVOPS2", waiting=None), rows, None, NOW)
    text = str(body)
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert_golden("wave_running", body)


def test_a_card_for_hundreds_of_nodes_stays_within_slacks_limits():
    nodes = fleet(worker=500)
    result = plan(spec(floor=Budget(10, True), max_unavailable=Budget(5)), nodes, [], [])
    rows = [{"node": n, "batch": i, "phase": "queued", "detail": {}} for i, b in enumerate(result.batches)
            for n in b.nodes]
    body = wave_blocks.card(wave("running", result, started_by="U0DEVOPS2", batch=40), rows, None, NOW)
    assert len(body["blocks"]) <= 50
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in body["blocks"])
    assert "more batches" in str(body)


def test_kubectl_drain_honours_the_fakes_disruption_budget(kube_fake, tmp_path):
    if shutil.which("kubectl") is None:
        if os.environ.get("CI") or os.environ.get("DECKHAND_REQUIRE_TOOLS"):
            pytest.fail("kubectl is required in CI but is not on PATH")
        pytest.skip("kubectl is not installed")
    for name in ("a", "b", "c"):
        kube_fake.add(role_node(name, "worker", NOW))
    kube_fake.add(pod("web-1", "a"))
    kube_fake.add(pod("web-2", "b"))
    kube_fake.add(pdb("web", "web", 2))
    kube_fake.simulate_replicasets(ready=False)
    kubeconfig = kube_fake.kubeconfig(str(tmp_path / "kubeconfig"))
    drain = [shutil.which("kubectl"), "--kubeconfig", kubeconfig, "drain", "a", "--ignore-daemonsets", "--timeout=2s"]
    blocked = subprocess.run(drain, capture_output=True, text=True, timeout=60)
    assert blocked.returncode != 0 and "violate the pod's disruption budget" in blocked.stderr
    assert (kube_fake.get("v1", "nodes", None, "a")["spec"]).get("unschedulable") is True
    kube_fake.add(pod("web-3", "c"))  # a third Ready replica: the budget now allows one disruption
    done = subprocess.run(drain, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    names = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in kube_fake.list("pods")}
    assert "web-1" not in names and "a" not in names.values()
    replacement = [n for n in names if n.startswith("web-rs-")]
    assert replacement and names[replacement[0]] != "a", "the ReplicaSet stand-in schedules elsewhere"
