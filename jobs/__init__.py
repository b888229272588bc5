"""Scheduled jobs, one module per job. Each exposes NAME, trigger(settings) and run(ctx) -> summary.

Every run, scheduled or by `/ops run`, goes through `run_now`: it is skipped when this instance
is not the leader (only one instance posts), recorded in `job_runs` with start, end and outcome,
and counted in /metrics. APScheduler runs each job with coalesce=True and max_instances=1, so a
slow run is never overlapped by the next tick and missed ticks collapse into one.
"""
from __future__ import annotations

import logging
import threading
import time

from bot.foundation.context import Context, JobFailed, new_error_id
from jobs import audit_feed, canary_reminders, deletion_expiry, idle_scan, node_scan, node_waves, pr_poll
from jobs.schedule import in_words

log = logging.getLogger("deckhand.jobs")

MODULES = [node_scan, node_waves, idle_scan, canary_reminders, pr_poll, deletion_expiry, audit_feed]
JOBS = {m.NAME: m for m in MODULES}
_running: dict[str, threading.Lock] = {name: threading.Lock() for name in JOBS}


def run_now(ctx: Context, name: str, trigger: str = "schedule") -> str:
    module = JOBS.get(name)
    if module is None:
        return f"There is no job `{name}`. Jobs: {', '.join(f'`{n}`' for n in JOBS)}."
    if not ctx.is_leader():
        return f"`{name}` skipped: another deckhand instance holds the lease and runs the jobs."
    lock = _running[name]
    if not lock.acquire(blocking=False):
        return f"`{name}` is already running; its result will show in `/ops jobs`."
    run_id = ctx.store.job_started(name, trigger)
    started = time.perf_counter()
    try:
        summary = module.run(ctx) or "done"
        outcome = "ok"
    except JobFailed as exc:  # the job says why in words: no traceback, no error id
        summary, outcome = str(exc), "failed"
        log.warning("job %s failed: %s", name, summary)
    except Exception as exc:
        error_id = new_error_id()
        log.error("job %s failed (error id %s)", name, error_id, exc_info=exc)
        summary = f"{exc or type(exc).__name__} (error id {error_id})"
        outcome = "failed"
    finally:
        lock.release()
    ctx.store.job_finished(run_id, outcome, summary)
    ctx.metrics.job_runs.labels(job=name, outcome=outcome).inc()
    ctx.metrics.job_seconds.labels(job=name).observe(time.perf_counter() - started)
    return f"`{name}` {outcome}: {summary}"


def attach(ctx: Context, scheduler=None) -> None:
    """Give the listeners (which must not import jobs/) a way to run and list jobs."""
    ctx.run_job = lambda name, user="manual": run_now(ctx, name, trigger=f"manual:{user}")
    ctx.extras["describe_jobs"] = lambda: describe(ctx)
    if scheduler is not None:
        ctx.extras["scheduler"] = scheduler


def schedule_all(scheduler, ctx: Context) -> None:
    planned = []
    for module in MODULES:
        trigger = module.trigger(ctx.settings)
        if trigger is None:
            continue
        planned.append(f"{module.NAME} ({in_words(trigger)})")
        scheduler.add_job(
            run_now, trigger, args=[ctx, module.NAME], id=module.NAME, name=module.NAME,
            coalesce=True, max_instances=1, misfire_grace_time=300, replace_existing=True,
        )
    log.info("scheduled %d jobs: %s", len(planned), ", ".join(planned))
    attach(ctx, scheduler)


def describe(ctx: Context) -> list[dict]:
    scheduler = ctx.extras.get("scheduler")
    out = []
    for module in MODULES:
        trigger = module.trigger(ctx.settings)
        job = scheduler.get_job(module.NAME) if scheduler else None
        next_run = getattr(job, "next_run_time", None) if job else None
        out.append({"name": module.NAME, "schedule": in_words(trigger),
                    "next_run": next_run.strftime("%Y-%m-%d %H:%M %Z") if next_run else None})
    return out

