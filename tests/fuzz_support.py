"""Shared machinery for the property-based tests over modals (tests/test_fuzz_modals.py) and over
webhook bodies and button values (tests/test_fuzz_hooks.py). Slash-command text and config files are
fuzzed in tests/test_fuzz.py.

For every input: never a 500, never a traceback or the generic "Something went wrong … error id"
message (that is a bug nobody handled), always a specific answer — errors keyed to the modal's own
fields, an ephemeral explanation, or a 4xx with a reason — and a rejected input leaves every table
as it was (only the audit trail and Slack's retry keys may grow where an action was refused).
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import uuid

import pytest
import requests
import yaml
from hypothesis import HealthCheck, event, example, given, settings, strategies as st

from bot.nodes.reports import sign as sign_report
from bot.pipelines.form import parse_env
from tests.harness import DEVOPS, HOOK_SECRET, OUTSIDER, PAY_DEV, WEBHOOK_SECRET
from tests.test_zz_permissions import classify, rbac_grants

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])




def examples(n: int) -> settings:
    return settings(FUZZ, max_examples=n)


UNHANDLED = ("error id", "Something went wrong", "Traceback", "unexpected error", "Internal Server Error")
# Web API errors that mean deckhand sent Slack something malformed (as opposed to a gone message).
MALFORMED = {"invalid_blocks", "invalid_blocks_format", "invalid_arguments", "msg_too_long", "no_text",
             "invalid_attachments"}

# -- strategies ------------------------------------------------------------------------------------
NASTY = ["", " ", "\n", "\t", "0", "-1", "1", "²", "١٢", "１２", "1_000", "9" * 40, "1e3", "0x10", "NaN", "∞",
         "`", "```", "*", "_", "~", "<!channel>", "<@U0DEVOPS1>", "&lt;", "&amp;", "\x00", "\x7f", "\x85", "\u2028",
         "\ufeff", "'", '"', "{{ 7*7 }}", "{% raw %}", "${HOME}", "../../etc/passwd", "yes", "no", "on", "null",
         "~", ":", "- a", "# x", "a: b", "[1, 2]", "{}", "[]", "true", "🙂", "é" * 3, "x" * 300, "a\nb", "KEY=",
         "=value", "A=1\nA=2", "PASSWORD=x", "*/5 * * * *", "61 25 32 13 8", "@daily", "CRON_TZ=UTC 0 3 * * *",
         "pinned", "pinned :", "track latest of", "registry.example.com/batch/python", "Registry/UPPER",
         "repo@sha256:abc", "image:tag", "/", "/health z", "65536", "8080", "100m", "0.0001", "1Ki", "512MB",
         "-250m", "1.5.3", "org/payments-api", "https://example.com/org/repo", "prod-a", "prod-b", "prod-z"]
text = st.one_of(st.sampled_from(NASTY), st.text(max_size=40),
                 st.lists(st.sampled_from(NASTY), min_size=2, max_size=4).map("".join))
free = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)  # anything a person can type
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                         st.floats(allow_nan=False), text)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(text, st.sampled_from(["b", "c", "n", "s", "seen"])),
                                                 inner, max_size=4)), max_leaves=8)


# -- watching the bot ------------------------------------------------------------------------------
class InFlight:
    """Counts listener work still running, so a test knows when a request is fully handled
    (the ack came back long before) without sleeping."""

    def __init__(self, executor):
        self.count = 0
        self.lock = threading.Lock()
        original = executor.submit

        def submit(fn, *args, **kwargs):
            with self.lock:
                self.count += 1

            def run():
                try:
                    return fn(*args, **kwargs)
                finally:
                    with self.lock:
                        self.count -= 1
            return original(run)

        executor.submit = submit


class Quiet:
    """The bot, with a short repr: Hypothesis prints every argument of a falsifying example."""

    def __init__(self, bot):
        self.__dict__["_bot"] = bot

    def __getattr__(self, name):
        return getattr(self._bot, name)

    def __repr__(self) -> str:
        return "<bot>"


def watched(bot) -> Quiet:
    if "in_flight" not in bot.extra:
        bot.extra["in_flight"] = InFlight(bot.ctx.extras["listener_executor"])
    return Quiet(bot)


@pytest.fixture
def quiet_bot(bot):
    return watched(bot)


def settle(bot, timeout: float = 15) -> None:
    tracker = bot.extra["in_flight"]
    bot.slack.wait_for(lambda: tracker.count == 0, timeout=timeout)


def row_counts(bot, skip: tuple[str, ...] = ()) -> dict[str, int]:
    tables = [r["name"] for r in bot.ctx.store.query("SELECT name FROM sqlite_master WHERE type = 'table'")
              if r["name"] not in ("meta", "locks", "job_runs", *skip)]
    return {t: bot.ctx.store.query(f"SELECT COUNT(*) AS n FROM [{t}]")[0]["n"] for t in tables}


class Seen:
    """What Slack saw from the bot since this point: replies, ephemerals, modals, rejected calls."""

    def __init__(self, bot):
        self.bot = bot
        self.calls = len(bot.slack.calls)
        self.responses = len(bot.slack.responses)
        self.errors = self._errors()

    def _errors(self) -> float:
        return self.bot.ctx.metrics.registry.get_sample_value("deckhand_errors_total") or 0.0

    def new_calls(self):
        return self.bot.slack.calls[self.calls:]

    def new_responses(self):
        return self.bot.slack.responses[self.responses:]

    def told(self, user: str, response_url: str | None = None) -> list[str]:
        said = [r.get("text") or json.dumps(r.get("blocks")) for r in self.new_responses()
                if response_url is None or r["url"] == response_url]
        for call in self.new_calls():
            if call.method == "chat.postEphemeral" and call.args.get("user") == user:
                said.append(call.args.get("text") or "")
            elif call.method in ("views.open", "views.update", "views.push"):
                said.append(json.dumps(call.args.get("view")))
            elif call.method == "chat.postMessage" and call.args.get("channel") == user:
                said.append(call.args.get("text") or "")
        return said

    def assert_clean(self) -> None:
        """Nothing unhandled was shown, and nothing malformed was sent to Slack."""
        shown = json.dumps(self.new_responses(), ensure_ascii=False) + json.dumps(
            [c.args for c in self.new_calls()], ensure_ascii=False)
        for bad in UNHANDLED:
            assert bad not in shown, shown[:3000]
        assert self._errors() == self.errors, "an unhandled error reached the global error handler"
        malformed = [c.describe() for c in self.new_calls() if c.error in MALFORMED]
        assert not malformed, malformed


def assert_outbox_clean(bot) -> None:
    failed = bot.ctx.store.query("SELECT channel, error, payload FROM outbox WHERE state = 'failed'")
    assert not failed, failed
