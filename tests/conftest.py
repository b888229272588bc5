"""Shared pytest wiring. The fakes in tests/fakes/ are a runtime library (no pytest); their fixtures
live in tests/fixtures.py and are loaded here as plugins so every test can ask for them by name."""
pytest_plugins = [
    "tests.fixtures",
    "tests.harness",
]

# Property-based tests draw fresh inputs on a developer's machine (to find new bugs) but the same
# ones in CI (so a green main stays green); a failure found locally is pinned with @example.
import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
