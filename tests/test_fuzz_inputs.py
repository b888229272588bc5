"""Property-based tests over the rest of the bad input: every modal's fields, every webhook body, every
button value. (Slash-command text and config files are fuzzed in tests/test_fuzz.py.)

For every input: never a 500, never a traceback or the generic "Something went wrong … error id"
message (that is a bug nobody handled), always a specific answer — errors keyed to the modal's own
fields, an ephemeral explanation, or a 4xx with a reason — and a rejected input leaves every table
as it was (only the audit trail and Slack's retry keys may grow where an action was refused).
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import uuid

import pytest
import requests
import yaml
from hypothesis import HealthCheck, event, example, given, settings, strategies as st

from bot.nodes import sign as sign_report
from bot.pipeline_form import parse_env
from tests.harness import DEVOPS, HOOK_SECRET, OUTSIDER, PAY_DEV, WEBHOOK_SECRET
from tests.test_zz_permissions import classify, rbac_rules

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])




def examples(n: int) -> settings:
    return settings(FUZZ, max_examples=n)


UNHANDLED = ("error id", "Something went wrong", "Traceback", "unexpected error", "Internal Server Error")
# Web API errors that mean deckhand sent Slack something malformed (as opposed to a gone message).
MALFORMED = {"invalid_blocks", "invalid_blocks_format", "invalid_arguments", "msg_too_long", "no_text",
             "invalid_attachments"}

# -- strategies ------------------------------------------------------------------------------------
NASTY = ["", " ", "\n", "\t", "0", "-1", "1", "²", "١٢", "１２", "1_000", "9" * 40, "1e3", "0x10", "NaN", "∞",
         "`", "```", "*", "_", "~", "<!channel>", "<@U0DEVOPS1>", "&lt;", "&amp;", "\x00", "\x7f", "\x85", "\u2028",
         "\ufeff", "'", '"', "{{ 7*7 }}", "{% raw %}", "${HOME}", "../../etc/passwd", "yes", "no", "on", "null",
         "~", ":", "- a", "# x", "a: b", "[1, 2]", "{}", "[]", "true", "🙂", "é" * 3, "x" * 300, "a\nb", "KEY=",
         "=value", "A=1\nA=2", "PASSWORD=x", "*/5 * * * *", "61 25 32 13 8", "@daily", "CRON_TZ=UTC 0 3 * * *",
         "pinned", "pinned :", "track latest of", "registry.example.com/batch/python", "Registry/UPPER",
         "repo@sha256:abc", "image:tag", "/", "/health z", "65536", "8080", "100m", "0.0001", "1Ki", "512MB",
         "-250m", "1.5.3", "org/payments-api", "https://example.com/org/repo", "prod-a", "prod-b", "prod-z"]
text = st.one_of(st.sampled_from(NASTY), st.text(max_size=40),
                 st.lists(st.sampled_from(NASTY), min_size=2, max_size=4).map("".join))
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                         st.floats(allow_nan=False), text)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(text, st.sampled_from(["b", "c", "n", "s", "seen"])),
                                                 inner, max_size=4)), max_leaves=8)


# -- watching the bot ------------------------------------------------------------------------------
class InFlight:
    """Counts listener work still running, so a test knows when a request is fully handled
    (the ack came back long before) without sleeping."""

    def __init__(self, executor):
        self.count = 0
        self.lock = threading.Lock()
        original = executor.submit

        def submit(fn, *args, **kwargs):
            with self.lock:
                self.count += 1

            def run():
                try:
                    return fn(*args, **kwargs)
                finally:
                    with self.lock:
                        self.count -= 1
            return original(run)

        executor.submit = submit


class Quiet:
    """The bot, with a short repr: Hypothesis prints every argument of a falsifying example."""

    def __init__(self, bot):
        self.__dict__["_bot"] = bot

    def __getattr__(self, name):
        return getattr(self._bot, name)

    def __repr__(self) -> str:
        return "<bot>"


def watched(bot) -> Quiet:
    if "in_flight" not in bot.extra:
        bot.extra["in_flight"] = InFlight(bot.ctx.extras["listener_executor"])
    return Quiet(bot)


@pytest.fixture
def quiet_bot(bot):
    return watched(bot)


def settle(bot, timeout: float = 15) -> None:
    tracker = bot.extra["in_flight"]
    bot.slack.wait_for(lambda: tracker.count == 0, timeout=timeout)


def row_counts(bot, skip: tuple[str, ...] = ()) -> dict[str, int]:
    tables = [r["name"] for r in bot.ctx.store.query("SELECT name FROM sqlite_master WHERE type = 'table'")
              if r["name"] not in ("meta", "locks", "job_runs", *skip)]
    return {t: bot.ctx.store.query(f"SELECT COUNT(*) AS n FROM [{t}]")[0]["n"] for t in tables}


class Seen:
    """What Slack saw from the bot since this point: replies, ephemerals, modals, rejected calls."""

    def __init__(self, bot):
        self.bot = bot
        self.calls = len(bot.slack.calls)
        self.responses = len(bot.slack.responses)
        self.errors = self._errors()

    def _errors(self) -> float:
        return self.bot.ctx.metrics.registry.get_sample_value("deckhand_errors_total") or 0.0

    def new_calls(self):
        return self.bot.slack.calls[self.calls:]

    def new_responses(self):
        return self.bot.slack.responses[self.responses:]

    def told(self, user: str, response_url: str | None = None) -> list[str]:
        said = [r.get("text") or json.dumps(r.get("blocks")) for r in self.new_responses()
                if response_url is None or r["url"] == response_url]
        for call in self.new_calls():
            if call.method == "chat.postEphemeral" and call.args.get("user") == user:
                said.append(call.args.get("text") or "")
            elif call.method in ("views.open", "views.update", "views.push"):
                said.append(json.dumps(call.args.get("view")))
            elif call.method == "chat.postMessage" and call.args.get("channel") == user:
                said.append(call.args.get("text") or "")
        return said

    def assert_clean(self) -> None:
        """Nothing unhandled was shown, and nothing malformed was sent to Slack."""
        shown = json.dumps(self.new_responses(), ensure_ascii=False) + json.dumps(
            [c.args for c in self.new_calls()], ensure_ascii=False)
        for bad in UNHANDLED:
            assert bad not in shown, shown[:3000]
        assert self._errors() == self.errors, "an unhandled error reached the global error handler"
        malformed = [c.describe() for c in self.new_calls() if c.error in MALFORMED]
        assert not malformed, malformed


def assert_outbox_clean(bot) -> None:
    failed = bot.ctx.store.query("SELECT channel, error, payload FROM outbox WHERE state = 'failed'")
    assert not failed, failed


# -- modals ----------------------------------------------------------------------------------------
PIPELINE_TEXT = ["service", "repo", "image", "port", "health_path", "schedule", "tag_policy", "replicas",
                 "cpu_request", "cpu_limit", "memory_request", "memory_limit", "env"]
PIPELINE_SELECT = {"team": ["payments", "search"], "kind": ["api", "worker", "batch"],
                   "strategy": ["canary", "blue-green"]}
free = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)  # anything a person can type
env_lines = st.lists(st.tuples(st.from_regex(r"[A-Z_][A-Z0-9_]{0,12}", fullmatch=True), free), max_size=4).map(
    lambda pairs: "\n".join(f"{k}={v}" for k, v in pairs))
plausible = {  # values the checks may well accept, so rendering and the pull request see them too
    "service": st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True),
    "repo": st.from_regex(r"[A-Za-z0-9_.-]{1,12}/[A-Za-z0-9_.-]{1,12}", fullmatch=True),
    "image": st.from_regex(r"registry\.example\.com/[a-z0-9]{1,8}(/[a-z0-9]{1,8})?", fullmatch=True),
    "port": st.integers(0, 70000).map(str),
    "health_path": st.from_regex(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,30}", fullmatch=True),
    "schedule": st.sampled_from(["0 3 * * *", "*/15 * * * *", "@daily", "0 0 29 2 *", "59 23 31 12 7"]),
    "tag_policy": st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True).map(lambda t: f"pinned {t}"),
    "replicas": st.integers(0, 100).map(str),
    "cpu_request": st.sampled_from(["1m", "250m", "0.5", "2", ".1", "100"]),
    "cpu_limit": st.sampled_from(["1", "4", "1000m", "64"]),
    "memory_request": st.sampled_from(["4Mi", "128Mi", "1Gi", "1.5Gi", "600M"]),
    "memory_limit": st.sampled_from(["1Gi", "2Gi", "64Gi", "1Ti"]),
    "env": env_lines,
}
field_values = {
    **{name: st.one_of(st.none(), text) for name in PIPELINE_TEXT},
    **{name: st.one_of(st.none(), st.sampled_from(choices), text) for name, choices in PIPELINE_SELECT.items()},
    "clusters": st.lists(st.one_of(st.sampled_from(["prod-a", "prod-b"]), text), max_size=3),
}


def changes_from(values: dict) -> st.SearchStrategy:
    """One to three fields of the form replaced."""
    return st.sampled_from(list(values)).flatmap(
        lambda first: st.fixed_dictionaries({first: values[first]},
                                            optional={k: v for k, v in values.items() if k != first}).map(
            lambda d: dict(itertools.islice(d.items(), 3))))


def pipeline_values(form: dict) -> dict:
    """Modal values as Slack sends them; None is an empty optional input / no selection."""
    values = {}
    for name, value in form.items():
        if name in PIPELINE_SELECT:
            values[name] = {"value": {"type": "static_select",
                                      "selected_option": {"value": value} if value is not None else None}}
        elif name == "clusters":
            values[name] = {"value": {"type": "multi_static_select",
                                      "selected_options": [{"value": c} for c in value or []]}}
        else:
            values[name] = {"value": {"type": "plain_text_input", "value": value}}
    return values


@pytest.fixture
def pipeline_bot(bot_factory, github_fake):
    """Two clusters, the GitOps repo on the GitHub fake with one pipeline (ledger-api) to edit, and
    the create and edit modals open."""
    from tests.test_pipeline_kit import POINTER, REPO, api_form, open_modal, seed_pipeline

    github_fake.create_repo(REPO, files={"README.md": "deploy manifests\n", "batch-images.yaml": POINTER})
    bot = watched(bot_factory(clusters=("prod-a", "prod-b"), github_fake=github_fake))
    github_fake.clock = bot.clock
    bot.slack.usergroups["S0SEARCH"] = []
    seed_pipeline(bot, api_form(service="ledger-api"))
    bot.extra["views"] = {"create": open_modal(bot)["id"], "edit": open_modal(bot, "edit ledger-api")["id"]}
    return bot


@examples(60)
@given(mode=st.sampled_from(["create", "create", "edit"]), base=st.sampled_from(["api", "batch"]),
       changes=changes_from(field_values))
def test_pipeline_modal_fields(pipeline_bot, mode, base, changes):
    submit_pipeline(pipeline_bot, mode, base, changes)


@examples(25)
@given(mode=st.sampled_from(["create", "create", "edit"]), base=st.sampled_from(["api", "batch"]),
       changes=changes_from(plausible))
@example(mode="create", base="api", changes={"env": "A=x\x7fy"})  # YAML cannot carry U+007F
@example(mode="create", base="batch", changes={"env": "A=x\x00y\nB=\u2028 \ufeff"})
def test_pipeline_modal_plausible_values_reach_the_pull_request(pipeline_bot, mode, base, changes):
    submit_pipeline(pipeline_bot, mode, base, changes)


def submit_pipeline(bot, mode: str, base: str, changes: dict) -> None:
    from tests.test_pipeline_kit import REPO, api_form, batch_form

    names = bot.extra.setdefault("names", itertools.count())
    form = (api_form if base == "api" else batch_form)(service=f"fuzz-{next(names)}")
    form.update(changes)
    if mode == "edit":
        form.pop("service")
        form.pop("team")
    view_id = bot.extra["views"][mode]
    view = bot.slack.views[view_id]
    before, seen, writes = row_counts(bot, skip=("processed",)), Seen(bot), len(bot.github.writes())
    answer = bot.sender.view_submission("pipeline_submit", values=pipeline_values(form), user_id=PAY_DEV,
                                        view_id=view_id)
    assert answer.status_code == 200, answer.text
    settle(bot)
    seen.assert_clean()
    ack = json.loads(answer.text) if answer.text else {}
    event(f"pipeline modal: {ack.get('response_action') or 'accepted'} {sorted(ack.get('errors') or [])}")
    if ack.get("response_action") == "errors":
        present = {b.get("block_id") for b in view["blocks"]}
        assert ack["errors"] and set(ack["errors"]) <= present, (ack, present)
        assert all(isinstance(m, str) and m.strip() for m in ack["errors"].values())
        assert row_counts(bot, skip=("processed",)) == before  # nothing half-written
        assert len(bot.github.writes()) == writes
        return
    if ack.get("response_action") == "update":  # an edit that changes nothing
        assert "Nothing changed" in json.dumps(ack["view"])
        return
    assert not ack, ack
    # Accepted: a request that settled with a sentence for Slack (a PR, or what stopped it).
    target = form.get("service") or "ledger-api"
    rows = bot.ctx.store.query("SELECT * FROM pipeline_requests WHERE target = ?", [target])
    event(f"pipeline request: {rows[0]['state'] if rows else None}")
    # GitHub is healthy here, so an input the modal accepted must make it into a pull request: a
    # failure after the ack (e.g. YAML that cannot carry a character) is a check the ack missed.
    assert rows and rows[0]["state"] in ("open", "noop") and not rows[0]["error"], rows
    told = seen.told(PAY_DEV) + [c.args.get("text") or "" for c in seen.new_calls()
                                 if c.method in ("chat.postMessage", "chat.update")]
    assert any(target in t for t in told), told
    if rows[0]["state"] == "open":
        assert any(p["head"]["ref"] == rows[0]["branch"] for p in bot.github.pulls(REPO))
        # What was typed is what lands in Git: every container gets exactly the env the form said.
        expected = [{"name": k, "value": v} for k, v in parse_env(str(form.get("env") or ""))[0]]
        found = envs_in(bot.github.files(REPO, rows[0]["branch"]), target)
        assert found and all(env == expected for env in found), (expected, found)


def envs_in(files: dict[str, str], service: str) -> list[list]:
    """The env list of every container in the service's generated manifests ([] where it has none)."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "image" in node and "name" in node:  # a container
                found.append(node.get("env") or [])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path, text in files.items():
        if f"/{service}/k8s/" in f"/{path}":
            for doc in yaml.safe_load_all(text):
                walk(doc)
    return found


@pytest.fixture
def override_bot(bot_factory, github_fake):
    from blocks.service import ACTION_OVERRIDE
    from tests.test_service_world import button, report_of, start

    bot = watched(start(bot_factory, github_fake))  # Prometheus is down: traffic unknown, DevOps may override
    report = report_of(bot, DEVOPS, "delete payments-api prod-a")
    override = button(report["blocks"], ACTION_OVERRIDE)
    bot.sender.block_actions(ACTION_OVERRIDE, value=override["value"], user_id=DEVOPS, channel_id="C0PAY",
                             message={"type": "message", "blocks": report["blocks"], "ts": "1.000002"})
    view = bot.slack.wait_for(lambda: bot.slack.views_for(DEVOPS))[-1]
    bot.extra["view"] = view
    return bot


@examples(30)
@given(reason=st.one_of(text, st.text(min_size=10, max_size=3000), st.sampled_from(["x" * 3000, " " * 50 + "ok"])))
def test_deletion_override_reason(override_bot, reason):
    from blocks.service import ACTION_REJECT, REASON_BLOCK, VIEW_OVERRIDE
    from bot import lifecycle

    bot = override_bot
    view = bot.extra["view"]
    reply_to = json.loads(view["private_metadata"])["r"]
    before, seen = row_counts(bot, skip=("processed",)), Seen(bot)
    answer = bot.sender.view_submission(VIEW_OVERRIDE, {REASON_BLOCK: {"value": reason}}, user_id=DEVOPS,
                                        view_id=view["id"])
    assert answer.status_code == 200, answer.text
    settle(bot)
    seen.assert_clean()
    ack = json.loads(answer.text) if answer.text else {}
    event(f"override: {'errors' if ack else 'accepted'}")
    if ack:
        assert ack["response_action"] == "errors" and set(ack["errors"]) == {REASON_BLOCK}
        assert row_counts(bot, skip=("processed",)) == before
        return
    assert seen.told(DEVOPS, reply_to), "the override submission was answered with silence"
    req = lifecycle.open_request_for(bot.ctx, "prod-a", "payments", "payments-api")
    assert req is not None and req.override_reason == " ".join(reason.split())
    bot.flush()
    assert_outbox_clean(bot)
    # Reject it again, so the next example overrides afresh.
    channel, ts = lifecycle.message_of(bot.ctx, req.id)
    bot.sender.block_actions(ACTION_REJECT, value=str(req.id), user_id=DEVOPS, channel_id=channel, message_ts=ts)
    settle(bot)
    assert lifecycle.get_request(bot.ctx, req.id).state == "rejected"
    bot.flush()
    assert_outbox_clean(bot)


@pytest.fixture
def keep_bot(bot_factory, prometheus_factory):
    from tests.test_idle_actions import GIFT_CARDS, posted_digest
    from tests.test_idle_world import idle_bot

    bot = watched(idle_bot(bot_factory, prometheus_factory))
    digest = posted_digest(bot)
    bot.sender.block_actions("idle_keep", value=GIFT_CARDS, user_id=PAY_DEV, channel_id="C0PAY",
                             message_ts=digest["ts"], block_id=f"idle-actions:{GIFT_CARDS}")
    bot.extra["view"] = bot.slack.wait_for(
        lambda: [v for v in bot.slack.views_for(PAY_DEV) if v["callback_id"] == "idle_keep"])[0]
    bot.extra["digest"] = digest
    return bot


@examples(30)
@given(reason=st.one_of(text, st.text(min_size=5, max_size=500), st.sampled_from(["x" * 500, "*" * 500])))
def test_idle_keep_reason(keep_bot, reason):
    from tests.test_idle_actions import GIFT_CARDS, state

    bot = keep_bot
    view = bot.extra["view"]
    before, seen = row_counts(bot, skip=("processed",)), Seen(bot)
    answer = bot.sender.view_submission("idle_keep", {"reason": {"value": reason}}, user_id=PAY_DEV,
                                        view_id=view["id"])
    assert answer.status_code == 200, answer.text
    settle(bot)
    seen.assert_clean()
    ack = json.loads(answer.text) if answer.text else {}
    event(f"keep: {'errors' if ack else 'accepted'}")
    if ack:
        assert ack["response_action"] == "errors" and set(ack["errors"]) == {"reason"}
        assert row_counts(bot, skip=("processed",)) == before
        return
    row = state(bot, GIFT_CARDS)
    assert (row["state"], row["reason"]) == ("kept", " ".join(reason.split()))
    shown = json.dumps(bot.slack.message("C0PAY", bot.extra["digest"]["ts"]), ensure_ascii=False)
    assert "Kept by" in shown
    # Un-keep it again, so the next example keeps afresh.
    bot.sender.block_actions("idle_unkeep", value=GIFT_CARDS, user_id=PAY_DEV, channel_id="C0PAY",
                             message_ts=bot.extra["digest"]["ts"], block_id=f"idle-actions:{GIFT_CARDS}")
    settle(bot)
    assert state(bot, GIFT_CARDS)["state"] == "open"
    seen.assert_clean()


# -- webhooks --------------------------------------------------------------------------------------
REPORT_FIELDS = ["cluster", "node", "phase", "status", "message", "log_tail", "script_version", "timestamp",
                 "exit_code"]
report_values = st.one_of(json_values, st.sampled_from(["prod-a", "", "node-7", "join", "discovery", "ready",
                                                        "failed", "ok", "started", "2026-11-20T12:00:00Z",
                                                        "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00",
                                                        "2026-02-30T00:00:00", "x" * 5000]),
                          st.integers(min_value=-2**80, max_value=2**80))
plausible_report = st.fixed_dictionaries({
    "cluster": st.sampled_from(["prod-a", "prod-a", ""]),
    "node": st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,30}[a-z0-9])?", fullmatch=True),
    "phase": st.sampled_from(["discovery", "config", "join", "ready"]),
    "status": st.sampled_from(["started", "ok", "failed", "failed"]),
    "message": st.one_of(free, text, st.text(max_size=2000)),
    "log_tail": st.one_of(free, text, st.text(max_size=1500), st.just("`" * 3 + "\n" * 50 + "x" * 3000)),
    "script_version": st.one_of(free, text),
    "timestamp": st.one_of(st.sampled_from(["2026-11-20T12:00:00Z", "9999-12-31T23:59:59-23:59",
                                            "0001-01-01T00:00:00+14:00", "2026-11-20", "2026-11-20T12:00:00.123456"]),
                           st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())),
}, optional={"exit_code": st.one_of(st.none(), st.integers(min_value=-2**80, max_value=2**80), json_values)})
report_bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.tuples(st.dictionaries(st.sampled_from(REPORT_FIELDS), report_values, max_size=3),
              st.lists(st.sampled_from(REPORT_FIELDS), max_size=2)).map(
        lambda t: json.dumps({**{k: v for k, v in _report().items() if k not in t[1]}, **t[0]}).encode()),
    plausible_report.map(lambda r: json.dumps(r).encode()),
    plausible_report.map(lambda r: json.dumps(r).encode()),
)


def _report() -> dict:
    from tests.nodes_support import report

    return report(node=f"node-{uuid.uuid4().hex[:6]}")


def hook_status_ok(response) -> dict:
    assert response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    if response.status_code >= 400:
        assert isinstance(body.get("error"), str) and body["error"].strip(), body
        assert "error_id" not in body
    return body


@examples(150)
@given(body=report_bodies)
def test_node_join_hook_bodies(quiet_bot, body):
    bot = quiet_bot
    before, seen = row_counts(bot), Seen(bot)
    stamp = int(bot.clock().timestamp())
    response = requests.post(bot.url + "/hooks/node-join", data=body, timeout=10, headers={
        "Content-Type": "application/json", "X-Deckhand-Timestamp": str(stamp),
        "X-Deckhand-Signature": sign_report(HOOK_SECRET, stamp, body)})
    hook_status_ok(response)
    event(f"node-join: {response.status_code}")
    assert response.status_code in (200, 202) or response.status_code >= 400, response.status_code
    if response.status_code >= 400:
        assert row_counts(bot) == before  # nothing half-written
    bot.flush()
    seen.assert_clean()
    assert_outbox_clean(bot)


header_text = st.from_regex(r"[!-~]([ -~]{0,30}[!-~])?", fullmatch=True)  # what an HTTP header can carry
pull_numbers = st.one_of(st.integers(min_value=-2**70, max_value=2**70), st.floats(allow_nan=False), st.booleans(),
                         st.none(), text, st.just(1))


def mostly(likely, other=json_values):
    return st.one_of(likely, likely, likely, other)


github_payloads = st.one_of(
    json_values,
    st.fixed_dictionaries({
        "action": mostly(st.sampled_from(["closed", "closed", "opened", "synchronize"])),
        "number": pull_numbers,
        "pull_request": mostly(st.fixed_dictionaries({
            "number": mostly(st.integers(1, 5), pull_numbers),
            "merged": mostly(st.booleans()),
            "head": mostly(st.fixed_dictionaries({"ref": mostly(
                st.sampled_from(["deckhand/pipeline/payments-api", "deckhand/delete/payments-api-1",
                                 "deckhand/delete/", "deckhand/batch-image/python", "main"])
                | st.tuples(st.sampled_from(["deckhand/pipeline/", "deckhand/delete/"]), text).map("".join))})),
            "merged_by": mostly(st.fixed_dictionaries({"login": mostly(st.just("octocat"))})),
        })),
        "repository": mostly(st.fixed_dictionaries({"full_name": mostly(
            st.sampled_from(["org/deploy-manifests", "ORG/Deploy-Manifests"]))})),
        "sender": json_values,
    }),
)


@examples(150)
@given(kind=st.one_of(st.sampled_from(["pull_request"] * 4 + ["ping", "push", ""]), header_text),
       payload=github_payloads, raw=st.one_of(st.none(), st.none(), st.none(), st.binary(max_size=100)),
       delivery=st.one_of(st.none(), st.uuids().map(str), header_text))
def test_github_hook_bodies(quiet_bot, kind, payload, raw, delivery):
    bot = quiet_bot
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": kind,
               "X-Hub-Signature-256": "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()}
    if delivery is not None:  # unique: a repeated delivery id is (rightly) a duplicate, whatever its body
        headers["X-GitHub-Delivery"] = f"{uuid.uuid4()}-{delivery}"
    before, seen = row_counts(bot), Seen(bot)
    response = requests.post(bot.url + "/hooks/github", data=body, headers=headers, timeout=10)
    event(f"github: {response.status_code} {sorted(response.json())}")
    hook_status_ok(response)
    if response.status_code >= 400:
        assert row_counts(bot) == before  # nothing half-written, not even the delivery id
    bot.flush()
    seen.assert_clean()


# -- button values ---------------------------------------------------------------------------------
ACTIONS = ["service_delete_request", "service_delete_override", "service_delete_approve", "service_delete_reject",
           "service_delete_resume", "canary_step", "canary_promote", "canary_abort", "canary_refresh",
           "idle_request_deletion", "idle_snooze", "idle_keep", "idle_unkeep", "idle_kept_list", "node_alert_ack",
           "node_alert_silence_node_4h", "node_alert_silence_node_24h", "node_alert_silence_cluster_4h",
           "node_alert_silence_cluster_24h", "pipeline_retry", "pipeline_view_pr"]
SILENT = {"pipeline_view_pr"}  # a link button: Slack sends the click, there is nothing to say
# Buttons App Home shows too: clicks from a view carry no response_url (answers go to the user's DM).
ON_HOME = {"service_delete_approve", "service_delete_reject", "canary_step", "canary_promote", "canary_abort",
           "canary_refresh"}
HOME = {"id": "V0HOME", "type": "home", "blocks": [], "callback_id": "", "private_metadata": ""}
button_values = st.one_of(
    text,
    json_values.map(json.dumps),
    st.fixed_dictionaries({"b": st.one_of(st.sampled_from(["istio", "argo"]), json_values),
                           "c": st.one_of(st.sampled_from(["prod-a", "prod-b"]), json_values),
                           "n": st.one_of(st.just("payments"), json_values),
                           "s": st.one_of(st.just("checkout"), json_values)},
                          optional={"seen": json_values, "src": json_values}).map(json.dumps),
    st.tuples(st.sampled_from(["prod-a", "prod-b", "", "a/b"]), text, text).map("/".join),
    st.tuples(st.sampled_from(["", "group:", "group", "x:"]), st.one_of(st.integers(min_value=-2**70, max_value=2**70)
                                                                          .map(str), text)).map("".join),
)


@examples(200)
@given(action=st.sampled_from(ACTIONS), value=button_values, user=st.sampled_from([DEVOPS, PAY_DEV, OUTSIDER]),
       on_home=st.booleans())
@example(action="node_alert_ack", value="1²", user=PAY_DEV, on_home=False)
@example(action="node_alert_silence_node_4h", value="group:" + "9" * 30, user=DEVOPS, on_home=False)
@example(action="service_delete_approve", value="9" * 30, user=DEVOPS, on_home=False)
@example(action="service_delete_reject", value="１", user=DEVOPS, on_home=False)
@example(action="service_delete_request", value='{"c": "prod-a", "n": "payments", "s": "x", "src": [1]}',
         user=DEVOPS, on_home=False)
@example(action="canary_step", value='{"b": "istio", "c": "prod-z", "n": "payments", "s": "checkout"}',
         user=PAY_DEV, on_home=False)
@example(action="canary_abort", value='{"b": "argo", "c": "prod-a", "n": "shop", "s": "../x"}', user=PAY_DEV,
         on_home=False)  # a name that would address another resource in the Kubernetes API path
@example(action="idle_snooze", value="prod-a/shop/" + "x" * 300, user=PAY_DEV, on_home=False)
@example(action="idle_kept_list", value="&" * 2000, user=PAY_DEV, on_home=False)  # a button value: at most 2000
@example(action="pipeline_retry", value="9" * 30, user=PAY_DEV, on_home=False)
@example(action="service_delete_approve", value="1", user=DEVOPS, on_home=True)
@example(action="canary_promote", value='{"b": "argo", "c": "prod-a", "n": "shop", "s": "cart"}', user=PAY_DEV,
         on_home=True)
def test_button_values(quiet_bot, action, value, user, on_home):
    bot = quiet_bot
    before, seen = row_counts(bot, skip=("processed", "audit")), Seen(bot)
    cluster_writes, cluster_calls = len(bot.kube["prod-a"].writes()), len(bot.kube["prod-a"].requests)
    if on_home and action in ON_HOME:
        url = None
        answer = bot.sender.block_actions(action, value=value, user_id=user, channel_id=None, view=HOME)
    else:
        url = bot.slack.response_url("C0PAY", None, user)
        answer = bot.sender.block_actions(action, value=value, user_id=user, channel_id="C0PAY", response_url=url)
    assert answer.status_code == 200, answer.text
    settle(bot)
    seen.assert_clean()
    if action not in SILENT:
        told = seen.told(user, url)
        assert told and all(t.strip() for t in told), f"{action} with {value!r} answered with silence"
    assert row_counts(bot, skip=("processed", "audit")) == before  # a forged value changes nothing,
    assert len(bot.kube["prod-a"].writes()) == cluster_writes        # here or in the cluster,
    # and never steers deckhand to a resource it has no business with ("s": "../secrets/x").
    allowed = rbac_rules()
    for call in bot.kube["prod-a"].requests[cluster_calls:]:
        used = classify(call.method, call.path.split("?")[0], call.query.get("watch") in ("1", "true"))
        assert used is None or used in allowed, (call.method, call.path)
