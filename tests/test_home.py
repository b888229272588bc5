"""App Home: what the user sees on app_home_opened, buttons that work from the Home tab, refresh after actions."""
from __future__ import annotations

import json

from bot.nodes import alerts
from tests.harness import DEVOPS, DEVOPS2, PAY_DEV
from tests.canary.test_canary_fixtures import checkout_metrics, istio_canary
from tests.deletion.test_service_world import ACTION_REQUEST, mesh_prometheus, request_deletion, start  # noqa: F401
from blocks.service import ACTION_APPROVE


def home_of(bot, user):
    before = len(bot.slack.calls_to("views.publish"))
    bot.sender.event({"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home"})
    call = bot.slack.wait_for(lambda: [c for c in bot.slack.calls_to("views.publish")[before:]
                                       if c.args.get("user_id") == user], timeout=15)[-1]
    assert call.ok, call.response
    return call.args["view"]


def seed_pipeline_request(bot, user):
    now = bot.ctx.store.now()
    bot.ctx.store.insert("pipeline_requests", {
        "key": "pipeline:billing", "action": "create", "target": "billing", "team": "payments", "spec": "{}",
        "state": "open", "requester": user, "branch": "deckhand/pipeline/billing", "pr_number": 7,
        "pr_url": "https://github.example/org/deploy-manifests/pull/7", "created_at": now, "updated_at": now})


def test_home_shows_what_needs_each_user_and_its_buttons_work(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, prometheus=mesh_prometheus)
    istio_canary(bot.kube["prod-a"])
    request = request_deletion(bot, PAY_DEV)
    seed_pipeline_request(bot, PAY_DEV)
    alerts.raise_now(bot.ctx, alerts.Finding(cluster="prod-a", node="node-7", reason="NeverJoined",
                                             since=bot.clock(), detail={"message": "kubeadm join timed out"}))

    developer = json.dumps(home_of(bot, PAY_DEV))
    assert "Your pipeline pull requests" in developer and "pull/7" in developer
    assert "Canary: checkout" in developer and '"Promote"' in developer
    assert "Your deletion requests" in developer and "payments-api" in developer
    assert ACTION_APPROVE not in developer  # a developer cannot approve
    assert "node-7" in developer

    approver = home_of(bot, DEVOPS2)
    text = json.dumps(approver)
    assert "awaiting your approval" in text and ACTION_APPROVE in text
    assert len(approver["blocks"]) <= 100

    # Approve from the Home tab: no response_url there; the deletion runs and Home refreshes.
    before = len(bot.slack.calls_to("views.publish"))
    bot.sender.block_actions(ACTION_APPROVE, value=str(request.id), user_id=DEVOPS2,
                             view={"id": "VHOME", "type": "home", "blocks": approver["blocks"]})
    from tests.deletion.test_service_world import wait_state

    assert wait_state(bot, request.id, "deleted").state == "deleted"
    refreshed = bot.slack.wait_for(lambda: [c for c in bot.slack.calls_to("views.publish")[before:]
                                            if c.args.get("user_id") == DEVOPS2], timeout=15)
    assert refreshed


def test_home_denial_from_the_home_tab_reaches_the_user_by_dm(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, prometheus=mesh_prometheus)
    request = request_deletion(bot, PAY_DEV)
    home_of(bot, PAY_DEV)
    bot.sender.block_actions(ACTION_APPROVE, value=str(request.id), user_id=PAY_DEV,
                             view={"id": "VHOME", "type": "home", "blocks": []})
    dm = bot.slack.wait_for(lambda: [c for c in bot.slack.calls_to("chat.postMessage")
                                     if c.args.get("channel") == PAY_DEV and "can't" in json.dumps(c.args)], timeout=15)
    assert dm


def test_home_for_someone_in_no_team(bot):
    view = home_of(bot, "U0NOBODY")
    text = json.dumps(view)
    assert "no team in deckhand's config" in text and "Nothing waiting" in text


def test_home_view_golden():
    from datetime import datetime, timezone

    from blocks.home import home_view
    from tests.golden import assert_golden

    now = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
    pulls = [{"target": "billing", "action": "create", "state": "open", "pr_number": 7,
              "pr_url": "https://github.example/org/deploy-manifests/pull/7", "updated_at": "2026-11-20T10:00:00+00:00"}]
    incidents = [{"cluster": "prod-a", "node": "node-7", "reason": "NotReady", "failing_since": "2026-11-20T11:30:00+00:00",
                  "acked_by": DEVOPS}]
    view = home_view(user=PAY_DEV, is_devops=False, teams=["payments"], pulls=pulls, canaries=[], traffic={},
                     canary_errors=["prod-b: list virtualservices failed: the API server did not answer (timed out)"],
                     awaiting=[], mine=[], incidents=incidents, now=now,
                     idle={"count": 3, "kept": 1, "cpu_cores": 2.75, "memory_bytes": 5 * 2**30})
    assert_golden("home_developer", view)
    text = str(view)
    assert "`/nodes`" in text and "`/idle`" in text and "3 idle (1 kept), reclaimable *2.75 cores, 5.0 GiB*" in text
