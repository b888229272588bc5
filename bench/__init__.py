"""deckhand benchmarks: `python bench/run.py` (see docs/bench.md)."""
