"""What a new user meets in the first hour (issue 17): jobs that fail say why once, `/ops` answers with
schedules in words and escaped placeholders, failures name their real cause, and each integration's
health shows in the log, /metrics and /readyz. Through the real endpoint where there is one."""
from __future__ import annotations

import json
import logging
import socket
from datetime import datetime, timezone

import pytest
import requests
import urllib3

from blocks.ops import jobs_message
from bot.foundation import failures
from bot.foundation.config import Cluster, GitHub
from bot.foundation.gitops import GitOps, GitOpsError, github_error
from bot.foundation.kube import NODES, KubeError, KubeGateway
from jobs.schedule import crontab, in_words
from tests.harness import DEVOPS, closed_url

METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def ops(bot, text: str, user: str = DEVOPS) -> list[str]:
    """`/ops <text>` through the real endpoint; every reply's text (blocks as JSON), in order."""
    before = len(bot.slack.responses)
    bot.sender.command("/ops", text, user_id=user)
    bot.slack.wait_for(lambda: len(bot.slack.responses) > before, timeout=15)
    bot.ctx.extras["listener_executor"].shutdown(wait=True)  # every reply of this command is in
    return [(r.get("text") or "") + json.dumps(r.get("blocks") or [], ensure_ascii=False)
            for r in bot.slack.responses[before:]]


# -- jobs ---------------------------------------------------------------------------------------------
def test_pr_poll_with_github_down_fails_once_in_words_without_a_traceback(bot, caplog):
    caplog.set_level(logging.INFO)
    outcome = bot.run_job("pr-poll")  # the harness config points GitHub at a closed port
    assert outcome.startswith("`pr-poll` failed: checked 0 open pipeline PRs")
    assert "failed: failed" not in outcome and "error id" not in outcome
    assert "GitHub could not be reached (connection refused)" in outcome
    records = [r for r in caplog.records if r.name == "deckhand.jobs"]
    assert records and not any(r.exc_info for r in records)
    row = bot.ctx.store.last_job_runs()[0]
    assert row["job"] == "pr-poll" and row["outcome"] == "failed" and not row["detail"].startswith("failed")


def test_node_scan_with_every_cluster_unreachable_is_a_failure(bot_factory, kube_fake_factory, caplog):
    down = kube_fake_factory()
    bot = bot_factory(kube_fakes={"prod-a": down})
    down.stop()
    caplog.set_level(logging.WARNING)
    outcome = bot.run_job("node-scan")
    assert outcome.startswith("`node-scan` failed: prod-a: unreachable") and "no cluster answered" in outcome
    assert any("node scan: prod-a: list nodes failed" in r.getMessage() or "node scan: prod-a:" in r.getMessage()
               for r in caplog.records)


def test_node_scan_with_one_cluster_answering_is_ok(bot_factory):
    bot = bot_factory(clusters=("prod-a", "prod-b"))
    bot.kube["prod-b"].stop()
    outcome = bot.run_job("node-scan")
    assert outcome.startswith("`node-scan` ok:") and "prod-b: unreachable" in outcome


def test_ops_run_of_an_unknown_job_answers_at_once_without_running_anything(bot):
    replies = ops(bot, "run nope")
    assert len(replies) == 1 and "There is no job `nope`" in replies[0] and "`node-scan`" in replies[0]
    assert not any("Running" in r for r in replies)
    assert bot.ctx.store.last_job_runs() == []


def test_ops_jobs_says_schedules_in_words_and_escapes_placeholders(bot):
    reply = ops(bot, "jobs")[0]
    assert "*node-scan* (every 2 min;" in reply and "*idle-scan* (Monday to Friday at 10:00 UTC;" in reply
    assert "*audit-feed* (every 30 s;" in reply and "*canary-reminders* (every hour;" in reply
    assert "interval[" not in reply and "cron[" not in reply
    assert "`/ops run &lt;job&gt;`" in reply


def test_usage_text_escapes_placeholders(bot):
    reply = ops(bot, "frobnicate")[0]
    assert "`/ops run &lt;job&gt;`" in reply and "<job>" not in reply


def test_job_details_are_cut_at_a_word_boundary():
    detail = "checked 12 open pipeline PRs; " + "settled " + ", ".join(f"#{n} merged" for n in range(100, 140))
    payload = jobs_message([{"name": "pr-poll", "schedule": "every 5 min", "next_run": None,
                             "last": {"outcome": "ok", "ended_at": "2026-11-20T12:00:00", "detail": detail}}])
    line = payload["blocks"][1]["text"]["text"]
    shown = line.split(" — ", 1)[1]
    assert shown.endswith("…") and len(shown) <= 161
    assert detail.startswith(shown[:-1]) and detail[len(shown) - 1] in " ,"  # the cut falls between words


def test_crontab_weekdays_are_crontabs_not_apschedulers():
    """APScheduler 3 counts weekdays from Monday = 0; a crontab's 1-5 is Monday to Friday."""
    saturday = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)
    trigger = crontab("0 10 * * 1-5")
    assert trigger.get_next_fire_time(None, saturday) == datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
    assert in_words(trigger) == "Monday to Friday at 10:00 UTC"
    assert crontab("0 9 * * 0").get_next_fire_time(None, saturday).weekday() == 6  # 0 is Sunday
    assert in_words(crontab("30 6 * * *")) == "every day at 06:30 UTC"
    assert in_words(crontab("0 3 1 * *")) == "cron `0 3 1 * *` (UTC)"


# -- failures named for what they are ------------------------------------------------------------------
def name_resolution_error() -> Exception:
    """What requests raises when the GitHub host does not resolve (built as urllib3 builds it)."""
    cause = socket.gaierror(-2, "Name or service not known")
    pool = urllib3.HTTPSConnectionPool("github.example.com", 443)
    inner = urllib3.exceptions.NameResolutionError("github.example.com", pool._new_conn(), cause)
    outer = urllib3.exceptions.MaxRetryError(pool, "/api/v3/repos/org/x", inner)
    return requests.exceptions.ConnectionError(outer)


def test_a_dns_failure_reads_as_name_resolution_not_a_timeout():
    exc = name_resolution_error()
    assert failures.kind(exc) == "name resolution failed"
    assert failures.describe(exc) == "name resolution failed for github.example.com (DNS)"
    error = github_error("open repository org/x", exc)
    assert "GitHub could not be reached (name resolution failed for github.example.com (DNS))" in str(error)
    assert "did not answer in time" not in str(error)


def test_refused_and_timeouts_are_classified_from_real_calls(github_fake):
    with pytest.raises(requests.RequestException) as refused:
        requests.get(closed_url(), timeout=2)
    assert failures.describe(refused.value) == "connection refused"
    github_fake.hang("/repos", seconds=3)
    with pytest.raises(requests.RequestException) as slow:
        requests.get(github_fake.url + "/repos/org/x", timeout=0.3)
    assert failures.describe(slow.value) == "timed out"
    assert "did not answer in time" in str(github_error("read", requests.exceptions.ReadTimeout("Read timed out")))


def test_a_missing_github_token_is_said_at_once(github_fake):
    github_fake.create_repo("org/deploy-manifests")
    gitops = GitOps(GitHub(api_url=github_fake.url, repo="org/deploy-manifests"), token=None)
    with pytest.raises(GitOpsError) as missing:
        gitops.probe()
    assert "deckhand has no GITHUB_TOKEN" in str(missing.value) and "did not answer" not in str(missing.value)
    assert github_fake.requests == []  # nothing was asked of GitHub without a token


def test_missing_kubeconfig_file_and_context_are_named_and_counted(bot, tmp_path, kube_fake):
    metrics = bot.ctx.metrics
    kubeconfig = kube_fake.kubeconfig(str(tmp_path / "kc"), context="prod-a")
    clusters = [Cluster(name="gone", context="gone", kubeconfig=str(tmp_path / "missing"), prometheus_url="http://x:1"),
                Cluster(name="typo", context="prod-z", kubeconfig=kubeconfig, prometheus_url="http://x:1")]
    kube = KubeGateway(clusters)
    kube.on_error = bot.ctx.kube.on_error  # the same wiring build_context gives every gateway
    messages = {}
    for cluster in ("gone", "typo"):
        with pytest.raises(KubeError) as failed:
            kube.list(cluster, NODES)
        messages[cluster] = str(failed.value)
    assert messages["gone"] == (f"gone: load kubeconfig failed: deckhand's kubeconfig is not usable: "
                                f"kubeconfig file {tmp_path / 'missing'} not found")
    assert f"context 'prod-z' not found in {kubeconfig}" in messages["typo"]
    assert all("did not answer" not in m for m in messages.values())
    count = metrics.registry.get_sample_value("deckhand_backend_errors_total",
                                              {"backend": "kubernetes", "kind": "kubeconfig"})
    assert count == 2
    health = bot.ctx.health.snapshot()
    assert health["kubernetes gone"]["status"] == "failing" and health["kubernetes gone"]["error"] == "kubeconfig"


# -- health in logs, /metrics and /readyz --------------------------------------------------------------
def test_an_integration_failing_and_recovering_shows_in_logs_metrics_and_readyz(bot, caplog):
    caplog.set_level(logging.INFO, logger="deckhand.integrations")
    fake = bot.kube["prod-a"]
    fake.fail("GET", "/api/v1/nodes", status=503, times=None)
    bot.run_job("node-scan")
    bot.run_job("node-scan")
    ready = requests.get(bot.health_url + "/readyz", timeout=5)
    assert ready.status_code == 200  # integrations are details, not readiness
    state = ready.json()["integrations"]["kubernetes prod-a"]
    assert state["status"] == "failing" and state["error"] == "503" and state["failures"] >= 2
    up = 'deckhand_integration_up{integration="kubernetes prod-a"} 0.0'
    scraped = requests.get(bot.health_url + "/metrics", timeout=5)
    assert up in scraped.text
    warnings = [r.getMessage() for r in caplog.records if r.name == "deckhand.integrations"]
    assert warnings == ["kubernetes prod-a: failing: 503"]  # once, not per call

    fake.clear_failures()
    bot.run_job("node-scan")
    assert requests.get(bot.health_url + "/readyz", timeout=5).json()["integrations"]["kubernetes prod-a"]["status"] == "ok"
    assert 'deckhand_integration_up{integration="kubernetes prod-a"} 1.0' in requests.get(bot.health_url + "/metrics").text
    assert any(r.getMessage().startswith("kubernetes prod-a: recovered after") for r in caplog.records)


def test_metrics_content_type_names_the_charset_once(bot):
    response = requests.get(bot.health_url + "/metrics", timeout=5)
    assert response.headers["Content-Type"] == METRICS_TYPE


def test_a_stuck_outbox_is_logged_once_and_its_recovery_too(bot, caplog):
    caplog.set_level(logging.INFO, logger="bot.foundation.outbox")
    outbox = bot.ctx.outbox
    bot.slack.fail("chat.postMessage", error="internal_error", status=500, times=None)
    outbox.post("C0ALERTS", "hello")
    outbox.flush(max_seconds=2)  # fails once: Slack answered 500
    assert bot.ctx.health.snapshot()["slack"]["status"] == "failing"
    assert outbox.check_stuck() == {"pending": 1, "stuck": 0}
    # two more failed rounds, as the drainer's backoff would have made them
    with bot.ctx.store.tx() as db:
        db.execute("UPDATE outbox SET attempts = 3")
    assert outbox.check_stuck() == {"pending": 1, "stuck": 1}
    outbox.check_stuck()
    stuck = [r.getMessage() for r in caplog.records if "outbox stuck" in r.getMessage()]
    assert len(stuck) == 1 and "internal_error" in stuck[0]
    assert bot.ctx.metrics.registry.get_sample_value("deckhand_outbox_pending") == 1
    assert requests.get(bot.health_url + "/readyz", timeout=5).json()["outbox"] == {"pending": 1, "stuck": True}

    bot.slack.clear_failures()
    with bot.ctx.store.tx() as db:
        db.execute("UPDATE outbox SET next_at = '1970-01-01T00:00:00'")
    assert outbox.flush(max_seconds=5) == 1
    assert outbox.check_stuck() == {"pending": 0, "stuck": 0}
    assert any("outbox moving again" in r.getMessage() for r in caplog.records)
    assert bot.ctx.health.snapshot()["slack"]["status"] == "ok"


def test_a_failure_shown_to_the_user_is_logged_as_failed_once(bot, caplog):
    caplog.set_level(logging.WARNING, logger="deckhand.commands")
    before = len(bot.slack.responses)
    bot.sender.command("/pipeline", "list", user_id=DEVOPS)  # GitHub is a closed port in the harness config
    reply = bot.slack.wait_for(lambda: [r for r in bot.slack.responses[before:] if "failed" in (r.get("text") or "")],
                               timeout=15)[0]
    assert "*Listing pipelines failed* — GitHub: open repository org/deploy-manifests failed: GitHub could not be " \
           "reached (connection refused)" in reply["text"]
    logged = [r.getMessage() for r in caplog.records if "Listing pipelines" in r.getMessage()]
    assert logged and all("failed failed" not in m for m in logged)
