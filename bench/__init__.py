"""deckhand benchmarks: `python bench/run.py` (see README.md (Benchmarks))."""
