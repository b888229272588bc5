"""/pipeline batch-image bump end to end: ONE PR that moves the pointer and re-renders every tracking batch."""
from __future__ import annotations

import json

import yaml

from tests.harness import DEVOPS, PAY_DEV
from tests.pipelines.test_pipeline_kit import (  # noqa: F401 - pbot is a fixture
    REPO,
    api_form,
    batch_form,
    buttons,
    pbot,
    request_row,
    seed_pipeline,
    validate_objects,
    wait_message,
)

PYTHON = "registry.example.com/batch/python"


def seed_fleet(bot) -> None:
    seed_pipeline(bot, batch_form())  # nightly-report tracks python
    seed_pipeline(bot, batch_form(service="weekly-export", team="search", schedule="0 4 * * 1"))
    seed_pipeline(bot, batch_form(service="jvm-batch", image="registry.example.com/batch/jvm",
                                  tag_policy="track latest of registry.example.com/batch/jvm"),
                  {PYTHON: "3.12.1", "registry.example.com/batch/jvm": "21.0.2"})
    seed_pipeline(bot, batch_form(service="pinned-batch", tag_policy="pinned 3.11.0"))
    seed_pipeline(bot, api_form())


def bump(bot, text: str, user: str = DEVOPS):
    bot.slack.join("C0OPS")  # DevOps' own channel: the bot was invited there
    bot.sender.command("/pipeline", f"batch-image bump {text}", user_id=user, channel_id="C0OPS")


def test_bump_opens_one_pull_request_for_the_pointer_and_every_tracking_batch(pbot):
    seed_fleet(pbot)
    bump(pbot, f"{PYTHON} 3.12.4")
    message = wait_message(pbot, "C0OPS", PYTHON, "is open for review")
    text = json.dumps(message["blocks"])
    assert "Batches re-rendered (2):* `nightly-report`, `weekly-export`" in text
    assert "3.12.1 → 3.12.4" in json.dumps(message["blocks"], ensure_ascii=False)
    assert buttons(message)["pipeline_view_pr"]["url"].endswith("/pull/1")

    pulls = pbot.github.pulls(REPO)
    assert len(pulls) == 1 and pulls[0]["head"]["ref"] == "deckhand/batch-image/registry.example.com-batch-python"
    assert pulls[0]["title"] == f"batch image: {PYTHON} 3.12.1 → 3.12.4" and "Dana Ops" in pulls[0]["body"]
    files = pbot.github.pr_files(REPO, 1)
    assert sorted(files) == ["batch-images.yaml",
                             "services/payments/nightly-report/k8s/cronjob.yaml",
                             "services/payments/nightly-report/pipeline.yaml",
                             "services/search/weekly-export/k8s/cronjob.yaml",
                             "services/search/weekly-export/pipeline.yaml"]
    # One line changes in the pointer; its comments stay.
    assert files["batch-images.yaml"].splitlines()[1] == f'{PYTHON}: "3.12.4"  # the shared Python runner'
    assert yaml.safe_load(files["batch-images.yaml"]) == {PYTHON: "3.12.4", "registry.example.com/batch/jvm": "21.0.2"}
    for obj in validate_objects(files).values():
        container = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == f"{PYTHON}:3.12.4"
    row = request_row(pbot, f"batch-image:{PYTHON}")
    assert row["state"] == "open" and row["action"] == "bump"
    audit = pbot.ctx.store.audit_log(PYTHON)[0]
    assert (audit["action"], audit["result"], audit["actor"]) == ("pipeline.bump", "opened #1", DEVOPS)
    assert json.loads(audit["params"])["version"] == "3.12.4"


def test_bumping_again_while_the_pr_is_open_updates_the_same_pull_request(pbot):
    seed_fleet(pbot)
    bump(pbot, f"{PYTHON} 3.12.4")
    first = wait_message(pbot, "C0OPS", PYTHON, "is open for review")
    bump(pbot, f"{PYTHON} 3.12.5")
    pbot.slack.wait_for(lambda: "3.12.5" in json.dumps(pbot.slack.message("C0OPS", first["ts"])["blocks"])
                        and "is open" in pbot.slack.message("C0OPS", first["ts"])["text"])
    assert len(pbot.github.pulls(REPO)) == 1
    assert f'{PYTHON}: "3.12.5"' in pbot.github.pr_files(REPO, 1)["batch-images.yaml"]


def test_bump_is_devops_only_and_the_denial_is_audited(pbot):
    bump(pbot, f"{PYTHON} 3.12.4", user=PAY_DEV)
    reply = pbot.slack.wait_for(lambda: pbot.slack.responses)[0]
    assert "can't do that: only DevOps may do this" in reply["text"]
    assert pbot.ctx.store.audit_log(PYTHON)[0]["result"] == "denied"
    assert pbot.github.writes() == []


def test_unknown_image_lists_the_known_ones(pbot):
    bump(pbot, "registry.example.com/batch/ruby 3.3.0")
    reply = pbot.slack.wait_for(lambda: pbot.slack.responses)[0]
    assert "`registry.example.com/batch/ruby` isn't a base image in `batch-images.yaml`" in reply["text"]
    assert f"`{PYTHON}` (3.12.1)" in reply["text"] and "`registry.example.com/batch/jvm` (21.0.2)" in reply["text"]
    assert pbot.github.writes() == [] and pbot.github.pulls(REPO) == []
    assert pbot.ctx.store.audit_log("registry.example.com/batch/ruby")[0]["result"] == "rejected: unknown image"


def test_bad_arguments_and_a_version_that_is_not_a_tag(pbot):
    bump(pbot, PYTHON)
    usage = pbot.slack.wait_for(lambda: pbot.slack.responses)[0]
    assert "Usage of /pipeline" in usage["text"] and "batch-image bump &lt;image&gt; &lt;version&gt;" in usage["text"]
    bump(pbot, f"{PYTHON} v1/2")
    bad = pbot.slack.wait_for(lambda: len(pbot.slack.responses) >= 2 and pbot.slack.responses[-1])
    assert "`v1/2` isn't an image tag" in bad["text"]
    assert pbot.github.writes() == []


def test_bump_to_the_current_version_with_nothing_to_render_opens_nothing(pbot):
    seed_fleet(pbot)
    bump(pbot, f"{PYTHON} 3.12.1")
    message = wait_message(pbot, "C0OPS", PYTHON, "nothing to change")
    assert "already at 3.12.1" in json.dumps(message["blocks"])
    assert pbot.github.pulls(REPO) == []
    assert pbot.ctx.store.audit_log(PYTHON)[0]["result"] == "no change"
