"""Shared pytest wiring. Each fake lives in tests/fakes/<name>.py and defines its own fixtures;
they are loaded here as plugins so every test can ask for them by name."""
pytest_plugins = [
    "tests.fakes.kube",
    "tests.fakes.slack",
    "tests.fakes.github",
    "tests.fakes.prometheus",
    "tests.harness",
]
