"""/ops: help, audit, savings, jobs, run."""
from __future__ import annotations

from datetime import timedelta

from blocks.common import escape
from blocks.ops import audit_message, help_message, jobs_message, savings_message
from bot.foundation.config import parse_duration
from bot.foundation.context import Context
from commands.kit import deny, usage_text, user_of, words

COMMAND = "/ops"
SUMMARY = "help, audit trail, savings and scheduled jobs"
USAGE = ["help", "audit [service] [since, e.g. 7d]", "savings", "jobs", "run <job>"]


def register(app, ctx: Context) -> None:
    @app.command(COMMAND)
    def ops(ack, body, respond):
        ack()
        args = words(body.get("text"))
        user = user_of(body)
        sub = args[0].lower() if args else "help"
        if sub == "help":
            from commands import help_lines  # late import: commands/__init__ imports this module

            respond(response_type="ephemeral", **help_message(help_lines()))
        elif sub == "audit":
            target, since = None, None
            for arg in args[1:3]:
                try:
                    since = ctx.now() - parse_duration(arg)
                except ValueError:
                    target = arg
            respond(response_type="ephemeral", **audit_message(ctx.store.audit_log(target, since), target))
        elif sub == "savings":
            respond(response_type="ephemeral", **savings_message(ctx.store.savings_by_team_month()))
        elif sub == "jobs":
            respond(response_type="ephemeral", **jobs_message(job_listing(ctx)))
        elif sub == "run":
            decision = ctx.access.may(user, "ops.run")
            if not decision:
                return deny(ctx, respond, user, "ops.run", decision, target=args[1] if len(args) > 1 else None)
            if len(args) < 2:
                return respond(response_type="ephemeral", text=usage_text(COMMAND, ["run <job>"], "Which job?"))
            if ctx.run_job is None:
                return respond(response_type="ephemeral", text="Jobs are not available in this process.")
            names = [job["name"] for job in job_listing(ctx)]
            if names and args[1] not in names:  # say so at once, before any "Running…"
                return respond(response_type="ephemeral", text=usage_text(
                    COMMAND, ["run <job>"], f"There is no job `{escape(args[1])}`. Jobs: "
                                            + ", ".join(f"`{n}`" for n in names) + "."))
            respond(response_type="ephemeral", text=f":hourglass_flowing_sand: Running `{args[1]}`…")
            outcome = ctx.run_job(args[1], user)
            respond(response_type="ephemeral", text=outcome)
        else:
            respond(response_type="ephemeral", text=usage_text(COMMAND, USAGE, f"I don't know `/ops {sub}`."))


def job_listing(ctx: Context) -> list[dict]:
    describe = ctx.extras.get("describe_jobs")  # set by jobs.attach; commands/ does not import jobs/
    last = {row["job"]: row for row in ctx.store.last_job_runs()}
    return [{**job, "last": last.get(job["name"])} for job in (describe() if describe else [])]
