"""Block Kit for /pipeline: the create/edit modal, the requester's message, the list. Pure functions."""
from __future__ import annotations

from typing import Any

from blocks.common import (
    actions,
    button,
    clip,
    context,
    divider,
    escape,
    fields,
    fit_message,
    header,
    link as link_to,
    mention,
    message,
    modal,
    section,
    select_input,
    text_input,
)

SUBMIT_CALLBACK = "pipeline_submit"
LOADING_CALLBACK = "pipeline_loading"
NOTICE_CALLBACK = "pipeline_notice"
RETRY_ACTION = "pipeline_retry"
VIEW_PR_ACTION = "pipeline_view_pr"

KIND_CHOICES = [("api — serves HTTP behind Istio", "api"), ("worker — runs continuously", "worker"),
                ("batch — runs on a schedule (CronJob)", "batch")]
STRATEGY_CHOICES = [("canary — shift traffic step by step", "canary"),
                    ("blue-green — switch all at once", "blue-green")]


def loading_modal(title: str, text: str = ":hourglass_flowing_sand: Loading…") -> dict:
    return modal(title, [section(text)], LOADING_CALLBACK, submit=None, close="Close")


def notice_modal(title: str, text: str) -> dict:
    return modal(title, [section(text)], NOTICE_CALLBACK, submit=None, close="Close")


def pipeline_modal(*, mode: str, teams: list[str], clusters: list[str], values: dict[str, Any], metadata: str,
                   max_replicas: int, service: str | None = None, team: str | None = None) -> dict:
    """The create (or pre-filled edit) form. Every input's block_id is the field name, so
    response_action errors can point at exactly the fields that are wrong."""
    v = lambda key: str(values.get(key) or "") or None  # noqa: E731
    blocks: list[dict] = []
    if mode == "edit":
        blocks.append(section(f"Editing *{escape(service)}* (team *{escape(team)}*). Only files that change go "
                              "into the pull request."))
    else:
        blocks += [
            section("Describe the service; deckhand renders its pipeline and Kubernetes files and opens ONE "
                    "pull request for DevOps to review."),
            text_input("service", "Service name", initial=v("service"), placeholder="payments-api",
                       hint="Lowercase letters, digits and -, starting with a letter. It becomes the Kubernetes name."),
            select_input("team", "Owner team", [(t, t) for t in teams], initial=values.get("team") or
                         (teams[0] if len(teams) == 1 else None)),
        ]
    blocks += [
        select_input("kind", "Kind", KIND_CHOICES, initial=values.get("kind") or None),
        text_input("repo", "Source repository", initial=v("repo"), placeholder="org/payments-api"),
        text_input("image", "Image repository", initial=v("image"), placeholder="registry.example.com/payments/api",
                   hint="Without a tag."),
        divider(),
        context("*api only*"),
        text_input("port", "Container port", initial=v("port"), placeholder="8080", optional=True),
        text_input("health_path", "Health-check path", initial=v("health_path"), placeholder="/healthz", optional=True),
        context("*batch only*"),
        text_input("schedule", "Cron schedule (UTC)", initial=v("schedule"), placeholder="0 3 * * *", optional=True,
                   hint="Five fields: minute hour day-of-month month day-of-week."),
        text_input("tag_policy", "Image tag policy", initial=v("tag_policy"), optional=True,
                   placeholder="pinned 1.4.2   or   track latest of registry.example.com/batch/python",
                   hint='Required for batch. "track latest of <base image>" follows the shared batch image '
                        'pointer. api and worker start at "latest" unless pinned; their pipeline deploys each '
                        'release.'),
        divider(),
        context("*Where and how big*"),
        select_input("strategy", "Deploy strategy (api and worker)", STRATEGY_CHOICES,
                     initial=values.get("strategy") or None, optional=True),
        select_input("clusters", "Target clusters", [(c, c) for c in clusters], multi=True,
                     initial_many=list(values.get("clusters") or [])),
        text_input("replicas", "Replicas (api and worker)", initial=v("replicas"), placeholder="2", optional=True,
                   hint=f"1 to {max_replicas}."),
        text_input("cpu_request", "CPU request", initial=v("cpu_request"), placeholder="250m"),
        text_input("cpu_limit", "CPU limit", initial=v("cpu_limit"), placeholder="500m"),
        text_input("memory_request", "Memory request", initial=v("memory_request"), placeholder="256Mi"),
        text_input("memory_limit", "Memory limit", initial=v("memory_limit"), placeholder="512Mi"),
        text_input("env", "Environment variables", initial=v("env"), multiline=True, optional=True,
                   placeholder="LOG_LEVEL=info", hint="One KEY=value per line. No secrets: this is committed to Git."),
    ]
    title = "Edit pipeline" if mode == "edit" else "Create pipeline"
    return modal(title, blocks, SUBMIT_CALLBACK, submit="Open pull request", private_metadata=metadata)


_VERB = {"create": "New pipeline", "edit": "Pipeline change", "bump": "Batch image bump"}


_EMOJI = {"proposing": ":hourglass_flowing_sand:", "open": ":white_check_mark:", "merged": ":tada:",
          "closed": ":no_entry_sign:", "failed": ":warning:", "rejected": ":no_entry:", "noop": ":information_source:"}


def _status(card: dict, link: bool) -> str:
    number, url = card.get("pr_number"), card.get("pr_url")
    pr = link_to(url, f"pull request #{number}") if link and url else escape(f"pull request #{number}")
    return {
        "proposing": "preparing the pull request…",
        "open": f"{pr} is open, but no reviewer was asked." if card.get("review_problem") else f"{pr} is open for review.",
        "merged": f"{pr} was merged.",
        "closed": f"{pr} was closed without merging.",
        "failed": "the pull request could not be opened.",
        "rejected": "no pull request was opened.",
        "noop": "nothing to change.",
    }.get(card["state"]) or escape(card["state"])


def request_message(card: dict) -> dict:
    """The requester's message: summary, state, "View pull request"; updated in place until merged."""
    what = f"{_VERB.get(card['action'], 'Pipeline')} for"
    headline = f"{_EMOJI.get(card['state'], '')} {what} *{escape(card['target'])}*: {_status(card, link=True)}"
    blocks = [section(headline.strip())]
    pairs = [(escape(k), escape(v)) for k, v in card.get("summary") or []]
    for start in range(0, len(pairs), 10):
        blocks.append(fields(pairs[start:start + 10]))
    if card["action"] == "bump" and card["state"] in ("proposing", "open", "merged", "closed", "noop"):
        affected = card.get("affected") or []
        if card["state"] != "proposing":
            names = ", ".join(f"`{escape(a)}`" for a in affected) or "none track this image yet"
            blocks.append(section(clip(f"*Batches re-rendered ({len(affected)}):* {names}", 2900)))
    if card.get("error"):
        blocks.append(section(f":warning: {escape(card['error'])}"))
    if card.get("review_problem") and card["state"] == "open":
        blocks.append(section(clip(f":warning: {escape(card['review_problem'])}", 2900)))
    if card.get("note"):
        blocks.append(context(escape(card["note"])))
    buttons = []
    if card.get("pr_url"):
        buttons.append(button("View pull request", VIEW_PR_ACTION, url=card["pr_url"],
                              style="primary" if card["state"] == "open" else None))
    if card["state"] == "failed" or (card["state"] == "open" and card.get("error")):
        buttons.append(button("Try again", RETRY_ACTION, value=str(card["id"])))
    if buttons:
        blocks.append(actions(*buttons))
    who = f"Requested by {mention(card['requester'])}"
    if card.get("editor") and card["editor"] != card["requester"]:
        who += f" · last change by {mention(card['editor'])}"
    if card.get("files"):
        who += f" · {len(card['files'])} files"
    blocks.append(context(who))
    return message(f"{what} {escape(card['target'])}: {_status(card, link=False)}", blocks)


def list_message(entries: list[dict], team: str | None, problems: list[str] | None = None) -> dict:
    """entries: service, team, kind, strategy, clusters, pr_number, pr_url, pending (not merged yet)."""
    title = f"Pipelines of team {team}" if team else "Pipelines"
    if not entries:
        where = f" for team *{escape(team)}*" if team else ""
        blocks = [section(f"No pipelines{where} yet. Create one with `/pipeline create`.")]
        return message(f"{escape(title)}: none yet", blocks + [context(escape(p)) for p in (problems or [])[:3]])
    lines = []
    for e in entries:
        how = ", ".join(x for x in (e.get("kind"), e.get("strategy")) if x) or "unreadable deckhand.yaml"
        pr = ""
        if e.get("pr_number"):
            link = link_to(e.get("pr_url"), f"PR #{e['pr_number']}")
            pr = f" · {link} {'pending merge' if e.get('pending') else 'open'}"
        clusters = ", ".join(e.get("clusters") or []) or "—"
        team = escape(e.get("team") or "?")
        lines.append(f"*{escape(e['service'])}* — {escape(how)} · {team} · {escape(clusters)}{pr}")
    blocks = [header(title)]
    chunk: list[str] = []
    for line in lines:
        if sum(len(x) + 1 for x in chunk) + len(line) > 2800:
            blocks.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    blocks.append(section("\n".join(chunk)))
    open_prs = sum(1 for e in entries if e.get("pr_number"))
    blocks.append(context(f"{len(entries)} pipelines · {open_prs} with an open pull request · "
                          "change one with `/pipeline edit &lt;service&gt;`"))
    blocks += [context(escape(p)) for p in (problems or [])[:3]]
    fitted, _ = fit_message(blocks, more="and {n} more sections — narrow it with `/pipeline list &lt;team&gt;`")
    return {"text": f"{escape(title)}: {len(entries)}", "blocks": fitted}
