"""Shared pytest wiring. Each fake lives in tests/fakes/<name>.py and defines its own fixtures;
they are loaded here as plugins so every test can ask for them by name."""
pytest_plugins = [
    "tests.fakes.kube",
    "tests.fakes.slack",
    "tests.fakes.github",
    "tests.fakes.prometheus",
    "tests.harness",
]

# Property-based tests draw fresh inputs on a developer's machine (to find new bugs) but the same
# ones in CI (so a green main stays green); a failure found locally is pinned with @example.
import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
