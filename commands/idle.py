"""`/idle [team] [cluster] | savings` (answered privately from what the scans stored, bot/idle/report.py)
and the buttons on the idle-service digest and on that list: Request deletion, Snooze, Keep (with a modal
asking why), Un-keep, the list of kept services, and (DevOps) a fresh scan."""
from __future__ import annotations

import json
import logging
from datetime import datetime

from slack_sdk.errors import SlackApiError

from blocks import idle_report
from blocks.common import escape
from blocks.idle import (KEEP, KEEP_REASON_BLOCK, KEEP_VIEW, KEPT_LIST, REQUEST_DELETION, SNOOZE, UNKEEP,
                         digest_message, keep_modal, kept_list_modal, span)
from bot.idle import report as idle_report_data
from bot.idle import store as idle_store
from bot.foundation.context import Context
from bot.idle.store import CLEARED, DELETION_REQUESTED, KEPT, OPEN, SNOOZED
from bot.foundation.store import iso
from commands.kit import (UsageError, action_value, after_ack, channel_of, deny, message_ts_of, safe_respond, usage_text,
                          user_of, words)

log = logging.getLogger("deckhand.commands.idle")
MIN_REASON = 5
COMMAND = "/idle"
SUMMARY = "idle services per team with reclaimable CPU and memory; savings"
USAGE = ["[team] [cluster]", "savings"]


def scope_of(ctx: Context, user: str, args: list[str]) -> tuple[list[str] | None, str | None]:
    """[team] [cluster] -> (teams to list, None = all; cluster or None). A team's members see their team
    by default, DevOps every team; anyone may name a team (reading changes nothing)."""
    teams = set(ctx.settings.teams) | {idle_store.UNOWNED}
    clusters = {c.name for c in ctx.settings.clusters}
    team = cluster = None
    for word in args:
        if team is None and cluster is None and word in teams:
            team = word
        elif cluster is None and word in clusters:
            cluster = word
        else:
            raise UsageError(f"`{escape(word[:80])}` is neither a team ({', '.join(f'`{escape(t)}`' for t in sorted(teams))}) "
                             f"nor a cluster ({', '.join(f'`{escape(c)}`' for c in sorted(clusters))}).",
                             " | ".join(USAGE))
    if team is not None:
        return [team], cluster
    return (None if ctx.access.is_devops(user) else ctx.access.teams_of(user)), cluster


def list_payload(ctx: Context, user: str, text: str, note: str | None = None) -> dict:
    teams, cluster = scope_of(ctx, user, words(text))
    view = idle_report_data.current(ctx, teams, cluster)
    return idle_report.list_message(view, args=" ".join(words(text)), devops=ctx.access.is_devops(user),
                                    own_teams=ctx.access.teams_of(user), note=note)


def register_command(app, ctx: Context) -> None:
    @app.command(COMMAND)
    def idle_command(ack, body, respond):
        ack()
        user, args = user_of(body), words(body.get("text"))
        sub = args[0].lower() if args else ""
        if sub == "help" and len(args) == 1:
            return respond(response_type="ephemeral", text=usage_text(COMMAND, USAGE))
        if len(args) > 2:
            return respond(response_type="ephemeral",
                           text=usage_text(COMMAND, USAGE, f"I don't know `{COMMAND} {escape(' '.join(args))}`."))
        if sub == "savings" and len(args) == 1:
            teams = None if ctx.access.is_devops(user) else (ctx.access.teams_of(user) or None)
            return respond(response_type="ephemeral",
                           **idle_report.savings_message(idle_report_data.savings(ctx, teams)))
        respond(response_type="ephemeral", **list_payload(ctx, user, body.get("text") or ""))

    @app.action(idle_report.SCAN)
    def fresh_scan(ack, body, respond):
        ack()
        user = user_of(body)
        decision = ctx.access.may(user, "ops.run")
        if not decision:
            return deny(ctx, respond, user, "ops.run", decision, target=idle_report_data.JOB)
        text = action_value(body)
        text = "" if text == "-" else text
        safe_respond(respond, response_type="ephemeral", replace_original=False,
                     text=":hourglass_flowing_sand: Scanning every cluster for idle services…")
        # The job itself, so its Prometheus health guard (no data is never idleness) applies unchanged.
        outcome = ctx.run_job(idle_report_data.JOB, user) if ctx.run_job else "no scheduler is running"
        try:
            payload = list_payload(ctx, user, text, note=escape(clip_note(outcome)))
        except UsageError:
            payload = list_payload(ctx, user, "", note=escape(clip_note(outcome)))
        safe_respond(respond, response_type="ephemeral", replace_original=True, **payload)


def clip_note(text: str) -> str:
    return text if len(text) <= 1500 else text[:1499] + "…"


def describe_state(row: dict) -> str:
    by = f"<@{row['decided_by']}>" if row.get("decided_by") else "someone"
    return {
        OPEN: "it is waiting for a decision",
        SNOOZED: f"{by} snoozed it until {(row.get('snoozed_until') or '')[:10]}",
        KEPT: f"{by} keeps it (“{row.get('reason') or ''}”); un-keep it first",
        DELETION_REQUESTED: f"{by} already asked to delete it",
        CLEARED: f"it left the list ({row.get('cleared_reason') or 'no longer idle'})",
    }.get(row["state"], row["state"])


def register(app, ctx: Context) -> None:
    register_command(app, ctx)
    # Thread replies of a digest wait for the parent's ts; after a restart too.
    idle_store.watch_digest_posts(ctx, digest_message)

    def tell(body: dict, client, respond, text: str) -> None:
        """An ephemeral note: on a message through its response_url, in a modal by updating the modal."""
        try:
            if body.get("response_url"):
                respond(response_type="ephemeral", replace_original=False, text=text)
            elif body.get("view") and body["view"].get("callback_id") == "idle_kept_list":
                team = body["view"].get("private_metadata") or idle_store.UNOWNED
                client.views_update(view_id=body["view"]["id"],
                                    view=kept_list_modal(team, idle_store.kept_services(ctx, team), note=text))
            elif channel_of(body):
                client.chat_postEphemeral(channel=channel_of(body), user=user_of(body), text=text)
        except SlackApiError as exc:
            log.info("could not tell %s: %s", user_of(body), exc)

    def refresh(client, key: str, body: dict | None = None) -> None:
        clicked = idle_store.digest_at(ctx, channel_of(body), message_ts_of(body)) if body else None
        idle_store.refresh_digests(ctx, key, digest_message, client=client, clicked=clicked)

    def service_of(body: dict, client, respond) -> tuple[str, dict] | None:
        key = action_value(body)
        try:
            row = idle_store.service_row(ctx, key)
        except ValueError:
            tell(body, client, respond, f":warning: That button names `{key}`, which is not a service deckhand "
                                        "listed. Use the buttons of a current digest.")
            return None
        if row is None:
            tell(body, client, respond, f":warning: deckhand has no record of `{key}` (was its database reset?). "
                                        "The next idle scan lists it again if it is still idle.")
            return None
        return key, row

    def allowed(body: dict, client, respond, user: str, action: str, key: str, row: dict) -> bool:
        decision = ctx.access.may(user, action, team=row["team"])
        if not decision:
            deny(ctx, lambda **kw: tell(body, client, respond, kw["text"]), user, action, decision,
                 target=f"{row['namespace']}/{row['service']}", cluster=row["cluster"])
        return bool(decision)

    def not_applied(body, client, respond, user: str, action: str, key: str, what: str) -> None:
        row = idle_store.service_row(ctx, key)
        ctx.audit(user, action, f"not applied: {row['state']}", target=f"{row['namespace']}/{row['service']}",
                  cluster=row["cluster"])
        tell(body, client, respond, f":information_source: Not {what}: {describe_state(row)}.")
        refresh(client, key, body)  # the message may show an older state than the row

    def service_button(action_id: str, rule: str):
        """A digest button about one service: ack, find the service, check `rule`, then act."""
        def register_button(act):
            @app.action(action_id)
            def handler(ack, body, client, respond):
                ack()
                user, found = user_of(body), service_of(body, client, respond)
                if not found:
                    return
                key, row = found
                if allowed(body, client, respond, user, rule, key, row):
                    act(body, client, respond, user, key, row)
                    shown_for = idle_report.parse_block_id(((body.get("actions") or [{}])[0]).get("block_id") or "")
                    if shown_for is not None:  # clicked in a /idle list: show it with the new state
                        try:
                            safe_respond(respond, response_type="ephemeral", replace_original=True,
                                         **list_payload(ctx, user, shown_for))
                        except UsageError:
                            pass  # a block_id we did not write (it is untrusted input)
            return handler
        return register_button

    @service_button(REQUEST_DELETION, "deletion.request")
    def request_deletion(body, client, respond, user, key, row):
        if idle_store.decide(ctx, key, user, "idle.request_deletion", (OPEN, SNOOZED), DELETION_REQUESTED):
            refresh(client, key, body)
        else:
            row = idle_store.service_row(ctx, key)
            if row["state"] != DELETION_REQUESTED:
                return not_applied(body, client, respond, user, "idle.request_deletion", key, "handed to deletion")
            ctx.audit(user, "idle.request_deletion", "shown again", target=f"{row['namespace']}/{row['service']}",
                      cluster=row["cluster"])
        # Late import: commands/service.py belongs to the deletion flow and imports much of its own.
        from commands import service as deletion

        deletion.open_deletion_request(ctx, client, respond, user, row["service"], row["cluster"],
                                       namespace=row["namespace"], source="idle")

    @service_button(SNOOZE, "idle.snooze")
    def snooze(body, client, respond, user, key, row):
        until: datetime = ctx.now() + ctx.settings.idle.snooze
        if idle_store.decide(ctx, key, user, "idle.snooze", (OPEN, DELETION_REQUESTED), SNOOZED,
                             {"snoozed_until": iso(until)},
                             params={"until": iso(until), "for": span(ctx.settings.idle.snooze.total_seconds())}):
            refresh(client, key, body)
        else:
            not_applied(body, client, respond, user, "idle.snooze", key, "snoozed")

    @service_button(KEEP, "idle.keep")
    def keep(body, client, respond, user, key, row):
        if row["state"] not in (OPEN, SNOOZED, DELETION_REQUESTED):
            return not_applied(body, client, respond, user, "idle.keep", key, "kept")
        item = {"cluster": row["cluster"], "namespace": row["namespace"], "service": row["service"]}
        client.views_open(trigger_id=body["trigger_id"], view=keep_modal(
            item, {"key": key, "channel": channel_of(body), "ts": message_ts_of(body)}))

    @app.view(KEEP_VIEW)
    def keep_submitted(ack, body, client, view):
        value = (((view.get("state") or {}).get("values") or {}).get(KEEP_REASON_BLOCK) or {}).get("value") or {}
        reason = " ".join((value.get("value") or "").split())
        if len(reason) < MIN_REASON:
            return ack(response_action="errors", errors={
                KEEP_REASON_BLOCK: "Say why it should stay (at least 5 characters), e.g. “standby for failover”."})
        ack()
        after_ack(ctx, body, keep_with_reason, body, client, view, reason)

    def keep_with_reason(body, client, view, reason: str) -> None:
        user = user_of(body)
        meta = json.loads(view.get("private_metadata") or "{}")
        key, channel = meta.get("key", ""), meta.get("channel")
        row = idle_store.service_row(ctx, key)
        if row is None:
            return
        ephemeral = (lambda **kw: client.chat_postEphemeral(channel=channel, user=user, text=kw["text"])) \
            if channel else (lambda **kw: None)
        decision = ctx.access.may(user, "idle.keep", team=row["team"])
        if not decision:
            return deny(ctx, ephemeral, user, "idle.keep", decision, target=f"{row['namespace']}/{row['service']}",
                        cluster=row["cluster"])
        if idle_store.decide(ctx, key, user, "idle.keep", (OPEN, SNOOZED, DELETION_REQUESTED), KEPT,
                             {"reason": reason}, params={"reason": reason}):
            refresh(client, key, {"channel_id": channel, "container": {"message_ts": meta.get("ts")}})
        else:
            row = idle_store.service_row(ctx, key)
            ctx.audit(user, "idle.keep", f"not applied: {row['state']}", target=f"{row['namespace']}/{row['service']}",
                      cluster=row["cluster"])
            ephemeral(text=f":information_source: Not kept: {describe_state(row)}.")

    @service_button(UNKEEP, "idle.keep")
    def unkeep(body, client, respond, user, key, row):
        if not idle_store.decide(ctx, key, user, "idle.unkeep", (KEPT,), OPEN, {"reason": None}):
            return not_applied(body, client, respond, user, "idle.unkeep", key, "un-kept")
        refresh(client, key, body)
        if body.get("view"):
            tell(body, client, respond, f":white_check_mark: Un-kept `{key}`: the next digest lists it again if "
                                        "it is still idle.")

    @app.action(KEPT_LIST)
    def kept_list(ack, body, client):
        ack()
        team = action_value(body) or idle_store.UNOWNED
        client.views_open(trigger_id=body["trigger_id"],
                          view=kept_list_modal(team, idle_store.kept_services(ctx, team)))
