"""The terminal console, driven over a pipe as a real process through the real listeners (its renderer
and its click / modal machinery with scripted input: tests/test_console_machinery.py)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from blocks.common import code
from tests.harness import DEVOPS, DEVOPS2, OUTSIDER, base_config, closed_url

ROOT = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, kube_fake) -> str:
    cfg = base_config()
    cfg["clusters"] = [{"name": "prod-a", "context": "prod-a",
                        "kubeconfig": kube_fake.kubeconfig(str(tmp_path / "kubeconfig"), context="prod-a"),
                        "prometheus_url": closed_url()}]
    path = tmp_path / "deckhand.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def console_env(tmp_path: Path, config: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "GITHUB_", "DECKHAND_", "LOG_"))}
    env.update({"DECKHAND_CONFIG": config, "DECKHAND_CONSOLE_DB": str(tmp_path / "console.db")})
    return env


def with_github(tmp_path: Path, kube_fake, github_fake) -> dict:
    """Console environment whose config points at the GitHub fake, with a token."""
    github_fake.create_repo("org/deploy-manifests", files={"README.md": "hi\n"})
    config = write_config(tmp_path, kube_fake)
    cfg = yaml.safe_load(Path(config).read_text())
    cfg["github"]["api_url"] = github_fake.url
    Path(config).write_text(yaml.safe_dump(cfg))
    env = console_env(tmp_path, config)
    env["GITHUB_TOKEN"] = "ghp_console0123456789abcdefghijklmnop"
    return env


def chat(args: list[str], script: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, env=env, input=script, text=True,
                          capture_output=True, timeout=90)


def test_console_over_a_pipe_answers_through_the_real_listeners(tmp_path, kube_fake):
    script = "\n".join([
        "/ops help",
        "/ops frobnicate",
        "/ops jobs",
        f"as {OUTSIDER}",
        "/ops run audit-feed",
        f"as {DEVOPS}",
        "/ops run audit-feed",
        "/nosuch thing",
        "click 99",
        "help",
    ]) + "\n"  # then end of input: the console exits 0
    result = chat(["console"], script, console_env(tmp_path, write_config(tmp_path, kube_fake)))
    out = result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in out + result.stderr
    assert f"You are {DEVOPS} (DevOps" in out  # default user: the first devops ID in the config
    # /ops help lists every command, rendered as text (header, sections, context)
    help_reply = out.split("> /ops help", 1)[1].split("> /ops frobnicate", 1)[0]
    assert "deckhand (only you can see this):" in help_reply and "== deckhand commands ==" in help_reply
    for command in ("/pipeline", "/canary", "/service", "/ops"):
        assert f"*{command}* —" in help_reply
    assert "  › Every command answers `help`" in help_reply
    # unknown input answers with the usage
    unknown = out.split("> /ops frobnicate", 1)[1].split("> /ops jobs", 1)[0]
    assert "I don't know `/ops frobnicate`" in unknown and "*Usage of /ops:*" in unknown
    jobs_reply = out.split("> /ops jobs", 1)[1].split(f"> as {OUTSIDER}", 1)[0]
    assert "== Scheduled jobs ==" in jobs_reply and "*audit-feed*" in jobs_reply and "*node-scan*" in jobs_reply
    # switching user changes what deckhand allows; the denial is audited and the audit feed posts it
    assert f"You are now {OUTSIDER} (not DevOps; teams: none)" in out
    assert "You can't do that: only DevOps may do this." in out
    feed = out.split("deckhand in #C0AUDIT", 1)[1]
    assert f"@{OUTSIDER} ops.run `audit-feed`: *denied*" in feed
    assert "/nosuch is not a deckhand command" in out
    assert "There is no button [99] on screen" in out
    assert "click N" in out and "as USER [GROUP…]" in out


def test_without_slack_credentials_and_no_terminal_app_py_exits_naming_them(tmp_path, kube_fake):
    """A pod whose Secret has empty values: exit non-zero (the pod restarts visibly), never the console."""
    result = chat([], "/ops help\n", console_env(tmp_path, write_config(tmp_path, kube_fake)))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "SLACK_BOT_TOKEN" in result.stderr and "SLACK_SIGNING_SECRET" in result.stderr
    assert "deckhand commands" not in result.stdout and not (tmp_path / "console.db").exists()


def test_without_slack_credentials_on_a_terminal_app_py_starts_the_console(tmp_path, kube_fake):
    import pty

    env = console_env(tmp_path, write_config(tmp_path, kube_fake))
    main, terminal = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdin=terminal, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        os.write(main, b"/ops help\nquit\n")
        out, err = proc.communicate(timeout=90)
    finally:
        os.close(main)
        os.close(terminal)
    assert proc.returncode == 0, out + err
    assert "Slack credentials missing (SLACK_BOT_TOKEN" in err and "starting the terminal console" in err
    assert "== deckhand commands ==" in out


def test_the_console_keeps_its_own_database_and_sends_nothing_to_real_slack(tmp_path, kube_fake):
    """Not DECKHAND_DB (the real bot's): what the console queues is sent to the console's Slack before it exits."""
    env = console_env(tmp_path, write_config(tmp_path, kube_fake))
    del env["DECKHAND_CONSOLE_DB"]
    env["DECKHAND_DB"] = str(tmp_path / "production.db")
    work = tmp_path / "work"
    work.mkdir()
    script = f"as {OUTSIDER}\n/ops run audit-feed\nas {DEVOPS}\n/ops run audit-feed\n/ops run node-scan\n"
    result = subprocess.run([sys.executable, str(ROOT / "app.py"), "console"], cwd=work, env=env, input=script,
                            text=True, capture_output=True, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "production.db").exists()
    assert sorted(p.name for p in work.iterdir() if not p.name.endswith(("-wal", "-shm"))) == [
        "deckhand-console.db", "deckhand-console.log"]
    import sqlite3

    with sqlite3.connect(work / "deckhand-console.db") as db:
        states = [row[0] for row in db.execute("SELECT state FROM outbox")]
    db.close()
    assert states and set(states) == {"sent"}  # the audit feed's posts went to the console, none wait
    # log lines go to the log file, not between the replies
    assert " WARNING " not in result.stdout and " INFO " not in result.stdout
    assert "deckhand's log (warnings, errors): " in result.stdout


class ConsoleSession:
    """`python app.py console` over pipes, answered prompt by prompt like a person would (expect-style):
    each prompt is read as it appears, so the test does not depend on how many fields a modal has."""

    def __init__(self, env: dict):
        import codecs
        import threading

        self.proc = subprocess.Popen([sys.executable, "app.py", "console"], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.text = ""
        self.seen = 0  # where the last answered prompt ended
        self.done = False
        self.changed = threading.Condition()
        decoder = codecs.getincrementaldecoder("utf-8")()

        def pump():
            while chunk := os.read(self.proc.stdout.fileno(), 65536):
                with self.changed:
                    self.text += decoder.decode(chunk)
                    self.changed.notify_all()
            with self.changed:
                self.done = True
                self.changed.notify_all()

        threading.Thread(target=pump, daemon=True).start()

    def prompt(self, timeout: float = 60) -> str | None:
        """The next prompt line (the text after the last newline, ending in ': ' or '> '), None at exit."""
        def ready():
            tail = self.text[self.seen:]
            last = tail.rsplit("\n", 1)[-1]
            return self.done or (last.endswith((": ", "> ")) and len(self.text) > self.seen)
        with self.changed:
            assert self.changed.wait_for(ready, timeout), f"no prompt within {timeout}s:\n{self.text[-3000:]}"
            if self.done:
                return None
            self.seen = len(self.text)
            return self.text.rsplit("\n", 1)[-1]

    def send(self, line: str) -> None:
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def finish(self) -> tuple[int, str]:
        self.proc.stdin.close()
        code = self.proc.wait(timeout=60)
        with self.changed:
            self.changed.wait_for(lambda: self.done, 10)
        stderr = self.proc.stderr.read().decode()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code, stderr


def converse(session: ConsoleSession, commands: list, answers: dict[str, list[str]], limit: int = 200) -> None:
    """Type `commands` at the main prompt (a callable gets the transcript so far); answer field prompts from
    `answers` by label (each answer used once, the last one repeats), Enter (keep the default) otherwise."""
    for _ in range(limit):
        prompt = session.prompt()
        if prompt is None:
            return
        if prompt.endswith("> "):
            if not commands:
                return
            command = commands.pop(0)
            session.send(command(session.text) if callable(command) else command)
            continue
        label = prompt.strip()
        if label.startswith("Submit") or "[y/N]" in label:  # submit modals, accept confirm dialogs
            session.send("y")
            continue
        key = next((k for k in answers if label.startswith(k)), None)
        session.send(answers[key].pop(0) if key and len(answers[key]) > 1 else answers[key][0] if key else "")
    pytest.fail(f"more than {limit} prompts; is a required field unanswered?\n{session.text[-3000:]}")


def click_on(label: str):
    """A command that presses the newest button with this label (numbers depend on what came before)."""
    return lambda text: "click " + re.findall(rf"\[(\d+)\] {re.escape(label)}", text)[-1]


def test_service_deletion_over_a_pipe_with_a_modal_a_confirm_dialog_and_a_second_user(
        tmp_path, kube_fake, github_fake, console_session):
    kube_fake.add({"apiVersion": "v1", "kind": "Service", "metadata": {
        "name": "checkout", "namespace": "shop", "labels": {"app": "checkout", "team": "payments"}},
        "spec": {"selector": {"app": "checkout"}, "ports": [{"port": 80}]}})
    kube_fake.add({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
        "name": "checkout", "namespace": "shop", "labels": {"app": "checkout", "team": "payments"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "checkout"}}, "template": {
            "metadata": {"labels": {"app": "checkout"}},
            "spec": {"containers": [{"name": "app", "image": "registry.example.com/checkout:1"}]}}}})
    session = console_session(with_github(tmp_path, kube_fake, github_fake))
    # Prometheus is unreachable, so traffic is unknown: DevOps overrides with a reason (a modal), and a
    # second DevOps engineer approves from their App Home (a button with a confirm dialog on a view), as
    # the four-eyes rule wants.
    converse(session, ["/service delete checkout", click_on("Override"), f"as {DEVOPS2}", "home", click_on("Approve")],
             {"Why": ["It has had no callers since the migration; access logs are empty"]})
    code, stderr = session.finish()
    out = session.text
    assert code == 0, out[-3000:] + stderr
    assert "┌ Override" in out and "deckhand in #C0APPROVALS" in out
    home = out.split(f"{DEVOPS2}> home", 1)[1].split(f"{DEVOPS2}> click", 1)[0]
    assert f"App Home of {DEVOPS2}:" in home and re.search(r"\[\d+\] Approve", home)
    assert re.search(r"\? \[y/N\] .*: y\n", out)  # the confirm dialog was shown and accepted
    assert kube_fake.get("apps/v1", "Deployment", "shop", "checkout") is None
    assert kube_fake.get("v1", "Service", "shop", "checkout") is None
    assert "Traceback" not in out + stderr


@pytest.fixture
def console_session():
    sessions: list[ConsoleSession] = []

    def start(env: dict) -> ConsoleSession:
        sessions.append(ConsoleSession(env))
        return sessions[-1]

    yield start
    for session in sessions:
        if session.proc.poll() is None:
            session.proc.kill()
            session.proc.wait()


def test_pipeline_create_over_a_pipe_fills_the_modal_shows_errors_and_opens_the_pull_request(
        tmp_path, kube_fake, github_fake, console_session):
    session = console_session(with_github(tmp_path, kube_fake, github_fake))
    answers = {  # selects are answered by option value, so the order of the options does not matter
        "Service name": ["Payments API", "payments-api"],  # the app rejects the first: asked again
        "Owner team": ["payments"], "Kind": ["api"], "Source repository": ["org/payments-api"],
        "Image repository": ["registry.example.com/payments/api"], "Target clusters": ["prod-a"],
        "Deploy strategy": ["canary"],
    }
    link_button = lambda text: "click " + re.findall(r"\[(\d+)\] [^\n\[]* -> http", text)[-1]  # noqa: E731
    converse(session, ["/pipeline create", link_button], answers)
    code, stderr = session.finish()
    out = session.text
    assert code == 0, out[-3000:] + stderr
    assert "┌ Create pipeline" in out and "└ <Open pull request>  <Cancel>" in out
    assert "✗ Service name: " in out  # the app's validation error, under the field it names
    assert "Service name [Payments API]: payments-api" in out  # only the failed field was asked again
    assert "deckhand edited its message" in out and "pull request #1" in out
    assert "(in Slack this also opens http" in out and "Traceback" not in out + stderr
    pull = github_fake.pulls("org/deploy-manifests")[0]
    assert pull["title"].startswith("pipeline: create payments-api")
    files = github_fake.pr_files("org/deploy-manifests", pull["number"])
    assert "services/payments/payments-api/deckhand.yaml" in files
