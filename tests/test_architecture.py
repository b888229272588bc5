"""The house rules that code review would otherwise have to catch."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_bot_core_knows_nothing_of_bolt_listeners_jobs_or_block_kit():
    for path in (ROOT / "bot").rglob("*.py"):
        bad = imports(path) & {"slack_bolt", "commands", "jobs", "blocks", "app"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_blocks_are_pure():
    for path in (ROOT / "blocks").rglob("*.py"):
        bad = imports(path) & {"slack_bolt", "slack_sdk", "commands", "jobs", "app", "kubernetes", "github",
                               "requests", "sqlite_utils", "prometheus_api_client"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_only_app_wires_jobs_and_commands_together():
    for folder, other in (("jobs", "commands"), ("commands", "jobs")):
        for path in (ROOT / folder).rglob("*.py"):
            assert other not in imports(path), f"{path.relative_to(ROOT)} imports {other}/"
