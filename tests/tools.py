"""One switch for "a missing tool is a failure": DECKHAND_REQUIRE_TOOLS.

`make test` and CI set DECKHAND_REQUIRE_TOOLS=1, so a machine without kubectl, shellcheck or git fails
loudly instead of skipping the tests that need them (a skip there would hide a regression). A developer
without the switch gets a skip that names the missing tool. The same switch pins Hypothesis to its
derandomized profile (tests/conftest.py), so a green main stays green.
"""
from __future__ import annotations

import os
import shutil

import pytest

INSTALL_HINTS = {
    "kubectl": "make tools installs it",
    "shellcheck": "apt-get install shellcheck; make tools does it",
    "git": "apt-get install git",
}


def tools_required() -> bool:
    return os.environ.get("DECKHAND_REQUIRE_TOOLS", "").strip().lower() in {"1", "true", "yes", "on"}


def require_tool(name: str) -> str:
    """The tool's path; fail (DECKHAND_REQUIRE_TOOLS set) or skip with the reason when it is missing."""
    path = shutil.which(name)
    if path is not None:
        return path
    hint = INSTALL_HINTS.get(name, "install it")
    if tools_required():
        pytest.fail(f"{name} is required (DECKHAND_REQUIRE_TOOLS is set) but is not on PATH ({hint})")
    pytest.skip(f"{name} is not installed ({hint}); set DECKHAND_REQUIRE_TOOLS=1 to make this a failure")
    raise AssertionError("unreachable")
