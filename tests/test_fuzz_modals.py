"""Property-based tests over every modal's fields (see tests/fuzz_support.py for the properties)."""
from tests.fuzz_support import *  # noqa: F401,F403 - strategies, fixtures and checks shared by the fuzz tests


# -- modals ----------------------------------------------------------------------------------------
PIPELINE_TEXT = ["service", "repo", "image", "port", "health_path", "schedule", "tag_policy", "replicas",
                 "cpu_request", "cpu_limit", "memory_request", "memory_limit", "env"]
PIPELINE_SELECT = {"team": ["payments", "search"], "kind": ["api", "worker", "batch"],
                   "strategy": ["canary", "blue-green"]}
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
    from tests.pipelines.test_pipeline_kit import POINTER, REPO, api_form, open_modal, seed_pipeline

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
    from tests.pipelines.test_pipeline_kit import REPO, api_form, batch_form

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
    from tests.deletion.test_service_world import button, report_of, start

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
    from bot.deletion import lifecycle

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
    from tests.idle.test_idle_actions import GIFT_CARDS, posted_digest
    from tests.idle.test_idle_world import idle_bot

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
    from tests.idle.test_idle_actions import GIFT_CARDS, state

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
