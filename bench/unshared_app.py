"""`python bench/unshared_app.py` is `python app.py` with the per-user share of the listener pool lifted
(commands/pool.py), for the fairness benchmark's contrast run. Nothing else differs."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import app  # noqa: E402

_build_bolt = app.build_bolt


def build_bolt(ctx, workers: int = 8):
    bolt = _build_bolt(ctx, workers)
    ctx.extras["listener_executor"].share = 10 ** 9
    return bolt


if __name__ == "__main__":
    app.build_bolt = build_bolt
    sys.exit(app.main(["app.py", *sys.argv[1:]]))
