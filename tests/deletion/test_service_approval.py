"""Deleting a service: request → four-eyes approval → re-check → deletion in a safe order → savings.
End to end through signed Slack requests, the Kubernetes fake and a real Prometheus."""
from __future__ import annotations

import json
import threading
from datetime import timedelta

from blocks.service import ACTION_APPROVE, ACTION_OVERRIDE, ACTION_REJECT, ACTION_RESUME, REASON_BLOCK, VIEW_OVERRIDE
from bot.deletion import execution, lifecycle
from tests.harness import DEVOPS, DEVOPS2, PAY_DEV, PAY_DEV2, FakeClock
from tests.deletion.test_service_world import (APPROVALS, approval_message, button, click, cronjob, exists,  # noqa: F401
                                      mesh_prometheus, pending_gauge, report_of, request_deletion, service, start,
                                      wait_state, workload)

OBJECTS = [("VirtualService", "payments-api"), ("DestinationRule", "payments-api"), ("Deployment", "payments-api"),
           ("CronJob", "payments-api-cleanup"), ("Service", "payments-api"), ("HorizontalPodAutoscaler", "payments-api"),
           ("PodDisruptionBudget", "payments-api"), ("ConfigMap", "payments-api-config"), ("Secret", "payments-api-db")]


def blocks_text(message: dict) -> str:
    return json.dumps(message["blocks"], ensure_ascii=False)


def ephemeral_after(bot, before: int, needle: str) -> str:
    return bot.slack.wait_for(lambda: [r["text"] for r in bot.slack.responses[before:] if needle in (r.get("text") or "")])[-1]


def test_clean_service_end_to_end(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    kube = bot.kube["prod-a"]
    req = request_deletion(bot, PAY_DEV)
    assert pending_gauge(bot) == 1
    message = approval_message(bot, req.id)
    assert message["channel"] == APPROVALS and "Waiting for approval" in blocks_text(message)
    approve = button(message["blocks"], ACTION_APPROVE)
    assert approve["confirm"]["confirm"]["text"] == "Delete" and button(message["blocks"], ACTION_REJECT)["confirm"]
    assert kube.deletions == []

    kube.clear_requests()
    before = len(bot.slack.responses)
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS2)
    assert "Deleted `payments-api`" in ephemeral_after(bot, before, "Deleted")
    done = wait_state(bot, req.id, "deleted")

    deleted = [(d["kind"], d["name"]) for d in kube.deletions]
    assert sorted(deleted) == sorted(OBJECTS)
    position = {obj: i for i, obj in enumerate(deleted)}
    assert max(position[("VirtualService", "payments-api")], position[("DestinationRule", "payments-api")]) \
        < min(position[("Deployment", "payments-api")], position[("CronJob", "payments-api-cleanup")]) \
        < position[("Service", "payments-api")] < position[("ConfigMap", "payments-api-config")]
    assert {d["propagationPolicy"] for d in kube.deletions} == {"Foreground"}
    # Foreground: each DELETE is answered with the object marked for deletion; deckhand repeats the DELETE
    # until the API server answers 404, so only then does a step count as deleted.
    answers = [(w.path, w.status) for w in kube.writes() if w.method == "DELETE"]
    assert len(answers) == len(kube.writes()) == 2 * len(OBJECTS)
    assert all(answers.index((path, 200)) < answers.index((path, 404)) for path, _ in answers)
    assert exists(kube, "ConfigMap", "payments", "shared-settings") and exists(kube, "Service", "payments", "ledger")
    assert all(step.result == "deleted" for step in done.plan)

    savings = bot.ctx.store.query("SELECT * FROM savings")
    assert len(savings) == 1 and savings[0]["ref"] == f"deletion:{req.id}" and savings[0]["team"] == "payments"
    assert savings[0]["cpu_cores"] == 0.5 and savings[0]["memory_bytes"] == 2 * 256 * 2**20
    before = len(bot.slack.responses)
    bot.sender.command("/ops", "savings", user_id=PAY_DEV)
    reply = bot.slack.wait_for(lambda: [r for r in bot.slack.responses[before:] if r.get("blocks")])[-1]
    assert "*payments*: 0.5 cores, 0.5 GiB (1 actions)" in json.dumps(reply["blocks"])

    bot.flush()
    final = blocks_text(approval_message(bot, req.id))
    assert "*Deleted* — approved by <@U0DEVOPS2>" in final and ":white_check_mark: Deployment `payments-api` deleted" in final
    assert button(approval_message(bot, req.id)["blocks"], ACTION_APPROVE) is None
    dms = [m for m in bot.slack.messages(PAY_DEV).values()]
    assert any("is deleted from `prod-a`" in m["text"] for m in dms)
    actions = [row["action"] for row in bot.ctx.store.audit_log("payments-api", limit=50)]
    assert {"deletion.request", "deletion.approve", "deletion.start", "deletion.done"} <= set(actions)
    assert pending_gauge(bot) == 0


def test_requester_may_not_approve_their_own_request(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    req = request_deletion(bot, DEVOPS)
    before = len(bot.slack.responses)
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS)
    assert "four-eyes" in ephemeral_after(bot, before, "can't do that")
    assert lifecycle.get_request(bot.ctx, req.id).state == "pending" and bot.kube["prod-a"].deletions == []
    assert bot.ctx.store.audit_log("payments-api")[0]["result"] == "denied"


def test_a_non_devops_approver_is_refused(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    req = request_deletion(bot, PAY_DEV)
    before = len(bot.slack.responses)
    click(bot, ACTION_APPROVE, req.id, user=PAY_DEV2)  # same team, but not DevOps
    assert "only DevOps may do this" in ephemeral_after(bot, before, "can't do that")
    assert lifecycle.get_request(bot.ctx, req.id).state == "pending" and bot.kube["prod-a"].deletions == []


def test_reject_by_the_requester_tells_nobody_else_and_deletes_nothing(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    req = request_deletion(bot, PAY_DEV)
    before = len(bot.slack.responses)
    click(bot, ACTION_REJECT, req.id, user=PAY_DEV2)
    assert "can't do that" in ephemeral_after(bot, before, "can't do that")
    click(bot, ACTION_REJECT, req.id, user=PAY_DEV)
    ephemeral_after(bot, before, "Rejected the deletion")
    assert wait_state(bot, req.id, "rejected").decided_by == PAY_DEV
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS)
    assert "It was rejected by <@U0PAYDEV>" in ephemeral_after(bot, before, "Nothing to approve")
    bot.flush()
    assert "*Rejected* by <@U0PAYDEV>" in blocks_text(approval_message(bot, req.id))
    assert bot.kube["prod-a"].deletions == [] and pending_gauge(bot) == 0


def test_a_blocker_that_appears_before_approval_refuses_and_says_what_changed(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    req = request_deletion(bot, PAY_DEV)
    bot.kube["prod-a"].add(cronjob("quarter-close", "reports", env={"API": "payments-api.payments.svc:8080"}))
    before = len(bot.slack.responses)
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS)
    text = ephemeral_after(bot, before, "Refused")
    assert "CronJob reports/quarter-close" in text and "env `API`" in text
    refused = wait_state(bot, req.id, "refused")
    assert [b.key for b in refused.changes] == ["CronJob:reports/quarter-close"]
    assert bot.kube["prod-a"].deletions == []
    bot.flush()
    message = blocks_text(approval_message(bot, req.id))
    assert "*Refused* when <@U0DEVOPS1> approved: the re-check found 1 new blocker" in message
    assert "What changed since the request" in message and "quarter-close" in message
    assert any("refused at approval" in m["text"] for m in bot.slack.messages(PAY_DEV).values())


def test_twenty_approvers_at_once_delete_once(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    req = request_deletion(bot, PAY_DEV)
    channel, ts = lifecycle.message_of(bot.ctx, req.id)
    barrier = threading.Barrier(20)
    statuses = []

    def approve(i):
        barrier.wait()
        statuses.append(bot.sender.block_actions(ACTION_APPROVE, value=str(req.id), user_id=(DEVOPS, DEVOPS2)[i % 2],
                                                 channel_id=channel, message_ts=ts).status_code)

    threads = [threading.Thread(target=approve, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # a Slack retry of one of them (same trigger_id) is dropped by the middleware
    assert statuses == [200] * 20
    wait_state(bot, req.id, "deleted")
    bot.slack.wait_for(lambda: len([r for r in bot.slack.responses if r.get("replace_original") is False]) >= 20)
    bot.ctx.extras["listener_executor"].shutdown(wait=True)
    assert sorted((d["kind"], d["name"]) for d in bot.kube["prod-a"].deletions) == sorted(OBJECTS)
    approvals = [r for r in bot.ctx.store.audit_log("payments-api", limit=100) if r["action"] == "deletion.approve"]
    assert len(approvals) == 1
    assert len(bot.ctx.store.query("SELECT * FROM savings")) == 1
    texts = [r["text"] for r in bot.slack.responses if r.get("replace_original") is False]
    assert sum("Deleted `payments-api`" in t for t in texts) == 1


def test_slack_retry_of_an_approve_click_is_dropped(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    req = request_deletion(bot, PAY_DEV)
    trigger = bot.slack.mint_trigger_id(DEVOPS)
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS, trigger_id=trigger)
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS, trigger_id=trigger, retry_num=1)
    wait_state(bot, req.id, "deleted")
    bot.ctx.extras["listener_executor"].shutdown(wait=True)
    assert len(bot.kube["prod-a"].deletions) == len(OBJECTS)
    assert len([r for r in bot.slack.responses if "Deleted" in (r.get("text") or "")]) == 1


def test_pending_request_survives_a_restart_and_its_button_still_works(bot_factory, github_fake, mesh_prometheus, tmp_path):
    db = str(tmp_path / "shared.db")
    first = start(bot_factory, github_fake, mesh_prometheus, db_path=db)
    req = request_deletion(first, PAY_DEV)
    channel, ts = lifecycle.message_of(first.ctx, req.id)
    kube = first.kube
    first.stop()

    second = start(bot_factory, github_fake, mesh_prometheus, db_path=db, kube_fakes=kube,
                   clock=FakeClock(mesh_prometheus.eval_time + timedelta(hours=1)))
    assert pending_gauge(second) == 1  # the gauge is rebuilt from SQLite
    second.sender.block_actions(ACTION_APPROVE, value=str(req.id), user_id=DEVOPS2, channel_id=channel, message_ts=ts)
    wait_state(second, req.id, "deleted")
    assert sorted((d["kind"], d["name"]) for d in kube["prod-a"].deletions) == sorted(OBJECTS)
    second.flush()
    assert "*Deleted*" in blocks_text(second.slack.message(channel, ts))


def test_expired_requests_cannot_be_approved_and_the_job_expires_the_rest(bot_factory, github_fake, mesh_prometheus):
    # A short TTL keeps the clock within a day of the Prometheus data (older data reads as "unknown").
    bot = start(bot_factory, github_fake, mesh_prometheus, config={"deletion": {"request_ttl": "2h"}})
    first = request_deletion(bot, PAY_DEV)
    bot.kube["prod-a"].add_many([service("old-batch-api", "payments"),
                                 workload("old-batch-api", "payments", app="old-batch-api")])
    second = request_deletion(bot, PAY_DEV, "old-batch-api")
    assert pending_gauge(bot) == 2
    bot.clock.advance(hours=1, minutes=59)
    bot.run_job("deletion-expiry")
    assert lifecycle.get_request(bot.ctx, first.id).state == "pending"  # not yet
    bot.clock.advance(minutes=1)
    before = len(bot.slack.responses)
    click(bot, ACTION_APPROVE, first.id, user=DEVOPS)
    assert "expired" in ephemeral_after(bot, before, "expired")
    assert wait_state(bot, first.id, "expired") and bot.kube["prod-a"].deletions == []
    assert "expired 1 deletion request" in bot.run_job("deletion-expiry")
    assert lifecycle.get_request(bot.ctx, second.id).state == "expired"
    assert pending_gauge(bot) == 0
    bot.flush()
    assert "*Expired*" in blocks_text(approval_message(bot, second.id))
    assert button(approval_message(bot, second.id)["blocks"], ACTION_APPROVE) is None
    assert sum("expired" in m["text"] for m in bot.slack.messages(PAY_DEV).values()) == 2
    # an expired request no longer blocks a new one
    assert request_deletion(bot, PAY_DEV).id != first.id


def test_a_failed_step_stops_the_deletion_and_continue_resumes_it(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    kube = bot.kube["prod-a"]
    req = request_deletion(bot, PAY_DEV)
    kube.fail("DELETE", "/cronjobs/payments-api-cleanup", status=500, times=1)
    before = len(bot.slack.responses)
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS)
    assert "CronJob `payments/payments-api-cleanup`" in ephemeral_after(bot, before, "Deletion stopped")
    failed = wait_state(bot, req.id, "failed")
    assert not exists(kube, "Deployment", "payments", "payments-api")
    assert exists(kube, "Service", "payments", "payments-api")  # the safe order stopped before the Service
    assert [s.result for s in failed.plan if s.kind == "CronJob"] == ["failed"]
    bot.flush()
    message = approval_message(bot, req.id)
    assert "Deletion stopped" in blocks_text(message) and button(message["blocks"], ACTION_RESUME) is not None

    click(bot, ACTION_RESUME, req.id, user=PAY_DEV)  # the requester can't continue it either
    ephemeral_after(bot, before, "can't do that")
    click(bot, ACTION_RESUME, req.id, user=DEVOPS2)
    wait_state(bot, req.id, "deleted")
    names = [(d["kind"], d["name"]) for d in kube.deletions]
    assert sorted(names) == sorted(OBJECTS)  # nothing deleted twice
    assert len(bot.ctx.store.query("SELECT * FROM savings")) == 1


def test_unknown_traffic_blocks_then_devops_overrides_with_an_audited_reason(bot_factory, github_fake):
    bot = start(bot_factory, github_fake)  # Prometheus is down
    report = report_of(bot, DEVOPS, "delete payments-api prod-a")
    override = button(report["blocks"], ACTION_OVERRIDE)
    bot.sender.block_actions(ACTION_OVERRIDE, value=override["value"], user_id=DEVOPS, channel_id="C0PAY",
                             message={"type": "message", "blocks": report["blocks"], "ts": "1.000002"})
    view = bot.slack.wait_for(lambda: bot.slack.views_for(DEVOPS))[-1]
    assert view["callback_id"] == VIEW_OVERRIDE
    short = bot.sender.view_submission(VIEW_OVERRIDE, {REASON_BLOCK: {"value": "unused"}}, user_id=DEVOPS)
    assert short.json()["response_action"] == "errors" and REASON_BLOCK in short.json()["errors"]
    assert lifecycle.open_request_for(bot.ctx, "prod-a", "payments", "payments-api") is None

    reason = "Access logs for 30 days show no requests; payments confirmed in #payments"
    assert bot.sender.view_submission(VIEW_OVERRIDE, {REASON_BLOCK: {"value": reason}}, user_id=DEVOPS).status_code == 200
    req = bot.slack.wait_for(lambda: lifecycle.open_request_for(bot.ctx, "prod-a", "payments", "payments-api"))
    assert req.override_reason == reason and req.requester == DEVOPS
    audit = [r for r in bot.ctx.store.audit_log("payments-api") if r["action"] == "deletion.override"]
    assert len(audit) == 1 and reason in audit[0]["params"] and "Prometheus did not answer" in audit[0]["params"]
    bot.flush()
    assert "Overridden by <@U0DEVOPS1>" in blocks_text(approval_message(bot, req.id))

    click(bot, ACTION_APPROVE, req.id, user=DEVOPS2)  # still unknown at approval: the override holds
    wait_state(bot, req.id, "deleted")
    assert len(bot.kube["prod-a"].deletions) == len(OBJECTS)


def test_the_override_is_devops_only(bot_factory, github_fake):
    bot = start(bot_factory, github_fake)
    value = json.dumps({"c": "prod-a", "n": "payments", "s": "payments-api", "src": "command"})
    before = len(bot.slack.responses)
    bot.sender.block_actions(ACTION_OVERRIDE, value=value, user_id=PAY_DEV, channel_id="C0PAY")
    assert "can't do that" in ephemeral_after(bot, before, "can't do that")
    assert bot.slack.views_for(PAY_DEV) == []



def test_an_object_held_by_a_finalizer_is_not_called_deleted(bot_factory, github_fake, mesh_prometheus, monkeypatch):
    """The API server only marks an object whose finalizer's controller has not let go (deletionTimestamp):
    deckhand must not say it is deleted, nor delete the Service in front of a workload still terminating."""
    monkeypatch.setattr(execution, "TERMINATING_WAIT", 0.3)
    monkeypatch.setattr(execution, "TERMINATING_POLL", 0.05)
    bot = start(bot_factory, github_fake, mesh_prometheus)
    kube = bot.kube["prod-a"]
    kube.patch("apps/v1", "deployments", "payments", "payments-api", {"metadata": {"finalizers": ["example.com/drain"]}})
    req = request_deletion(bot, PAY_DEV)
    before = len(bot.slack.responses)
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS)
    told = ephemeral_after(bot, before, "Not deleted yet")
    assert "Deployment payments/payments-api (waiting for finalizers: example.com/drain)" in told
    failed = wait_state(bot, req.id, "failed")
    assert "still terminating" in failed.note
    assert kube.terminating() == [("Deployment", "payments", "payments-api")]
    assert exists(kube, "Service", "payments", "payments-api")  # phase 3 waits for the workloads to be gone
    assert [s.result for s in failed.plan if s.kind == "Deployment"] == ["terminating"]
    assert bot.ctx.store.audit_log("payments-api")[0]["action"] == "deletion.terminating"
    bot.flush()
    text = blocks_text(approval_message(bot, req.id))
    assert ":hourglass_flowing_sand: Deployment `payments-api` terminating — waiting for finalizers: example.com/drain" in text
    assert "Deleted" not in text and button(approval_message(bot, req.id)["blocks"], ACTION_RESUME) is not None

    kube.remove_finalizers("apps/v1", "deployments", "payments", "payments-api")  # its controller lets go
    click(bot, ACTION_RESUME, req.id, user=DEVOPS2)
    done = wait_state(bot, req.id, "deleted")
    assert all(step.done for step in done.plan) and kube.terminating() == []
    assert not exists(kube, "Service", "payments", "payments-api")
