"""Shared pytest wiring. The fakes in tests/fakes/ are a runtime library (no pytest); their fixtures
live in tests/fixtures.py and are loaded here as plugins so every test can ask for them by name."""
pytest_plugins = [
    "tests.fixtures",
    "tests.harness",
]

# Property-based tests draw fresh inputs on a developer's machine (to find new bugs) but the same
# ones under `make test` and CI (so a green main stays green); a failure found locally is pinned with
# @example. One switch decides, the same that makes a missing tool a failure: DECKHAND_REQUIRE_TOOLS.
from hypothesis import settings

from tests.tools import tools_required

settings.register_profile("ci", derandomize=True, print_blob=True)
if tools_required():
    settings.load_profile("ci")
