"""Where listeners run, so that Slack always gets its ack in milliseconds and one person cannot
hold up everyone else.

Bolt runs a listener on its executor and makes the HTTP request thread wait until the listener
calls ack() (slack_bolt/listener/thread_runner.py). With a plain bounded pool, a burst of slow
work (Kubernetes, GitHub, Prometheus taking seconds) fills the pool and the next request's ack
waits in the queue — past Slack's 3-second limit under load. So:

- slash commands and button clicks are acked by middleware before the listener is queued (their
  listeners never put anything in the ack), and their work queues on the bounded pool;
- modal submissions must answer in the ack (`response_action: errors/update`), so their listener runs
  right there, on the request thread, before Bolt looks for the ack: it is ready at Bolt's first look
  (no 10 ms nap in thread_runner.py's loop), and no other thread has to be woken and given the GIL
  twice per submission (bench/ack.py's modal requests, 800 each, side by side with the urgent lane:
  p99 56 → 50 ms, CPU per request 1.61 → 1.37 ms). What such a listener does after its ack (Kubernetes, GitHub, Slack) it queues on the pool
  with `commands.kit.after_ack`, so the request thread is only ever held for the validation that
  decides the ack. Submissions are human-paced and charged to nobody's share.

Per-user share. Each user may have at most `share` listener calls admitted to the pool (running
or waiting for a thread) at once. With 8 workers and a share of 3, one person firing 100 commands
holds 3 threads and everyone else still has 5: 80 `/canary list` from one user used to delay a
DevOps reply from 0.01 s to 9.9 s. Beyond the share a request is REFUSED with an ephemeral answer
("you have 3 requests running: …; this one was not run"), not queued, because:
- deckhand answers from live state read when the listener runs (canary weights, dependencies,
  node health); a request that waited behind its sender's own backlog would answer minutes late
  about a state the person has already moved past;
- a queue per user is unbounded work a script or a stuck key can pile up (memory, and a backlog
  that outlives the person's interest); a refusal costs nothing the others wait for;
- the refusal arrives at once and says what to do (wait for an answer, then ask again), where a
  queued request leaves the person guessing whether it was lost.
A share of 3 leaves room for what one person does by hand (a list, a click, a second list).

How: the middleware `share_by_user` (`ListenerPool.middleware()`, registered last, so it runs after
Bolt's signature check and our own middleware) reserves a slot for the request's user, or refuses
it right there: a slash command's refusal IS its ack (Slack shows the body of a command's HTTP 200
to the person who typed it, https://api.slack.com/interactivity/slash-commands#responding_immediate_response),
so it costs no call and no thread; a click's goes to its response_url from one small notice thread,
never from a request thread and never from the listener pool the others are waiting for. The
listener Bolt then submits uses the reservation; `lane()` around Bolt's dispatch gives back a
reservation no listener used (no listener matched), so nothing leaks to the next request. Our own
middleware's submissions (persisting a delivery key) come before the reservation and are not charged.
"""
from __future__ import annotations

import logging
import threading
import queue
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from slack_bolt import BoltResponse

from blocks.common import escape

log = logging.getLogger("deckhand.commands")

SHARE = 3
NOTICE_BACKLOG = 50  # click refusals waiting to be sent; beyond this a flood's refusals are not told
_lane = threading.local()


@dataclass
class Owner:
    """Who a listener call is charged to and what it is (for the refusal text)."""

    user: str
    name: str


@contextmanager
def lane() -> Iterator[None]:
    """Around one Bolt dispatch. The middleware marks the lane (inline, or charged to a user); a
    reservation not used by a listener (nothing matched) is given back at the end."""
    _lane.inline, _lane.owner, _lane.pool = False, None, None
    try:
        yield
    finally:
        owner, pool = getattr(_lane, "owner", None), getattr(_lane, "pool", None)
        _lane.inline, _lane.owner, _lane.pool = False, None, None
        if owner is not None and pool is not None:
            pool._release(owner)


def refusal_text(running: list[str]) -> str:
    names = ", ".join("`" + escape(n.replace("`", "'")) + "`" for n in running)
    return (f":hourglass: You have {len(running)} requests still running ({names}), so deckhand did not run this one: "
            "each person gets a small share of deckhand's workers so that nobody waits behind someone else. "
            "Try again once one of them has answered.")


class ListenerPool(Executor):
    def __init__(self, workers: int = 32, share: int = SHARE):
        self.pool = Workers(workers, "listener", start=workers)
        self.share = share
        self._admitted: dict[str, list[str]] = {}  # user -> names of their calls admitted and not finished
        self._notices = Workers(1, "share-notice", start=1)
        self._notices_waiting = 0
        self._lock = threading.Lock()
        self._closed = False

    def running(self, user: str) -> list[str]:
        with self._lock:
            return list(self._admitted.get(user, ()))

    # -- the share ---------------------------------------------------------------------------------
    def _admit(self, owner: Owner) -> list[str] | None:
        """Reserve a slot for `owner`; None when admitted, else what they already have running."""
        with self._lock:
            mine = self._admitted.setdefault(owner.user, [])
            if len(mine) >= self.share:
                return list(mine)
            mine.append(owner.name)
            return None

    def _release(self, owner: Owner) -> None:
        with self._lock:
            mine = self._admitted.get(owner.user, [])
            if owner.name in mine:
                mine.remove(owner.name)
            if not mine:
                self._admitted.pop(owner.user, None)

    def middleware(self) -> Callable:
        """The Bolt middleware `share_by_user` (register it last). A plain function: Bolt fills
        middleware arguments by name."""

        def share_by_user(req, resp, next):  # noqa: A002 - Bolt's names
            body = req.body or {}
            if body.get("type") == "view_submission":  # answered in the ack, on this thread; human-paced
                _lane.inline = True
                return next()
            user = body.get("user_id") or (body.get("user") or {}).get("id") or (body.get("event") or {}).get("user")
            if not user:
                return next()
            owner = Owner(str(user), _name(body))
            running = self._admit(owner)
            if running is None:
                _lane.owner, _lane.pool = owner, self
                return next()
            text = refusal_text(running)
            if body.get("command"):
                return BoltResponse(status=200, body={"response_type": "ephemeral", "text": text})
            respond = getattr(req.context, "respond", None)
            if respond is not None and (body.get("response_url") or body.get("response_urls")):
                self._tell(lambda: respond(response_type="ephemeral", replace_original=False, text=text))
            return BoltResponse(status=200, body="")

        return share_by_user

    def _tell(self, send: Callable[[], Any]) -> None:
        """Send a click's refusal from the notice thread; a flood of them is cut off, not queued."""
        with self._lock:
            if self._notices_waiting >= NOTICE_BACKLOG or self._closed:
                return
            self._notices_waiting += 1

        def run() -> None:
            try:
                send()
            except Exception as exc:  # a dead response_url must not surface as an unhandled error
                log.info("could not send a share refusal: %s", exc)
            finally:
                with self._lock:
                    self._notices_waiting -= 1

        self._notices.submit(run)

    # -- Executor ----------------------------------------------------------------------------------
    def submit(self, fn, /, *args, **kwargs) -> Future:
        if getattr(_lane, "inline", False):
            _lane.inline = False  # the listener's; what it queues after its ack goes the usual way
            return _run_here(fn, *args, **kwargs)
        owner = getattr(_lane, "owner", None)
        if owner is None:
            return self.pool.submit(fn, *args, **kwargs)
        _lane.owner = None  # the reservation is this listener's; anything else submitted is not charged

        def charged() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                self._release(owner)

        try:
            return self.pool.submit(charged)
        except BaseException:
            self._release(owner)
            raise

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
        self.pool.shutdown(wait=wait, cancel_futures=cancel_futures)
        self._notices.shutdown(wait=wait, cancel_futures=cancel_futures)


def _run_here(fn, /, *args, **kwargs) -> Future:
    future: Future = Future()
    future.set_running_or_notify_cancel()
    try:
        future.set_result(fn(*args, **kwargs))
    except BaseException as exc:  # delivered to whoever waits on the future, as from a worker
        future.set_exception(exc)
    return future


class Workers:
    """Threads taking work from one queue, started up front (and grown, up to `size`, only when every
    one is busy). Not concurrent.futures.ThreadPoolExecutor: its submit() holds a lock shared by every
    executor in the process (`_global_shutdown_lock`) while it starts a thread, so a listener that
    runs a short-lived executor of its own (a fleet-wide lookup, a canary discovery) stalled every ack
    waiting to submit behind it (bench/profiled_app.py: 64 % of the HTTP threads' busy time)."""

    def __init__(self, size: int, name: str, start: int):
        self._work_queue: queue.SimpleQueue = queue.SimpleQueue()  # the name bench/profiled_app.py reads
        self._size, self._name = size, name
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._closed = False
        for _ in range(start):
            self._grow()

    def _grow(self) -> None:
        thread = threading.Thread(target=self._run, name=f"{self._name}_{len(self._threads)}", daemon=True)
        self._threads.append(thread)
        self._idle += 1
        thread.start()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self._idle == 0 and len(self._threads) < self._size:
                self._grow()
            self._idle -= 1  # taken by this item (the count goes negative while items wait)
        self._work_queue.put((future, fn, args, kwargs))
        return future

    def _run(self) -> None:
        while True:
            item = self._work_queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(*args, **kwargs))
                    except BaseException as exc:  # delivered to whoever waits on the future
                        future.set_exception(exc)
            finally:
                with self._lock:
                    self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._work_queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in threads:
            self._work_queue.put(None)
        if wait:
            for thread in threads:
                thread.join()


def _name(body: dict) -> str:
    """What the request was, in the words the person used (a command and its first word, a button)."""
    if body.get("command"):
        sub = (body.get("text") or "").strip().split(" ", 1)[0]
        return f"{body['command']} {sub}".strip()[:60]
    if body.get("type") == "block_actions":
        action = (body.get("actions") or [{}])[0]
        label = ((action.get("text") or {}).get("text") or action.get("action_id") or "a button")
        return f"{label} button"[:60]
    return (body.get("event") or {}).get("type") or body.get("type") or "request"
