"""Ack latency: how long Slack waits for deckhand's HTTP 200 while every backend is slow.

The bot runs as `python app.py` (HTTP mode, waitress) with the Slack, Kubernetes and GitHub
fakes and a Prometheus that each take `--backend-latency` (1 s) to answer anything. Signed
requests go to /slack/events, `--concurrency` at a time, in four phases of a quarter of
`--requests` each: slash commands, button clicks, modal submissions, and the three mixed.
Between phases the bot is left to finish the work it queued, so phases do not bleed into each
other. Slack gives an app 3 s; the target is p99 < 100 ms.

Buttons and modals use the action_ids and callback_ids the command modules really register
(found by running their register() against a recorder); while a feature has registered none,
the benchmark sends an unregistered id, which Bolt answers with 404 through the same path.
"""
from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.common import (
    DEVOPS, PAY_DEV, SIGNING_SECRET, Backends, BotProcess, Options, Result, Sent, benchmark, cluster_entry, log,
    request_builder, send_all, summarize, wait_quiet, write_config,
)
from bench.fleet import seed_services

TARGET_MS = 100.0
PHASES = ("command", "button", "modal", "mixed")
COMMANDS = [
    ("/ops", "help"), ("/ops", "jobs"), ("/ops", "audit"), ("/ops", "savings"),
    ("/canary", ""), ("/canary", "list"), ("/canary", "svc-0001 prod-a"),
    ("/service", "deps svc-0001"), ("/service", "deps svc-0002 prod-a"), ("/service", "delete svc-0003 prod-a"),
    ("/pipeline", "list"), ("/pipeline", "list payments"), ("/pipeline", "create"), ("/pipeline", "edit svc-0001"),
]
UNREGISTERED_ACTION = "bench_unregistered_button"
UNREGISTERED_VIEW = "bench_unregistered_modal"
PHASE_SECONDS = 40.0  # each phase stops sending after this, so the whole run stays bounded
DRAIN_SECONDS = 30.0  # at most this long to let the bot finish the work a phase queued


class _Recorder:
    """Stands in for the Bolt App while commands.register_all runs: records what each listener
    is registered for instead of wiring it."""

    def __init__(self):
        self.seen: dict[str, list[Any]] = defaultdict(list)

    def __getattr__(self, kind: str):
        def register(*args: Any, **_kwargs: Any):
            if args:
                self.seen[kind].append(args[0])
            return lambda fn=None, *a, **k: fn

        return register


def registered_listeners(config_path: str, workdir: Path, slack_api_url: str) -> dict[str, list[str]]:
    """{"actions": [action_id...], "views": [callback_id...]} registered with plain string ids."""
    import commands
    from bot.foundation.config import Secrets, load_settings
    from bot.foundation.context import build_context

    secrets = Secrets(slack_bot_token="xoxb-bench", slack_signing_secret=SIGNING_SECRET, slack_app_token=None,
                      slack_api_url=slack_api_url, github_token=None, hook_secret=None, github_webhook_secret=None)
    ctx = build_context(load_settings(config_path), secrets, str(workdir / "discover.db"))
    recorder = _Recorder()
    try:
        commands.register_all(recorder, ctx)
    finally:
        ctx.store.close()

    def ids(constraints: list[Any], key: str, only_type: str | None = None) -> list[str]:
        found = []
        for c in constraints:
            if isinstance(c, dict):
                if only_type and c.get("type", only_type) != only_type:
                    continue
                c = c.get(key)
            if isinstance(c, str) and c not in found:
                found.append(c)
        return found

    views = ids(recorder.seen["view"], "callback_id", "view_submission") + ids(recorder.seen["view_submission"], "callback_id")
    return {"actions": ids(recorder.seen["action"] + recorder.seen["block_action"], "action_id"),
            "views": list(dict.fromkeys(views))}


def build_requests(builder, phase: str, count: int, listeners: dict[str, list[str]]) -> list:
    actions = listeners["actions"] or [UNREGISTERED_ACTION]
    views = listeners["views"] or [UNREGISTERED_VIEW]
    users = (DEVOPS, PAY_DEV)
    out = []
    for i in range(count):
        kind = phase if phase != "mixed" else ("command", "button", "modal")[i % 3]
        n = i if phase != "mixed" else i // 3  # each kind walks its own list, whatever the interleaving
        user = users[n % len(users)]
        if kind == "command":
            command, text = COMMANDS[n % len(COMMANDS)]
            request = builder.command(command, text, user_id=user, channel_id="C0PAY", kind=phase)
        elif kind == "button":
            request = builder.block_actions(actions[n % len(actions)], value="bench", user_id=user,
                                            channel_id="C0PAY", kind=phase)
        else:
            request = builder.view_submission(views[n % len(views)], values={}, user_id=user, kind=phase)
        if phase == "mixed":
            request.name = f"{kind}: {request.name}"
        out.append(request)
    return out


def expected_status(request_name: str, listeners: dict[str, list[str]]) -> int:
    """Bolt answers 404 to an id nobody registered; everything else must be a 200."""
    unregistered = ((not listeners["actions"] and UNREGISTERED_ACTION in request_name)
                    or (not listeners["views"] and UNREGISTERED_VIEW in request_name))
    return 404 if unregistered else 200


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items()}


def run_phases(opts: Options, backends: Backends, bot: BotProcess, listeners: dict[str, list[str]],
               phases: tuple[str, ...], per_phase: dict[str, int]) -> tuple[dict, dict, dict]:
    """Send each phase's requests, then wait until the backends go quiet (the bot finished the
    work those requests queued). Returns, per phase: what was sent, the backend calls it caused,
    and {"bot_busy_after_phase_s": ..., "bot_cpu_ms_per_request": ...}."""
    builder = request_builder(bot.url, SIGNING_SECRET, backends.slack)
    sent: dict[str, list[Sent]] = {}
    calls: dict[str, dict] = {}
    drain: dict[str, float] = {}
    cpu_ms: dict[str, float] = {}  # bot CPU per answered request while the phase was being sent
    for phase in phases:
        requests = build_requests(builder, phase, per_phase[phase], listeners)
        before = backends.request_counts()
        log(f"ack: {len(requests)} {phase} requests, {opts.concurrency} at a time")
        cpu_before = bot.cpu_seconds()
        sent[phase] = send_all(bot.url, requests, opts.concurrency, SIGNING_SECRET, time_limit=PHASE_SECONDS)
        answered = sum(1 for s in sent[phase] if s.status is not None) or 1
        cpu_ms[phase] = round((bot.cpu_seconds() - cpu_before) * 1000 / answered, 2)
        drained = wait_quiet(backends.request_counts, quiet=opts.backend_latency + 1.5, limit=DRAIN_SECONDS)
        calls[phase] = delta(backends.request_counts(), before)
        drain[phase] = round(drained, 1)
        log(f"ack: {phase} sent; bot went quiet {drained:.0f}s later"
            f"{' (still busy: gave up waiting)' if drained >= DRAIN_SECONDS else ''}; backend calls {calls[phase]}")
    return sent, calls, {"bot_busy_after_phase_s": drain, "bot_cpu_ms_per_request": cpu_ms}


def first_request(backends: Backends, bot: BotProcess) -> Result:
    """The first request after startup, alone: whatever Bolt or deckhand does once, lazily, shows here."""
    methods_before = len(backends.slack.calls)
    builder = request_builder(bot.url, SIGNING_SECRET, backends.slack)
    [sent] = send_all(bot.url, [builder.command("/ops", "help", user_id=DEVOPS)], 1, SIGNING_SECRET)
    wait_quiet(backends.request_counts, quiet=1.5, limit=DRAIN_SECONDS)
    methods = [c.method for c in backends.slack.calls[methods_before:]]
    ms = round(sent.seconds * 1000, 2) if sent.seconds is not None else None
    log(f"ack: first request after startup answered {sent.status} in {ms} ms; Slack calls meanwhile: {methods}")
    row = Result.below("ack first request after start", ms, "ms", TARGET_MS,
                       calls={"slack": len(methods)}, details={"status": sent.status, "slack_methods": methods})
    if sent.status != 200:
        row.met = False
    return row


def phase_rows(label: str, sent: list[Sent], listeners: dict[str, list[str]], calls: dict | None) -> list[Result]:
    answered = [s for s in sent if s.status is not None]
    stats = summarize(s.seconds for s in answered)
    statuses: dict[str, int] = defaultdict(int)
    unexpected = []
    for s in sent:
        statuses[str(s.status) if s.status is not None else (s.error or "no answer")] += 1
        if s.status != expected_status(s.name, listeners):
            unexpected.append(f"{s.name}: {s.status or s.error}")
    slowest = sorted(answered, key=lambda s: s.seconds, reverse=True)[:5]
    details = {**stats, "statuses": dict(statuses), "unexpected": unexpected[:20], "unexpected_count": len(unexpected),
               "slowest": [{"name": s.name, "ms": round(s.seconds * 1000, 1), "status": s.status} for s in slowest]}
    p99 = Result.below(f"ack {label} p99", stats["p99"], "ms", TARGET_MS, calls=calls, details=details)
    if unexpected:
        p99.met = False  # a 404 after Bolt's 3 s ack timeout, a 5xx or no answer is not an ack, however fast
    return [Result(f"ack {label} p50", stats["p50"], "ms", details={"n": stats["n"]}), p99,
            Result(f"ack {label} max", stats["max"], "ms", details={"n": stats["n"]})]


def profile(opts: Options, backends: Backends, config: str, listeners: dict[str, list[str]]) -> dict[str, Any]:
    """Run the mixed phase again under bench/profiled_app.py; keep its reports in bench/profiles/."""
    out = opts.workdir / "profile"
    count = min(100, max(30, opts.requests // 4))
    bot = BotProcess(opts.workdir / "profiled-bot", config, backends.slack, script="bench/profiled_app.py",
                     env={"BENCH_PROFILE_DIR": str(out)})
    with bot:
        first_request(backends, bot)
        log(f"ack: profiling {count} mixed requests (pyinstrument per request + thread sampler)")
        sent, _, _ = run_phases(opts, backends, bot, listeners, ("mixed",), {"mixed": count})
    opts.profile_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in ("first-request.txt", "requests.txt", "threads.txt"):
        if (out / name).exists():
            dest = opts.profile_dir / f"ack-{name}"
            shutil.copyfile(out / name, dest)
            files[name] = str(dest.relative_to(opts.profile_dir.parent.parent))
    threads = (out / "threads.txt").read_text() if (out / "threads.txt").exists() else "(no thread report)"
    log("ack profile, threads:\n" + threads)
    return {"files": files, "threads": threads, "profiled": summarize(s.seconds for s in sent["mixed"] if s.seconds)}


@benchmark("ack", order=10)
def ack_latency(opts: Options) -> list[Result]:
    latency = opts.backend_latency
    with Backends(opts.workdir) as backends:
        slack = backends.slack_fake(latency=latency)
        kube = backends.kube_fake(latency=latency)
        seed_services(kube, 20)
        github = backends.github_fake(latency=latency)
        prometheus = backends.slow_prometheus(delay=latency)
        kubeconfig = backends.kubeconfig({"prod-a": kube})
        config = write_config(opts.workdir / "deckhand.yaml", [cluster_entry("prod-a", kubeconfig, prometheus.url)],
                              github.url)
        listeners = registered_listeners(config, opts.workdir, slack.api_url)
        log(f"ack: registered action_ids {listeners['actions'] or 'none'}; callback_ids {listeners['views'] or 'none'}")
        quarter = opts.requests // 4
        per_phase = {"command": quarter, "button": quarter, "modal": quarter, "mixed": opts.requests - 3 * quarter}
        with BotProcess(opts.workdir / "bot", config, slack) as bot:
            log(f"ack: bot pid {bot.pid} up in {bot.startup_seconds:.1f}s at {bot.url}")
            cold = first_request(backends, bot)
            sent, calls, load = run_phases(opts, backends, bot, listeners, PHASES, per_phase)

        rows: list[Result] = [cold]
        labels = {"command": "slash commands", "button": "button clicks", "modal": "modal submissions", "mixed": "mixed"}
        for phase in PHASES:
            rows += phase_rows(labels[phase], sent[phase], listeners, calls[phase])
            rows[-2].details.update({key: values[phase] for key, values in load.items()})
        everything = [s for phase in PHASES for s in sent[phase]]
        total_calls = {k: sum(c.get(k, 0) for c in calls.values()) for k in calls[PHASES[0]]}
        rows += phase_rows("overall", everything, listeners, total_calls)
        for row in rows:
            row.details.update({"backend_latency_s": latency, "concurrency": opts.concurrency,
                                "registered": listeners})
        missed = any(r.met is False for r in rows)
        if opts.profile == "always" or (opts.profile == "auto" and missed):
            overall = next(r for r in rows if r.name == "ack overall p99")
            overall.details["profile"] = profile(opts, backends, config, listeners)
    return rows
