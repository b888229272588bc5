"""/pipeline: create and edit pipelines from a modal, list them, bump batch base images."""
from __future__ import annotations

import json
import logging
from dataclasses import replace

from slack_sdk.errors import SlackApiError

from blocks.common import error_text
from blocks.pipeline import (
    RETRY_ACTION,
    SUBMIT_CALLBACK,
    VIEW_PR_ACTION,
    list_message,
    loading_modal,
    notice_modal,
    pipeline_modal,
    request_message,
)
from bot import pipelines
from bot.pipelines import prs as pipeline_prs, requests as pipeline_requests
from bot.foundation.context import Context
from bot.foundation.gitops import GitOpsError
from bot.pipelines.catalog import catalog, find_pipeline, read_pointer, read_spec_at, scan
from bot.pipelines.form import DEFAULT_FORM, FIELDS, form_from_spec, name_problem, tag_policy
from bot.pipelines.spec import PipelineSpec, SpecError
from commands.kit import action_value, after_ack, channel_of, deny, fail, safe_respond, usage_text, user_of, words

COMMAND = "/pipeline"
SUMMARY = "create and edit CI/CD pipelines; bump batch base images"
USAGE = ["create", "edit <service>", "list [team]", "batch-image bump <image> <version>"]

log = logging.getLogger("deckhand.commands.pipeline")
# Slack cannot DM or post into channels the bot is not in; fall back to the requester's DM.
_CHANNEL_ERRORS = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action"}


def register(app, ctx: Context) -> None:
    # Merge notifications come from bot/ (webhook, poller), which may not import blocks/: it renders
    # the updated message through this function (see bot.pipeline_requests.render_message).
    ctx.extras["pipeline_message"] = request_message

    @app.command(COMMAND)
    def pipeline(ack, body, respond, client):
        ack()
        args = words(body.get("text"))
        sub = args[0].lower() if args else "help"
        if sub == "create" and len(args) == 1:
            open_create(ctx, client, body)
        elif sub == "edit" and len(args) == 2:
            open_edit(ctx, client, body, args[1])
        elif sub == "list" and len(args) <= 2:
            show_list(ctx, respond, args[1] if len(args) == 2 else None)
        elif sub == "batch-image":
            bump(ctx, client, body, respond, args[1:])
        elif sub == "help":
            respond(response_type="ephemeral", text=usage_text(COMMAND, USAGE))
        else:
            known = sub in ("create", "edit", "list")
            problem = f"`{COMMAND} {' '.join(args)}` has the wrong arguments." if known else \
                f"I don't know `{COMMAND} {sub}`."
            respond(response_type="ephemeral", text=usage_text(COMMAND, USAGE, problem))

    @app.view(SUBMIT_CALLBACK)
    def submitted(ack, body, client):
        view = body["view"]
        meta = json.loads(view.get("private_metadata") or "{}")
        mode = "edit" if meta.get("mode") == "edit" else "create"
        form = form_values((view.get("state") or {}).get("values") or {})
        if mode == "edit":
            # The modal does not let anyone change these; the ack checks the rest of the form with
            # them, and after the ack they are read again from the repository (edit_submitted).
            form.update(service=meta.get("service"), team=meta.get("team"))
        spec, errors = pipelines.check_submission(ctx, form, mode)
        user = user_of(body)
        if spec is not None and not errors and mode == "create":
            # The form offers only the user's own teams, but a submission can name any: say so on the
            # field. Membership was looked up (and cached) when the modal opened, so this stays local.
            decision = ctx.access.may(user, "pipeline.create", team=spec.team)
            if not decision:
                errors = {"team": f"You can't create pipelines for {spec.team}: {decision.reason}."}
        if errors:
            return ack(response_action="errors", errors=modal_errors(errors, view))
        if mode == "edit" and spec.digest() == meta.get("digest"):
            ack(response_action="update", view=notice_modal(
                "Edit pipeline", f":information_source: Nothing changed in *{spec.service}*, so no pull request "
                                 "was opened."))
            return after_ack(ctx, body, ctx.audit, user, "pipeline.edit", "no change", target=spec.service,
                             params={"team": spec.team})
        ack()
        if mode == "edit":
            return after_ack(ctx, body, edit_submitted, ctx, client, spec, user, meta.get("channel"))
        after_ack(ctx, body, propose, ctx, client, action=mode, target=spec.service, team=spec.team,
                  spec=spec.to_dict(), user=user, channel=meta.get("channel"))

    @app.action(RETRY_ACTION)
    def retry(ack, body, client, respond):
        ack()
        user = user_of(body)
        try:
            row = pipeline_requests.get(ctx, int(action_value(body) or 0))
        except (ValueError, OverflowError):  # not a request id: a garbled or hand-made button
            row = None
        if row is None:
            return safe_respond(respond, response_type="ephemeral", replace_original=False,
                                text="That request no longer exists; start again with `/pipeline`.")
        decision = ctx.access.may(user, f"pipeline.{row['action']}", team=row["team"])
        if user != row["requester"] and not decision:
            return deny(ctx, respond, user, f"pipeline.{row['action']}", decision, target=row["target"])
        claimed = pipeline_requests.retry(ctx, row["id"], user)
        if claimed is None:
            return safe_respond(respond, response_type="ephemeral", replace_original=False,
                                text=f"This request is {row['state']} now, so there is nothing to retry.")
        _update(client, claimed)
        _update(client, pipeline_prs.propose(ctx, claimed["id"]))

    @app.action(VIEW_PR_ACTION)
    def view_pr(ack):
        ack()  # a link button: Slack still sends the click, and wants an answer


# -- modal values and errors --------------------------------------------------------------------------


def form_values(values: dict) -> dict:
    """Slack's view.state.values -> {field: text or [options]}."""
    form: dict = {}
    for block_id, elements in values.items():
        for element in elements.values():
            if "selected_options" in element:
                form[block_id] = [o["value"] for o in element.get("selected_options") or []]
            elif "selected_option" in element:
                form[block_id] = (element.get("selected_option") or {}).get("value")
            else:
                form[block_id] = element.get("value")
    return form


def modal_errors(errors: dict[str, str], view: dict) -> dict[str, str]:
    """Slack shows these as plain text under each input, and rejects block_ids the view lacks."""
    present = {b.get("block_id") for b in view.get("blocks") or []}
    out: dict[str, str] = {}
    for field in FIELDS:
        if field in errors:
            target = field if field in present else next((f for f in FIELDS if f in present), field)
            text = errors[field].replace("`", '"')
            out[target] = f"{out[target]} {text}" if target in out else text
    return {k: v[:2000] for k, v in out.items()}


# -- create / edit ------------------------------------------------------------------------------------


def open_create(ctx: Context, client, body: dict) -> None:
    view = client.views_open(trigger_id=body["trigger_id"], view=loading_modal("Create pipeline"))["view"]
    user, channel = user_of(body), channel_of(body)
    if ctx.gitops is None:
        return _notice(client, view, "Create pipeline", "GitHub isn't configured (`github:` in deckhand.yaml), so "
                                                        "pipelines can't be proposed. Ask DevOps.")
    teams = sorted(ctx.settings.teams) if ctx.access.is_devops(user) else ctx.access.teams_of(user)
    if not teams:
        ctx.audit(user, "pipeline.create", "denied", params={"reason": "not in any team"})
        return _notice(client, view, "Create pipeline", ":no_entry: You aren't in any team deckhand knows, so you "
                       "can't own a pipeline. Ask DevOps to add you to your team's user group.")
    _show(client, view, pipeline_modal(
        mode="create", teams=teams, clusters=[c.name for c in ctx.settings.clusters], values=DEFAULT_FORM,
        metadata=json.dumps({"mode": "create", "channel": channel}),
        max_replicas=ctx.settings.pipelines.max_replicas))
    _refresh(ctx)


def open_edit(ctx: Context, client, body: dict, service: str) -> None:
    view = client.views_open(trigger_id=body["trigger_id"], view=loading_modal("Edit pipeline"))["view"]
    user, channel = user_of(body), channel_of(body)
    if name_problem(service, "batch") and name_problem(service, "api"):
        return _notice(client, view, "Edit pipeline", f"`{service}` isn't a pipeline name. See `/pipeline list`.")
    if ctx.gitops is None:
        return _notice(client, view, "Edit pipeline", "GitHub isn't configured, so pipelines can't be edited.")
    try:
        spec = _current_spec(ctx, service)
    except (GitOpsError, SpecError) as exc:
        return _notice(client, view, "Edit pipeline", error_text(
            f"Reading {service}'s deckhand.yaml failed", str(exc),
            "Try again in a minute; if it keeps failing, ask DevOps."))
    if spec is None:
        request = pipeline_requests.by_key(ctx, pipeline_requests.pipeline_key(service))
        if request and request["action"] == "create" and pipeline_requests.pending(ctx, request):
            return _notice(client, view, "Edit pipeline", f"The pull request that creates `{service}` is being "
                           "prepared right now; edit it once it is open.")
        if request and request["action"] == "create" and request["state"] in ("proposing", "failed"):
            return _notice(client, view, "Edit pipeline", f"`{service}` has no pull request yet: creating it failed "
                           "or was interrupted. Press *Try again* on its message, or submit `/pipeline create` "
                           "again; both reuse the same branch.")
        return _notice(client, view, "Edit pipeline", f"There is no pipeline named `{service}` in the GitOps repo. "
                       "See `/pipeline list`, or create it with `/pipeline create`.")
    decision = ctx.access.may(user, "pipeline.edit", team=spec.team)
    if not decision:
        ctx.audit(user, "pipeline.edit", "denied", target=service, params={"reason": decision.reason})
        return _notice(client, view, "Edit pipeline", f":no_entry: You can't edit `{service}`: {decision.reason}.")
    _show(client, view, pipeline_modal(
        mode="edit", teams=[spec.team], clusters=[c.name for c in ctx.settings.clusters],
        values=form_from_spec(spec), service=service, team=spec.team,
        metadata=json.dumps({"mode": "edit", "channel": channel, "service": service, "team": spec.team,
                             "digest": spec.digest()}),
        max_replicas=ctx.settings.pipelines.max_replicas))
    _refresh(ctx)


def edit_submitted(ctx: Context, client, submitted: PipelineSpec, user: str, channel: str | None) -> None:
    """After the ack: which pipeline this is and whose it is come from the repository, never from the
    modal (its private_metadata only names the service to look up). The permission is decided on
    the repository's team, and the spec proposed carries the repository's service and team."""
    try:
        current = _current_spec(ctx, submitted.service)
    except (GitOpsError, SpecError) as exc:
        ctx.audit(user, "pipeline.edit", f"failed: {exc}", target=submitted.service)
        return _tell(client, channel, user, error_text(f"Reading {submitted.service}'s deckhand.yaml failed", str(exc),
                                                       "Nothing was proposed. Try again in a minute; if it keeps "
                                                       "failing, ask DevOps."))
    if current is None:
        ctx.audit(user, "pipeline.edit", "rejected: no such pipeline", target=submitted.service)
        return _tell(client, channel, user, f":grey_question: There is no pipeline named `{submitted.service}` in the "
                                            "GitOps repo any more, so nothing was proposed. See `/pipeline list`.")
    spec = replace(submitted, service=current.service, team=current.team)
    if spec.digest() == current.digest():
        ctx.audit(user, "pipeline.edit", "no change", target=spec.service, params={"team": spec.team})
        return _tell(client, channel, user, f":information_source: Nothing changed in *{spec.service}*, so no pull "
                                            "request was opened.")
    propose(ctx, client, action="edit", target=spec.service, team=spec.team, spec=spec.to_dict(), user=user,
            channel=channel)


def _current_spec(ctx: Context, service: str) -> PipelineSpec | None:
    """An open PR's version of the spec if there is one (edits stack onto it), else the base branch's."""
    row = pipeline_requests.by_key(ctx, pipeline_requests.pipeline_key(service))
    if row and row["state"] in pipeline_requests.LIVE and row["pr_number"]:
        proposed = PipelineSpec.from_dict(json.loads(row["spec"]))
        return read_spec_at(ctx, proposed, row["branch"]) or proposed
    found = find_pipeline(ctx, service)
    if found is not None and found.problem:
        raise SpecError(found.problem)
    return found.spec if found else None


def _refresh(ctx: Context) -> None:
    names = catalog(ctx)
    fresh = names.refreshed_at and (ctx.now() - names.refreshed_at).total_seconds() < 30
    if not fresh:
        names.refresh(ctx)


def _notice(client, view: dict, title: str, text: str) -> None:
    _show(client, view, notice_modal(title, text))


def _show(client, loading: dict, view: dict) -> None:
    """Replace the loading view. The hash makes Slack refuse if the view changed meanwhile."""
    try:
        client.views_update(view_id=loading["id"], hash=loading.get("hash"), view=view)
    except SlackApiError as exc:
        if exc.response.get("error") not in ("not_found", "hash_conflict"):
            raise
        log.info("the loading view is gone (%s): the user closed it", exc.response.get("error"))


# -- proposing ---------------------------------------------------------------------------------------


def propose(ctx: Context, client, *, action: str, target: str, team: str | None, spec: dict, user: str,
            channel: str | None) -> None:
    """Permission, claim (one proposal per key), message, pull request, message again."""
    decision = ctx.access.may(user, f"pipeline.{action}", team=team)
    if not decision:
        ctx.audit(user, f"pipeline.{action}", "denied", target=target, params={"reason": decision.reason})
        return _tell(client, channel, user, f":no_entry: You can't do that: {decision.reason}.")
    claim = pipeline_requests.claim(ctx, action=action, target=target, team=team, spec=spec, user=user,
                                    channel=channel)
    if claim.busy is not None:
        log.info("%s for %s is already being proposed (request %s)", action, target, claim.busy["id"])
        if claim.busy["editor"] != user:
            _tell(client, channel, user, f":hourglass_flowing_sand: <@{claim.busy['editor']}> is preparing a pull "
                                         f"request for `{target}` right now; try again in a minute.")
        return
    if claim.taken is not None:
        return _tell(client, channel, user, f":information_source: <@{claim.taken['requester']}> proposed `{target}` a "
                                            f"moment earlier (pull request #{claim.taken['pr_number']}), so yours was "
                                            f"not applied. Use `/pipeline edit {target}` to change it.")
    row = claim.row
    try:
        if claim.reused:  # an open PR, or one a killed worker was preparing: its message, not a second one
            _update(client, row)
            if row["pr_number"]:
                _post(client, row["channel"], None, {"text": f"<@{user}> submitted a change; updating pull request "
                                                             f"#{row['pr_number']}…"}, thread_ts=row["ts"])
        else:
            where, ts = _post(client, channel, user, request_message(pipeline_requests.request_card(row)))
            if ts:
                pipeline_requests.attach_message(ctx, row["id"], where, ts, _permalink(client, where, ts))
    finally:  # the claim is ours: settle it even if Slack failed in an unexpected way
        _update(client, pipeline_prs.propose(ctx, row["id"]))


def _post(client, channel: str | None, user: str | None, payload: dict, thread_ts: str | None = None):
    """Post in the channel the command came from, else the requester's DM. Returns (channel, ts)."""
    for target in [c for c in (channel, user) if c]:
        try:
            response = client.chat_postMessage(channel=target, thread_ts=thread_ts, **payload)
            return response["channel"], response["ts"]
        except SlackApiError as exc:
            if exc.response.get("error") not in _CHANNEL_ERRORS:
                log.warning("posting the pipeline message failed: %s", exc)
                break
    return None, None


def _permalink(client, channel: str, ts: str) -> str | None:
    try:
        return client.chat_getPermalink(channel=channel, message_ts=ts)["permalink"]
    except SlackApiError as exc:
        log.info("chat.getPermalink failed: %s", exc)
        return None


def _update(client, row: dict) -> None:
    if not row or not row["channel"] or not row["ts"]:
        return
    try:
        client.chat_update(channel=row["channel"], ts=row["ts"],
                           **request_message(pipeline_requests.request_card(row)))
    except SlackApiError as exc:
        log.warning("updating the pipeline message failed: %s", exc)


def _tell(client, channel: str | None, user: str, text: str) -> None:
    try:
        if channel:
            client.chat_postEphemeral(channel=channel, user=user, text=text)
            return
    except SlackApiError:
        pass
    _post(client, None, user, {"text": text})


# -- list and bump -----------------------------------------------------------------------------------


def show_list(ctx: Context, respond, team: str | None) -> None:
    if team and team not in ctx.settings.teams:
        return respond(response_type="ephemeral", text=f"There is no team `{team}`. Teams: "
                       + ", ".join(f"`{t}`" for t in sorted(ctx.settings.teams)) + ".")
    if ctx.gitops is None:
        return respond(response_type="ephemeral", text="GitHub isn't configured, so there are no pipelines to list.")
    try:
        found = scan(ctx)
    except GitOpsError as exc:
        return fail(respond, "Listing pipelines failed", exc)
    live = {r["target"]: r for r in pipeline_requests.live(ctx) if r["action"] != "bump"}
    entries, problems = [], []
    for pipeline in found:
        if pipeline.spec is None:
            problems.append(f"{pipeline.path}: {pipeline.problem}")
            continue
        entries.append(_entry(pipeline.spec, live.pop(pipeline.spec.service, None), pending=False))
    for row in live.values():
        entries.append(_entry(PipelineSpec.from_dict(json.loads(row["spec"])), row, pending=True))
    entries = sorted((e for e in entries if not team or e["team"] == team), key=lambda e: (e["team"], e["service"]))
    respond(response_type="ephemeral", **list_message(entries, team, problems))


def _entry(spec: PipelineSpec, row: dict | None, pending: bool) -> dict:
    return {"service": spec.service, "team": spec.team, "kind": spec.kind, "strategy": spec.strategy,
            "clusters": list(spec.clusters), "pr_number": row["pr_number"] if row else None,
            "pr_url": row["pr_url"] if row else None, "pending": pending}


def bump(ctx: Context, client, body: dict, respond, args: list[str]) -> None:
    user, channel = user_of(body), channel_of(body)
    if len(args) != 3 or args[0].lower() != "bump":
        return respond(response_type="ephemeral", text=usage_text(
            COMMAND, ["batch-image bump <image> <version>"], "Which base image, and to which version?"))
    image, version = args[1], args[2]
    decision = ctx.access.may(user, "pipeline.bump")
    if not decision:
        return deny(ctx, respond, user, "pipeline.bump", decision, target=image)
    _, _, problem = tag_policy(f"pinned {version}", "batch", None)
    if problem:
        return respond(response_type="ephemeral", text=f":warning: {problem}")
    if ctx.gitops is None:
        return respond(response_type="ephemeral", text="GitHub isn't configured, so there is no pointer to bump.")
    try:
        pointer = read_pointer(ctx)
    except (GitOpsError, ValueError) as exc:
        return fail(respond, f"Reading {ctx.settings.pipelines.pointer_file} failed", exc)
    if image not in pointer:
        ctx.audit(user, "pipeline.bump", "rejected: unknown image", target=image, params={"version": version})
        return respond(response_type="ephemeral", text=":warning: " + pipeline_prs.unknown_image(
            image, pointer, ctx.settings.pipelines.pointer_file))
    propose(ctx, client, action="bump", target=image, team=None, spec={"image": image, "version": version},
            user=user, channel=channel)
