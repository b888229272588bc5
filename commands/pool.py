"""Where listeners run, so that Slack always gets its ack in milliseconds and one person cannot
hold up everyone else.

Bolt runs a listener on its executor and makes the HTTP request thread wait until the listener
calls ack() (slack_bolt/listener/thread_runner.py). With a plain bounded pool, a burst of slow
work (Kubernetes, GitHub, Prometheus taking seconds) fills the pool and the next request's ack
waits in the queue — past Slack's 3-second limit under load. So:

- slash commands and button clicks are acked by middleware before the listener is queued (their
  listeners never put anything in the ack), and their work queues on the bounded pool;
- modal submissions must answer in the ack (`response_action: errors/update`), so each starts at
  once on its own thread ("urgent" lane): they are human-paced, and a slow one cannot hold up another.

Per-user share. Each user may have at most `share` listener calls admitted to the pool (running
or waiting for a thread) at once. With 8 workers and a share of 3, one person firing 100 commands
holds 3 threads and everyone else still has 5: 80 `/canary list` from one user used to delay a
DevOps reply from 0.01 s to 9.9 s. Beyond the share a request is REFUSED with an ephemeral answer
("you have 3 requests running: …; this one was not run"), not queued, because:
- deckhand answers from live state read when the listener runs (canary weights, dependencies,
  node health); a request that waited behind its sender's own backlog would answer minutes late
  about a state the person has already moved past;
- a queue per user is unbounded work a script or a stuck key can pile up (memory, and a backlog
  that outlives the person's interest); a refusal costs one response_url post and nothing else;
- the refusal arrives at once and says what to do (wait for an answer, then ask again), where a
  queued request leaves the person guessing whether it was lost.
A share of 3 leaves room for what one person does by hand (a list, a click, a second list).

The share is charged by the middleware `share_by_user` (`ListenerPool.middleware()`), registered last so it runs after Bolt's
signature check and our own middleware (whose own submissions, such as persisting a delivery
key, are not the user's listener and are never refused); `lane()` around Bolt's dispatch clears
it, so nothing leaks to the next request served by the same thread.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from blocks.common import escape

log = logging.getLogger("deckhand.commands")

SHARE = 3
_lane = threading.local()


@dataclass
class Owner:
    """Who a listener call is charged to, what it is (for the refusal text), how to tell them."""

    user: str
    name: str
    refused: Callable[[str], None] | None = None  # called off the request thread with the text


@contextmanager
def lane(urgent: bool = False) -> Iterator[None]:
    """Around one Bolt dispatch: `urgent` for modal submissions; no owner until the middleware sets one."""
    _lane.urgent, _lane.owner = urgent, None
    try:
        yield
    finally:
        _lane.urgent, _lane.owner = False, None


def refusal_text(running: list[str]) -> str:
    names = ", ".join("`" + escape(n.replace("`", "'")) + "`" for n in running)
    return (f":hourglass: You have {len(running)} requests still running ({names}), so deckhand did not run this one: "
            "each person gets a small share of deckhand's workers so that nobody waits behind someone else. "
            "Try again once one of them has answered.")


class ListenerPool(Executor):
    def __init__(self, workers: int = 32, share: int = SHARE):
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="listener")
        self.share = share
        self._admitted: dict[str, list[str]] = {}  # user -> names of their calls admitted and not finished
        self._urgent: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._closed = False

    def running(self, user: str) -> list[str]:
        with self._lock:
            return list(self._admitted.get(user, ()))

    def submit(self, fn, /, *args, **kwargs) -> Future:
        if getattr(_lane, "urgent", False):
            return self._start_urgent(fn, *args, **kwargs)
        owner = getattr(_lane, "owner", None)
        if owner is None:
            return self.pool.submit(fn, *args, **kwargs)
        _lane.owner = None  # one listener per request; anything else this thread submits is not charged
        with self._lock:
            mine = self._admitted.setdefault(owner.user, [])
            if len(mine) >= self.share:
                text = refusal_text(mine)
                refused = True
            else:
                mine.append(owner.name)
                refused = False
        if refused:
            log.info("refused %s for %s: %d requests of theirs still running", owner.name, owner.user, self.share)
            if owner.refused is not None:
                self.pool.submit(_quietly, owner.refused, text)  # a network call: never on the request thread
            done: Future = Future()
            done.set_result(None)
            return done

        def charged() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    mine = self._admitted.get(owner.user, [])
                    if owner.name in mine:
                        mine.remove(owner.name)
                    if not mine:
                        self._admitted.pop(owner.user, None)

        try:
            return self.pool.submit(charged)
        except BaseException:
            with self._lock:
                self._admitted.get(owner.user, [owner.name]).remove(owner.name)
            raise

    def middleware(self) -> Callable:
        """The Bolt middleware `share_by_user` (register it last): charge the listener this request is
        about to queue to its user. A plain function: Bolt fills middleware arguments by name."""

        def share_by_user(req, resp, next):  # noqa: A002 - Bolt's names
            body = req.body or {}
            user = body.get("user_id") or (body.get("user") or {}).get("id") or (body.get("event") or {}).get("user")
            if user and body.get("type") != "view_submission":
                respond = getattr(req.context, "respond", None)
                notify = None
                if respond is not None and (body.get("response_url") or body.get("response_urls")):
                    def notify(text: str, respond=respond) -> None:
                        respond(response_type="ephemeral", replace_original=False, text=text)
                _lane.owner = Owner(str(user), _name(body), notify)
            return next()

        return share_by_user

    def _start_urgent(self, fn, *args, **kwargs) -> Future:
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


def _quietly(fn: Callable[[str], None], text: str) -> None:
    try:
        fn(text)
    except Exception as exc:  # a dead response_url must not surface as an unhandled pool error
        log.info("could not send the refusal: %s", exc)
