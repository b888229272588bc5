"""Turning a claimed request into ONE pull request: re-check, render, diff against the base branch,
propose. Every way this can end leaves the request in a settled state with a sentence for Slack:
nothing is left `proposing`, and a retry reuses the branch and PR (GitOps.propose is idempotent).
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field

from bot.foundation.context import Context, new_error_id
from bot.foundation.gitops import GitOpsError, PullRequest, markdown_text
from bot.pipelines.catalog import existing_service, read_pointer, scan
from bot.pipelines.render import (
    GENERATED_DIR,
    ManifestRejected,
    RenderError,
    blob_sha,
    bump_pointer,
    parse_pointer,
    render,
    service_dir,
    spec_path_pattern,
)
from bot.pipelines.requests import finish, get
from bot.pipelines.spec import PipelineSpec, summary

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    state: str                 # open | failed | rejected | noop
    result: str                # for the audit row
    error: str | None = None   # for Slack: what failed, why, what next
    pr: PullRequest | None = None
    files: list[str] = field(default_factory=list)
    detail: dict = field(default_factory=dict)


def propose(ctx: Context, request_id: int) -> dict:
    """Do the work for a request this caller claimed (state proposing); returns the settled row."""
    row = get(ctx, request_id)
    if row is None or row["state"] != "proposing":
        return row
    try:
        outcome = _bump(ctx, row) if row["action"] == "bump" else _pipeline(ctx, row)
    except GitOpsError as exc:
        outcome = Outcome("failed", f"failed: {exc}", error=f"{exc}. {_next_step(exc.status)}")
    except ManifestRejected as exc:
        outcome = Outcome("rejected", f"rejected: {exc}",
                          error=f"The rendered files were refused, so no pull request was opened: {exc}.")
    except RenderError as exc:
        outcome = Outcome("failed", f"failed: {exc}",
                          error=f"Rendering the files failed: {exc}. Ask DevOps to fix the pipeline templates.")
    except Exception as exc:  # never leave a request stuck in `proposing`
        error_id = new_error_id()
        log.error("pipeline request %s failed (error id %s)", request_id, error_id, exc_info=exc)
        outcome = Outcome("failed", f"failed: unexpected error {error_id}",
                          error=f"deckhand hit an unexpected error (error id `{error_id}`). Try again; "
                                "if it keeps happening, tell DevOps the error id.")
    return _settle(ctx, row, outcome)


def _next_step(status: int) -> str:
    if status in (401, 403, 404):
        return "Nothing was changed. Once DevOps has fixed it, press *Try again*"
    return "Press *Try again*: it reuses the same branch and pull request"


def _settle(ctx: Context, row: dict, outcome: Outcome) -> dict:
    actor = row["editor"] or row["requester"]
    values: dict = {"error": outcome.error}
    state = outcome.state
    if outcome.pr is not None:
        values.update(pr_number=outcome.pr.number, pr_url=outcome.pr.url, files=outcome.files, detail=outcome.detail)
        verb = "updated" if row["pr_number"] == outcome.pr.number else "opened"
        result = f"{verb} #{outcome.pr.number}"
    else:
        result = outcome.result
        if outcome.detail:
            values["detail"] = {**json.loads(row["detail"] or "{}"), **outcome.detail}
        if row["pr_number"] and state in ("failed", "rejected", "noop"):
            state = "open"  # the PR from before is still there and still tracked
    return finish(ctx, row, state, values, result, actor)


# -- create / edit ----------------------------------------------------------------------------------


def _pipeline(ctx: Context, row: dict) -> Outcome:
    spec = PipelineSpec.from_dict(json.loads(row["spec"]))
    notes: list[str] = []
    if row["action"] == "create" and not row["pr_number"]:
        where, unreachable = existing_service(ctx, spec.service)
        if where:
            return Outcome("rejected", f"rejected: exists {where}",
                           error=f"`{spec.service}` already exists {where}, so no pull request was opened. "
                                 f"Pick another name with `/pipeline create`, or change it with "
                                 f"`/pipeline edit {spec.service}`.")
        if unreachable:
            notes.append(f"{', '.join(unreachable)} did not answer, so an existing `{spec.service}` there "
                         "could not be ruled out; reviewers, please check.")
    pointer: dict[str, str] = {}
    if spec.track:
        pointer = read_pointer(ctx)
        if spec.track not in pointer:
            known = ", ".join(f"`{k}`" for k in sorted(pointer)) or "none yet"
            return Outcome("rejected", f"rejected: unknown base image {spec.track}",
                           error=f"`{spec.track}` isn't in `{ctx.settings.pipelines.pointer_file}`, so there is no "
                                 f"latest version to track. Known base images: {known}.")
    files = render(spec, ctx.settings, pointer)
    directory = service_dir(ctx.settings, spec.team, spec.service)
    changes = _changes(files, ctx.gitops.files_under(directory + "/"), f"{directory}/{GENERATED_DIR}/")
    detail = {"image": spec.image_ref(pointer), "note": " ".join(notes) or None}
    if not changes:
        return Outcome("noop", "no change", detail={**detail, "note": "Nothing differs from what "
                       f"`{ctx.settings.github.base_branch}` already has, so no pull request was opened."})
    verb = "create" if row["action"] == "create" else "edit"
    title = f"pipeline: {verb} {spec.service} ({spec.kind}{', ' + spec.strategy if spec.strategy else ''})"
    body = _pr_body(ctx, row, f"{'New pipeline' if verb == 'create' else 'Pipeline change'}: {markdown_text(spec.service)}",
                    summary(spec, detail["image"]), changes, notes,
                    f"Change it with {markdown_text('/pipeline edit ' + spec.service)} in Slack rather than by hand: "
                    "`deckhand.yaml` is the source of truth and the other files are re-rendered from it.")
    pr = ctx.gitops.propose(row["branch"], changes, title, body)
    return Outcome("open", "opened", pr=pr, files=sorted(changes), detail={**detail, "review_problem": pr.review_problem})


def _changes(files: dict[str, str], current: dict[str, str], generated: str) -> dict[str, str | None]:
    """Only what differs from the base branch; generated files the new render lacks are removed."""
    changes: dict[str, str | None] = {p: t for p, t in files.items() if current.get(p) != blob_sha(t)}
    for path in current:
        if path.startswith(generated) and path not in files:
            changes[path] = None
    return changes


# -- batch image bump -------------------------------------------------------------------------------


def _bump(ctx: Context, row: dict) -> Outcome:
    request = json.loads(row["spec"])
    image, version = request["image"], request["version"]
    pointer_file = ctx.settings.pipelines.pointer_file
    text = ctx.gitops.read_file(pointer_file)
    try:
        pointer = parse_pointer(text)
    except Exception as exc:
        return Outcome("rejected", "rejected: pointer file unreadable",
                       error=f"`{pointer_file}` is not a mapping of image: version ({exc}); ask DevOps to fix it.")
    if image not in pointer:
        return Outcome("rejected", f"rejected: unknown image {image}",
                       error=unknown_image(image, pointer, pointer_file))
    previous = pointer[image]
    new_text = bump_pointer(text, image, version)
    new_pointer = parse_pointer(new_text)
    changes: dict[str, str | None] = {pointer_file: new_text} if new_text != text else {}
    prefix, _ = spec_path_pattern(ctx.settings)
    tree = ctx.gitops.files_under(prefix)
    affected, notes, invalid = [], [], []
    pipelines = scan(ctx)
    for pipeline in pipelines:
        if pipeline.loaded is None:
            notes.append(f"{markdown_text(pipeline.path)} could not be read ({markdown_text(pipeline.problem)}); "
                         "check by hand whether it tracks this image.")
        elif pipeline.spec is None and pipeline.loaded.track == image:
            invalid.append(pipeline)
    if invalid:
        # Moving the pointer while skipping a batch that tracks it would leave that batch on the old
        # version with nobody told; nothing is rendered from a spec the form would refuse.
        names = "; ".join(f"{p.problem}" for p in invalid)
        return Outcome("rejected", f"rejected: invalid spec {', '.join(p.path for p in invalid)}",
                       error=f"No pull request was opened: {len(invalid)} batch{'es' if len(invalid) > 1 else ''} "
                             f"tracking `{image}` {'have' if len(invalid) > 1 else 'has'} an invalid deckhand.yaml and "
                             f"{'were' if len(invalid) > 1 else 'was'} skipped, never rendered. {names}. Fix it "
                             "with `/pipeline edit` or by hand, then bump again.")
    for pipeline in pipelines:
        if pipeline.spec is None or pipeline.spec.track != image:
            continue
        affected.append(pipeline.spec.service)
        directory = service_dir(ctx.settings, pipeline.spec.team, pipeline.spec.service)
        current = {p: s for p, s in tree.items() if p.startswith(directory + "/")}
        changes.update(_changes(render(pipeline.spec, ctx.settings, new_pointer), current,
                                f"{directory}/{GENERATED_DIR}/"))
    detail = {"affected": affected, "previous": previous, "version": version, "note": " ".join(notes) or None}
    if not changes:
        return Outcome("noop", "no change", detail={**detail, "note": f"`{image}` is already at {version} and "
                       "every tracking batch already runs it, so no pull request was opened."})
    title = f"batch image: {image} {previous} → {version}"
    body = _pr_body(ctx, row, f"Batch base image bump: {markdown_text(image)}",
                    [("Base image", image), ("Version", f"{previous} → {version}"),
                     ("Batches re-rendered", ", ".join(affected) or "none track it yet")],
                    changes, notes, f"Batches whose tag policy is {markdown_text('track latest of ' + image)} run the "
                                    "new version once this is merged and synced.")
    pr = ctx.gitops.propose(row["branch"], changes, title, body)
    return Outcome("open", "opened", pr=pr, files=sorted(changes), detail={**detail, "review_problem": pr.review_problem})


def unknown_image(image: str, pointer: dict[str, str], pointer_file: str) -> str:
    known = ", ".join(f"`{k}` ({v})" for k, v in sorted(pointer.items())) or "none yet"
    return (f"`{image}` isn't a base image in `{pointer_file}`, so there is nothing to bump. "
            f"Known base images: {known}.")


# -- the PR body ------------------------------------------------------------------------------------


def display_name(ctx: Context, user: str) -> str:
    """The requester as people know them in Slack (users.info), falling back to the ID."""
    if ctx.slack is None:
        return user
    try:
        info = ctx.slack.users_info(user=user)["user"]
    except Exception as exc:
        log.info("users.info %s failed: %s", user, exc)
        return user
    profile = info.get("profile") or {}
    return profile.get("display_name") or profile.get("real_name") or info.get("real_name") or info.get("name") or user


# A Slack permalink as chat.getPermalink returns it; anything else is not linked.
_PERMALINK = re.compile(r"https://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.slack\.com/archives/[A-Z0-9]+/p[0-9]+"
                        r"(\?[A-Za-z0-9=&._-]*)?")


def _pr_body(ctx: Context, row: dict, heading: str, pairs, changes: dict, notes: list[str], footer: str) -> str:
    """Every value from outside (the display name, the spec's fields, paths) goes through
    markdown_text; `heading`, `notes` and `footer` are deckhand's sentences with their values
    already passed through it. Labels are deckhand's own words."""
    md = markdown_text
    who = display_name(ctx, row["editor"] or row["requester"])
    link = row.get("permalink") or ""
    where = f" ([Slack message]({link}))" if _PERMALINK.fullmatch(link) else ""
    lines = [f"### {heading}", "", f"Requested in Slack by {md(who)}{where}.", ""]
    lines += [f"- **{label}**: {md(value)}" for label, value in pairs]
    lines += ["", "**Files**", ""]
    lines += [f"- {md(path)}" + (" (removed)" if text is None else "") for path, text in sorted(changes.items())]
    if notes:
        lines += ["", "**Notes**", ""] + [f"- {n}" for n in notes]
    lines += ["", f"_Opened by deckhand. {footer}_", ""]
    return "\n".join(lines)
