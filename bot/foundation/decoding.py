"""JSON decoding of large answers (fleet-wide Kubernetes lists, Prometheus vectors) without the
cyclic garbage collector running all through it.

Decoding a 5,000-item list creates about half a million dicts and lists, all of them alive until the
decoder returns. CPython triggers a collection every 700 container allocations and a full one
whenever the survivors grew by a quarter, so it traverses that growing, cycle-free heap again and
again: 16 clusters × three 5,000-item lists (bench/fleet.py's objects) took 4.6 s to decode with the
collector and 0.95 s without it. msgpack-python's README gives the same advice for unpacking large
messages ("CPython's GC starts when growing allocated object ... use gc.disable()").
JSON cannot encode a reference cycle, so nothing a decoder builds is garbage the collector could
find; refcounting frees it as before.

The collector is process-wide, and several threads decode at once (listener pool, scheduler,
fleet scans), so pauses are counted: it is disabled by the first and re-enabled by the last,
and only when it was enabled to begin with.
"""
from __future__ import annotations

import gc
import json
import threading
from contextlib import contextmanager
from typing import Any, Iterator

_lock = threading.Lock()
_pauses = 0
_resume = False


@contextmanager
def collector_paused() -> Iterator[None]:
    global _pauses, _resume
    with _lock:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _resume:
                gc.enable()


def loads(data: bytes | str) -> Any:
    """json.loads with the collector paused (ValueError on malformed JSON, as json.loads)."""
    with collector_paused():
        return json.loads(data)
