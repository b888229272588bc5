"""`make run` on a fresh clone: seconds from starting `python app.py demo` to the console's first prompt
(Python imports, two Kubernetes fakes seeded, the Prometheus backfill and start, the GitOps repo, deckhand's
context and listeners, the node-join reports). Issue 17 promises under 10 s on 2 cores."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from bench.common import ROOT, Options, Result, benchmark, log, summarize

PROMPT = b"U0DEVOPS1> "
RUNS = 3


def first_prompt(workdir) -> tuple[float, float]:
    """(seconds to the first prompt, seconds the world itself took as the demo reports it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "GITHUB_", "DECKHAND_"))}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "demo"], cwd=workdir, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    seen = b""
    try:
        while PROMPT not in seen:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"the demo exited before its prompt:\n{seen.decode(errors='replace')[-2000:]}")
            seen += chunk
        elapsed = time.monotonic() - started
    finally:
        proc.stdin.close()  # end of input: the console quits
        proc.wait(timeout=60)
        proc.stdout.close()
    world = re.search(rb"ready in ([\d.]+)s", seen)
    return elapsed, float(world.group(1)) if world else float("nan")


@benchmark("demo-startup", order=5)
def demo_startup(opts: Options) -> list[Result]:
    prompts, worlds = [], []
    for _ in range(RUNS):
        prompt, world = first_prompt(opts.workdir)
        prompts.append(prompt)
        worlds.append(world)
    log(f"demo: first prompt after {', '.join(f'{s:.2f}' for s in prompts)} s; "
        f"the world itself {', '.join(f'{s:.2f}' for s in worlds)} s")
    return [Result.below("demo start to first prompt (max of 3)", max(prompts), "s", 10.0,
                         details={"runs_ms": summarize(prompts), "world_seconds": worlds})]
