"""Outside text is data: every blocks/ renderer, fed hostile strings, leaves no live mrkdwn control
sequence (`<!channel>`, a `<url|label>` link, an entity, a code fence break-out) in anything Slack
would parse. The inputs are those of the golden-file tests, with hostile text put into one string
of the input at a time; a string the renderer treats as a choice (a state, a kind) may make it
raise, and is skipped: it cannot reach a message. A test also attacks the real alert path: a
join report's log tail and a CSR signer name go to the alerts channel inert."""
from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import blocks
from blocks.common import code, escape

HOSTILE = " <!channel> <https://evil.example/x.sh|click> &lt;zq&gt; ```<!here>``` <@U0EVIL> <#C0EVIL> "
LIVE = ("<!channel>", "<!here>", "<https://evil.example", "&lt;zq&gt;", "<@U0EVIL>", "<#C0EVIL>")
# Parameters that take mrkdwn another renderer (or the listener's own fixed text) built, by design.
BUILT_MRKDWN = {("canary.card_blocks", "note"), ("canary.status_message", "note"), ("canary.gone_message", "note"),
                ("idle.kept_list_modal", "note"), ("pipeline.notice_modal", "text"), ("pipeline.loading_modal", "text"),
                ("waves.notice", "text"), ("node_history.sections", "lines")}
# A button value and block ids: Slack shows them to no one.
NOT_MRKDWN = {"service.target_value", "idle_report.list_block_id", "idle_report.parse_block_id"}
RENDERER_MODULES = ["audit", "canary", "home", "idle", "idle_report", "node_history", "nodes", "ops", "pipeline",
                    "service", "waves"]
GOLDEN_TESTS = ["tests.canary.test_canary_blocks", "tests.deletion.test_service_blocks", "tests.idle.test_idle_blocks",
                "tests.idle.test_idle_report_blocks", "tests.nodes.test_node_history_blocks",
                "tests.nodes.test_nodes_blocks", "tests.nodes.test_wave_plan", "tests.pipelines.test_pipeline_blocks"]


def parsed_texts(payload: Any, top: bool = True) -> list[str]:
    """Every string Slack parses as mrkdwn: mrkdwn text objects, and a message's top-level `text`."""
    found: list[str] = []
    if isinstance(payload, dict):
        if payload.get("type") == "mrkdwn" and isinstance(payload.get("text"), str):
            found.append(payload["text"])
        elif top and isinstance(payload.get("text"), str) and payload.get("type") is None:
            found.append(payload["text"])
        for key, value in payload.items():
            if key not in ("text",) or isinstance(value, (dict, list)):
                found += parsed_texts(value, top=False)
    elif isinstance(payload, (list, tuple)):
        for value in payload:
            found += parsed_texts(value, top=top)
    elif isinstance(payload, str) and top:
        found.append(payload)  # a renderer that returns mrkdwn text itself
    return found


def live_controls(payload: Any) -> list[str]:
    return [f"{marker!r} in {text[:200]!r}" for text in parsed_texts(payload) for marker in LIVE if marker in text]


def string_paths(value: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in string_paths(v, path + (k,))]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in string_paths(v, path + (i,))]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [p for f in dataclasses.fields(value) for p in string_paths(getattr(value, f.name), path + (f.name,))]
    return []


def poisoned(value: Any, path: tuple) -> Any:
    if not path:
        return value + HOSTILE
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: poisoned(value[head], rest)}
    if isinstance(value, list):
        return value[:head] + [poisoned(value[head], rest)] + value[head + 1:]
    if isinstance(value, tuple):
        return value[:head] + (poisoned(value[head], rest),) + value[head + 1:]
    return dataclasses.replace(value, **{head: poisoned(getattr(value, head), rest)})


def recorded_calls(monkeypatch) -> list[tuple[str, Any, tuple, dict]]:
    """Run the golden-file tests with every public renderer wrapped, and keep each call's inputs."""
    calls: list[tuple[str, Any, tuple, dict]] = []
    originals = {}
    for name in RENDERER_MODULES:
        module = importlib.import_module(f"blocks.{name}")
        for attr, fn in vars(module).items():
            if inspect.isfunction(fn) and not attr.startswith("_") and fn.__module__ == module.__name__:
                originals[fn] = f"{name}.{attr}"

    def wrap(fn, label):
        @functools.wraps(fn)  # inspect.signature sees the renderer's own parameters
        def recording(*args, **kwargs):
            calls.append((label, fn, args, kwargs))
            return fn(*args, **kwargs)
        return recording

    wrappers = {fn: wrap(fn, label) for fn, label in originals.items()}
    for name in RENDERER_MODULES:
        module = importlib.import_module(f"blocks.{name}")
        for attr, fn in list(vars(module).items()):
            if inspect.isfunction(fn) and fn in wrappers:
                monkeypatch.setattr(module, attr, wrappers[fn])
    for test_module_name in GOLDEN_TESTS:
        test_module = importlib.import_module(test_module_name)
        for attr, fn in list(vars(test_module).items()):
            if inspect.isfunction(fn) and fn in wrappers:
                monkeypatch.setattr(test_module, attr, wrappers[fn])
        monkeypatch.setattr(test_module, "assert_golden", lambda *a, **k: None, raising=False)
        for attr, fn in list(vars(test_module).items()):
            if attr.startswith("test_") and inspect.isfunction(fn):
                for args in parametrized(fn):
                    try:
                        fn(*args)
                    except AssertionError:
                        pass  # a golden comparison or a limit check; the inputs are recorded either way
    return calls


def parametrized(fn) -> list[tuple]:
    params = inspect.signature(fn).parameters
    if not params:
        return [()]
    for mark in getattr(fn, "pytestmark", []):
        if mark.name == "parametrize":
            names = [n.strip() for n in mark.args[0].split(",")] if isinstance(mark.args[0], str) else mark.args[0]
            if list(params) == names:
                return [tuple(v) if len(names) > 1 else (v,) for v in mark.args[1]]
    return []  # needs fixtures: its renderer is covered by another test's inputs


def more_calls() -> list[tuple[str, Any, tuple, dict]]:
    """Renderers the golden-file tests do not call, with plausible inputs of their own."""
    from blocks import audit, home, idle_report, node_history, ops, waves
    from tests.deletion.test_service_blocks import request

    row = {"id": 7, "at": "2026-11-20T12:00:00", "actor": "U0DEVOPS1", "action": "service.delete", "target": "checkout",
           "cluster": "prod-a", "result": "ok", "params": '{"reason": "unused for 30 days"}',
           "permalink": "https://example.slack.com/archives/C0AUDIT/p1"}
    now = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
    home_args = {"user": "U0DEVOPS1", "is_devops": True, "teams": ["payments"], "canaries": [], "traffic": {},
                 "pulls": [{"target": "payments-api", "action": "create", "state": "open", "pr_number": 3,
                            "pr_url": "https://github.example.com/org/repo/pull/3", "updated_at": "2026-11-20T11:00:00+00:00"}],
                 "canary_errors": ["prod-b: Prometheus did not answer"], "awaiting": [request()], "mine": [],
                 "incidents": [{"cluster": "prod-a", "node": "node-7", "reason": "join-failed", "acked_by": "U0PAYDEV",
                                "failing_since": "2026-11-20T11:00:00+00:00"}], "now": now}
    return [
        ("audit.audit_line", audit.audit_line, (row,), {}),
        ("audit.audit_feed_message", audit.audit_feed_message, ([row, {**row, "id": 8}],), {}),
        ("ops.audit_message", ops.audit_message, ([row], "checkout"), {}),
        ("ops.help_message", ops.help_message, ([("/ops", ["help", "run <job>"], "jobs and audit")],), {}),
        ("ops.savings_message", ops.savings_message,
         ([{"month": "2026-11", "team": "payments", "cpu_cores": 2.0, "memory_bytes": 2**30, "actions": 3}],), {}),
        ("ops.jobs_message", ops.jobs_message, ([{"name": "idle-scan", "schedule": "0 10 * * 1-5", "next_run": "tomorrow",
                                                 "last": {"outcome": "ok", "ended_at": "2026-11-20T10:00:00",
                                                          "detail": "3 idle"}}],), {}),
        ("home.home_view", home.home_view, (), home_args),
        ("node_history.ambiguous_text", node_history.ambiguous_text, ("node-7", ["prod-a", "prod-b"]), {}),
        ("node_history.unknown_node_text", node_history.unknown_node_text, ("node-9", ["prod-a"], ["prod-b"]), {}),
        ("node_history.waves_text", node_history.waves_text, (), {}),
        ("waves.plan_modal", waves.plan_modal, (["prod-a", "prod-b"], "node-role.kubernetes.io/*", "45m", "C0OPS"), {}),
        ("waves.notice", waves.notice, ("Started.",), {}),
        ("idle_report.list_block_id", idle_report.list_block_id, ("payments", "prod-a/shop/cart"), {}),
        ("idle_report.parse_block_id", idle_report.parse_block_id, ("idle-list:payments|prod-a/shop/cart",), {}),
    ]


def test_every_renderer_leaves_no_live_control_sequence_from_outside_text(monkeypatch):
    every = {f"{name}.{attr}" for name in RENDERER_MODULES  # before recorded_calls wraps them
             for attr, fn in vars(importlib.import_module(f"blocks.{name}")).items()
             if inspect.isfunction(fn) and not attr.startswith("_") and fn.__module__ == f"blocks.{name}"}
    assert len(every) > 40
    calls = recorded_calls(monkeypatch) + more_calls()
    covered = {label for label, *_ in calls}
    problems = []
    per_renderer: dict[str, int] = {}
    for label, fn, args, kwargs in calls:
        paths = string_paths((args, kwargs))
        if len(paths) > 400 or per_renderer.get(label, 0) >= 4:
            continue  # the long-list inputs repeat the same fields; a few inputs per renderer cover them
        if label in NOT_MRKDWN:
            continue
        per_renderer[label] = per_renderer.get(label, 0) + 1
        params = list(inspect.signature(fn).parameters)
        for path in paths:
            param = params[path[1]] if path[0] == 0 and path[1] < len(params) else path[1]
            if (label, param) in BUILT_MRKDWN:
                continue
            hostile_args, hostile_kwargs = poisoned((list(args), kwargs), path)
            try:
                rendered = fn(*hostile_args, **hostile_kwargs)
            except Exception:
                continue  # a choice, not text: it never reaches a message
            problems += [f"{label} {path}: {p}" for p in live_controls(rendered)]
    assert every - covered - {label for label, *_ in more_calls()} == set()
    assert not problems, "\n".join(sorted(set(problems))[:60])


def test_code_blocks_escape_and_cannot_be_broken_out_of():
    rendered = code("line 1\n```\n<!channel> <https://evil.example/x.sh|click> & done")
    assert rendered.startswith("```") and rendered.endswith("```") and rendered.count("```") == 2
    assert "<!channel>" not in rendered and "<https://evil" not in rendered and "&amp; done" in rendered
    assert escape("&lt;") == "&amp;lt;"


def test_a_join_report_and_a_csr_signer_reach_the_alerts_channel_inert(bot):
    from tests.nodes.nodes_support import post_report, report

    answer = post_report(bot, report(log_tail="boom" + HOSTILE, message="kubeadm" + HOSTILE,
                                     script_version="1.0" + HOSTILE[:20]))
    assert answer.status_code == 202
    now = bot.clock()
    created = (now - timedelta(minutes=30)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    bot.kube_fake().add({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                         "metadata": {"name": "csr-evil", "creationTimestamp": created},
                         "spec": {"signerName": "kubernetes.io/kubelet-serving" + HOSTILE.replace(" ", ""),
                                  "username": "system:node:worker-9" + HOSTILE.replace(" ", ""),
                                  "request": "", "usages": ["digital signature"]},
                         "status": {}})
    bot.run_job("node-scan")
    bot.flush()
    posted = [c.args for c in bot.slack.calls if c.method in ("chat.postMessage", "chat.update")]
    assert posted
    assert not live_controls([{"text": p.get("text"), "blocks": json.loads(p["blocks"]) if isinstance(
        p.get("blocks"), str) else p.get("blocks")} for p in posted])
