"""Golden files for Block Kit: a reviewer reads tests/golden/<name>.json to see the UI.

Set UPDATE_GOLDEN=1 to (re)write them after an intended change, then review the diff.
"""
import json
import os
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def assert_golden(name: str, data) -> None:
    path = GOLDEN / f"{name}.json"
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
        return
    assert path.exists(), f"no golden file {path}; run with UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(), f"{name} differs from {path}; if intended, UPDATE_GOLDEN=1 and review the diff"
