"""Ack latency: how long Slack waits for deckhand's HTTP 200 while every backend is slow, as a ratio
to the limit: a bare slack-bolt app on the same server stack.

The bot runs as `python app.py` (HTTP mode, waitress) with the Slack, Kubernetes and GitHub
fakes and a Prometheus that each take `--backend-latency` (1 s) to answer anything. Signed
requests go to /slack/events, `--concurrency` at a time, in four phases of a quarter of
`--requests` each: slash commands, button clicks, modal submissions, and the three mixed.
Between phases the bot is left to finish the work it queued, so phases do not bleed into each
other. The requests come from 20 users (the team in the tests' config and bench-only outsiders),
so the per-user share (commands/pool.py) admits most of them and the work behind the acks is real.

The baseline is bench/bare_app.py: Bolt's Flask adapter on waitress with the same thread counts,
listeners that only ack(). It gets the SAME requests from the same load generator, phase by phase,
interleaved with deckhand's (deckhand first in odd phases, the bare app first in even ones), so
machine noise from the other tenants of this shared machine hits both. Per phase: p50/p99 of both
and deckhand p99 / bare p99. Targets: the ratio <= 1.5 and deckhand p99 < 50 ms in every phase.

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
    DEVOPS, DEVOPS2, PAY_DEV, PAY_DEV2, SIGNING_SECRET, Backends, BotProcess, Options, Result, Sent, benchmark, log,
    request_builder, send_all, summarize, wait_quiet,
)
from bench.fleet import slow_world
from bench.load import LoadProcess

TARGET_MS = 50.0
TARGET_RATIO = 1.5
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
# At most this long to let the bot finish the work a phase queued. 100 commands whose answers take a few
# 1 s backend calls each, on 8 listener workers, keep deckhand busy 35-50 s (and a click phase's 30
# refusals, sent one per second by the notice thread, ~40 s): at 30 s the next phase started while the
# last one's work still ran, so it measured deckhand acking under that work while the bare app, always
# quiet within 3 s, acked under none.
DRAIN_SECONDS = 90.0


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


USERS = (DEVOPS, DEVOPS2, PAY_DEV, PAY_DEV2, *(f"U0BENCH{n:02d}" for n in range(16)))
REFUSED = "did not run this one"  # commands/pool.py refusal_text


def build_requests(builder, phase: str, count: int, listeners: dict[str, list[str]]) -> list:
    actions = listeners["actions"] or [UNREGISTERED_ACTION]
    views = listeners["views"] or [UNREGISTERED_VIEW]
    users = USERS
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


def run_phases(opts: Options, backends: Backends, targets: list[tuple[str, BotProcess]],
               listeners: dict[str, list[str]], phases: tuple[str, ...], per_phase: dict[str, int],
               load_process: LoadProcess | None = None) -> tuple[dict, dict, dict]:
    """For each phase, send its requests to every target (`targets` = [(label, process)]; the order
    alternates phase by phase), then wait until the backends go quiet (the bot finished the work
    those requests queued). Returns, per label and phase: what was sent, the backend calls it
    caused, and {"bot_busy_after_phase_s": ..., "bot_cpu_ms_per_request": ..., "refused": ...}."""
    sent: dict[str, dict[str, list[Sent]]] = {label: {} for label, _ in targets}
    calls: dict[str, dict[str, dict]] = {label: {} for label, _ in targets}
    load: dict[str, dict[str, dict]] = {label: {"bot_busy_after_phase_s": {}, "bot_cpu_ms_per_request": {},
                                                "refused": {}} for label, _ in targets}
    for index, phase in enumerate(phases):
        order = targets if index % 2 == 0 else list(reversed(targets))
        for label, bot in order:
            builder = request_builder(bot.url, SIGNING_SECRET, backends.slack)
            requests = build_requests(builder, phase, per_phase[phase], listeners)
            before = backends.request_counts()
            responses_before = len(backends.slack.responses)
            log(f"ack: {len(requests)} {phase} requests to {label}, {opts.concurrency} at a time")
            cpu_before = bot.cpu_seconds()
            sender = load_process.send_all if load_process is not None else send_all
            sent[label][phase] = sender(bot.url, requests, opts.concurrency, SIGNING_SECRET, time_limit=PHASE_SECONDS)
            answered = sum(1 for s in sent[label][phase] if s.status is not None) or 1
            load[label]["bot_cpu_ms_per_request"][phase] = round((bot.cpu_seconds() - cpu_before) * 1000 / answered, 2)
            drained = wait_quiet(backends.request_counts, quiet=opts.backend_latency + 1.5, limit=DRAIN_SECONDS)
            calls[label][phase] = delta(backends.request_counts(), before)
            load[label]["bot_busy_after_phase_s"][phase] = round(drained, 1)
            load[label]["refused"][phase] = sum(1 for r in backends.slack.responses[responses_before:]
                                                if REFUSED in (r.get("text") or ""))
            log(f"ack: {phase} sent to {label}; quiet {drained:.0f}s later"
                f"{' (still busy: gave up waiting)' if drained >= DRAIN_SECONDS else ''}; backend calls "
                f"{calls[label][phase]}; refused by the per-user share: {load[label]['refused'][phase]}")
    return sent, calls, load


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


def phase_rows(label: str, sent: list[Sent], listeners: dict[str, list[str]] | None, calls: dict | None,
               bare: list[Sent] | None = None) -> list[Result]:
    """p50, p99 (target < TARGET_MS), max of deckhand; with `bare`: the bare app's p50/p99 and the
    p99 ratio (target <= TARGET_RATIO). `listeners` None: every request must be a 200 (the bare app)."""
    stats, details, unexpected = _stats(sent, listeners)
    p99 = Result.below(f"ack {label} p99", stats["p99"], "ms", TARGET_MS, calls=calls, details=details)
    if unexpected:
        p99.met = False  # a 404 after Bolt's 3 s ack timeout, a 5xx or no answer is not an ack, however fast
    rows = [Result(f"ack {label} p50", stats["p50"], "ms", details={"n": stats["n"]}), p99,
            Result(f"ack {label} max", stats["max"], "ms", details={"n": stats["n"]})]
    if bare is None:
        return rows
    base, base_details, base_unexpected = _stats(bare, None)
    rows.append(Result(f"ack {label} p50, bare Bolt", base["p50"], "ms", details={"n": base["n"]}))
    rows.append(Result(f"ack {label} p99, bare Bolt", base["p99"], "ms", details=base_details))
    ratio = round(stats["p99"] / base["p99"], 2) if stats["p99"] and base["p99"] else None
    row = Result.at_most(f"ack {label} p99 / bare Bolt p99", ratio, "x", TARGET_RATIO,
                         details={"deckhand_p99_ms": stats["p99"], "bare_p99_ms": base["p99"],
                                  "deckhand_p50_ms": stats["p50"], "bare_p50_ms": base["p50"],
                                  "p50_ratio": round(stats["p50"] / base["p50"], 2) if stats["p50"] and base["p50"] else None})
    if unexpected or base_unexpected:
        row.met = False
        row.details["problem"] = f"unexpected answers: deckhand {unexpected[:5]}, bare {base_unexpected[:5]}"
    rows.append(row)
    return rows


def _stats(sent: list[Sent], listeners: dict[str, list[str]] | None) -> tuple[dict, dict, list[str]]:
    answered = [s for s in sent if s.status is not None]
    stats = summarize(s.seconds for s in answered)
    statuses: dict[str, int] = defaultdict(int)
    unexpected = []
    for s in sent:
        statuses[str(s.status) if s.status is not None else (s.error or "no answer")] += 1
        expected = 200 if listeners is None else expected_status(s.name, listeners)
        if s.status != expected:
            unexpected.append(f"{s.name}: {s.status or s.error}")
    slowest = sorted(answered, key=lambda s: s.seconds, reverse=True)[:5]
    details = {**stats, "statuses": dict(statuses), "unexpected": unexpected[:20], "unexpected_count": len(unexpected),
               "slowest": [{"name": s.name, "ms": round(s.seconds * 1000, 1), "status": s.status} for s in slowest]}
    return stats, details, unexpected


def profile(opts: Options, backends: Backends, config: str, listeners: dict[str, list[str]]) -> dict[str, Any]:
    """Run the mixed phase again under bench/profiled_app.py; keep its reports in bench/profiles/."""
    out = opts.workdir / "profile"
    count = min(100, max(30, opts.requests // 4))
    bot = BotProcess(opts.workdir / "profiled-bot", config, backends.slack, script="bench/profiled_app.py",
                     env={"BENCH_PROFILE_DIR": str(out)})
    with bot:
        first_request(backends, bot)
        log(f"ack: profiling {count} mixed requests (pyinstrument per request + thread sampler)")
        with LoadProcess() as load_process:
            sent, _, _ = run_phases(opts, backends, [("profiled", bot)], listeners, ("mixed",), {"mixed": count},
                                    load_process)
    opts.profile_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in ("first-request.txt", "requests.txt", "threads.txt"):
        if (out / name).exists():
            dest = opts.profile_dir / f"ack-{name}"
            shutil.copyfile(out / name, dest)
            files[name] = str(dest.relative_to(opts.profile_dir.parent.parent))
    threads = (out / "threads.txt").read_text() if (out / "threads.txt").exists() else "(no thread report)"
    log("ack profile, threads:\n" + threads)
    return {"files": files, "threads": threads,
            "profiled": summarize(s.seconds for s in sent["profiled"]["mixed"] if s.seconds)}


def socket_mode_rows(opts: Options, backends: Backends, config: str, listeners: dict[str, list[str]],
                     per_phase: dict[str, int]) -> list[Result]:
    """The same phases over Socket Mode: `python app.py` with SLACK_APP_TOKEN connects to the Slack
    fake's Socket Mode gateway; each request's body goes as an envelope, timed from sending it to the
    app's envelope ack (what Slack waits for)."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.fakes.slack import SocketModeGateway, SocketModeSender

    gateway = SocketModeGateway(backends.slack).start()
    rows: list[Result] = []
    try:
        env = {"SLACK_APP_TOKEN": gateway.app_token, "SLACK_SIGNING_SECRET": ""}
        with BotProcess(opts.workdir / "socket-bot", config, backends.slack, env=env) as bot:
            gateway.wait_for_connections(1, timeout=30)
            sender = SocketModeSender(gateway, timeout=10)
            builder = request_builder("http://socket-mode.invalid", SIGNING_SECRET, backends.slack)
            for phase in PHASES:
                requests = build_requests(builder, phase, per_phase[phase], listeners)
                log(f"ack: {len(requests)} {phase} envelopes over Socket Mode, {opts.concurrency} at a time")

                def send(request):
                    try:
                        answer = sender.raw(request.body, content_type=request.headers.get("Content-Type"))
                        return answer.ack.elapsed
                    except AssertionError:  # AckTimeout: no ack within 10 s
                        return None

                with ThreadPoolExecutor(max_workers=opts.concurrency) as pool:
                    elapsed = list(pool.map(send, requests))
                acked = [e for e in elapsed if e is not None]
                stats = summarize(acked)
                wait_quiet(backends.request_counts, quiet=opts.backend_latency + 1.5, limit=DRAIN_SECONDS)
                details = {**stats, "unacked": len(elapsed) - len(acked)}
                rows.append(Result(f"ack over Socket Mode {LABELS[phase]} p50", stats["p50"], "ms",
                                   details={"n": stats["n"]}))
                rows.append(Result(f"ack over Socket Mode {LABELS[phase]} p99", stats["p99"], "ms", details=details))
    finally:
        gateway.stop()
    return rows


LABELS = {"command": "slash commands", "button": "button clicks", "modal": "modal submissions", "mixed": "mixed"}


@benchmark("ack", order=10)
def ack_latency(opts: Options) -> list[Result]:
    latency = opts.backend_latency
    with Backends(opts.workdir) as backends:
        slack, config = slow_world(opts, backends, latency)
        listeners = registered_listeners(config, opts.workdir, slack.api_url)
        log(f"ack: registered action_ids {listeners['actions'] or 'none'}; callback_ids {listeners['views'] or 'none'}")
        quarter = opts.requests // 4
        per_phase = {"command": quarter, "button": quarter, "modal": quarter, "mixed": opts.requests - 3 * quarter}
        with BotProcess(opts.workdir / "bot", config, slack) as bot, \
                BotProcess(opts.workdir / "bare", config, slack, script="bench/bare_app.py") as bare, \
                LoadProcess() as load_process:
            log(f"ack: bot pid {bot.pid} up in {bot.startup_seconds:.1f}s at {bot.url}; "
                f"bare Bolt pid {bare.pid} at {bare.url}")
            cold = first_request(backends, bot)
            first_request(backends, bare)
            sent, calls, load = run_phases(opts, backends, [("deckhand", bot), ("bare", bare)], listeners, PHASES,
                                           per_phase, load_process)

        rows: list[Result] = [cold]
        mine, theirs = sent["deckhand"], sent["bare"]
        for phase in PHASES:
            produced = phase_rows(LABELS[phase], mine[phase], listeners, calls["deckhand"][phase], bare=theirs[phase])
            produced[1].details.update({key: values[phase] for key, values in load["deckhand"].items()})
            rows += produced
        everything = [s for phase in PHASES for s in mine[phase]]
        baseline = [s for phase in PHASES for s in theirs[phase]]
        total_calls = {k: sum(c.get(k, 0) for c in calls["deckhand"].values()) for k in calls["deckhand"][PHASES[0]]}
        rows += phase_rows("overall", everything, listeners, total_calls, bare=baseline)
        rows += socket_mode_rows(opts, backends, config, listeners, per_phase)
        for row in rows:
            row.details.update({"backend_latency_s": latency, "concurrency": opts.concurrency,
                                "registered": listeners, "users": len(USERS)})
        missed = any(r.met is False for r in rows)
        if opts.profile == "always" or (opts.profile == "auto" and missed):
            overall = next(r for r in rows if r.name == "ack overall p99")
            overall.details["profile"] = profile(opts, backends, config, listeners)
    return rows
