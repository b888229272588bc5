"""Run deckhand's benchmarks on loopback, print one table, write bench/results.json.

    python bench/run.py                         # everything
    python bench/run.py --only ack memory       # some
    python bench/run.py --sizes 50 500 --requests 400 --concurrency 20
    python bench/run.py --list

Every module in bench/ that registers a function with @benchmark("name") is a benchmark (see
README.md (Benchmarks)); helper modules register nothing. A benchmark that crashes becomes a MISS row with
the error, and the others still run. Exit status: 1 if a benchmark crashed (or, with --strict,
missed a target), else 0: a missed target is a finding the table reports, not a failed run.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))

from bench.common import BENCHMARKS, DEFAULT_SIZES, Options, Result, format_table, log, machine_info, write_results  # noqa: E402

HELPERS = {"run", "common", "backends", "load", "fleet", "profiled_app", "bare_app", "unshared_app"}


def discover() -> list[Result]:
    """Import every benchmark module; one that cannot be imported becomes an error row."""
    broken = []
    for module in pkgutil.iter_modules([str(BENCH_DIR)]):
        if module.name not in HELPERS and not module.name.startswith("_"):
            try:
                importlib.import_module(f"bench.{module.name}")
            except Exception as exc:
                broken.append(Result(f"bench/{module.name}.py", None, "", target="imports", met=False,
                                     details={"error": f"{type(exc).__name__}: {exc}",
                                              "traceback": traceback.format_exc()}))
    return broken


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks (see --list)")
    parser.add_argument("--sizes", nargs="+", type=int, default=list(DEFAULT_SIZES), metavar="N",
                        help="fleet sizes for the scaling benchmarks (default: 50 500 5000)")
    parser.add_argument("--requests", type=int, default=1000, metavar="N",
                        help="signed Slack requests in the ack benchmark (default: 1000)")
    parser.add_argument("--concurrency", type=int, default=20, metavar="C",
                        help="requests in flight at once (default: 20)")
    parser.add_argument("--backend-latency", type=float, default=1.0, metavar="S",
                        help="seconds every backend fake waits before answering in the ack benchmark (default: 1)")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                        help="profile a benchmark that misses its target (auto), every one, or none")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results.json", help="where to write the JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed (default: only on errors)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    broken = discover()
    ordered = sorted(BENCHMARKS.values(), key=lambda b: (b.order, b.name))
    if args.list:
        for bench in ordered:
            print(f"{bench.name:<24} bench/{bench.module.split('.')[-1]}.py")
        return 0
    if args.only:
        unknown = sorted(set(args.only) - set(BENCHMARKS))
        if unknown:
            print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(b.name for b in ordered)}",
                  file=sys.stderr)
            return 2
        ordered = [b for b in ordered if b.name in args.only]
    if any(s < 1 for s in args.sizes) or args.requests < 1 or args.concurrency < 1:
        print("--sizes, --requests and --concurrency must be positive", file=sys.stderr)
        return 2

    machine = machine_info()
    log(f"{len(ordered)} benchmark(s) on {machine['cores']} cores ({machine['cpu_model']}), "
        f"Python {machine['python']}")
    results: list[Result] = list(broken)
    for row in broken:
        log(f"{row.name} could not be imported: {row.details['error']}")
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="deckhand-bench-"))
    try:
        for bench in ordered:
            opts = Options(sizes=tuple(args.sizes), requests=args.requests, concurrency=args.concurrency,
                           backend_latency=args.backend_latency, profile=args.profile,
                           workdir=scratch / bench.name)
            opts.workdir.mkdir(parents=True)
            log(f"--- {bench.name}")
            t0 = time.perf_counter()
            try:
                produced = bench.run(opts)
                rows = produced if isinstance(produced, list) else [produced]
            except Exception as exc:  # one broken benchmark must not hide the others' numbers
                log(f"{bench.name} failed: {exc}")
                rows = [Result(bench.name, None, "", target="runs", met=False,
                               details={"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})]
            for row in rows:
                row.details.setdefault("benchmark", bench.name)
                row.details.setdefault("benchmark_seconds", round(time.perf_counter() - t0, 1))
            results.extend(rows)
            log(f"{bench.name} done in {time.perf_counter() - t0:.1f}s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - started
    print(format_table(results))
    print(f"\n{machine['cores']} cores, {machine['cpu_model']}, Python {machine['python']}, "
          f"{machine['platform']}; {seconds:.0f}s in all")
    write_results(args.output, results, {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                  seconds)
    log(f"wrote {args.output}")
    crashed = any("error" in r.details for r in results)
    missed = any(r.met is False for r in results)
    return 1 if crashed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
