"""/service: dependency check and safe, four-eyes deletion.

    /service deps <service> [cluster]     the report, for anyone
    /service delete <service> [cluster]   the report with Request deletion when nothing blocks

`<service>` may be `namespace/service` when one cluster has it in several namespaces. The core
(bot/deletion/dependencies.py, bot/deletion/lifecycle.py) does the work; this module turns clicks into calls.
"""
from __future__ import annotations

import json
import logging
import re

from slack_sdk.webhook import WebhookClient

from blocks.service import (ACTION_APPROVE, ACTION_OVERRIDE, ACTION_REJECT, ACTION_REQUEST, ACTION_RESUME,
                            REASON_BLOCK, VIEW_OVERRIDE, loading_text, override_modal, report_message,
                            request_message, requested_text)
from bot.deletion import lifecycle
from bot.foundation.context import Context
from bot.foundation.doors import allowed_response_url
from bot.foundation.logs import redact_deep
from bot.deletion.dependencies import DependencyReport, ServiceMissing, check
from bot.foundation.gitops import GitOpsError
from bot.foundation.kube import KubeError
from bot.foundation.services import describe_lookup_failure, find_service
from commands.kit import action_value, after_ack, deny, fail, safe_respond, usage_text, user_of, words

log = logging.getLogger("deckhand.commands.service")

COMMAND = "/service"
SUMMARY = "dependency check and four-eyes deletion"
USAGE = ["deps <service> [cluster]", "delete <service> [cluster]"]

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MIN_REASON = 10
# The files a removal PR would delete are part of what the approver sees, so they are read at request time.
_GITOPS_NEXT = ("Nothing was requested: the files of its pipeline in the GitOps repository are part of what gets "
                "approved. Try again in a minute; if it keeps failing, ask DevOps to check deckhand's GitHub access.")


def open_deletion_request(ctx: Context, client, respond, user: str, service: str, cluster: str,
                          namespace: str | None = None, source: str = "idle") -> None:
    """Start a deletion for `service` in `cluster`, exactly like `/service delete <service> <cluster>`.

    Call it after ack() (it talks to Kubernetes and Prometheus). It runs the dependency check for
    that service (in `namespace` when given, else wherever the service is found in the cluster)
    and shows `user` the report ephemerally through `respond` (never replacing the message the
    click came from), with a **Request deletion** button when nothing blocks (DevOps also get
    **Override and request deletion** when only unknown traffic blocks). Lookup and backend
    failures are shown to the user the same way; it never raises for them. `client` is the Bolt
    WebClient (kept for symmetry with listeners; may be ctx.slack). `source` names where the
    request started ("command", "idle", ...) and is kept on the request and in the audit trail.
    Nothing is posted to the approvals channel until the user presses the button.
    """
    _show_report(ctx, respond, user, service, cluster, namespace, mode="delete", source=source)


def _show_report(ctx: Context, respond, user: str, service: str, cluster: str | None, namespace: str | None,
                 mode: str, source: str = "command") -> None:
    safe_respond(respond, response_type="ephemeral", replace_original=False, text=loading_text(service, cluster))
    report = _check(ctx, respond, service, cluster, namespace)
    if report is None:
        return
    request = ctx.access.may(user, "deletion.request", team=report.team)
    override = ctx.access.may(user, "deletion.override")
    denial = None if request or report.blocked else f"You can't request this deletion: {request.reason}."
    existing = lifecycle.open_request_for(ctx, report.cluster, report.namespace, report.service)
    notice = (f":information_source: Deletion request #{existing.id} by <@{existing.requester}> is already "
              f"{existing.state.replace('_', ' ')}; see <#{_approvals(ctx)}>.") if existing else None
    safe_respond(respond, response_type="ephemeral", replace_original=False,
                 **report_message(report, mode=mode, source=source, can_request=bool(request) and not existing,
                                  can_override=bool(override) and not existing, denial=denial, notice=notice))


def _check(ctx: Context, respond, service: str, cluster: str | None, namespace: str | None) -> DependencyReport | None:
    """Find the one Service meant and check it; say precisely what went wrong otherwise."""
    if not _NAME.fullmatch(service or "") or (namespace is not None and not _NAME.fullmatch(namespace)):
        safe_respond(respond, response_type="ephemeral", replace_original=False,
                     text=f":grey_question: `{service}` is not a Service name: use lowercase letters, digits and "
                          "'-' (optionally `namespace/service`).")
        return None
    if cluster and ctx.settings.cluster(cluster) is None:
        known = ", ".join(f"`{c.name}`" for c in ctx.settings.clusters)
        safe_respond(respond, response_type="ephemeral", replace_original=False,
                     text=f":grey_question: There is no cluster `{cluster}` in deckhand's config. Known clusters: {known}.")
        return None
    found, errors = find_service(ctx, service, cluster)
    if namespace:
        found = [f for f in found if f.namespace == namespace]
    if len(found) != 1:
        if len(found) > 1 and len({f.cluster for f in found}) == 1:
            places = ", ".join(f"`{f.namespace}/{f.name} {f.cluster}`" for f in found)
            text = f"`{service}` exists in several namespaces of `{found[0].cluster}`; name one: {places}."
        else:
            text = describe_lookup_failure(service, cluster, found, errors)
            if namespace and not found and not errors:
                text = f"No Service `{service}` in namespace `{namespace}` of {f'`{cluster}`' if cluster else 'any cluster'}."
        safe_respond(respond, response_type="ephemeral", replace_original=False, text=f":grey_question: {text}")
        return None
    ref = found[0]
    try:
        return check(ctx, ref.cluster, ref.namespace, ref.name)
    except ServiceMissing as exc:
        safe_respond(respond, response_type="ephemeral", replace_original=False, text=f":grey_question: {exc}")
    except KubeError as exc:
        fail(respond, f"Dependency check of {service}", exc,
             "Nothing was changed. Try again in a minute; if it keeps failing, ask DevOps to check deckhand's "
             "access to that cluster.")
    return None


def _target(body: dict) -> dict | None:
    """The service a button names, or None for anything that is not one of our values (untrusted)."""
    try:
        target = json.loads(action_value(body))
    except (ValueError, TypeError):
        return None
    if not isinstance(target, dict) or not all(isinstance(target.get(k), str) for k in ("c", "n", "s")):
        return None
    if not isinstance(target.get("src", ""), str):
        target.pop("src")
    return target


def _request_id(body: dict) -> int | None:
    value = action_value(body).strip()
    return int(value) if re.fullmatch(r"[0-9]{1,18}", value) else None  # untrusted: int() takes "١" and 10**30


def _approvals(ctx: Context) -> str:
    return ctx.settings.channels.approvals


def register(app, ctx: Context) -> None:
    lifecycle.set_renderer(ctx, request_message)
    lifecycle.refresh_pending_gauge(ctx)

    @app.command(COMMAND)
    def service(ack, body, respond, client):
        ack()
        args = words(body.get("text"))
        user = user_of(body)
        sub = args[0].lower() if args else "help"
        if sub not in ("deps", "delete"):
            problem = None if sub == "help" else f"I don't know `{COMMAND} {args[0]}`."
            return respond(response_type="ephemeral", text=usage_text(COMMAND, USAGE, problem))
        if len(args) < 2 or len(args) > 3:
            problem = "Which service?" if len(args) < 2 else "Too many words: give a service and, optionally, a cluster."
            return respond(response_type="ephemeral",
                           text=usage_text(COMMAND, [u for u in USAGE if u.startswith(sub)], problem))
        namespace, _, name = args[1].rpartition("/")
        cluster = args[2] if len(args) == 3 else None
        _show_report(ctx, respond, user, name, cluster, namespace or None, mode=sub, source="command")

    @app.action(ACTION_REQUEST)
    def request_deletion(ack, body, respond):
        ack()
        user, target = user_of(body), _target(body)
        if target is None:
            return safe_respond(respond, response_type="ephemeral", replace_original=False,
                                text="That button is broken (its value is not a service); run `/service delete` again.")
        report = _check(ctx, respond, target["s"], target["c"], target["n"])
        if report is None:
            return
        decision = ctx.access.may(user, "deletion.request", team=report.team)
        if not decision:
            return deny(ctx, respond, user, "deletion.request", decision, target=report.service, cluster=report.cluster)
        if report.blocked:
            return safe_respond(respond, response_type="ephemeral", replace_original=True, **report_message(
                report, mode="delete", source=target.get("src", "command"), can_request=True,
                can_override=bool(ctx.access.may(user, "deletion.override")),
                notice=":warning: *Something changed since the check*: the deletion is blocked now."))
        try:
            req, created = lifecycle.create_request(ctx, report, user, source=target.get("src") or "command")
        except GitOpsError as exc:
            return fail(respond, f"Requesting the deletion of {report.service}", exc, _GITOPS_NEXT)
        safe_respond(respond, response_type="ephemeral", replace_original=True,
                     text=requested_text(req, created, _approvals(ctx)))

    @app.action(ACTION_OVERRIDE)
    def override_clicked(ack, body, respond, client):
        ack()
        user, target = user_of(body), _target(body)
        if target is None:
            return safe_respond(respond, response_type="ephemeral", replace_original=False,
                                text="That button is broken (its value is not a service); run `/service delete` again.")
        decision = ctx.access.may(user, "deletion.override")
        if not decision:
            return deny(ctx, respond, user, "deletion.override", decision, target=target["s"], cluster=target["c"])
        metadata = json.dumps({**target, "r": body.get("response_url") or ""}, separators=(",", ":"))
        client.views_open(trigger_id=body["trigger_id"],
                          view=override_modal(target["s"], target["c"], metadata))

    @app.view(VIEW_OVERRIDE)
    def override_submitted(ack, body, view, client):
        values = (view.get("state") or {}).get("values") or {}
        reason = ((values.get(REASON_BLOCK) or {}).get("value") or {}).get("value") or ""
        reason = " ".join(reason.split())
        if len(reason) < MIN_REASON:
            return ack(response_action="errors", errors={
                REASON_BLOCK: f"Say in a sentence how you know it is safe (at least {MIN_REASON} characters)."})
        ack()
        after_ack(ctx, body, request_overridden, body, client, view, reason)

    def request_overridden(body, client, view, reason: str) -> None:
        user = user_of(body)
        target = json.loads(view.get("private_metadata") or "{}")
        reply = _replier(client, target.get("r"), user, ctx.secrets.slack_api_url)
        decision = ctx.access.may(user, "deletion.override")
        if not decision:
            return deny(ctx, reply, user, "deletion.override", decision, target=target.get("s"))
        report = _check(ctx, reply, target["s"], target["c"], target["n"])
        if report is None:
            return
        if report.blockers_beyond(overridden=True):
            return reply(response_type="ephemeral", replace_original=True, **report_message(
                report, mode="delete", source=target.get("src", "command"), can_request=True, can_override=True,
                notice=":warning: *Not requested*: besides unknown traffic, something else blocks it now."))
        try:
            req, created = lifecycle.create_request(ctx, report, user, source=target.get("src") or "command",
                                                    override_reason=reason if report.traffic_unknown else None)
        except GitOpsError as exc:
            return fail(reply, f"Requesting the deletion of {report.service}", exc, _GITOPS_NEXT)
        reply(response_type="ephemeral", replace_original=True, text=requested_text(req, created, _approvals(ctx)))

    def decide(body, respond, action: str, run) -> None:
        """Approve and Reject share everything but the rule and the state change they make."""
        user, request_id = user_of(body), _request_id(body)
        req = lifecycle.get_request(ctx, request_id) if request_id is not None else None
        if req is None:
            return safe_respond(respond, response_type="ephemeral", replace_original=False,
                                text="I can't find that deletion request any more; nothing was done.")
        decision = ctx.access.may(user, action, team=req.team, requester=req.requester)
        if not decision:
            return deny(ctx, respond, user, action, decision, target=req.service, cluster=req.cluster)
        outcome = run(ctx, req.id, user)
        safe_respond(respond, response_type="ephemeral", replace_original=False, text=outcome.message)

    @app.action(ACTION_APPROVE)
    @app.action(ACTION_RESUME)
    def approve(ack, body, respond):
        ack()
        decide(body, respond, "deletion.approve", lifecycle.approve)

    @app.action(ACTION_REJECT)
    def reject(ack, body, respond):
        ack()
        decide(body, respond, "deletion.reject", lifecycle.reject)


def _replier(client, response_url: str | None, user: str, slack_api_url: str | None):
    """A respond() for a modal submission: the response_url of the click that opened the modal
    (it replaces the ephemeral report), or a DM when that URL is missing, expired (30 min) or not
    on Slack's hooks host (the same rule as commands.kit.CheckedRespond)."""
    def reply(**kwargs):
        kwargs.pop("response_type", None)
        if response_url and allowed_response_url(response_url, slack_api_url):
            try:
                answer = WebhookClient(response_url, timeout=10).send(response_type="ephemeral", **redact_deep(kwargs))
                if answer.status_code == 200:
                    return
            except Exception as exc:
                log.info("response_url failed, falling back to a DM: %s", exc)
        kwargs.pop("replace_original", None)
        client.chat_postMessage(channel=user, **kwargs)
    return reply
