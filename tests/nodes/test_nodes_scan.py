"""The node-join scan against the Kubernetes fake: each rule, the storm breaker, unreachable clusters,
grouping, resolve-in-place and restarts."""
from __future__ import annotations

import json
from datetime import timedelta

import requests

from tests.nodes.nodes_support import (BOOTSTRAP_REQUEST_PEM, alert_messages, csr, node, not_ready, open_incidents,
                                 post_report, report, starting, text_of)


def scan(bot) -> str:
    summary = bot.run_job("node-scan")
    assert "node-scan` ok" in summary, summary
    bot.flush()
    return summary


def test_one_list_call_per_kind_per_cluster_never_per_node(bot):
    kube = bot.kube["prod-a"]
    now = bot.clock()
    kube.add_many([node(f"worker-{n:02d}", now) for n in range(30)])
    kube.add_many([not_ready(f"sick-{n}", now, down_for=timedelta(minutes=20)) for n in range(2)])
    kube.clear_requests()
    summary = scan(bot)
    paths = sorted(r.path for r in kube.requests)
    assert paths == ["/api/v1/nodes", "/apis/certificates.k8s.io/v1/certificatesigningrequests"]
    assert "32 nodes, 2 problems" in summary


def test_not_ready_longer_than_the_limit_alerts_with_reason_taints_and_problem_detector_conditions(bot):
    now = bot.clock()
    kube = bot.kube["prod-a"]
    kube.add(node("healthy-1", now))
    kube.add(not_ready("blip-1", now, down_for=timedelta(minutes=5)))  # under not_ready_after (10m)
    kube.add(not_ready("worker-3", now, down_for=timedelta(minutes=12), conditions=[
        {"type": "KernelDeadlock", "status": "True", "reason": "DockerHung", "message": "task docker:7 blocked for more than 120 seconds."},
        {"type": "ReadonlyFilesystem", "status": "False", "reason": "FilesystemIsNotReadOnly"},
        {"type": "DiskPressure", "status": "True", "reason": "KubeletHasDiskPressure", "message": "ephemeral-storage low"},
    ]))
    scan(bot)
    [message] = alert_messages(bot)
    text = text_of(message)
    assert "worker-3" in text and "NotReady" in text and "blip-1" not in text
    assert "KubeletNotReady" in text and "NetworkPluginNotReady" in text
    assert "node.kubernetes.io/not-ready:NoSchedule" in text
    assert "KernelDeadlock* (node-problem-detector)" in text and "DockerHung" in text
    assert "DiskPressure" in text and "ReadonlyFilesystem" not in text  # only conditions that are True
    assert "Failing since" in text and "{ago}" in text  # Slack renders the age in the reader's client
    bot.clock.advance(minutes=2)
    scan(bot)
    assert [i["node"] for i in open_incidents(bot)] == ["worker-3"]  # blip-1 is at 7m: still quiet
    bot.clock.advance(minutes=4)
    scan(bot)
    assert sorted(i["node"] for i in open_incidents(bot)) == ["blip-1", "worker-3"]


def test_unknown_status_counts_as_not_ready(bot):
    bot.kube["prod-a"].add(not_ready("worker-4", bot.clock(), down_for=timedelta(minutes=30), status="Unknown"))
    scan(bot)
    text = text_of(alert_messages(bot)[0])
    assert "NodeStatusUnknown" in text and "Kubelet stopped posting node status" in text


def test_a_new_node_that_never_becomes_ready_alerts_once_the_startup_timeout_passes(bot):
    bot.kube["prod-a"].add(starting("new-1", bot.clock(), age=timedelta(minutes=12)))
    scan(bot)
    assert alert_messages(bot) == []  # 12m old: still joining (not_ready_after does not apply yet)
    bot.clock.advance(minutes=4)
    scan(bot)
    [message] = alert_messages(bot)
    assert "Never became Ready" in text_of(message) and "never became Ready within 15m of joining" in text_of(message)
    assert "PLEG is not healthy" in text_of(message)


def test_never_joined_when_the_script_reported_progress_but_no_node_appeared(bot):
    now = bot.clock()
    post_report(bot, report(node="node-9", phase="discovery", status="started", message="", log_tail=""))
    post_report(bot, report(node="node-9", phase="join", status="ok", message="", log_tail=""))
    bot.kube["prod-a"].add(csr("csr-boot", now, node_name="node-9", age=timedelta(seconds=1), bootstrap=True,
                               signer="kubernetes.io/kube-apiserver-client-kubelet", request_pem=BOOTSTRAP_REQUEST_PEM))
    bot.clock.advance(minutes=14)
    scan(bot)
    assert alert_messages(bot) == []
    bot.clock.advance(minutes=2)
    scan(bot)
    [message] = alert_messages(bot)
    text = text_of(message)
    assert "Never joined" in text and "node-9" in text and "no Node object appeared within 15m of the join" in text
    # The bootstrap CSR names the node only inside the request (CN=system:node:node-9): it is attached.
    assert "csr-boot" in text and "system:bootstrap:abcdef" in text
    bot.kube["prod-a"].patch("certificates.k8s.io/v1", "CertificateSigningRequest", None, "csr-boot",
                             {"status": {"conditions": [{"type": "Approved", "status": "True", "reason": "Manual"}]}})
    bot.kube["prod-a"].add(node("node-9", bot.clock(), age=timedelta(minutes=1)))
    bot.clock.advance(minutes=2)
    scan(bot)
    [message] = alert_messages(bot)
    assert "Resolved" in text_of(message) and "the node is Ready" in text_of(message)
    assert open_incidents(bot) == []


def test_a_reprovisioned_node_that_does_not_come_back_is_never_joined(bot):
    kube = bot.kube["prod-a"]
    for phase in ("discovery", "config", "join", "ready"):
        post_report(bot, report(node="node-9", phase=phase, status="ok", message="", log_tail=""))
    kube.add(node("node-9", bot.clock(), age=timedelta(minutes=5)))
    scan(bot)
    assert bot.ctx.store.query("SELECT joined_at FROM node_joins")[0]["joined_at"]
    kube.delete("v1", "Node", None, "node-9")  # decommissioned, reinstalled, joining again
    bot.clock.advance(days=1)
    post_report(bot, report(cluster="", node="node-9", phase="discovery", status="started", message="", log_tail=""))
    post_report(bot, report(node="node-9", phase="discovery", status="ok", message="", log_tail=""))
    post_report(bot, report(node="node-9", phase="join", status="ok", message="", log_tail=""))
    bot.clock.advance(minutes=16)
    scan(bot)
    assert [(i["node"], i["reason"]) for i in open_incidents(bot)] == [("node-9", "never-joined")]


def test_a_failed_join_is_not_also_reported_as_never_joined(bot):
    post_report(bot, report(node="node-9", phase="discovery", status="started", message="", log_tail=""))
    post_report(bot, report(node="node-9", phase="join", status="failed"))
    bot.clock.advance(minutes=30)
    scan(bot)
    assert [i["reason"] for i in open_incidents(bot)] == ["join-failed"]
    assert len(alert_messages(bot)) == 1


def test_pending_kubelet_csrs_older_than_10_minutes(bot):
    now = bot.clock()
    kube = bot.kube["prod-a"]
    kube.add_many([node("worker-1", now), node("worker-2", now),
                   not_ready("worker-3", now, down_for=timedelta(minutes=15))])
    kube.add_many([
        csr("csr-old", now, node_name="worker-1", age=timedelta(minutes=14)),
        csr("csr-young", now, node_name="worker-2", age=timedelta(minutes=4)),
        csr("csr-done", now, node_name="worker-2", age=timedelta(hours=3), approved=True),
        csr("csr-other", now, node_name="worker-2", age=timedelta(hours=1), signer="example.com/not-kubelet"),
        csr("csr-sick", now, node_name="worker-3", age=timedelta(minutes=30)),
    ])
    scan(bot)
    incidents = {i["node"]: i for i in open_incidents(bot)}
    assert sorted(incidents) == ["worker-1", "worker-3"]
    assert incidents["worker-1"]["reason"] == "csr-pending"
    assert incidents["worker-3"]["reason"] == "not-ready"  # the CSR is attached to the node's alert
    texts = {m["text"]: text_of(m) for m in alert_messages(bot)}
    assert any("csr-old" in t and "kubectl certificate approve" in t for t in texts.values())
    assert any("csr-sick" in t and "NotReady" in t for t in texts.values())
    assert not any("csr-young" in t or "csr-done" in t or "csr-other" in t for t in texts.values())
    kube.patch("certificates.k8s.io/v1", "CertificateSigningRequest", None, "csr-old",
               {"status": {"conditions": [{"type": "Approved", "status": "True", "reason": "KubectlApprove"}]}})
    bot.clock.advance(minutes=2)
    scan(bot)
    assert [i["node"] for i in open_incidents(bot)] == ["worker-3"]


def test_resolve_in_place_when_the_node_becomes_ready(bot):
    now = bot.clock()
    kube = bot.kube["prod-a"]
    kube.add(not_ready("worker-5", now, down_for=timedelta(minutes=11)))
    scan(bot)
    [first] = alert_messages(bot)
    bot.clock.advance(minutes=4)
    kube.add(not_ready("worker-5", now, down_for=timedelta(minutes=11), conditions=[
        {"type": "DiskPressure", "status": "True", "reason": "KubeletHasDiskPressure", "message": "disk low"}]))
    scan(bot)  # a later tick with news updates the same message
    [updated] = alert_messages(bot)
    assert updated["ts"] == first["ts"] and "DiskPressure" in text_of(updated)
    kube.add(node("worker-5", bot.clock()))
    bot.clock.advance(minutes=2)
    scan(bot)
    [resolved] = alert_messages(bot)
    assert resolved["ts"] == first["ts"]
    assert "Resolved" in text_of(resolved) and "node_alert" not in text_of(resolved)  # no buttons any more
    [reply] = resolved["replies"]
    assert "resolved after *17m*" in text_of(reply)
    assert len(bot.slack.calls_to("chat.postMessage")) == 2  # the alert and the thread reply, nothing else
    scan(bot)
    assert len(bot.slack.calls_to("chat.postMessage")) == 2
    metrics = requests.get(bot.health_url + "/metrics").text
    assert 'deckhand_alerts_total{event="resolved",kind="node"} 1.0' in metrics
    assert 'deckhand_alerts_total{event="updated",kind="node"}' in metrics
    assert "deckhand_open_incidents 0.0" in metrics


def test_a_deleted_node_resolves_its_alert(bot):
    kube = bot.kube["prod-a"]
    kube.add(not_ready("worker-6", bot.clock(), down_for=timedelta(minutes=30)))
    scan(bot)
    kube.delete("v1", "Node", None, "worker-6")
    scan(bot)
    assert "the Node object was deleted" in text_of(alert_messages(bot)[0])


def test_many_incidents_in_one_tick_make_one_grouped_message_per_cluster(bot_factory):
    bot = bot_factory(clusters=("prod-a", "prod-b"))
    now = bot.clock()
    for cluster, count in (("prod-a", 4), ("prod-b", 3)):
        kube = bot.kube[cluster]
        kube.add_many([node(f"{cluster}-ok-{n}", now) for n in range(20)])
        kube.add_many([not_ready(f"{cluster}-sick-{n}", now, down_for=timedelta(minutes=20)) for n in range(count)])
    scan(bot)
    top = alert_messages(bot)
    assert len(top) == 2
    by_cluster = {("prod-a" if "`prod-a`" in text_of(m) else "prod-b"): m for m in top}
    assert "4 of 4 nodes in `prod-a` need attention" in text_of(by_cluster["prod-a"])
    # one reply per (cluster, reason), listing the nodes, each with its own menu
    [reply] = by_cluster["prod-a"]["replies"]
    assert len(by_cluster["prod-b"]["replies"]) == 1
    assert "NotReady" in text_of(reply) and "4 of 4 nodes in `prod-a` open" in text_of(reply)
    assert all(f"prod-a-sick-{n}" in text_of(reply) for n in range(4))
    assert text_of(reply).count("node_alert_node") == 4
    posts = len(bot.slack.calls_to("chat.postMessage"))
    assert posts == 4
    # One node recovers: its line and the group summary change in place; nothing is posted.
    bot.kube["prod-a"].add(node("prod-a-sick-0", bot.clock()))
    bot.clock.advance(minutes=2)
    scan(bot)
    assert len(bot.slack.calls_to("chat.postMessage")) == posts
    group = [m for m in alert_messages(bot) if m["ts"] == by_cluster["prod-a"]["ts"]][0]
    assert "3 of 4 nodes in `prod-a` need attention" in text_of(group)
    [reply] = group["replies"]
    assert ":white_check_mark: `prod-a-sick-0` — resolved after" in text_of(reply)
    assert text_of(reply).count("node_alert_node") == 3


def test_storm_breaker_posts_one_cluster_alert_instead_of_one_per_node(bot):
    now = bot.clock()
    kube = bot.kube["prod-a"]
    kube.add_many([node(f"ok-{n}", now) for n in range(5)])
    kube.add_many([not_ready(f"down-{n}", now, down_for=timedelta(minutes=12), status="Unknown") for n in range(6)])
    scan(bot)
    [message] = alert_messages(bot)
    text = text_of(message)
    assert "Many nodes not Ready" in text and "6 of 11 nodes are not Ready (more than 40%)" in text
    assert "NodeStatusUnknown × 6" in text and "down-0" in text
    assert message.get("replies", []) == []
    assert [(i["node"], i["reason"]) for i in open_incidents(bot)] == [("*", "degraded")]
    for n in range(5):  # the control plane is back; one node stays down
        kube.add(node(f"down-{n}", bot.clock()))
    bot.clock.advance(minutes=2)
    scan(bot)
    assert [(i["node"], i["reason"]) for i in open_incidents(bot)] == [("down-5", "not-ready")]
    storm = [m for m in alert_messages(bot) if m["ts"] == message["ts"]][0]
    assert "Resolved" in text_of(storm) and "1 of 11 nodes are not Ready now" in text_of(storm)


def test_storm_waits_out_not_ready_after_like_single_nodes_do(bot):
    kube = bot.kube["prod-a"]
    kube.add_many([node(f"ok-{n}", bot.clock()) for n in range(2)])
    kube.add_many([not_ready(f"down-{n}", bot.clock(), down_for=timedelta(minutes=1)) for n in range(8)])
    scan(bot)
    assert alert_messages(bot) == [] and open_incidents(bot) == []


def test_an_unreachable_cluster_is_one_incident_and_keeps_what_was_known(bot_factory):
    bot = bot_factory(clusters=("prod-a", "prod-b"))
    now = bot.clock()
    bot.kube["prod-b"].add(not_ready("b-sick", now, down_for=timedelta(minutes=20)))
    bot.kube["prod-b"].add_many([node(f"b-{n}", now) for n in range(9)])
    bot.kube["prod-a"].add(node("a-1", now))
    scan(bot)
    assert [i["node"] for i in open_incidents(bot)] == ["b-sick"]
    bot.kube["prod-b"].fail(path_contains="/api/v1/nodes", status=503, times=None, message="etcdserver: request timed out")
    bot.clock.advance(minutes=2)
    summary = scan(bot)
    assert "prod-b: unreachable" in summary and "prod-a: 1 node, 0 problems" in summary
    incidents = {(i["node"], i["reason"]) for i in open_incidents(bot)}
    assert incidents == {("b-sick", "not-ready"), ("*", "unreachable")}
    unreachable = [m for m in alert_messages(bot) if "Cluster unreachable" in text_of(m)]
    assert len(unreachable) == 1 and "etcdserver: request timed out" in text_of(unreachable[0])
    scan(bot)
    assert len(alert_messages(bot)) == 2  # still one alert per problem
    bot.kube["prod-b"].clear_failures()
    scan(bot)
    assert {(i["node"], i["reason"]) for i in open_incidents(bot)} == {("b-sick", "not-ready")}
    assert "the API server answers again" in text_of([m for m in alert_messages(bot) if m["ts"] == unreachable[0]["ts"]][0])


def test_a_restart_does_not_repost_open_incidents(bot_factory, tmp_path):
    db_path = str(tmp_path / "shared.db")
    first = bot_factory(db_path=db_path)
    kube = first.kube["prod-a"]
    kube.add(not_ready("worker-1", first.clock(), down_for=timedelta(minutes=11)))
    post_report(first, report(node="worker-2"))
    scan(first)
    assert len(first.slack.calls_to("chat.postMessage")) == 2
    before = {m["ts"] for m in alert_messages(first)}
    first.stop()

    second = bot_factory(db_path=db_path, kube_fakes=first.kube, clock=first.clock)
    assert "deckhand_open_incidents 2.0" in requests.get(second.health_url + "/metrics").text
    second.clock.advance(minutes=5)
    scan(second)
    assert len(second.slack.calls_to("chat.postMessage")) == 2  # nothing posted again
    assert {m["ts"] for m in alert_messages(second)} == before
    assert second.slack.calls_to("chat.update") == []  # nothing changed: nothing edited either
    kube.add(node("worker-1", second.clock()))
    scan(second)
    resolved = [m for m in alert_messages(second) if "worker-1" in text_of(m)][0]
    assert resolved["ts"] in before and "Resolved" in text_of(resolved)


def test_a_post_queued_before_a_restart_goes_out_once_after_it(bot_factory, tmp_path):
    db_path = str(tmp_path / "shared.db")
    first = bot_factory(db_path=db_path)
    post_report(first, report())
    first.stop()  # crashed before the drainer sent it
    second = bot_factory(db_path=db_path, kube_fakes=first.kube, clock=first.clock)
    assert second.flush() == 1
    scan(second)
    post_report(second, report(log_tail="third attempt"))
    second.flush()
    [message] = alert_messages(second)
    assert "third attempt" in text_of(message)
    assert len(second.slack.calls_to("chat.postMessage")) == 1
    assert json.loads(second.ctx.store.query("SELECT * FROM alert_messages")[0]["payload"])["text"]


def test_csrs_that_cannot_be_listed_do_not_stop_the_node_rules(bot):
    kube = bot.kube["prod-a"]
    kube.add(not_ready("worker-1", bot.clock(), down_for=timedelta(minutes=30)))
    kube.fail(path_contains="certificatesigningrequests", status=403, times=None,
              message='certificatesigningrequests is forbidden: User "system:serviceaccount:deckhand:deckhand" cannot list')
    summary = scan(bot)
    assert "CSRs not listed" in summary
    assert [(i["node"], i["reason"]) for i in open_incidents(bot)] == [("worker-1", "not-ready")]


def test_ticks_that_change_nothing_edit_nothing(bot_factory):
    """Open alerts show their age as a Slack date the client renders, so an unchanged incident costs
    no chat.update per tick (hundreds of open alerts would otherwise outrun Slack's 1/s/channel pace)."""
    bot = bot_factory()
    now = bot.clock()
    bot.kube["prod-a"].add_many([node("healthy-1", now)] +
                                [not_ready(f"sick-{n}", now, down_for=timedelta(minutes=20)) for n in range(4)])
    scan(bot)
    posts = len(bot.slack.calls_to("chat.postMessage"))
    for _ in range(3):
        bot.clock.advance(minutes=2)
        scan(bot)
    assert bot.slack.calls_to("chat.update") == []
    assert len(bot.slack.calls_to("chat.postMessage")) == posts
