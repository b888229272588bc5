"""Large answers are decoded with the cyclic collector paused, and it always comes back."""
from __future__ import annotations

import gc
import threading

import pytest

from bot.foundation import decoding


@pytest.fixture(autouse=True)
def collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_decoding_pauses_the_collector_and_resumes_it():
    body = b'{"items": [' + b",".join([b'{"metadata": {"name": "svc"}}'] * 20000) + b"]}"
    seen = []
    gc.callbacks.append(lambda phase, info: seen.append(phase))
    try:
        answer = decoding.loads(body)
    finally:
        gc.callbacks.pop()
    assert len(answer["items"]) == 20000
    # 40,000 containers allocated, and at most the one young collection their count triggers once
    # the collector is back (without the pause: about sixty).
    assert seen.count("start") <= 1
    assert gc.isenabled()


def test_malformed_json_raises_and_the_collector_resumes():
    with pytest.raises(ValueError):
        decoding.loads(b'{"items": [')
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off():
    gc.disable()
    decoding.loads(b"[1]")
    assert not gc.isenabled()


def test_overlapping_pauses_resume_only_when_the_last_one_ends():
    inside, release = threading.Event(), threading.Event()

    def slow_decoder():
        with decoding.collector_paused():
            inside.set()
            release.wait(10)

    worker = threading.Thread(target=slow_decoder)
    worker.start()
    assert inside.wait(10)
    decoding.loads(b"[1]")  # starts and ends while the other pause is still open
    assert not gc.isenabled()
    release.set()
    worker.join(10)
    assert gc.isenabled()
