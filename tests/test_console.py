"""The terminal console: driven over a pipe as a real process through the real listeners, plus its
renderer and its click / modal machinery with scripted input."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from slack_bolt import BoltResponse
from slack_sdk.signature import SignatureVerifier

from blocks.common import (actions, button, code, confirm, context, divider, fields, header, modal, section,
                           select_input, text_input)
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


# -- the machinery, in process, with scripted input ------------------------------------------------------


class Recorder:
    """Stands in for Bolt's dispatch: records each signed request, answers with the next scripted response
    (a BoltResponse, or a callable(body) -> BoltResponse that may act through the bot's WebClient first)."""

    def __init__(self, secret_of, answers=()):
        self.secret_of = secret_of
        self.bodies: list[dict] = []
        self.answers = list(answers)

    def __call__(self, request):
        verifier = SignatureVerifier(self.secret_of())
        headers = {k: v[0] for k, v in request.headers.items()}
        assert verifier.is_valid(request.raw_body, headers["x-slack-request-timestamp"],
                                 headers["x-slack-signature"])
        self.bodies.append(request.body)
        answer = self.answers.pop(0) if self.answers else BoltResponse(status=200, body="")
        return answer(request.body) if callable(answer) else answer


@pytest.fixture
def console_for(tmp_path, kube_fake):
    from bot.foundation.config import Secrets, parse_settings
    from bot.foundation.context import build_context
    from app import shutdown
    from console import Console

    started = []

    def make(script: str, answers=()):
        cfg = base_config()
        cfg["clusters"] = [{"name": "prod-a", "context": "prod-a", "prometheus_url": closed_url(),
                            "kubeconfig": kube_fake.kubeconfig(str(tmp_path / "kubeconfig"), context="prod-a")}]
        ctx = build_context(parse_settings(cfg), Secrets.from_env({}), str(tmp_path / f"c{len(started)}.db"))
        holder: dict = {}
        recorder = Recorder(lambda: holder["console"].signing_secret, answers)
        console = Console(ctx, stdin=io.StringIO(script), stdout=io.StringIO(), dispatch=recorder, settle_timeout=5,
                          shutdown=shutdown)
        holder["console"] = console
        console.start()
        started.append(console)
        return console, recorder

    yield make
    for console in started:
        console.stop()


def output(console) -> str:
    return console.stdout.getvalue()


def test_renderer_turns_block_kit_into_readable_text():
    from console.render import mrkdwn, render_message

    numbers = iter(range(1, 100))
    blocks = [
        header("Canary checkout"),
        section("Traffic for <@U0PAYDEV> in <#C0PAY|payments> — <https://grafana.example/d/1|dashboard> &amp; more",
                accessory=button("Details", "canary.details", "checkout")),
        fields([("Cluster", "prod-a"), ("Weight", "25%")]),
        divider(),
        section("Last log lines:\n" + code("line one\nline two")),
        context("stable v1 · canary v2"),
        actions(button("Promote", "canary.promote", "checkout", style="primary"),
                button("Abort", "canary.abort", "checkout", style="danger",
                       confirm_dialog=confirm("Abort?", "Send all traffic back to stable?"))),
    ]
    text = "\n".join(render_message("fallback", blocks, lambda element, block_id: next(numbers)))
    assert "== Canary checkout ==" in text
    assert "Traffic for @U0PAYDEV in #payments — dashboard (https://grafana.example/d/1) & more   [1] Details" in text
    assert "  Cluster: prod-a" in text and "  Weight: 25%" in text
    assert "-" * 40 in text
    assert "    line one\n    line two" in text
    assert "  › stable v1 · canary v2" in text
    assert "[2] Promote  [3] Abort (danger)" in text
    assert mrkdwn("<!subteam^S0PAY> <!here> <mailto:a@b.c|a@b.c>") == "@S0PAY @here a@b.c (mailto:a@b.c)"
    assert render_message("just *text*", None, lambda *a: None) == ["just *text*"]


def post_with_buttons(console) -> str:
    ctx = console.ctx
    blocks = [section("Canary *checkout* at 25%"),
              actions(button("Step to 50%", "canary.step", "checkout|50"),
                      button("Abort", "canary.abort", "checkout",
                             confirm_dialog=confirm("Abort the canary?", "All traffic goes back to stable.",
                                                    yes="Abort", no="Keep it")))]
    return ctx.slack.chat_postMessage(channel="C0ALERTS", text="canary", blocks=blocks)["ts"]


def test_click_sends_a_block_actions_payload_and_honours_the_confirm_dialog(console_for):
    console, recorder = console_for("n\ny\n")
    ts = post_with_buttons(console)
    assert "deckhand in #C0ALERTS" in output(console) and "[1] Step to 50%  [2] Abort" in output(console)

    console.click(1)
    body = recorder.bodies[-1]
    assert body["type"] == "block_actions" and body["user"]["id"] == DEVOPS
    assert body["actions"][0]["action_id"] == "canary.step" and body["actions"][0]["value"] == "checkout|50"
    assert body["container"] == {"type": "message", "message_ts": ts, "channel_id": "C0ALERTS", "is_ephemeral": False}
    assert body["message"]["ts"] == ts and body["message"]["blocks"][1]["type"] == "actions"
    assert body["response_url"].startswith(console.slack.url) and body["trigger_id"]

    console.click(2)  # answered "n": nothing is sent
    assert len(recorder.bodies) == 1
    assert "Abort the canary?" in output(console) and "(Keep it: nothing was sent)" in output(console)
    console.click(2)  # answered "y"
    assert recorder.bodies[-1]["actions"][0]["action_id"] == "canary.abort"

    # the listener answers through response_url: replace_original edits the message in place, and the
    # old buttons are gone
    import requests

    requests.post(recorder.bodies[-1]["response_url"], json={"replace_original": True, "text": "aborted",
                                                             "blocks": [section("Canary *checkout* aborted")]})
    assert f"deckhand edited its message [{ts}] in #C0ALERTS" in output(console)
    console.click(1)
    assert "There is no button [1] on screen" in output(console)


def test_buttons_on_ephemeral_messages_carry_no_message_and_replace_in_place(console_for):
    console, recorder = console_for("")
    console.slack.add_ephemeral("C0CONSOLE", DEVOPS, "pick", [actions(button("Request deletion", "svc.request", "x"))])
    console.click(1)
    body = recorder.bodies[-1]
    assert body["container"]["is_ephemeral"] is True and "message" not in body
    import requests

    requests.post(body["response_url"], json={"replace_original": True, "text": "Requested."})
    assert "deckhand replaced its message (only you can see this):\n  Requested." in output(console)


def form_view() -> dict:
    return modal("New pipeline", [
        section("Everything here becomes one pull request."),
        text_input("service", "Service name", hint="lowercase", max_length=20),
        select_input("kind", "Kind", [("Web service", "service"), ("Batch job", "batch")]),
        select_input("envs", "Environments", [("dev", "dev"), ("staging", "staging"), ("prod", "prod")], multi=True),
        text_input("notes", "Notes", optional=True, multiline=True),
    ], callback_id="pipeline.create", submit="Create", private_metadata="meta-1")


def open_modal(console, view: dict) -> str:
    return console.ctx.slack.views_open(trigger_id=console.slack.trigger(console.user), view=view)["view"]["id"]


def test_modal_is_filled_field_by_field_and_validation_errors_are_reasked(console_for):
    script = "\n".join([
        "",                       # Service name is required: asked again
        "x" * 21,                 # over max_length: asked again (Slack checks this in the client)
        "Checkout",               # accepted here; the app rejects it below
        "2",                      # Kind: Batch job
        "1, prod",                # Environments by number and by value
        "first line\\", "second line",     # Notes, multi-line: a trailing backslash continues
        "",                       # Submit? [Y]
        "checkout",               # only the field with an error is asked again
        "y",
    ]) + "\n"
    errors = BoltResponse(status=200, body=json.dumps({"response_action": "errors",
                                                       "errors": {"service": "Use lowercase letters."}}),
                          headers={"content-type": ["application/json"]})
    console, recorder = console_for(script, answers=[errors])
    view_id = open_modal(console, form_view())
    console.modals.present()

    out = output(console)
    assert "┌ New pipeline" in out and "Everything here becomes one pull request." in out
    assert "This field is required." in out and "Enter at most 20 characters (that was 21)." in out
    assert "✗ Service name: Use lowercase letters." in out
    assert out.count("Kind") == 2  # rendered once in the box, asked once: not re-asked after the error
    first, second = recorder.bodies
    assert first["type"] == second["type"] == "view_submission"
    assert first["view"]["id"] == view_id and first["view"]["private_metadata"] == "meta-1"
    values = first["view"]["state"]["values"]
    assert values["service"]["value"] == {"type": "plain_text_input", "value": "Checkout"}
    assert values["kind"]["value"]["selected_option"]["value"] == "batch"
    assert [o["value"] for o in values["envs"]["value"]["selected_options"]] == ["dev", "prod"]
    assert values["notes"]["value"]["value"] == "first line\nsecond line"
    assert second["view"]["state"]["values"]["service"]["value"]["value"] == "checkout"
    assert second["view"]["state"]["values"]["kind"]["value"]["selected_option"]["value"] == "batch"
    assert console.slack.top_modal(console.user) is None  # plain ack closes it


def test_modal_response_actions_update_push_and_cancel(console_for):
    step_two = modal("Confirm", [text_input("reason", "Reason")], callback_id="step.two", submit="Go")
    pushed = modal("Details", [section("More details")], callback_id="details", submit="OK")
    script = "\n".join([
        "svc", "1", "dev", "", "",    # fill the form, submit -> update to step two
        "because", "",                # step two, submit -> push a view without inputs
        "n",                          # cancel the pushed view: back to step two
        "",                           # step two again: already answered, submit -> clear
    ]) + "\n"
    answers = [BoltResponse(status=200, body=json.dumps({"response_action": "update", "view": step_two})),
               BoltResponse(status=200, body=json.dumps({"response_action": "push", "view": pushed})),
               BoltResponse(status=200, body=json.dumps({"response_action": "clear"}))]
    console, recorder = console_for(script, answers)
    open_modal(console, form_view())
    console.modals.present()
    out = output(console)
    assert "┌ Confirm" in out and "┌ Details" in out and "(modal closed)" in out
    assert [b["view"]["callback_id"] for b in recorder.bodies] == ["pipeline.create", "step.two", "step.two"]
    assert recorder.bodies[2]["view"]["state"]["values"]["reason"]["value"]["value"] == "because"
    assert console.slack.top_modal(console.user) is None


def test_dispatch_action_input_updates_the_modal_before_the_next_field(console_for):
    first = modal("Cluster", [select_input("cluster", "Cluster", [("prod-a", "prod-a"), ("prod-b", "prod-b")],
                                           dispatch=True)], callback_id="pick", submit="Next")

    def listener_updates_view(body):
        assert body["type"] == "block_actions" and body["actions"][0]["selected_option"]["value"] == "prod-b"
        console.ctx.slack.views_update(view_id=body["view"]["id"], view=modal(
            "Cluster", [select_input("cluster", "Cluster", [("prod-a", "prod-a"), ("prod-b", "prod-b")], dispatch=True),
                        select_input("ns", "Namespace in prod-b", [("shop", "shop")])], callback_id="pick", submit="Next"))
        return BoltResponse(status=200, body="")

    console, recorder = console_for("2\n1\ny\n", answers=[listener_updates_view])
    open_modal(console, first)
    console.modals.present()
    assert "Namespace in prod-b" in output(console)
    submitted = recorder.bodies[-1]["view"]["state"]["values"]
    assert submitted["cluster"]["value"]["selected_option"]["value"] == "prod-b"
    assert submitted["ns"]["value"]["selected_option"]["value"] == "shop"


def test_messages_over_slack_limits_are_rejected_like_slack_does(console_for):
    from slack_sdk.errors import SlackApiError

    console, _ = console_for("")
    with pytest.raises(SlackApiError) as failure:
        console.ctx.slack.chat_postMessage(channel="C0ALERTS", text="x", blocks=[divider()] * 51)
    assert failure.value.response["error"] == "invalid_blocks"
    assert "51 blocks (Slack allows 50)" in output(console)


def test_as_switches_user_and_group_membership_counts_for_roles(console_for):
    console, _ = console_for("")
    console.act_as(["U0ALICE"])
    assert "You are now U0ALICE (not DevOps; teams: none)" in output(console)
    console.act_as(["U0BOB", "S0SEARCH"])
    assert "You are now U0BOB (not DevOps; teams: search)" in output(console)
    console.act_as(["bob"])
    assert "Usage: as USER [GROUP…]" in output(console)
