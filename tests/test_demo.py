"""`python app.py demo` (and `make run` on a fresh clone): the embedded demo world, driven as a user
drives it — a piped script into the real process — and checked by what it prints."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DONE_WHEN = "\n".join(["/canary list", "/service deps ledger", "/ops run idle-scan", "/ops run node-scan", "quit"]) + "\n"


def demo_env(path: str | None = None) -> dict:
    """What a fresh shell has: no deckhand, Slack or GitHub settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "GITHUB_", "DECKHAND_", "LOG_"))}
    if path is not None:
        env["PATH"] = path
    return env


def run(args: list[str], script: str | None, cwd: Path, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "app.py"), *args], cwd=cwd, env=env, input=script, text=True,
                          capture_output=True, timeout=timeout)


def reply(out: str, command: str) -> str:
    """What the console printed between typing `command` and the next prompt."""
    after = out.split(f"> {command}\n", 1)[1]
    return re.split(r"\n\S+> ", after, maxsplit=1)[0]


def test_make_run_on_a_fresh_clone_lands_in_the_demo_and_shows_every_part_of_the_world(tmp_path):
    """`python app.py` with no deckhand.yaml and no Slack credentials (what `make run` runs) is the demo."""
    result = run([], DONE_WHEN, tmp_path, demo_env())
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr
    assert "Traceback" not in out + result.stderr
    assert "starting the demo world" in result.stderr
    ready = re.search(r"deckhand demo world \(ready in ([\d.]+)s\)", out)
    assert ready, out[:2000]
    print(f"demo world ready in {ready.group(1)} s")  # measured, not asserted (bench/ territory)
    assert "a real Prometheus at http://127.0.0.1:" in out

    canaries = reply(out, "/canary list")
    assert "Live canaries (3)" in canaries
    checkout = canaries.split("*checkout*", 1)[1].split("*search-api*", 1)[0]
    assert "canary *25%*" in checkout
    assert re.search(r"traffic \(10 min\): stable 7\.50 req/s, 100\.0% ok, p99 120 ms · canary 2\.50 req/s, "
                     r"92\.0% ok, p99 800 ms\s+:warning: canary worse than stable", checkout), checkout
    assert "*cart*" in canaries and "Paused" in canaries and "Argo Rollouts" in canaries
    assert "*search-api*" in canaries and "5d 2h ago" in canaries

    deps = reply(out, "/service deps ledger")
    assert "Dependency check: ledger" in deps and "Deletion is blocked* by 2 callers" in deps
    assert "`payments/checkout` — 1,814,400 requests" in deps
    assert "`orders/billing-worker` — 40,320 TCP connections" in deps

    idle = reply(out, "/ops run idle-scan")
    assert "`idle-scan` ok" in idle
    digest = out.split("== Idle services: payments ==", 1)[1]
    assert "Reclaimable: *1.5 cores, 2.0 GiB*" in digest and "*vouchers*" in digest and "*invoices*" in digest
    assert "== Idle services: search ==" in out and "Reclaimable: *8 cores, 16.0 GiB*" in out

    # the join failure came in through the node-join hook's handler before the first prompt
    before_prompt = out.split("U0DEVOPS1> ", 1)[0]
    assert "*Join failed* — `prod-a` / `node-7`" in before_prompt and "error execution phase kubelet-start" in before_prompt
    nodes = out.split("> /ops run node-scan\n", 1)[1]
    assert "`node-scan` ok: prod-a: 4 nodes, 1 problem" in nodes
    assert "*Certificate requests pending* — `prod-a` / `node-9`" in nodes
    assert "*NotReady* — `prod-b` / `node-4`" in nodes
    assert "*Never joined* — `prod-b` / `gpu-3`" in nodes
    # its own database and its log: nothing in the user's directory but the log
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deckhand-demo.log"]
    assert " WARNING " not in out


def test_without_prometheus_the_demo_says_how_to_install_it_and_traffic_is_unknown(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    result = run(["demo"], "/canary list\n/service deps ledger\n", tmp_path, demo_env(path=str(empty)))
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr
    assert out.count("sudo apt-get install prometheus") == 1
    assert "no Prometheus (traffic shows as unknown)" in out
    canaries = reply(out, "/canary list")
    assert canaries.count("traffic (10 min): *unknown* — ") == 3
    assert "Prometheus did not answer (connection refused)" in canaries
    assert "Inbound traffic: unknown" in reply(out, "/service deps ledger")


def test_a_pipeline_opens_a_real_pull_request_that_merge_merges(tmp_path):
    fields = ["reviews", "payments", "api", "demo/reviews", "registry.demo/reviews", "", "", "", "", "", "prod-a",
              "", "", "", "", "", "", "y"]
    script = "\n".join(["/pipeline create", *fields, "/pipeline list", "merge 1", "/pipeline list", "merge 1",
                        "merge 9", "merge"]) + "\n"
    result = run(["demo"], script, tmp_path, demo_env())
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr
    assert "New pipeline for *reviews*: pull request #1" in out and "is open for review" in out
    listed = out.split("> /pipeline list\n")
    assert "*reviews* — api, canary · payments · prod-a · PR #1" in listed[1] and "pending merge" in listed[1]
    merged = reply(out, "merge 1")
    assert '(demo) octocat merged #1 "pipeline: create reviews (api, canary)"' in merged
    assert "was merged. The GitOps sync rolls it out to prod-a." in merged
    assert "0 with an open pull request" in listed[2].split("> merge 1", 1)[0]
    assert "Pull request #1 is already merged." in out
    assert "There is no pull request #9 in demo/deploy-manifests." in out
    assert "Usage: merge N (open pull requests: none)" in out


def test_make_run_with_stdin_closed_does_not_crash(tmp_path):
    """`make run <&-`: no stdin at all (sys.stdin is None) reads as an empty script."""
    command = f"exec {shlex.quote(sys.executable)} {shlex.quote(str(ROOT / 'app.py'))} demo <&-"
    result = subprocess.run(["sh", "-c", command], cwd=tmp_path, env=demo_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "deckhand console" in result.stdout


def test_the_demo_needs_nothing_from_pytest():
    """The fakes are a runtime library: the demo's own imports work where pytest is not importable."""
    # What requirements-dev.txt adds on top of requirements.txt (what `make run` installs).
    dev_only = [line.split("==")[0].strip().lower().replace("-", "_") for line in
                (ROOT / "requirements-dev.txt").read_text().splitlines() if "==" in line and not line.startswith("#")]
    code = (f"import sys; sys.modules.update(dict.fromkeys({dev_only + ['_pytest']!r})); "
            "import demo, app; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_where_the_demo_is_not_installed_app_py_demo_says_so(tmp_path):
    """The container image carries app.py and its packages but not demo/ or tests/ (.dockerignore)."""
    for name in ("app.py",):
        (tmp_path / name).write_text((ROOT / name).read_text())
    for package in ("bot", "blocks", "commands", "console", "jobs"):
        os.symlink(ROOT / package, tmp_path / package)
    result = subprocess.run([sys.executable, "app.py", "demo"], cwd=tmp_path, env=demo_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "demo: not available here" in result.stderr and "make run" in result.stderr
    assert "Traceback" not in result.stderr
