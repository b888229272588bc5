"""Crash safety: deckhand runs as a real process (`python app.py`), is SIGKILLed in the middle of each
multi-step flow, restarted on the same database, and the flow is finished the way a user would
finish it. Nothing is lost, nothing happens twice, and the end state equals that of the same flow
run uninterrupted beside it (in-process, through the same HTTP endpoint, on its own fakes).

"In the middle" is deterministic: a fake holds exactly the request of the step in question, the test
waits until the fake has received it, then kills. Where the held request is let through after the
kill, the cluster or GitHub did the work but deckhand never heard back: the hardest case for
"nothing twice". The uninterrupted runs also check that deckhand never writes SQLite outside a
transaction (every statement is traced)."""
from __future__ import annotations

import json
import re
import sqlite3
import threading
import types
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import bot.foundation.store
from blocks.canary import PROMOTE, REFRESH
from blocks.pipeline import RETRY_ACTION, SUBMIT_CALLBACK
from blocks.service import ACTION_APPROVE, ACTION_REQUEST, ACTION_RESUME
from bot.deletion import lifecycle
from bot.foundation.config import Cluster
from bot.foundation.kube import KubeGateway
from bot.foundation.leader import LeaderElector
from bot.foundation.store import Store
from tests.fakes.slack import SlackFake
from tests.harness import DEVOPS, DEVOPS2, PAY_DEV, FakeClock, grant_reviewers, start_bot
from tests.processes import bot_process, button_on, db_rows, press, wait_until, write_config  # noqa: F401
from tests.canary.test_canary_fixtures import CANARY_IMAGE, deployment_controller, istio_canary, weights
from tests.pipelines.test_pipeline_kit import POINTER, api_form, open_modal, state_values, submit
from tests.deletion.test_service_world import (click, mesh_prometheus, seed_payments, service, start,  # noqa: F401
                                      wait_state, workload)
from tests.deletion.test_service_world import request_deletion as request_deletion_in_process

APPROVALS = "C0APPROVALS"
REPO = "org/deploy-manifests"
BASELINE_REPO = "org/baseline-manifests"
VOLATILE_META = {"uid", "resourceVersion", "creationTimestamp", "managedFields"}
WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER)\b", re.IGNORECASE)


# -- the uninterrupted run, in-process, with every SQLite write traced ----------------------------------------
class WriteTracer:
    """Wraps sqlite3.connect for bot.foundation.store: records each write statement run outside a transaction."""

    def __init__(self):
        self.writes, self.outside = 0, []

    def connect(self, *args, **kwargs):
        conn = sqlite3.connect(*args, **kwargs)

        def trace(sql: str) -> None:
            if WRITE.match(sql):
                self.writes += 1
                if not conn.in_transaction:  # autocommit: the statement is its own transaction
                    self.outside.append(sql)
        conn.set_trace_callback(trace)
        return conn


@contextmanager
def uninterrupted(tmp_path: Path, monkeypatch, kube_fakes: dict, **kwargs):
    """The same deckhand in-process (real Bolt app over real HTTP) on its own Slack fake and database."""
    tracer = WriteTracer()
    shim = types.SimpleNamespace(**{k: getattr(sqlite3, k) for k in dir(sqlite3) if not k.startswith("__")})
    shim.connect = tracer.connect
    monkeypatch.setattr(bot.foundation.store, "sqlite3", shim)
    directory = tmp_path / "uninterrupted"
    directory.mkdir()
    with SlackFake() as slack:
        slack.usergroups["S0SEARCH"] = []
        slack.users[PAY_DEV] = {"name": "pat", "display_name": "Pat Payments", "real_name": "Pat Doe"}
        run = start_bot(directory, slack, kube_fakes, db_path=str(directory / "deckhand.db"), **kwargs)
        try:
            yield run
        finally:
            run.stop()
    monkeypatch.setattr(bot.foundation.store, "sqlite3", sqlite3)
    assert tracer.writes > 50 and tracer.outside == [], f"SQLite writes outside a transaction: {tracer.outside}"


# -- comparing end states --------------------------------------------------------------------------------------
def cluster_objects(fake) -> dict[str, dict]:
    """Every object on a Kubernetes fake, without what the API server makes up per object. The Lease is
    the processes' own business, not the flow's."""
    out = {}
    for rt in fake.resource_types():
        if rt.kind == "Lease":
            continue
        for obj in fake.list(rt.plural, api_version=rt.api_version):
            meta = {k: v for k, v in obj["metadata"].items() if k not in VOLATILE_META}
            out[f"{rt.kind}/{meta.get('namespace', '')}/{meta['name']}"] = {**obj, "metadata": meta}
    return out


def scrub(value, replace: dict[str, str] | None = None):
    """A DB row or Slack message with per-run details (names given, dates and times) made neutral."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    text = re.sub(r"<!date\^\d+\^[^|]*\|[^>]*>", "<date>", text)
    text = re.sub(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(\+00:00|Z| UTC)?", "<time>", text)
    # Object identities differ between two clusters holding the same objects (each API server mints its own).
    text = re.sub(r'(\\?"(?:uid|resource_version)\\?": \\?")[^"\\]*', r"\1<id>", text)
    return json.loads(text)


def without(row: dict, *keys: str) -> dict:
    return {k: v for k, v in row.items() if k not in keys}


def assert_db_sound(db: str) -> None:
    """A SIGKILL mid-transaction leaves the database intact, still in WAL mode."""
    assert db_rows(db, "PRAGMA integrity_check")[0]["integrity_check"] == "ok"
    assert db_rows(db, "PRAGMA journal_mode")[0]["journal_mode"] == "wal"


def run_job(proc, name: str) -> str:
    """`/ops run <job>` as DevOps; the job's one-line outcome."""
    before = len(proc.slack.responses)
    proc.sender.command("/ops", f"run {name}", user_id=DEVOPS)
    return wait_until(lambda: next((r["text"] for r in proc.slack.responses[before:]
                                    if r["text"].startswith(f"`{name}` ")), None), f"the {name} run")


def outbox_drained(db: str) -> bool:
    return db_rows(db, "SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending'")[0]["n"] == 0


# -- deletion after approval ------------------------------------------------------------------------------------
def approval_messages(slack, cluster: str = "prod-a") -> list[dict]:
    return [m for m in slack.messages(APPROVALS).values()
            if m.get("text", "").startswith(f"Delete payments-api from {cluster}?")]


def request_deletion(proc) -> dict:
    """/service delete → Request deletion; the approval message once the outbox has posted it."""
    before = len(proc.slack.responses)
    proc.sender.command("/service", "delete payments-api prod-a", user_id=PAY_DEV, channel_id="C0PAY")
    report = wait_until(lambda: next((r for r in proc.slack.responses[before:] if button_on(r, ACTION_REQUEST)), None),
                        "the dependency report with Request deletion")
    proc.sender.block_actions(ACTION_REQUEST, user_id=PAY_DEV, channel_id="C0PAY",
                              message={"type": "message", "blocks": report["blocks"], "ts": "1.000001"})
    return wait_until(lambda: approval_messages(proc.slack), "the approval message")[0]


def test_deletion_killed_while_deleting_the_service_is_continued_from_its_message(
        tmp_path, monkeypatch, kube_fake_factory, slack_fake, github_fake, mesh_prometheus, bot_process):
    github_fake.create_repo(REPO, files={"README.md": "deploy manifests\n"})  # no pipeline folder: no GitOps PR
    kube = kube_fake_factory()
    seed_payments(kube)
    config = write_config(tmp_path, {"prod-a": kube}, github_url=github_fake.url,
                          prometheus={"prod-a": mesh_prometheus.url})
    db = str(tmp_path / "deckhand.db")
    first = bot_process(config, db)
    message = request_deletion(first)

    # Approve. Routing and workloads go (phases 1-2), then the Service DELETE is held: the API server
    # only carries it out after deckhand is dead, so deckhand never learns that it did.
    kube.hang(path_contains="/namespaces/payments/services/payments-api", method="DELETE", seconds=2.5)
    press(first, APPROVALS, message["ts"], ACTION_APPROVE, DEVOPS2)
    held = wait_until(lambda: next((r for r in kube.requests if r.method == "DELETE"
                                    and r.path.endswith("/services/payments-api")), None), "the Service DELETE")
    first.kill()
    assert held.status is None, "the DELETE was answered before the kill: not the case under test"
    wait_until(lambda: held.status == 200, "the API server to finish the DELETE after deckhand died")
    assert_db_sound(db)
    assert db_rows(db, "SELECT state FROM deletion_requests")[0]["state"] == "deleting"

    second = bot_process(config, db)
    # Nothing runs this request any more, and its message offers no button ("deleting…"): the
    # deletion-expiry job (every 5 min; run now as DevOps would) gives it Continue deletion back.
    assert "1 interrupted by a restart" in run_job(second, "deletion-expiry")
    wait_until(lambda: button_on(slack_fake.message(APPROVALS, message["ts"]), ACTION_RESUME),
               "Continue deletion on the original approval message", deadline=30)
    press(second, APPROVALS, message["ts"], ACTION_RESUME, DEVOPS2)
    wait_until(lambda: db_rows(db, "SELECT state FROM deletion_requests")[0]["state"] == "deleted", "the deletion")
    wait_until(lambda: outbox_drained(db) and "(deleted)" in slack_fake.message(APPROVALS, message["ts"])["text"],
               "the approval message to show the end", deadline=30)

    with uninterrupted(tmp_path, monkeypatch, {"prod-a": kube_fake_factory()}, github_fake=github_fake,
                       prometheus={"prod-a": mesh_prometheus.url}, clock=FakeClock(mesh_prometheus.eval_time)) as run:
        seed_payments(run.kube["prod-a"])
        req = request_deletion_in_process(run, PAY_DEV)
        click(run, ACTION_APPROVE, req.id, user=DEVOPS2)
        wait_state(run, req.id, "deleted")
        run.flush()
        expected_db = run.ctx.store.query("SELECT * FROM deletion_requests")
        expected_savings = run.ctx.store.query("SELECT * FROM savings")
        expected_message = run.slack.message(*lifecycle.message_of(run.ctx, req.id))
        expected_told = [m["text"] for m in run.slack.messages(PAY_DEV).values()]
    expected = run.kube["prod-a"]

    # The cluster: the same objects left, the same deletes in the same order, each exactly once.
    assert cluster_objects(kube) == cluster_objects(expected)
    assert kube.deletions == expected.deletions and len(kube.deletions) == 9
    # The request: deleted, every step done; the Service step saw it "already gone" (the held DELETE).
    row = db_rows(db, "SELECT * FROM deletion_requests")
    assert len(row) == 1
    plan = json.loads(row[0]["plan"])
    assert [s["result"] for s in plan if s["kind"] == "Service"] == ["already gone"]
    assert {s["result"] for s in plan if s["kind"] != "Service"} == {"deleted"}
    volatile = ("created_at", "expires_at", "updated_at", "decided_at", "note", "plan")
    assert scrub(without(row[0], *volatile)) == scrub(without(expected_db[0], *volatile))
    assert [without(s, "id", "at") for s in db_rows(db, "SELECT * FROM savings")] == \
        [without(s, "id", "at") for s in expected_savings]  # once
    # Slack: the one approval message, ending as the uninterrupted one does; the requester told once.
    assert len(approval_messages(slack_fake)) == 1
    final = scrub(slack_fake.message(APPROVALS, message["ts"])["blocks"], {
        ":heavy_minus_sign: Service `payments-api` already gone": ":white_check_mark: Service `payments-api` deleted"})
    assert final == scrub(expected_message["blocks"])
    told = [m["text"] for m in slack_fake.messages(PAY_DEV).values()]
    assert sum("is deleted from `prod-a`" in t for t in told) == 1 == sum("is deleted" in t for t in expected_told)
    assert [r["action"] for r in db_rows(db, "SELECT action FROM audit WHERE action LIKE 'deletion.%' ORDER BY id")] \
        == ["deletion.request", "deletion.approve", "deletion.start", "deletion.interrupted", "deletion.resume",
            "deletion.done"]


# -- canary promote ---------------------------------------------------------------------------------------------
STABLE = "/apis/apps/v1/namespaces/payments/deployments/checkout"


def post_card(proc_or_run, slack) -> dict:
    before = set(slack.messages("C0PAY"))
    proc_or_run.sender.command("/canary", "checkout prod-a", user_id=PAY_DEV, channel_id="C0PAY")
    return wait_until(lambda: next((m for ts, m in slack.messages("C0PAY").items() if ts not in before), None),
                      "the canary card")


def rollout_complete(fake, name: str) -> None:
    """What the Deployment controller reports once a rollout is done."""
    obj = fake.get("apps/v1", "deployments", "payments", name)
    n = obj["spec"].get("replicas", 1)
    fake.set_status("apps/v1", "deployments", "payments", name, {
        "observedGeneration": obj["metadata"]["generation"], "replicas": n, "updatedReplicas": n,
        "availableReplicas": n, "readyReplicas": n})


def flow_writes(fake) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in fake.writes() if "/namespaces/payments/" in r.path]


def test_canary_promote_killed_while_waiting_for_the_stable_rollout_is_promoted_again(
        tmp_path, monkeypatch, kube_fake_factory, slack_fake, bot_process):
    kube = kube_fake_factory()
    istio_canary(kube, weight=50)
    kube.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "deckhand"}})  # where the Lease lives
    # In a cluster, as deployed: the restarted process must wait for the killed one's Lease to
    # expire, and drops the canary lock the dead one held when it becomes the writer.
    config = write_config(tmp_path, {"prod-a": kube}, overrides={
        "lease": {"cluster": "prod-a", "namespace": "deckhand", "duration": "2s"}})
    db = str(tmp_path / "deckhand.db")
    first = bot_process(config, db)
    card = post_card(first, slack_fake)
    press(first, "C0PAY", card["ts"], PROMOTE, PAY_DEV)

    def waiting_for_rollout():  # the template is copied and deckhand polls the stable Deployment
        requests = kube.requests
        copied = next((n for n, r in enumerate(requests) if r.method == "PATCH" and r.path == STABLE), None)
        return copied is not None and any(r.method == "GET" and r.path == STABLE for r in requests[copied + 1:])
    wait_until(waiting_for_rollout, "deckhand to wait for the stable rollout")
    first.kill()
    assert_db_sound(db)
    assert [r["name"] for r in db_rows(db, "SELECT name FROM locks")] == ["canary:prod-a/payments/checkout"]
    assert flow_writes(kube) == [("PATCH", STABLE)]  # no traffic moved while stable was not ready
    # While deckhand is down the controller finishes the stable rollout, and keeps playing controller.
    rollout_complete(kube, "checkout")
    deployment_controller(kube)

    second = bot_process(config, db)
    assert db_rows(db, "SELECT * FROM locks") == []
    # The old card still says "Working" (nothing will finish it) but kept Refresh, which brings the live
    # state and the other buttons back.
    stuck = slack_fake.message("C0PAY", card["ts"])
    assert "Working" in json.dumps(stuck["blocks"]) and button_on(stuck, PROMOTE) is None
    press(second, "C0PAY", card["ts"], REFRESH, PAY_DEV)
    wait_until(lambda: button_on(slack_fake.message("C0PAY", card["ts"]), PROMOTE), "Refresh to bring Promote back")
    press(second, "C0PAY", card["ts"], PROMOTE, PAY_DEV)
    done = wait_until(lambda: (m := slack_fake.message("C0PAY", card["ts"])) and "Promoted" in json.dumps(m["blocks"])
                      and "Working" not in json.dumps(m["blocks"]) and m, "the card to show the promotion")
    text = json.dumps(done["blocks"], ensure_ascii=False)
    assert "already done: stable already runs it" in text and button_on(done, PROMOTE) is None

    with uninterrupted(tmp_path, monkeypatch, {"prod-a": kube_fake_factory()}) as run:
        expected = run.kube["prod-a"]
        istio_canary(expected, weight=50)
        expected.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "deckhand"}})
        deployment_controller(expected)
        baseline_card = post_card(run, run.slack)
        run.sender.block_actions(PROMOTE, user_id=PAY_DEV, channel_id="C0PAY", message_ts=baseline_card["ts"])
        wait_until(lambda: "Promoted" in json.dumps(run.slack.message("C0PAY", baseline_card["ts"])["blocks"]),
                   "the uninterrupted promotion")
        run.ctx.extras["listener_executor"].shutdown(wait=True)
        expected_savings = run.ctx.store.query("SELECT * FROM savings")

    # Copy, then (after the restart) weights, then scale: each once, in the same order as uninterrupted.
    assert flow_writes(kube) == flow_writes(expected) == [
        ("PATCH", STABLE), ("PATCH", "/apis/networking.istio.io/v1/namespaces/payments/virtualservices/checkout"),
        ("PATCH", "/apis/apps/v1/namespaces/payments/deployments/checkout-canary")]
    assert cluster_objects(kube) == cluster_objects(expected)
    stable = kube.get("apps/v1", "deployments", "payments", "checkout")
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == CANARY_IMAGE
    assert weights(kube) == (100, 0)
    assert kube.get("apps/v1", "deployments", "payments", "checkout-canary")["spec"]["replicas"] == 0
    savings = db_rows(db, "SELECT * FROM savings")
    assert len(savings) == 1  # once
    assert without(savings[0], "id", "at", "ref") == without(expected_savings[0], "id", "at", "ref")
    outcomes = db_rows(db, "SELECT result FROM audit WHERE action = 'canary.promote' "
                           "AND json_extract(params, '$.step') = 'outcome'")
    assert [o["result"] for o in outcomes] == ["done"]


# -- pipeline pull request --------------------------------------------------------------------------------------
def request_messages(slack) -> list[dict]:
    return [m for m in slack.messages("C0PAY").values() if "payments-api" in m.get("text", "")]


def open_form(proc, slack) -> None:
    before = len([v for v in slack.views_for(PAY_DEV) if v["callback_id"] == SUBMIT_CALLBACK])
    proc.sender.command("/pipeline", "create", user_id=PAY_DEV, channel_id="C0PAY")
    wait_until(lambda: len([v for v in slack.views_for(PAY_DEV) if v["callback_id"] == SUBMIT_CALLBACK]) > before,
               "the /pipeline create form")


FORM = api_form(clusters=["prod-a"])


def test_pipeline_create_killed_while_github_opens_the_pull_request_ends_with_one_pull_request(
        tmp_path, monkeypatch, kube_fake, slack_fake, github_fake, bot_process):
    for repo in (REPO, BASELINE_REPO):
        github_fake.create_repo(repo, files={"README.md": "deploy manifests\n", "batch-images.yaml": POINTER})
        grant_reviewers(github_fake, repo)
    slack_fake.usergroups["S0SEARCH"] = []
    slack_fake.users[PAY_DEV] = {"name": "pat", "display_name": "Pat Payments", "real_name": "Pat Doe"}
    config = write_config(tmp_path, {"prod-a": kube_fake}, github_url=github_fake.url)
    db = str(tmp_path / "deckhand.db")
    first = bot_process(config, db)
    open_form(first, slack_fake)
    # GitHub creates the pull request only after deckhand is dead: the branch, commit and PR exist,
    # and deckhand's database still says "proposing".
    github_fake.hang("/pulls", method="POST", seconds=2.5)
    assert first.sender.view_submission(SUBMIT_CALLBACK, values=state_values(FORM), user_id=PAY_DEV).text == ""
    wait_until(lambda: github_fake.find("POST", "/pulls"), "GitHub to receive the pull request")
    first.kill()
    assert github_fake.pulls(REPO) == [], "the PR was created before the kill: not the case under test"
    wait_until(lambda: github_fake.pulls(REPO), "GitHub to create the pull request after deckhand died")
    github_fake.clear_faults()
    assert_db_sound(db)
    row = db_rows(db, "SELECT * FROM pipeline_requests")[0]
    assert row["state"] == "proposing" and row["ts"] and row["pr_number"] is None
    [message] = request_messages(slack_fake)  # nothing lost: the request and its message are there

    second = bot_process(config, db)
    # The message says "preparing…" with no button, and nothing runs the request any more (the new
    # writer dropped the dead one's lock): the scheduled PR poll (run now as DevOps would) gives the
    # message Try again, and the user presses it.
    assert "1 interrupted by a restart" in run_job(second, "pr-poll")
    wait_until(lambda: outbox_drained(db), "the outbox to drain")
    interrupted = slack_fake.message("C0PAY", message["ts"])
    assert "deckhand restarted while opening the pull request" in json.dumps(interrupted["blocks"])
    assert db_rows(db, "SELECT state FROM pipeline_requests")[0]["state"] == "failed"
    press(second, "C0PAY", message["ts"], RETRY_ACTION, PAY_DEV)
    done = wait_until(lambda: (m := slack_fake.message("C0PAY", message["ts"])) and "is open for review" in m["text"]
                      and m, "the original message to show the open pull request", deadline=30)

    with uninterrupted(tmp_path, monkeypatch, {"prod-a": kube_fake}, github_fake=github_fake,
                       config={"github": {"repo": BASELINE_REPO}}) as run:
        open_modal(run)
        submit(run, FORM)
        expected_message = wait_until(lambda: next((m for m in request_messages(run.slack)
                                                    if "is open for review" in m["text"]), None),
                                      "the uninterrupted pull request")
        expected_row = run.ctx.store.query("SELECT * FROM pipeline_requests")[0]

    # GitHub: one PR, one branch, one commit on top of main, the same files, title, labels and reviewers.
    [pull], [expected_pull] = github_fake.pulls(REPO), github_fake.pulls(BASELINE_REPO)
    def shown(pr: dict) -> dict:
        return {"title": pr["title"], "state": pr["state"], "number": pr["number"], "commits": pr["commits"],
                "files": pr["changed_files"], "labels": [label["name"] for label in pr["labels"]],
                "reviewers": [u["login"] for u in pr["requested_reviewers"]],
                "teams": [t["slug"] for t in pr["requested_teams"]]}
    assert shown(pull) == shown(expected_pull) and shown(pull)["labels"] == ["deckhand"]
    assert pull["head"]["ref"] == expected_pull["head"]["ref"] == "deckhand/pipeline/payments-api"
    assert github_fake.pr_files(REPO, 1) == github_fake.pr_files(BASELINE_REPO, 1)
    assert sorted(github_fake.branches(REPO)) == sorted(github_fake.branches(BASELINE_REPO))
    assert len(github_fake.log(REPO, "deckhand/pipeline/payments-api")) == 2
    assert scrub(pull["body"], {REPO: "<repo>"}) == scrub(expected_pull["body"], {BASELINE_REPO: "<repo>"})
    # deckhand: the same request row and the same single message, now showing the open PR.
    volatile = ("created_at", "updated_at", "permalink", "editor")
    assert scrub(without(db_rows(db, "SELECT * FROM pipeline_requests")[0], *volatile), {REPO: "<repo>"}) == \
        scrub(without(expected_row, *volatile), {BASELINE_REPO: "<repo>"})
    assert len(request_messages(slack_fake)) == 1
    assert scrub(done["blocks"], {REPO: "<repo>"}) == scrub(expected_message["blocks"], {BASELINE_REPO: "<repo>"})
    opened = db_rows(db, "SELECT result FROM audit WHERE action = 'pipeline.create' AND result LIKE 'opened%'")
    assert [o["result"] for o in opened] == ["opened #1"]


# -- SQLite ------------------------------------------------------------------------------------------------------
def test_sqlite_is_wal_and_a_write_waits_for_another_writer_instead_of_failing(tmp_path):
    store = Store(str(tmp_path / "deckhand.db"))
    try:
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] == 10000
        other = sqlite3.connect(str(tmp_path / "deckhand.db"), isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the write lock...
        other.execute("INSERT INTO processed(key, at) VALUES ('other', 'now')")
        finish = threading.Timer(0.3, lambda: other.execute("COMMIT"))  # ...and commits a little later
        finish.start()
        assert store.once("mine") is True  # waited for it (busy_timeout), did not fail with "database is locked"
        finish.join()
        assert [r["key"] for r in store.query("SELECT key FROM processed ORDER BY key")] == ["mine", "other"]
        other.close()
    finally:
        store.close()


# -- the recovery pieces on their own ----------------------------------------------------------------------------
def test_a_new_leader_drops_the_dead_ones_locks_before_it_takes_any_request(kube_fake, tmp_path):
    kubeconfig = kube_fake.kubeconfig(str(tmp_path / "kc"), context="prod-a")
    kube = KubeGateway([Cluster(name="prod-a", context="prod-a", kubeconfig=kubeconfig, prometheus_url="http://x:1")])
    kube_fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "deckhand"}})
    store = Store(str(tmp_path / "deckhand.db"))
    try:
        dead = Store(str(tmp_path / "deckhand.db"))  # the killed process: its lock outlives it
        assert dead.acquire("canary:prod-a/payments/checkout", "Promote by <@U0PAYDEV>") is None
        seen = []

        def on_change(leading: bool) -> None:
            seen.append(elector.is_leader())
            store.drop_foreign_locks()
        elector = LeaderElector(kube, "prod-a", "deckhand", "deckhand", timedelta(seconds=30), identity="new",
                                clock=FakeClock(), on_change=on_change)
        assert elector.try_acquire_or_renew() and elector.is_leader()
        assert seen == [False]  # the locks were gone before is_leader() let a request in
        assert store.query("SELECT * FROM locks") == []
        dead.close()
    finally:
        store.close()


def test_deletion_expiry_puts_back_only_requests_nobody_is_running(bot_factory, github_fake, mesh_prometheus):
    run = start(bot_factory, github_fake, mesh_prometheus)
    run.kube["prod-a"].add_many([service("old-batch-api", "payments"),
                                 workload("old-batch-api", "payments", app="old-batch-api")])
    rechecking = request_deletion_in_process(run, PAY_DEV)
    deleting = request_deletion_in_process(run, PAY_DEV, "old-batch-api")
    # What a process killed during the re-check of one leaves (its lock dropped by the new writer)...
    run.ctx.store.transition("deletion_requests", {"id": rechecking.id}, "pending", "approved",
                             {"decided_by": DEVOPS2})
    # ...while this process is deleting the other one right now.
    run.ctx.store.transition("deletion_requests", {"id": deleting.id}, "pending", "deleting", {"decided_by": DEVOPS2})
    with run.ctx.store.locked(f"deletion:{deleting.id}", "approve") as busy:
        assert busy is None
        assert "1 interrupted by a restart" in run.run_job("deletion-expiry")
    assert wait_state(run, deleting.id, "deleting")
    back = wait_state(run, rechecking.id, "pending")
    assert back.decided_by is None and run.kube["prod-a"].deletions == []
    run.flush()
    assert button_on(run.slack.message(*lifecycle.message_of(run.ctx, rechecking.id)), ACTION_APPROVE) is not None
    click(run, ACTION_APPROVE, rechecking.id, user=DEVOPS2)  # approving again re-checks, then deletes
    wait_state(run, rechecking.id, "deleted")
    assert "0 pending" in run.run_job("deletion-expiry") and len(run.ctx.store.query("SELECT * FROM savings")) == 1
