"""Fairness: one user sending 100 commands at once must not delay anybody else's ANSWERS.

`python app.py` (HTTP mode, waitress) runs with every backend `--backend-latency` slow (1 s), as in
the ack benchmark. Four other users send `/canary list` (a Kubernetes read, then the answer to the
response_url), OTHERS_PER_USER each, one at a time per user (a person waits for the answer before
asking again). An answer's time is from sending the command to the Slack fake receiving the answer
on that command's response_url. Three runs, each after the bot went quiet:

- quiet: only the others;
- flood: the same, while one more user sends FLOOD commands at once;
- flood without the per-user share (bench/unshared_app.py: the same app with the share lifted),
  for contrast: what the share buys.

Target: the others' answer p99 under the flood within 2x of the quiet run's.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bench.common import (
    DEVOPS, DEVOPS2, PAY_DEV2, SIGNING_SECRET, Backends, BotProcess, Options, Result, benchmark, log,
    request_builder, send_all, summarize, wait_quiet,
)
from bench.fleet import slow_world

OTHERS = (DEVOPS, DEVOPS2, PAY_DEV2, "U0OTHER01")
OTHERS_PER_USER = 10
FLOODER = "U0FLOOD01"
FLOOD = 100
TARGET_RATIO = 2.0
ANSWER_TIMEOUT = 60.0


def others_run(bot: BotProcess, slack, per_user: int = OTHERS_PER_USER) -> list[float]:
    """Each other user sends their commands one after another, each once the previous one was
    answered. Returns the answer times in seconds."""
    builder = request_builder(bot.url, SIGNING_SECRET, slack)
    times: list[float] = []
    lock = threading.Lock()

    def person(user: str) -> None:
        for _ in range(per_user):
            url = slack.response_url(channel="C0PAY", user=user)
            request = builder.command("/canary", "list", user_id=user, channel_id="C0PAY", response_url=url)
            started = time.time()
            [sent] = send_all(bot.url, [request], 1, SIGNING_SECRET)
            deadline = time.monotonic() + ANSWER_TIMEOUT
            answers = []
            while sent.status == 200 and time.monotonic() < deadline:
                answers = slack.responses_to(url)
                if answers:
                    break
                time.sleep(0.01)
            with lock:
                times.append(answers[0]["time"] - started if answers else ANSWER_TIMEOUT)

    with ThreadPoolExecutor(max_workers=len(OTHERS)) as pool:
        list(pool.map(person, OTHERS))
    return times


def flood(bot: BotProcess, slack, out: dict) -> None:
    builder = request_builder(bot.url, SIGNING_SECRET, slack)
    requests = [builder.command("/canary", "list", user_id=FLOODER, channel_id="C0PAY", kind="flood")
                for _ in range(FLOOD)]
    out["sent"] = send_all(bot.url, requests, FLOOD, SIGNING_SECRET, time_limit=60)


def measure(opts: Options, backends: Backends, config: str, script: str, label: str) -> dict:
    slack = backends.slack
    with BotProcess(opts.workdir / label.replace(" ", "-"), config, slack, script=script) as bot:
        others_run(bot, slack, per_user=1)  # warm: connections, caches, the first request's one-time costs
        wait_quiet(backends.request_counts, quiet=opts.backend_latency + 1.5, limit=30)
        quiet = others_run(bot, slack)
        wait_quiet(backends.request_counts, quiet=opts.backend_latency + 1.5, limit=30)
        flooding: dict = {}
        flooder = threading.Thread(target=flood, args=(bot, slack, flooding), name="flood")
        flooder.start()
        time.sleep(0.05)  # the flood is under way when the others start asking
        loaded = others_run(bot, slack)
        flooder.join()
        wait_quiet(backends.request_counts, quiet=opts.backend_latency + 1.5, limit=120)
    statuses: dict[str, int] = {}
    for s in flooding.get("sent", []):
        statuses[str(s.status or s.error)] = statuses.get(str(s.status or s.error), 0) + 1
    log(f"fairness ({label}): others quiet {summarize(quiet)}, under flood {summarize(loaded)}; flood acks {statuses}")
    return {"quiet": summarize(quiet), "flood": summarize(loaded), "flood_acks": statuses}


@benchmark("fairness", order=15)
def fairness(opts: Options) -> list[Result]:
    latency = opts.backend_latency
    with Backends(opts.workdir) as backends:
        slack, config = slow_world(opts, backends, latency)
        shared = measure(opts, backends, config, "app.py", "per-user share")
        unshared = measure(opts, backends, config, "bench/unshared_app.py", "no share")

    def ratio(run: dict) -> float | None:
        return round(run["flood"]["p99"] / run["quiet"]["p99"], 2) if run["quiet"]["p99"] else None

    common = {"others": len(OTHERS), "commands_per_other": OTHERS_PER_USER, "flood_commands": FLOOD,
              "backend_latency_s": latency}
    return [
        Result("fairness: others' answer p99, quiet", shared["quiet"]["p99"], "ms",
               details={**shared["quiet"], **common}),
        Result(f"fairness: others' answer p99, one user flooding {FLOOD}", shared["flood"]["p99"], "ms",
               details={**shared["flood"], "flood_acks": shared["flood_acks"], **common}),
        Result.at_most("fairness: flood p99 / quiet p99", ratio(shared), "x", TARGET_RATIO,
                       details={"quiet_p50_ms": shared["quiet"]["p50"], "flood_p50_ms": shared["flood"]["p50"],
                                **common}),
        Result("fairness: flood p99 / quiet p99 without the share (contrast)", ratio(unshared), "x",
               details={"quiet": unshared["quiet"], "flood": unshared["flood"], **common}),
    ]
