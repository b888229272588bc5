"""`python bench/profiled_app.py` is `python app.py` (same env, same serve path) with the ack path
observed, for benchmarks that miss a latency target. At shutdown it writes to $BENCH_PROFILE_DIR:

- first-request.txt: pyinstrument profile of the first POST /slack/events (what happens once);
- requests.txt (and requests.pyisession, for `pyinstrument --load`): every later POST
  /slack/events, from the moment waitress hands the request to Flask until the answer is ready
  (the HTTP thread's wall-clock time, sleeps and waits included), combined into one call tree;
- threads.txt: what the listener pool and waitress threads were doing, sampled every 10 ms with
  sys._current_frames(), and how many listener calls were queued waiting for a free thread.

pyinstrument samples one thread per Profiler, so each request gets its own and the sessions are
combined; the sampler covers the threads the per-request profiles cannot see.
"""
from __future__ import annotations

import os
import re
import sys
import threading
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import app  # noqa: E402

OUT = Path(os.environ.get("BENCH_PROFILE_DIR", "bench/profiles"))
SAMPLE_EVERY = 0.01
HTTP_THREADS = "waitress HTTP threads\x00<thread>\x000"
# Library code that decides ack latency stays visible in the call tree; the rest is folded.
SHOW = r".*/(slack_bolt|sqlite_utils|slack_sdk/web|concurrent/futures|waitress)/.*"
_sessions: list = []
_contexts: list = []
_lock = threading.Lock()


def profiled_build_web(build_web):
    from pyinstrument import Profiler

    def build(ctx, bolt):
        _contexts.append(ctx)
        web = build_web(ctx, bolt)
        inner = web.wsgi_app

        def wsgi(environ, start_response):
            if environ.get("PATH_INFO") != "/slack/events":
                return inner(environ, start_response)
            profiler = Profiler(interval=0.001, async_mode="disabled")
            profiler.start()
            try:
                return inner(environ, start_response)
            finally:
                session = profiler.stop()
                with _lock:
                    _sessions.append(session)

        web.wsgi_app = wsgi
        return web

    return build


def _stack(frame) -> list[tuple[str, str]]:
    """(filename, function) from the outermost frame to `frame`; cheap (no source lines read)."""
    out = []
    while frame is not None:
        out.append((frame.f_code.co_filename, frame.f_code.co_name))
        frame = frame.f_back
    return out[::-1]


def _short(frame: tuple[str, str]) -> str:
    path, name = frame
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif path.startswith(str(ROOT)):
        path = os.path.relpath(path, ROOT)
    else:  # the standard library
        path = re.sub(r"^.*/lib/python3\.\d+/", "", path)
    return f"{path}:{name}"


def _describe(group: str, stack: list[tuple[str, str]]) -> str | None:
    """A short label for what a thread is doing; None when it is idle, waiting for work."""
    files = [f for f, _ in stack]
    names = [n for _, n in stack]
    if group == "listener" and "_worker" in names:
        after = names.index("_worker") + 1
        if after >= len(names) or files[after].endswith("queue.py"):
            return None
    if group == "listener" and names and names[-1] == "_run" and files[-1].endswith("commands/pool.py"):
        return None  # commands/pool.Workers waiting on its queue (SimpleQueue.get is C: no frame of its own)
    if group == "http" and "handler_thread" in names:
        after = names.index("handler_thread") + 1
        if after >= len(names) or files[after].endswith("threading.py"):
            return None
    project = [f for f in stack if f[0].startswith(str(ROOT)) and "/.venv/" not in f[0]
               and not f[0].startswith(str(ROOT / "bench"))]
    # The listener (outermost project frame), where it waits (innermost), and the call it waits in.
    chain = [_short(f) for f in (project[:1] + project[-1:] if len(project) > 1 else project)]
    leaf = _short(stack[-1])
    if not chain or chain[-1] != leaf:
        chain.append(leaf)
    return " > ".join(chain)


def _queued() -> int | None:
    """Listener calls waiting for a pool thread (the pool may be wrapped, as commands/pool.py does)."""
    executor = _contexts[0].extras.get("listener_executor") if _contexts else None
    for candidate in (executor, getattr(executor, "pool", None)):
        queue = getattr(candidate, "_work_queue", None)
        if queue is not None:
            return queue.qsize()
    return None


class ThreadSampler:
    def __init__(self):
        self.stop = threading.Event()
        self.samples = 0
        self.busy: Counter[str] = Counter()  # group -> busy thread-samples
        self.threads: Counter[str] = Counter()  # group -> thread-samples
        self.all_busy: Counter[str] = Counter()  # group -> samples where every thread was busy
        self.stacks: Counter[tuple[str, str]] = Counter()
        self.queue: list[int] = []
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.wait(SAMPLE_EVERY):
            try:
                self.sample()
            except Exception as exc:  # a sampler that dies silently would report "all idle"
                self.errors.append(repr(exc))

    def sample(self) -> None:
        names = {t.ident: t.name for t in threading.enumerate()}
        frames = sys._current_frames()
        queued = _queued()
        per_group: Counter[str] = Counter()
        busy_group: Counter[str] = Counter()
        stacks: list[tuple[str, str]] = []
        for ident, frame in frames.items():
            name = names.get(ident, "")
            group = "listener" if name.startswith("listener") else "http" if name.startswith("waitress-") else None
            if group is None:
                continue
            per_group[group] += 1
            label = _describe(group, _stack(frame))
            if label is not None:
                busy_group[group] += 1
                stacks.append((group, label))
        if not busy_group:
            return  # between load phases: nothing to explain
        self.samples += 1
        self.stacks.update(stacks)
        if queued is not None:
            self.queue.append(queued)
        for group, count in per_group.items():
            self.threads[group] += count
            self.busy[group] += busy_group[group]
            if busy_group[group] == count:
                self.all_busy[group] += 1

    def report(self) -> str:
        lines = [f"{self.samples} samples (taken every {SAMPLE_EVERY * 1000:.0f} ms while any thread was busy)", ""]
        for group, title in (("listener", "listener pool (Bolt runs each listener here; ack() is called from here)"),
                             ("http", "waitress HTTP threads (each holds a request until its ack)")):
            threads = self.threads[group] / self.samples if self.samples else 0
            busy = self.busy[group] / self.threads[group] * 100 if self.threads[group] else 0
            full = self.all_busy[group] / self.samples * 100 if self.samples else 0
            lines.append(f"{title}: {threads:.0f} threads, busy {busy:.0f}% of thread-samples, "
                         f"all busy in {full:.0f}% of samples")
            total = sum(v for (g, _), v in self.stacks.items() if g == group) or 1
            for (g, label), count in self.stacks.most_common():
                if g == group and count / total >= 0.01:
                    lines.append(f"  {count / total * 100:5.1f}%  {label}")
            lines.append("")
        if self.queue:
            lines.append(f"listener calls queued for a free thread: max {max(self.queue)}, "
                         f"mean {sum(self.queue) / len(self.queue):.1f}")
        if self.errors:
            lines.append(f"sampler errors ({len(self.errors)}): {self.errors[0]}")
        return "\n".join(lines) + "\n"


def write_reports(sampler: ThreadSampler) -> None:
    from pyinstrument.renderers import ConsoleRenderer
    from pyinstrument.session import Session

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "threads.txt").write_text(sampler.report(), encoding="utf-8")
    with _lock:
        sessions = list(_sessions)
    options = {"show_regex": SHOW, "filter_threshold": 0.002}
    if sessions:
        first, sessions = sessions[0], sessions[1:]
        text = ConsoleRenderer(unicode=True, color=False, time="seconds", processor_options=options).render(first)
        (OUT / "first-request.txt").write_text(f"the first POST /slack/events after startup ({first.duration * 1000:.0f} ms)\n"
                                               + text, encoding="utf-8")
    if sessions:
        for session in sessions:  # one tree for all HTTP threads, not one per thread
            session.frame_records = [([HTTP_THREADS, *stack[1:]], t) for stack, t in session.frame_records]
            session.start_call_stack = [HTTP_THREADS, *session.start_call_stack[1:]]
        combined = sessions[0]
        for session in sessions[1:]:
            combined = Session.combine(combined, session)
        combined.save(OUT / "requests.pyisession")
        text = ConsoleRenderer(unicode=True, color=False, time="seconds", processor_options=options).render(combined)
        header = (f"{len(sessions)} POST /slack/events requests after the first, HTTP thread wall-clock, combined "
                  f"({combined.duration:.2f}s in all, {combined.duration / len(sessions) * 1000:.1f} ms per request)\n")
        (OUT / "requests.txt").write_text(header + text, encoding="utf-8")


def main() -> int:
    app.build_web = profiled_build_web(app.build_web)
    sampler = ThreadSampler()
    thread = threading.Thread(target=sampler.run, name="bench-sampler", daemon=True)
    thread.start()
    try:
        return app.main(["app.py", *sys.argv[1:]])
    finally:
        sampler.stop.set()
        thread.join(timeout=2)
        write_reports(sampler)


if __name__ == "__main__":
    sys.exit(main())
