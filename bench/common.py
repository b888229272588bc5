"""What every benchmark needs: the registry, the Result row, percentiles and the Scaling helper.

A benchmark is one module in bench/ with one or more functions like

    @benchmark("dependency-check", order=30)
    def dependency_check(opts: Options) -> list[Result]:
        ...

`bench/run.py` imports every module in bench/, runs the registered functions in `order`, prints
one table and writes bench/results.json. The backends (fakes, the real Prometheus, the bot as a
subprocess or in-process) and the load generator are re-exported here so a benchmark module
imports from one place; see bench/backends.py, bench/load.py and bench/fleet.py.
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.backends import (  # noqa: E402 - re-exported for benchmark modules
    Backends, BotProcess, SlowPrometheus, cluster_entry, in_process_bot, write_config,
)
from bench.load import Sent, SignedRequest, request_builder, send_all, wait_quiet  # noqa: E402
from tests.harness import BOT_TOKEN, DEVOPS, DEVOPS2, OUTSIDER, PAY_DEV, PAY_DEV2, SIGNING_SECRET, FakeClock  # noqa: E402

__all__ = [
    "ROOT", "Options", "Result", "benchmark", "BENCHMARKS", "percentile", "summarize", "Scaling", "Step",
    "format_calls", "format_table", "machine_info", "log",
    "Backends", "BotProcess", "SlowPrometheus", "cluster_entry", "write_config", "in_process_bot", "FakeClock",
    "DEVOPS", "DEVOPS2", "OUTSIDER", "PAY_DEV", "PAY_DEV2", "SIGNING_SECRET", "BOT_TOKEN",
    "SignedRequest", "Sent", "request_builder", "send_all", "wait_quiet",
]

DEFAULT_SIZES = (50, 500, 5000)


@dataclass
class Options:
    """Command-line knobs every benchmark receives. `workdir` is private to one benchmark run."""

    sizes: tuple[int, ...] = DEFAULT_SIZES
    requests: int = 1000
    concurrency: int = 20
    backend_latency: float = 1.0
    profile: str = "auto"  # auto: profile a benchmark that misses its target; always; never
    workdir: Path = Path("/tmp")
    profile_dir: Path = ROOT / "bench" / "profiles"


@dataclass
class Result:
    """One row of the table and of results.json.

    `target` is what the issue promises in words ("< 100 ms"); `met` is True/False when there is a
    target, None when the row is informational. `calls` is the backend cost (an int or
    {backend: count}) so growth with size is visible next to the time.
    """

    name: str
    value: float | None
    unit: str
    target: str | None = None
    met: bool | None = None
    calls: int | dict[str, int] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def below(cls, name: str, value: float | None, unit: str, limit: float, **kw: Any) -> "Result":
        """A row whose target is `value < limit` (a missing value misses)."""
        met = value is not None and value < limit
        return cls(name, value, unit, target=f"< {limit:g} {unit}".strip(), met=met, **kw)

    @classmethod
    def at_most(cls, name: str, value: float | None, unit: str, limit: float, **kw: Any) -> "Result":
        met = value is not None and value <= limit
        return cls(name, value, unit, target=f"<= {limit:g} {unit}".strip(), met=met, **kw)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


# -- registry ----------------------------------------------------------------------------------
@dataclass
class Benchmark:
    name: str
    run: Callable[[Options], "Result | list[Result]"]
    order: int
    module: str


BENCHMARKS: dict[str, Benchmark] = {}


def benchmark(name: str, order: int = 100) -> Callable:
    """Register `fn(opts) -> Result | [Result]` under `name` (what `--only` selects)."""

    def register(fn: Callable[[Options], Any]) -> Callable[[Options], Any]:
        if name in BENCHMARKS and BENCHMARKS[name].run is not fn:
            raise ValueError(f"benchmark {name!r} is registered twice ({BENCHMARKS[name].module}, {fn.__module__})")
        BENCHMARKS[name] = Benchmark(name, fn, order, fn.__module__)
        return fn

    return register


def log(message: str) -> None:
    """Progress to stderr, so stdout stays the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- statistics --------------------------------------------------------------------------------
def percentile(values: Iterable[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100): always one of the measured values, never interpolated."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(seconds: Iterable[float], scale: float = 1000.0) -> dict[str, float | int | None]:
    """n, p50, p90, p99, max and mean of durations in seconds, scaled (default: to milliseconds)."""
    values = [v * scale for v in seconds]
    out: dict[str, float | int | None] = {"n": len(values)}
    for p in (50, 90, 99):
        value = percentile(values, p)
        out[f"p{p}"] = round(value, 2) if value is not None else None
    out["max"] = round(max(values), 2) if values else None
    out["mean"] = round(sum(values) / len(values), 2) if values else None
    return out


# -- scaling -----------------------------------------------------------------------------------
@dataclass
class Step:
    size: int
    seconds: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


class Scaling:
    """Run the same measurement at several sizes and show how time and calls grow.

        scaling = Scaling("idle scan", opts.sizes)
        for size in scaling.sizes:
            world = seed(size)                      # not timed
            with scaling.measure(size) as step:     # timed
                run_scan(world)
                step.calls = {"promql": ..., "kubernetes": ...}
        log(scaling.table())
        rows = scaling.results(unit="s", limit=5.0)   # one Result per size; growth in details

    or `scaling.run(lambda size: ..., setup=lambda size: ...)` when the timed part is one call.
    """

    def __init__(self, name: str, sizes: Iterable[int] = DEFAULT_SIZES):
        self.name = name
        self.sizes = sorted(set(int(s) for s in sizes))
        self.steps: list[Step] = []

    @contextmanager
    def measure(self, size: int) -> Iterator[Step]:
        step = Step(size)
        started = time.perf_counter()
        try:
            yield step
        finally:
            step.seconds = time.perf_counter() - started
            self.steps.append(step)

    def run(self, timed: Callable[[Any], dict[str, int] | None], setup: Callable[[int], Any] | None = None) -> list[Step]:
        """For each size: state = setup(size) (not timed), then calls = timed(state or size) (timed)."""
        for size in self.sizes:
            state = setup(size) if setup else size
            with self.measure(size) as step:
                step.calls = dict(timed(state) or {})
        return self.steps

    def growth(self) -> list[dict[str, Any]]:
        """Per size: time and calls as a multiple of the smallest size's."""
        if not self.steps:
            return []
        base = self.steps[0]
        rows = []
        for step in self.steps:
            row: dict[str, Any] = {"size": step.size, "seconds": round(step.seconds, 4),
                                   "size_x": round(step.size / base.size, 2) if base.size else None,
                                   "time_x": round(step.seconds / base.seconds, 2) if base.seconds else None,
                                   "calls": dict(step.calls)}
            row["calls_x"] = {k: (round(v / base.calls[k], 2) if base.calls.get(k) else None)
                              for k, v in step.calls.items()}
            rows.append(row)
        return rows

    def table(self) -> str:
        lines = [f"{self.name}: growth with size (x = multiple of size {self.steps[0].size})" if self.steps else self.name]
        lines.append(f"  {'size':>7} {'seconds':>9} {'time x':>7}  calls (x)")
        for row in self.growth():
            calls = ", ".join(f"{k} {v} ({row['calls_x'][k] if row['calls_x'][k] is not None else '-'}x)"
                              for k, v in row["calls"].items())
            lines.append(f"  {row['size']:>7} {row['seconds']:>9.3f} {row['time_x'] or 0:>6.2f}x  {calls}")
        return "\n".join(lines)

    def results(self, unit: str = "s", limit: float | None = None, **details: Any) -> list[Result]:
        growth = {row["size"]: row for row in self.growth()}
        out = []
        for step in self.steps:
            name = f"{self.name} @ {step.size}"
            info = {"size": step.size, "growth": growth[step.size], **step.details, **details}
            if limit is None:
                out.append(Result(name, round(step.seconds, 4), unit, calls=dict(step.calls), details=info))
            else:
                out.append(Result.below(name, round(step.seconds, 4), unit, limit, calls=dict(step.calls), details=info))
        return out


# -- reporting ---------------------------------------------------------------------------------
def format_calls(calls: int | dict[str, int] | None) -> str:
    if calls is None:
        return ""
    if isinstance(calls, dict):
        return ", ".join(f"{k} {v}" for k, v in calls.items())
    return str(calls)


def _format_value(value: float | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return f"{value:g}"


def format_table(results: list[Result]) -> str:
    header = ("benchmark", "value", "unit", "target", "result", "calls")
    rows = [(r.name, _format_value(r.value), r.unit, r.target or "",
             {True: "pass", False: "MISS", None: ""}[r.met], format_calls(r.calls)) for r in results]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def machine_info() -> dict[str, Any]:
    model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), None)
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu_model": model or platform.processor() or None,
            "python": platform.python_version(), "platform": platform.platform()}


def write_results(path: Path, results: list[Result], options: dict[str, Any], seconds: float) -> None:
    document = {"machine": machine_info(), "options": options, "seconds": round(seconds, 1),
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "results": [r.as_json() for r in results]}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
