"""Property-based tests over bad input: slash-command text and config files.

Never a 500, never a traceback in Slack, never the generic "unexpected error" (that would be a
bug we have not handled), always a specific message.
"""
from __future__ import annotations

from pathlib import Path
import json

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from bot.foundation.config import ConfigError, Settings, parse_settings
from tests.harness import DEVOPS, PAY_DEV

COMMANDS = ["/ops", "/pipeline", "/canary", "/service"]
SUBCOMMANDS = {"/ops": ["help", "audit", "savings", "jobs", "run"],
               "/pipeline": ["create", "edit", "list", "batch-image", "batch-image bump", "help"],
               "/canary": ["list", "help", "payments-api"],
               "/service": ["deps", "delete", "help"]}

words = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
command_text = st.one_of(
    words,
    st.tuples(st.sampled_from(sorted({s for v in SUBCOMMANDS.values() for s in v})), words).map(" ".join),
    st.lists(st.sampled_from(["'", '"', "--", "*", "<@U1>", "`", "prod-a", "x" * 300, "\n", "%", "&amp;"]),
             max_size=6).map(" ".join),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(command=st.sampled_from(COMMANDS), text=command_text, user=st.sampled_from([DEVOPS, PAY_DEV, "U0NOBODY"]))
def test_any_command_text_gets_a_specific_answer(bot, command, text, user):
    before = len(bot.slack.responses) + len(bot.slack.calls_to("views.open"))
    response = bot.sender.command(command, text, user_id=user)
    assert response.status_code == 200, response.text
    bot.slack.wait_for(lambda: len(bot.slack.responses) + len(bot.slack.calls_to("views.open")) > before, timeout=10)
    for reply in bot.slack.responses[before:]:
        shown = json.dumps(reply)
        assert "Traceback" not in shown
        assert "unexpected error" not in shown, shown
        assert reply.get("text") or reply.get("blocks")


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                           max_leaves=12)
KEYS = ["clusters", "github", "channels", "roles", "teams", "labels", "canary", "idle", "node_join", "deletion",
        "pipelines", "lease"]


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(yaml_values, st.dictionaries(st.sampled_from(KEYS), yaml_values, max_size=8)))
def test_any_config_is_either_valid_or_a_list_of_named_problems(data):
    try:
        result = parse_settings(data, "deckhand.yaml")
    except ConfigError as exc:
        assert exc.problems and all(p.startswith("deckhand.yaml:") for p in exc.problems)
    else:
        assert isinstance(result, Settings)


@settings(max_examples=100, deadline=None)
@given(mutation=st.dictionaries(st.sampled_from(KEYS), yaml_values, min_size=1, max_size=3))
def test_mutated_example_config_names_the_bad_key(mutation):
    data = yaml.safe_load(Path("deploy/deckhand.example.yaml").read_text())
    data.update(mutation)
    try:
        parse_settings(data, "deckhand.yaml")
    except ConfigError as exc:
        assert any(p.split(": ")[1].split(".")[0].split("[")[0] in mutation for p in exc.problems), exc.problems
