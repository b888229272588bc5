"""Property-based tests over every webhook body and button value (see tests/fuzz_support.py)."""
from tests.fuzz_support import *  # noqa: F401,F403 - strategies, fixtures and checks shared by the fuzz tests


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
    from tests.nodes.nodes_support import report

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
    grants = rbac_grants()
    for call in bot.kube["prod-a"].requests[cluster_calls:]:
        used = classify(call.method, call.path.split("?")[0], call.query.get("watch") in ("1", "true"))
        assert used is None or any(g.allows(used) for g in grants), (call.method, call.path)
