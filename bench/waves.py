"""Node maintenance waves at 500 nodes: the cost of a plan and of a tick.

One Kubernetes fake holds 500 nodes in three roles (3 control-plane, 20 infra, 477 workers) with 5 pods
each (2,500 pods) and 50 PodDisruptionBudgets. Measured in an in-process bot (tests/harness.start_bot,
no HTTP server), through the same core functions the Slack buttons call:
- the plan (`waves.propose`): wall time and Kubernetes calls (target: one list of Nodes, Pods and
  PodDisruptionBudgets, whatever the node count);
- the first tick of a running wave (its first batch, 10% of each role: cordon and evict are one write per
  node and per pod, which no design avoids; the reads must still be one list per kind);
- a steady tick while the batch waits for reinstall: target one list of Nodes and one of Pods, < 1 s.
"""
from __future__ import annotations

import time
from datetime import timedelta

from bench.common import Backends, FakeClock, Options, Result, benchmark, in_process_bot, log

NODES = {"control-plane": 3, "infra": 20, "worker": 477}
PODS_PER_NODE = 5
BUDGETS = 50
TICK_TARGET = 1.0
PLAN_TARGET = 2.0


def seed(fake, now) -> None:
    from tests.nodes.waves_support import pdb, pod, role_node

    index = 0
    for role, count in NODES.items():
        for i in range(count):
            name = f"{role[:4]}-{i:03d}"
            fake.add(role_node(name, role, now))
            for p in range(PODS_PER_NODE):
                fake.add(pod(f"app{index % BUDGETS}-{name}-{p}", name, app=f"app{index % BUDGETS}"))
                index += 1
    for b in range(BUDGETS):
        fake.add(pdb(f"app{b}", f"app{b}", "10%"))
    fake.refresh_budgets()


def _calls(fake) -> tuple[int, list[str]]:
    reads = [r for r in fake.requests if r.method == "GET"]
    return len(fake.requests), sorted({r.path for r in reads})


@benchmark("waves", order=55)
def waves_bench(opts: Options) -> list[Result]:
    from bot.nodes import wave_run, waves
    from bot.nodes.wave_plan import Budget, WaveSpec

    with Backends(opts.workdir) as backends:
        backends.slack_fake()
        fake = backends.kube_fake()
        clock = FakeClock()
        log(f"waves: seeding {sum(NODES.values())} nodes, {sum(NODES.values()) * PODS_PER_NODE} pods")
        seed(fake, clock())
        bot = in_process_bot(opts.workdir / "bot", backends.slack, {"prod-a": fake}, serve=False, clock=clock)
        try:
            spec = WaveSpec(cluster="prod-a", selector_kind="labels", selector="kubernetes.io/hostname",
                            role_label="node-role.kubernetes.io/*", max_unavailable=Budget(10, True),
                            floor=Budget(50, True), procedure="rejoin", node_timeout=timedelta(hours=1))
            fake.clear_requests()
            started = time.perf_counter()
            wave = waves.propose(bot.ctx, spec, "U0DEVOPS1", None)
            plan_seconds = time.perf_counter() - started
            plan_calls, plan_paths = _calls(fake)
            log(f"waves: plan {plan_seconds:.3f}s, {plan_calls} calls, {len(wave.plan.batches)} batches")
            waves.start(bot.ctx, wave.id, "U0DEVOPS2")
            fake.clear_requests()
            started = time.perf_counter()
            wave_run.tick(bot.ctx, wave.id)
            first_seconds = time.perf_counter() - started
            first_calls, first_paths = _calls(fake)
            batch = len(wave.plan.batches[0].nodes)
            for _ in range(3):  # evicted pods are gone: the batch drains and waits for reinstall
                wave_run.tick(bot.ctx, wave.id)
            fake.clear_requests()
            started = time.perf_counter()
            wave_run.tick(bot.ctx, wave.id)
            steady_seconds = time.perf_counter() - started
            steady_calls, steady_paths = _calls(fake)
            phases = {r["phase"] for r in waves.nodes_of(bot.ctx, wave.id) if r["batch"] == 0}
            log(f"waves: first tick {first_seconds:.3f}s ({first_calls} calls), steady {steady_seconds:.3f}s "
                f"({steady_calls} calls), batch phases {phases}")
        finally:
            bot.stop()
    size = f"{sum(NODES.values())} nodes, {sum(NODES.values()) * PODS_PER_NODE} pods"
    plan_row = Result.below(f"wave plan ({size})", round(plan_seconds, 3), "s", PLAN_TARGET,
                            calls={"kubernetes": plan_calls},
                            details={"read_paths": plan_paths, "batches": len(wave.plan.batches)})
    if plan_calls != 3:
        plan_row.met = False
        plan_row.details["problem"] = f"{plan_calls} Kubernetes calls; one list per kind (3) expected"
    first_row = Result(f"wave first tick: cordon + evict a batch of {batch} nodes", round(first_seconds, 3), "s",
                       calls={"kubernetes": first_calls},
                       details={"read_paths": first_paths,
                                "note": "writes are one cordon per node and one eviction per pod; reads one list per kind"})
    steady_row = Result.below(f"wave steady tick, batch waiting for reinstall ({size})", round(steady_seconds, 3), "s",
                              TICK_TARGET, calls={"kubernetes": steady_calls},
                              details={"read_paths": steady_paths, "batch_phases": sorted(phases)})
    if steady_calls != 2 or first_paths != ["/api/v1/nodes", "/api/v1/pods"]:
        steady_row.met = False
        steady_row.details["problem"] = "a tick must read one list of Nodes and one of Pods, never per node"
    return [plan_row, first_row, steady_row]
