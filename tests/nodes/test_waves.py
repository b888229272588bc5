"""Node maintenance waves end to end through Slack: plan, four eyes, batches under role floors, budgets,
rejoin through signed join reports, pause/resume/abort, a restart mid-wave, the window and the guard."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from blocks import waves as wave_blocks
from tests.harness import OUTSIDER
from tests.nodes.nodes_support import post_report, report, stamp
from tests.nodes.waves_support import (DEVOPS, DEVOPS2, card_text, click, pdb, phases, plan_wave, pod, seed_fleet,
                                       state, unschedulable)


def test_the_plan_shows_batches_that_keep_every_role_above_its_floor(bot):
    fake = bot.kube_fake()
    seed_fleet(fake, bot.clock())
    wave = plan_wave(bot, selector="kubernetes.io/hostname", kind="labels", max_unavailable="2", floor="2")
    text = card_text(bot, wave)
    assert state(bot, wave) == "planned"
    rows = bot.ctx.store.query("SELECT node, batch FROM wave_nodes WHERE wave_id = ? ORDER BY batch, node", [wave])
    by_batch: dict[int, list[str]] = {}
    for row in rows:
        by_batch.setdefault(row["batch"], []).append(row["node"])
    # control-plane: 3 nodes, floor 2 -> one at a time (3 batches); worker: 6 nodes, max 2 -> 3 batches of 2;
    # infra: 2 nodes, floor 2 -> none can go: left out with the reason.
    assert len(by_batch) == 3
    for members in by_batch.values():
        assert sum(n.startswith("contr") for n in members) == 1
        assert sum(n.startswith("worke") for n in members) == 2
        assert not any(n.startswith("infra") for n in members)
    assert "`control-plane` 3 → 2 of 3 (floor 2)" in text and "`worker` 6 → 4 of 6 (floor 2)" in text
    assert "Cannot be drained now" in text and "infra-1" in text and "floor of 2" in text
    assert not any(unschedulable(fake, n) for n in ("contr-1", "worke-1")), "planning must touch nothing"
    assert "Start" in text and "second DevOps person" in text


def test_starting_needs_a_second_devops_person_and_one_click_wins(bot):
    fake = bot.kube_fake()
    seed_fleet(fake, bot.clock(), {"worker": 4})
    wave = plan_wave(bot, selector="worke-1", kind="names", floor="1")
    refused = click(bot, wave, wave_blocks.START, user=DEVOPS)
    assert "four-eyes" in refused["text"] and state(bot, wave) == "planned"
    denied = click(bot, wave, wave_blocks.START, user=OUTSIDER)
    assert "can't do that" in denied["text"] and state(bot, wave) == "planned"
    started = click(bot, wave, wave_blocks.START, user=DEVOPS2)
    assert "started" in started["text"] and state(bot, wave) in ("running", "done")
    again = click(bot, wave, wave_blocks.START, user=DEVOPS2, value=str(wave))  # a second press on the old card
    assert "only a planned wave can be started" in again["text"]
    starts = [r for r in bot.ctx.store.audit_log(limit=100) if r["action"] == "wave.start" and r["result"] == "ok"]
    assert len(starts) == 1 and starts[0]["actor"] == DEVOPS2


def test_ten_simultaneous_presses_of_start_start_the_wave_once(bot):
    from concurrent.futures import ThreadPoolExecutor

    from tests.nodes.waves_support import card
    seed_fleet(bot.kube_fake(), bot.clock(), {"worker": 4})
    wave = plan_wave(bot, selector="worke-1", kind="names", floor="1")
    ts = card(bot, wave)["ts"]
    seen = len(bot.slack.responses)
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: bot.sender.block_actions(
            wave_blocks.START, value=str(wave), user_id=DEVOPS2, channel_id="C0ALERTS", message_ts=ts), range(10)))
    assert all(a.status_code == 200 for a in answers)
    bot.slack.wait_for(lambda: len(bot.slack.responses) - seen >= 10, timeout=20)
    starts = [r for r in bot.ctx.store.audit_log(limit=100) if r["action"] == "wave.start" and r["result"] == "ok"]
    cordons = [r for r in bot.kube_fake().requests if r.method == "PATCH" and r.path.endswith("/nodes/worke-1")]
    assert len(starts) == 1 and len(cordons) == 1


def test_a_drain_only_wave_cordons_evicts_and_hands_back(bot):
    fake = bot.kube_fake()
    seed_fleet(fake, bot.clock(), {"worker": 3})
    fake.add(pod("web-1", "worke-1"))
    fake.add(pod("agent-x", "worke-1", app="agent", owner="DaemonSet"))
    wave = plan_wave(bot, selector="worke-1", kind="names", floor="1")
    click(bot, wave, wave_blocks.START)
    assert unschedulable(fake, "worke-1")
    evicted = [r for r in fake.requests if r.path.endswith("/eviction")]
    assert [r.path.rsplit("/", 2)[-2] for r in evicted] == ["web-1"], "DaemonSet pods are skipped, never evicted"
    assert not [r for r in fake.requests if r.method == "DELETE" and "/pods/" in r.path], "evicted, never deleted"
    assert "agent-x" in {p["metadata"]["name"] for p in fake.list("pods")}
    bot.run_job("node-waves")
    assert phases(bot, wave) == {"worke-1": "drained"}
    assert "Hand back worke-1" in card_text(bot, wave)
    click(bot, wave, wave_blocks.HAND_BACK, value=f"{wave}:worke-1")
    assert not unschedulable(fake, "worke-1")
    assert state(bot, wave) == "done" and phases(bot, wave) == {"worke-1": "done"}
    assert "Done" in card_text(bot, wave)


def test_a_disruption_budget_holds_the_drain_until_a_replacement_is_ready(bot):
    fake = bot.kube_fake()
    seed_fleet(fake, bot.clock(), {"worker": 3})
    fake.add(pod("web-1", "worke-1"))
    fake.add(pod("web-2", "worke-2"))
    fake.add(pdb("web", "web", 2))
    fake.refresh_budgets()
    wave = plan_wave(bot, selector="worke-1", kind="names", floor="1")
    assert "Will wait on a disruption budget" in card_text(bot, wave)
    click(bot, wave, wave_blocks.START)
    assert phases(bot, wave) == {"worke-1": "draining"}
    text = card_text(bot, wave)
    assert "violate the pod" in text and "1 pods left" in text
    assert "web-1" in {p["metadata"]["name"] for p in fake.list("pods")}
    fake.add(pod("web-3", "worke-3"))  # the replacement became Ready
    bot.clock.advance(minutes=3)       # past the eviction backoff
    bot.run_job("node-waves")
    assert "web-1" not in {p["metadata"]["name"] for p in fake.list("pods")}
    bot.run_job("node-waves")
    assert phases(bot, wave) == {"worke-1": "drained"}


def test_an_eviction_that_never_succeeds_pauses_the_wave_with_the_reason(bot):
    fake = bot.kube_fake()
    seed_fleet(fake, bot.clock(), {"worker": 3})
    fake.add(pod("web-1", "worke-1"))
    fake.add(pdb("web", "web", 1))
    wave = plan_wave(bot, selector="worke-1", kind="names", floor="1", timeout="10m")
    click(bot, wave, wave_blocks.START)
    bot.clock.advance(minutes=11)
    bot.run_job("node-waves")
    assert state(bot, wave) == "paused"
    text = card_text(bot, wave)
    assert "could not be evicted within 10 min" in text and "Resume" in text


def join_reports(bot, node: str, phases_ok=("discovery", "config", "join", "ready"), fail: str | None = None):
    now = bot.clock()
    for phase in phases_ok:
        status = "failed" if phase == fail else "ok"
        body = report(cluster="prod-a", node=node, phase=phase, status=status, timestamp=stamp(now),
                      exit_code=1 if status == "failed" else None,
                      message="kubeadm join exited with 1" if status == "failed" else "")
        assert post_report(bot, body).status_code in (200, 201, 202)
        if status == "failed":
            return


def test_a_node_rejoins_through_signed_join_reports_and_is_handed_back(bot):
    fake = bot.kube_fake()
    seed_fleet(fake, bot.clock(), {"worker": 3})
    wave = plan_wave(bot, selector="worke-1", kind="names", floor="1", procedure="rejoin")
    click(bot, wave, wave_blocks.START)
    assert phases(bot, wave) == {"worke-1": "reinstalling"} and unschedulable(fake, "worke-1")
    bot.run_job("node-waves")
    assert phases(bot, wave) == {"worke-1": "reinstalling"}, "no join report yet: it waits"
    bot.clock.advance(minutes=20)
    join_reports(bot, "worke-1")
    bot.run_job("node-waves")
    assert phases(bot, wave) == {"worke-1": "done"} and state(bot, wave) == "done"
    assert not unschedulable(fake, "worke-1")


def test_a_failed_rejoin_pauses_the_wave_and_points_at_the_join_alert(bot):
    fake = bot.kube_fake()
    seed_fleet(fake, bot.clock(), {"worker": 3})
    wave = plan_wave(bot, selector="worke-1", kind="names", floor="1", procedure="rejoin")
    click(bot, wave, wave_blocks.START)
    bot.clock.advance(minutes=5)
    join_reports(bot, "worke-1", fail="join")
    bot.run_job("node-waves")
    assert state(bot, wave) == "paused"
    text = card_text(bot, wave)
    assert "join failed in the `join` phase" in text and "C0ALERTS" in text
    resumed = click(bot, wave, wave_blocks.RESUME)
    assert "resumed" in resumed["text"] and state(bot, wave) == "running", "the same failure does not pause again"
    join_reports(bot, "worke-1")
    bot.run_job("node-waves")
    assert state(bot, wave) == "done"


def test_abort_uncordons_what_it_cordoned_but_not_a_node_mid_reinstall(bot):
    fake = bot.kube_fake()
    seed_fleet(fake, bot.clock(), {"worker": 4})
    fake.add(pod("web-1", "worke-2"))
    fake.add(pdb("web", "web", 1))   # keeps worke-2 draining
    wave = plan_wave(bot, selector="worke-1,worke-2", kind="names", floor="1", procedure="rejoin")
    click(bot, wave, wave_blocks.START)
    assert phases(bot, wave) == {"worke-1": "reinstalling", "worke-2": "draining"}
    paused = click(bot, wave, wave_blocks.PAUSE)
    assert state(bot, wave) == "paused" and "done" in paused["text"]
    aborted = click(bot, wave, wave_blocks.ABORT)
    assert state(bot, wave) == "aborted"
    assert "`worke-1` is being reinstalled: left cordoned" in aborted["text"]
    assert "`worke-2` uncordoned" in aborted["text"]
    assert unschedulable(fake, "worke-1") and not unschedulable(fake, "worke-2")


def test_a_restart_mid_wave_continues_where_the_cluster_stands(bot_factory, tmp_path, kube_fake_factory):
    fake = kube_fake_factory()
    db = str(tmp_path / "waves.db")
    first = bot_factory(kube_fakes={"prod-a": fake}, db_path=db)
    seed_fleet(fake, first.clock(), {"worker": 4})
    wave = plan_wave(first, selector="worke-1,worke-2,worke-3", kind="names", max_unavailable="1", floor="1",
                     procedure="rejoin")
    click(first, wave, wave_blocks.START)
    assert phases(first, wave)["worke-1"] == "reinstalling"
    first.stop()
    second = bot_factory(kube_fakes={"prod-a": fake}, db_path=db)
    second.clock.set(first.clock() + timedelta(minutes=10))
    join_reports(second, "worke-1")
    second.run_job("node-waves")
    now = phases(second, wave)
    assert now["worke-1"] == "done" and not unschedulable(fake, "worke-1")
    second.run_job("node-waves")
    assert phases(second, wave)["worke-2"] == "reinstalling", "the next batch starts after the restart"
    assert sum(unschedulable(fake, n) for n in ("worke-1", "worke-2", "worke-3")) == 1


def test_a_batch_waits_outside_the_window_and_says_until_when(bot):
    fake = bot.kube_fake()
    bot.clock.set(datetime(2026, 11, 18, 12, 0, tzinfo=timezone.utc))  # a Wednesday noon
    seed_fleet(fake, bot.clock(), {"worker": 3})
    wave = plan_wave(bot, selector="worke-1", kind="names", floor="1", window="mon-fri 22:00-06:00 UTC")
    click(bot, wave, wave_blocks.START)
    assert phases(bot, wave) == {"worke-1": "queued"} and not unschedulable(fake, "worke-1")
    assert "outside the maintenance window" in card_text(bot, wave) and "Wed 2026-11-18 22:00" in card_text(bot, wave)
    bot.clock.set(datetime(2026, 11, 18, 22, 30, tzinfo=timezone.utc))
    bot.run_job("node-waves")
    assert unschedulable(fake, "worke-1")


def test_a_batch_waits_while_the_floor_would_break_after_a_node_failed_elsewhere(bot):
    fake = bot.kube_fake()
    seed_fleet(fake, bot.clock(), {"worker": 3})
    wave = plan_wave(bot, selector="worke-1", kind="names", floor="2")
    from tests.nodes.waves_support import role_node
    fake.add(role_node("worke-3", "worker", bot.clock(), ready="False"))  # went NotReady after the plan
    click(bot, wave, wave_blocks.START)
    assert phases(bot, wave) == {"worke-1": "queued"} and not unschedulable(fake, "worke-1")
    assert "below its floor of 2" in card_text(bot, wave)
    fake.add(role_node("worke-3", "worker", bot.clock()))
    bot.run_job("node-waves")
    assert unschedulable(fake, "worke-1")


def test_the_traffic_guard_waits_while_prometheus_cannot_say(bot):
    fake = bot.kube_fake()
    seed_fleet(fake, bot.clock(), {"worker": 3})
    wave = plan_wave(bot, selector="worke-1", kind="names", floor="1", guard="100")
    click(bot, wave, wave_blocks.START)
    assert phases(bot, wave) == {"worke-1": "queued"}
    assert "traffic guard cannot read" in card_text(bot, wave)


def test_every_wrong_field_is_named_at_once(bot):
    seed_fleet(bot.kube_fake(), bot.clock(), {"worker": 3})
    bot.sender.command("/nodes", "wave", user_id=DEVOPS, channel_id="C0OPS")
    bot.slack.wait_for(lambda: [v for v in bot.slack.views.values() if v.get("callback_id") == wave_blocks.PLAN_CALLBACK],
                       timeout=20)
    from tests.nodes.waves_support import form
    response = bot.sender.view_submission(wave_blocks.PLAN_CALLBACK, form(
        selector="rack in ()", max_unavailable="0", floor="150%", timeout="soon", window="someday",
        guard="lots", role_label="**"), user_id=DEVOPS)
    errors = response.json()["errors"]
    assert set(errors) == {"selector", "max_unavailable", "floor", "node_timeout", "window", "traffic_guard",
                           "role_label"}
    assert "needs at least one value" in errors["selector"] and "never moves" in errors["max_unavailable"]
    assert not bot.ctx.store.query("SELECT id FROM waves")


def test_only_devops_may_open_the_planner(bot):
    response = bot.sender.command("/nodes", "wave", user_id=OUTSIDER, channel_id="C0OPS")
    assert response.status_code == 200
    answer = bot.slack.wait_for(lambda: bot.slack.responses and bot.slack.responses[-1], timeout=20)
    assert "only DevOps" in answer["text"]
    assert not [v for v in bot.slack.views.values() if v.get("callback_id") == wave_blocks.PLAN_CALLBACK]


def test_one_wave_per_cluster_at_a_time(bot):
    seed_fleet(bot.kube_fake(), bot.clock(), {"worker": 3})
    plan_wave(bot, selector="worke-1", kind="names", floor="1")
    bot.sender.command("/nodes", "wave", user_id=DEVOPS2, channel_id="C0OPS")
    from tests.nodes.waves_support import form
    bot.sender.view_submission(wave_blocks.PLAN_CALLBACK, form(selector="worke-2", kind="names", floor="1"),
                               user_id=DEVOPS2)
    dm = bot.slack.wait_for(lambda: bot.flush() is not None and [
        m for m in bot.slack.messages(DEVOPS2).values() if "one wave per" in m["text"]], timeout=20)
    assert "already planned" in dm[0]["text"]
    assert len(bot.ctx.store.query("SELECT id FROM waves")) == 1


def test_the_traffic_guard_holds_a_batch_while_istio_traffic_is_above_it(bot_factory, prometheus_factory):
    from tests.fakes.istio_metrics import IstioMetrics
    from tests.harness import FakeClock

    metrics = IstioMetrics.recent(timedelta(hours=2), step=timedelta(minutes=1))
    metrics.http("checkout", "shop", src_workload="frontend", src_namespace="web", rps=50, histogram=False)
    server = prometheus_factory(metrics)
    bot = bot_factory(prometheus={"prod-a": server.url}, clock=FakeClock(server.eval_time))
    fake = bot.kube_fake()
    seed_fleet(fake, bot.clock(), {"worker": 3})
    busy = plan_wave(bot, selector="worke-1", kind="names", floor="1", guard="10")
    click(bot, busy, wave_blocks.START)
    assert phases(bot, busy) == {"worke-1": "queued"} and not unschedulable(fake, "worke-1")
    assert "above the guard of 10 req/s" in card_text(bot, busy)
    click(bot, busy, wave_blocks.ABORT)
    quiet = plan_wave(bot, selector="worke-1", kind="names", floor="1", guard="1000")
    click(bot, quiet, wave_blocks.START)
    assert unschedulable(fake, "worke-1"), "below the guard the batch starts"
