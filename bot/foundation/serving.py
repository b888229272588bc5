"""The two HTTP listeners (waitress), each with limits chosen for what it carries.

PORT carries Slack's requests (HTTP mode) and the hooks: anyone who can reach the Service can open
connections there. waitress stops accepting once `connection_limit` connections are open, so if the
probes shared that listener, ~100 idle clients would make the kubelet kill a healthy pod. HEALTH_PORT
has its own connection limit, threads and socket map: GET /healthz, /readyz, /metrics only.

Limits on PORT, deliberately:
- max_request_body_size 1 MiB (bot/foundation/web.py MAX_BODY): waitress answers 413 as soon as the
  Content-Length says more, without reading the body (its default is 1 GiB, read before Flask's check).
- channel_timeout 10 s, checked every cleanup_interval 2 s: Slack gives an app 3 s to answer, so a client
  idle for 10 s is not Slack; this frees connections held open by slow or idle clients.
- connection_limit 200 and 8 threads (HTTP_THREADS): acks are fast and the work runs after them.

Three things keep the ack fast while deckhand's own threads are busy (bench/ack.py; see README, Benchmarks):
- every connection waiting in the backlog is accepted on one pass of waitress's loop (`accept_waiting`);
- the heap built at startup is frozen out of the cyclic collector's way before serving (`Listeners.serve`);
- waitress's "Task queue depth is N" goes out at most once a minute, summarised (`QueueDepthLog`).
"""
from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from waitress import create_server
from waitress.server import BaseWSGIServer

from bot.foundation.web import MAX_BODY

log = logging.getLogger("deckhand.serving")

PORT_LIMITS = {"connection_limit": 200, "channel_timeout": 10, "cleanup_interval": 2,
               "max_request_body_size": MAX_BODY}
# Probes and scrapes: a few connections at a time, small GETs, nothing to wait for.
HEALTH_LIMITS = {"threads": 2, "connection_limit": 32, "channel_timeout": 5, "cleanup_interval": 2,
                 "max_request_body_size": 4096}
ACCEPT_BATCH = 64  # connections accepted per pass of the loop at most (accept_waiting)
QUEUE_LOG_PERIOD = 60.0  # seconds between two "requests waited for a thread" lines at most (QueueDepthLog)


@dataclass
class Listeners:
    main: BaseWSGIServer
    health: BaseWSGIServer
    health_thread: threading.Thread | None = None
    main_closing: threading.Event = field(default_factory=threading.Event)
    health_closing: threading.Event = field(default_factory=threading.Event)

    def serve(self) -> None:
        """Start HEALTH_PORT in the background and serve PORT on this thread until `close_main()`.

        First the heap the process built at startup (modules, clients, config, Bolt's listeners) is
        collected once and frozen (gc.freeze, https://docs.python.org/3/library/gc.html#gc.freeze): the
        cyclic collector no longer traverses it, so a full collection later walks only what was created
        since. Unfrozen, deckhand's full collections took 62-80 ms with the GIL held, and one landing in a
        burst of requests stalled every ack in flight (bench/ack.py). Frozen objects are still freed by
        reference counting; only reference cycles among them would outlive their use, and what startup
        builds lives as long as the process anyway."""
        gc.collect()
        gc.freeze()
        self.health_thread = threading.Thread(target=_serve, args=(self.health, self.health_closing),
                                              name="health-http", daemon=True)
        self.health_thread.start()
        _serve(self.main, self.main_closing)

    def close_main(self) -> None:
        """Stop accepting on PORT; waitress finishes the requests it has, then serve() returns."""
        self.main_closing.set()

    def close(self, timeout: float = 10.0) -> None:
        self.main.task_dispatcher.shutdown(cancel_pending=False, timeout=timeout)
        self.health_closing.set()
        if self.health_thread is not None:
            self.health_thread.join(timeout=5)
        self.health.task_dispatcher.shutdown(cancel_pending=False, timeout=2)


def _serve(server: BaseWSGIServer, closing: threading.Event) -> None:
    """waitress's run(), plus a clean end: once `closing` is set the listening socket is closed (on this
    thread, which owns the socket map) and every connection that is idle between requests is closed too.
    waitress times idle connections out only from its listening socket's readable(), which close()
    removes, so one idle keep-alive client would otherwise keep the process from exiting until the
    kubelet kills it."""
    closed = False
    try:
        while server._map:  # noqa: SLF001 - waitress keeps its socket map there (server.run uses it)
            server.asyncore.loop(timeout=server.adj.asyncore_loop_timeout, map=server._map, count=1)
            if closing.is_set():
                if not closed:
                    server.close()
                    closed = True
                server.maintenance(float("inf"))  # every channel without a request in progress
    except (OSError, ValueError) as exc:  # a socket closed under the loop at exit
        log.debug("listener stopped: %s", exc)


class QueueDepthLog(logging.Filter):
    """waitress logs "Task queue depth is N" at WARNING for every request that arrives while all its
    threads are busy (waitress/task.py ThreadedTaskDispatcher.add_task), from the thread that reads
    every request and while holding the lock every worker needs to take its next one. A burst of twenty
    Slack requests wrote a dozen lines, each a write to stderr in the middle of the ack path. This lets
    one line through per `period`, saying how often it happened since the last and how deep the queue
    got; the others are counted and dropped before any handler formats or writes them."""

    def __init__(self, period: float = QUEUE_LOG_PERIOD, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.period, self.clock = period, clock
        self._lock = threading.Lock()
        self._last = -period
        self._skipped = 0
        self._deepest = 0

    def filter(self, record: logging.LogRecord) -> bool:
        depth = record.args[0] if isinstance(record.args, tuple) and record.args else None
        now = self.clock()
        with self._lock:
            if isinstance(depth, int):
                self._deepest = max(self._deepest, depth)
            if now - self._last < self.period:
                self._skipped += 1
                return False
            skipped, deepest, since = self._skipped, self._deepest, now - self._last
            self._last, self._skipped, self._deepest = now, 0, 0
        record.msg = "all HTTP threads busy: %s requests waiting for one"
        if skipped:
            record.msg += f"; {skipped} more times in the last {since:.0f} s, at most {deepest} waiting"
        return True


def create_listeners(web, health_web, *, host: str, port: int, health_port: int, threads: int = 8) -> Listeners:
    main = create_server(web, host=host, port=port, threads=threads, ident="deckhand",
                         clear_untrusted_proxy_headers=True, **PORT_LIMITS)
    health = create_server(health_web, host=host, port=health_port, ident="deckhand",
                           clear_untrusted_proxy_headers=True, **HEALTH_LIMITS)
    accept_waiting(main)
    accept_waiting(health)
    queue_log = logging.getLogger("waitress.queue")
    if not any(isinstance(f, QueueDepthLog) for f in queue_log.filters):
        queue_log.addFilter(QueueDepthLog())
    return Listeners(main, health)


def accept_waiting(server: BaseWSGIServer, batch: int = ACCEPT_BATCH) -> None:
    """Make `server` accept every connection waiting in its backlog on one pass of its loop, not one.

    waitress accepts one connection per pass of its asyncore loop (BaseWSGIServer.handle_accept), and
    each pass gives up the GIL around select() and must take it back. While deckhand's own threads are
    busy (listeners answering earlier requests), taking it back costs milliseconds (the interpreter's
    switch interval is 5 ms, and other threads may win it first), so twenty clients connecting at once waited up to 140 ms for the last of them to be
    accepted before a byte of its request was read; p99 of the ack was that wait (bench/ack.py: a phase's
    first requests on fresh connections). Accepting all of them at once makes it one pass. `batch` and
    waitress's connection_limit bound a pass, so a connection flood cannot hold the loop."""
    accept_one = server.handle_accept

    def handle_accept() -> None:
        for _ in range(batch):
            open_before = len(server._map)  # noqa: SLF001 - waitress counts connections there (readable())
            accept_one()
            if len(server._map) == open_before or len(server._map) >= server.adj.connection_limit:  # noqa: SLF001
                return  # nothing left to accept (or accept failed and waitress logged it), or at the limit

    server.handle_accept = handle_accept
