"""What the approver saw is exactly what is deleted: the plan is stored as identities at request time,
approval refuses anything new or re-created, every DELETE carries the uid (and resourceVersion) as a
precondition, and a 409 from it stops the run. Through signed Slack requests and the Kubernetes fake."""
from __future__ import annotations

import json

from blocks.service import ACTION_APPROVE, ACTION_OVERRIDE, ACTION_REQUEST, ACTION_RESUME
from bot.deletion import lifecycle
from tests.deletion.test_service_approval import OBJECTS, blocks_text, ephemeral_after
from tests.deletion.test_service_gitops import FILES
from tests.deletion.test_service_world import (REPO, approval_message, button, click, configmap,  # noqa: F401
                                               mesh_prometheus, report_of, request_deletion, service, start,
                                               wait_state, workload)
from tests.harness import DEVOPS, DEVOPS2, PAY_DEV


def shadow_objects() -> list[dict]:
    """The black-box finding: a Deployment the Service selects and a Secret with its app label, both
    created after the request."""
    return [workload("payments-api-shadow", "payments", app="payments-api", replicas=1),
            {"apiVersion": "v1", "kind": "Secret", "data": {},
             "metadata": {"name": "ledger-prod-credentials", "namespace": "payments", "labels": {"app": "payments-api"}}}]


def test_objects_created_after_the_request_refuse_the_approval(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    kube = bot.kube["prod-a"]
    req = request_deletion(bot, PAY_DEV)
    assert {(s.kind, s.name) for s in req.plan} == set(OBJECTS)
    assert all(s.uid and s.resource_version for s in req.plan)  # identities, as read at request time
    assert next(s for s in req.plan if s.kind == "Deployment").uid == \
        kube.get(None, "Deployment", "payments", "payments-api")["metadata"]["uid"]

    kube.add_many(shadow_objects())
    before = len(bot.slack.responses)
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS)
    text = ephemeral_after(bot, before, "Refused")
    assert "Deployment payments/payments-api-shadow" in text and "Secret payments/ledger-prod-credentials" in text
    assert "Nothing was deleted" in text
    refused = wait_state(bot, req.id, "refused")
    assert kube.deletions == [] and not [w for w in kube.writes() if w.method == "DELETE"]
    assert sorted(b.key for b in refused.changes) == ["plan:Deployment:payments/payments-api-shadow",
                                                      "plan:Secret:payments/ledger-prod-credentials"]
    assert "2 objects to delete changed since the request" in refused.note
    bot.flush()
    message = blocks_text(approval_message(bot, req.id))
    assert "What changed since the request" in message and "payments-api-shadow" in message
    assert button(approval_message(bot, req.id)["blocks"], ACTION_APPROVE) is None
    dm = [m["text"] for m in bot.slack.messages(PAY_DEV).values() if "refused at approval" in m["text"]]
    assert dm and "ledger-prod-credentials" in dm[-1] and "Request it again" in dm[-1]

    # Requested again, the new plan lists them, and a second person approves exactly that.
    again = request_deletion(bot, PAY_DEV)
    assert {("Deployment", "payments-api-shadow"), ("Secret", "ledger-prod-credentials")} <= \
        {(s.kind, s.name) for s in again.plan}
    click(bot, ACTION_APPROVE, again.id, user=DEVOPS2)
    wait_state(bot, again.id, "deleted")
    assert sorted((d["kind"], d["name"]) for d in kube.deletions) == sorted(
        OBJECTS + [("Deployment", "payments-api-shadow"), ("Secret", "ledger-prod-credentials")])


def test_an_object_recreated_under_the_same_name_refuses_the_approval(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    kube = bot.kube["prod-a"]
    req = request_deletion(bot, PAY_DEV)
    old_uid = kube.get(None, "ConfigMap", "payments", "payments-api-config")["metadata"]["uid"]
    kube.delete(None, "ConfigMap", "payments", "payments-api-config")
    kube.add(configmap("payments-api-config", "payments", {"LOG_LEVEL": "debug"}, {"app": "payments-api"}))
    assert kube.get(None, "ConfigMap", "payments", "payments-api-config")["metadata"]["uid"] != old_uid
    before = len(bot.slack.responses)
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS)
    text = ephemeral_after(bot, before, "Refused")
    assert "ConfigMap payments/payments-api-config (re-created since the request" in text
    assert wait_state(bot, req.id, "refused") and kube.deletions == []


def test_every_delete_carries_the_approved_uid_and_resource_version(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    kube = bot.kube["prod-a"]
    req = request_deletion(bot, PAY_DEV)
    identities = {(kind, name): kube.get(None, kind, "payments", name)["metadata"] for kind, name in OBJECTS}
    kube.clear_requests()
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS)
    wait_state(bot, req.id, "deleted")
    # Each object: the deleting DELETE (200, uid and resourceVersion), then deckhand's check that the object it
    # marked is gone (the same DELETE pinned to the uid alone, answered 404).
    deletes = [w for w in kube.writes() if w.method == "DELETE" and w.status == 200]
    assert len(deletes) == len(OBJECTS)
    for write in deletes:
        kind, name = next(k for k in OBJECTS if write.path.endswith(f"/{k[1]}") and
                          f"/{kind_plural(k[0])}/" in write.path)
        meta = identities[(kind, name)]
        assert write.body["preconditions"] == {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}
    checks = [w for w in kube.writes() if w.method == "DELETE" and w.status == 404]
    assert len(checks) == len(OBJECTS) and all(set(w.body["preconditions"]) == {"uid"} for w in checks)


def kind_plural(kind: str) -> str:
    return {"VirtualService": "virtualservices", "DestinationRule": "destinationrules", "Deployment": "deployments",
            "CronJob": "cronjobs", "Service": "services", "HorizontalPodAutoscaler": "horizontalpodautoscalers",
            "PodDisruptionBudget": "poddisruptionbudgets", "ConfigMap": "configmaps", "Secret": "secrets"}[kind]


def test_a_uid_precondition_409_stops_and_continue_leaves_the_recreated_object(bot_factory, github_fake,
                                                                               mesh_prometheus):
    """Between its phase's read and its DELETE, the Secret is deleted and re-created under the same name
    (a controller, a GitOps sync): the API server refuses the approved uid, and the new object is never
    deleted."""
    bot = start(bot_factory, github_fake, mesh_prometheus)
    kube = bot.kube["prod-a"]
    req = request_deletion(bot, PAY_DEV)
    recreated = {}

    @kube.on_write
    def recreate(verb, rt, obj):
        if verb == "delete" and rt.kind == "Service" and not recreated:  # phase 3 was read just before
            kube.delete(None, "Secret", "payments", "payments-api-db")
            recreated.update(kube.add({"apiVersion": "v1", "kind": "Secret", "data": {}, "metadata": {
                "name": "payments-api-db", "namespace": "payments", "labels": {"app": "payments-api"}}})["metadata"])

    before = len(bot.slack.responses)
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS)
    text = ephemeral_after(bot, before, "Deletion stopped")
    assert "Secret `payments/payments-api-db`" in text and "uid or resourceVersion" in text
    assert "*Continue deletion*" in text and "re-created" in text
    failed = wait_state(bot, req.id, "failed")
    refused = [r for r in kube.requests if r.method == "DELETE" and r.path.endswith("/secrets/payments-api-db")]
    assert [r.status for r in refused] == [409]
    step_audit = [r for r in bot.ctx.store.audit_log("payments-api", limit=50) if r["action"] == "deletion.step"]
    assert "Precondition failed: UID in precondition" in step_audit[0]["params"]  # the API server's own words
    assert kube.get(None, "Secret", "payments", "payments-api-db")["metadata"]["uid"] == recreated["uid"]
    assert [s.result for s in failed.plan if s.kind == "Secret"] == ["failed"]
    bot.flush()
    message = approval_message(bot, req.id)
    assert "Deletion stopped" in blocks_text(message) and button(message["blocks"], ACTION_RESUME)

    before = len(bot.slack.responses)
    click(bot, ACTION_RESUME, req.id, user=DEVOPS2)
    assert "Secret `payments-api-db` was re-created since the approval and left in place" in \
        ephemeral_after(bot, before, "Deleted")
    done = wait_state(bot, req.id, "deleted")
    step = next(s for s in done.plan if s.kind == "Secret")
    assert step.result == "left in place" and "re-created" in step.detail
    assert kube.get(None, "Secret", "payments", "payments-api-db")["metadata"]["uid"] == recreated["uid"]
    assert ("Secret", "payments-api-db") not in {(d["kind"], d["name"]) for d in kube.deletions}
    assert sorted((d["kind"], d["name"]) for d in kube.deletions) == sorted(
        o for o in OBJECTS if o != ("Secret", "payments-api-db"))
    bot.flush()
    assert ":leftwards_arrow_with_hook: Secret `payments-api-db` left in place" in blocks_text(approval_message(bot, req.id))


def test_an_object_recreated_before_its_phase_is_left_in_place_without_a_409(bot_factory, github_fake,
                                                                             mesh_prometheus):
    """Re-created while an earlier phase ran: the phase's read sees the other uid and never sends a DELETE."""
    bot = start(bot_factory, github_fake, mesh_prometheus)
    kube = bot.kube["prod-a"]
    req = request_deletion(bot, PAY_DEV)

    @kube.on_write
    def recreate(verb, rt, obj):
        if verb == "delete" and rt.kind == "VirtualService":
            kube.delete(None, "Deployment", "payments", "payments-api")
            kube.add(workload("payments-api", "payments", app="payments-api"))

    click(bot, ACTION_APPROVE, req.id, user=DEVOPS)
    done = wait_state(bot, req.id, "deleted")
    assert next(s for s in done.plan if s.kind == "Deployment").result == "left in place"
    assert not [r for r in kube.requests if r.method == "DELETE" and r.path.endswith("/deployments/payments-api")]
    assert kube.get(None, "Deployment", "payments", "payments-api") is not None


def test_the_removal_pr_removes_exactly_the_approved_files(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus, files=FILES)
    req = request_deletion(bot, PAY_DEV)
    approved = ["services/payments/payments-api/deckhand.yaml", "services/payments/payments-api/deployment.yaml"]
    assert req.report.gitops_folder == "services/payments/payments-api" and req.report.gitops_files == approved
    bot.flush()
    assert "approval opens a pull request removing exactly these 2 files" in blocks_text(approval_message(bot, req.id))

    github_fake.commit_files(REPO, "main", {"services/payments/payments-api/secret-config.yaml": "kind: Secret\n"},
                             message="a file the approver never saw")
    before = len(bot.slack.responses)
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS)
    text = ephemeral_after(bot, before, "Refused")
    assert "GitOps file services/payments/payments-api/secret-config.yaml" in text
    assert wait_state(bot, req.id, "refused") and github_fake.pulls(REPO) == []

    again = request_deletion(bot, PAY_DEV)
    # One approved file goes away before the approval: the PR removes the rest, nothing else.
    github_fake.commit_files(REPO, "main", {"services/payments/payments-api/deployment.yaml": None},
                             message="hand removal")
    click(bot, ACTION_APPROVE, again.id, user=DEVOPS2)
    waiting = wait_state(bot, again.id, "awaiting_merge")
    assert github_fake.pr_files(REPO, waiting.pr_number) == {
        "services/payments/payments-api/deckhand.yaml": None, "services/payments/payments-api/secret-config.yaml": None}
    body = github_fake.pulls(REPO)[0]["body"]
    assert "removes exactly the 2 approved files" in body and "- `services/payments/payments-api/deckhand.yaml`" in body


def test_a_service_in_a_protected_namespace_is_never_deleted(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus)
    kube = bot.kube["prod-a"]
    kube.add_many([service("metrics-proxy", "kube-system"),
                   workload("metrics-proxy", "kube-system", app="metrics-proxy", replicas=1)])
    report = report_of(bot, DEVOPS, "delete kube-system/metrics-proxy prod-a")
    text = blocks_text(report)
    assert "Protected namespace" in text and "`kube-system` is a protected namespace" in text
    assert "Deletion is blocked* by a protected namespace" in text
    assert button(report["blocks"], ACTION_REQUEST) is None and button(report["blocks"], ACTION_OVERRIDE) is None

    # A hand-made Request deletion click (the button value names the service) is refused the same way.
    value = json.dumps({"c": "prod-a", "n": "kube-system", "s": "metrics-proxy", "src": "command"})
    before = len(bot.slack.responses)
    bot.sender.block_actions(ACTION_REQUEST, value=value, user_id=DEVOPS, channel_id="C0PAY")
    reply = bot.slack.wait_for(lambda: [r for r in bot.slack.responses[before:] if r.get("blocks")], timeout=15)[-1]
    assert "Something changed since the check" in blocks_text(reply) and "protected namespace" in blocks_text(reply)
    assert lifecycle.open_request_for(bot.ctx, "prod-a", "kube-system", "metrics-proxy") is None
    assert kube.deletions == [] and not [w for w in kube.writes() if w.method == "DELETE"]


def test_a_changed_object_stops_on_its_resource_version_and_continue_deletes_it(bot_factory, github_fake,
                                                                              mesh_prometheus):
    """Same object, modified between its phase's read and its DELETE: the resourceVersion precondition
    stops the run; Continue reads it again, finds the approved uid, and deletes it."""
    bot = start(bot_factory, github_fake, mesh_prometheus)
    kube = bot.kube["prod-a"]
    req = request_deletion(bot, PAY_DEV)
    touched = []

    @kube.on_write
    def edit(verb, rt, obj):
        if verb == "delete" and rt.kind == "Service" and not touched:
            touched.append(kube.patch("v1", "configmaps", "payments", "payments-api-config",
                                      {"data": {"LOG_LEVEL": "debug"}})["metadata"]["resourceVersion"])

    before = len(bot.slack.responses)
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS)
    assert "ConfigMap `payments/payments-api-config`" in ephemeral_after(bot, before, "Deletion stopped")
    wait_state(bot, req.id, "failed")
    click(bot, ACTION_RESUME, req.id, user=DEVOPS2)
    done = wait_state(bot, req.id, "deleted")
    assert next(s for s in done.plan if s.kind == "ConfigMap").result == "deleted"
    deletes = [r for r in kube.requests if r.method == "DELETE" and r.path.endswith("/configmaps/payments-api-config")]
    assert [r.status for r in deletes] == [409, 200, 404]  # refused, deleted, confirmed gone
    assert deletes[1].body["preconditions"]["resourceVersion"] == touched[0]
    assert sorted((d["kind"], d["name"]) for d in kube.deletions) == sorted(OBJECTS)


def test_after_the_removal_pr_merges_a_recreated_object_is_left_in_place(bot_factory, github_fake, mesh_prometheus):
    bot = start(bot_factory, github_fake, mesh_prometheus, files=FILES)
    kube = bot.kube["prod-a"]
    req = request_deletion(bot, PAY_DEV)
    click(bot, ACTION_APPROVE, req.id, user=DEVOPS)
    waiting = wait_state(bot, req.id, "awaiting_merge")
    # Hours pass before the merge: the Secret is re-created under its name (a new uid nobody approved).
    kube.delete(None, "Secret", "payments", "payments-api-db")
    recreated = kube.add({"apiVersion": "v1", "kind": "Secret", "data": {}, "metadata": {
        "name": "payments-api-db", "namespace": "payments", "labels": {"app": "payments-api"}}})["metadata"]["uid"]
    github_fake.merge(REPO, waiting.pr_number)
    outcome = lifecycle.on_pull_request_closed(bot.ctx, waiting.branch, waiting.pr_number, True)
    assert "Secret `payments-api-db` was re-created since the approval and left in place" in outcome
    done = wait_state(bot, req.id, "deleted")
    assert next(s for s in done.plan if s.kind == "Secret").result == "left in place"
    assert kube.get(None, "Secret", "payments", "payments-api-db")["metadata"]["uid"] == recreated
    assert ("Deployment", "payments-api") in {(d["kind"], d["name"]) for d in kube.deletions}
