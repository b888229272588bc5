"""Where listeners run, so that Slack always gets its ack in milliseconds.

Bolt runs a listener on its executor and makes the HTTP request thread wait until the listener
calls ack() (slack_bolt/listener/thread_runner.py). With a plain bounded pool, a burst of slow
work (Kubernetes, GitHub, Prometheus taking seconds) fills the pool and the next request's ack
waits in the queue — past Slack's 3-second limit under load. So:

- slash commands and button clicks are acked by middleware before the listener is queued (their
  listeners never put anything in the ack), and their work queues on the bounded pool;
- modal submissions must answer in the ack (`response_action: errors/update`), so each starts at
  once on its own thread ("urgent" lane): they are human-paced, and a slow one cannot hold up another.
"""
from __future__ import annotations

import threading
from concurrent.futures import Executor, Future, ThreadPoolExecutor

_lane = threading.local()


class urgent:  # noqa: N801 - used as a context manager around Bolt's dispatch
    def __enter__(self):
        _lane.urgent = True

    def __exit__(self, *exc):
        _lane.urgent = False


class ListenerPool(Executor):
    def __init__(self, workers: int = 32):
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="listener")
        self._urgent: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn, /, *args, **kwargs) -> Future:
        if not getattr(_lane, "urgent", False):
            return self.pool.submit(fn, *args, **kwargs)
        future: Future = Future()

        def run() -> None:
            try:
                if future.set_running_or_notify_cancel():
                    future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # delivered to whoever waits on the future
                future.set_exception(exc)
            finally:
                with self._lock:
                    self._urgent.discard(threading.current_thread())

        thread = threading.Thread(target=run, name="listener-urgent", daemon=True)
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._urgent.add(thread)
        thread.start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            urgent_threads = list(self._urgent)
        self.pool.shutdown(wait=wait, cancel_futures=cancel_futures)
        if wait:
            for thread in urgent_threads:
                thread.join()
