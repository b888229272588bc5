"""The house rules that code review would otherwise have to catch (DESIGN.md, Layout)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FEATURES = {"canary", "pipelines", "deletion", "idle", "nodes"}
OURS = {"app", "bot", "commands", "console", "jobs", "blocks", "demo", "tests"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports count too), fully named."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from bot import canary`
    return found


def files(*folders: str):
    for folder in folders:
        yield from (ROOT / folder).rglob("*.py")


def top(name: str) -> str:
    return name.split(".")[0]


def test_bot_core_knows_nothing_of_bolt_listeners_jobs_block_kit_or_adapters():
    for path in files("bot"):
        bad = {top(m) for m in imported(path)} & {"slack_bolt", "commands", "jobs", "blocks", "app", "console", "demo"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_feature_packages_use_the_foundation_and_their_own_modules_only():
    for feature in FEATURES:
        for path in files(f"bot/{feature}"):
            for name in imported(path):
                parts = name.split(".")
                if parts[0] != "bot" or len(parts) < 2 or parts[1] not in FEATURES:
                    continue
                assert parts[1] == feature, f"{path.relative_to(ROOT)} reaches into another feature: {name}"


def test_the_foundation_imports_no_feature():
    for path in files("bot/foundation"):
        bad = {m for m in imported(path) if m.split(".")[:2][-1] in FEATURES and top(m) == "bot"}
        assert not bad, f"{path.relative_to(ROOT)} imports a feature: {bad}"


def test_every_bot_package_says_what_it_owns():
    for package in ["bot", "bot/foundation", *(f"bot/{f}" for f in FEATURES)]:
        init = ROOT / package / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), f"{package}/__init__.py has no docstring"


def test_blocks_are_pure():
    for path in files("blocks"):
        bad = {top(m) for m in imported(path)} & {"slack_bolt", "slack_sdk", "commands", "jobs", "app", "kubernetes",
                                                  "github", "requests", "sqlite_utils", "prometheus_api_client",
                                                  "bot", "console"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_only_app_wires_jobs_commands_and_the_console_together():
    forbidden = {"jobs": {"commands", "console", "app"}, "commands": {"jobs", "console", "app"},
                 "console": {"jobs", "app"}}
    for folder, others in forbidden.items():
        for path in files(folder):
            bad = {top(m) for m in imported(path)} & others
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_no_import_cycles_between_packages():
    """Between the top-level packages, and between bot's packages: the graph must be acyclic."""
    graph: dict[str, set[str]] = {}

    def unit(name: str) -> str | None:
        parts = name.split(".")
        if parts[0] not in OURS or parts[0] == "tests":
            return None
        return ".".join(parts[:2]) if parts[0] == "bot" and len(parts) > 1 and (ROOT / "bot" / parts[1]).is_dir() \
            else parts[0]

    for path in [ROOT / "app.py", *files("bot", "commands", "console", "jobs", "blocks")]:
        source = unit(module_name(path))
        for name in imported(path):
            target = unit(name)
            if target and target != source:
                graph.setdefault(source, set()).add(target)

    seen, stack = set(), []

    def visit(node: str) -> None:
        assert node not in stack, f"import cycle: {' -> '.join(stack[stack.index(node):] + [node])}"
        if node in seen:
            return
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        stack.pop()
        seen.add(node)

    for node in sorted(graph):
        visit(node)


def test_the_fakes_and_the_demo_are_runtime_code_without_pytest():
    """tests/fakes/ is shared by demo/ and tests/ (DESIGN.md, Layout): the demo runs without pytest."""
    for path in files("tests/fakes", "demo"):
        bad = {top(m) for m in imported(path)} & {"pytest", "_pytest", "hypothesis"}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_the_demo_uses_only_the_fakes_from_tests():
    for path in files("demo"):
        bad = {m for m in imported(path) if top(m) == "tests" and not m.startswith("tests.fakes")}
        assert not bad, f"{path.relative_to(ROOT)} imports test code: {bad}"


def test_tests_reach_the_demo_only_through_its_public_entry():
    """Tests drive the demo as a user does (`python app.py demo`) or through `demo.start`, never its internals."""
    for path in files("tests"):
        bad = {m for m in imported(path) if top(m) == "demo" and m not in ("demo", "demo.start", "demo.Demo")}
        assert not bad, f"{path.relative_to(ROOT)} imports demo internals: {bad}"
