"""App Home: published on `app_home_opened` and refreshed after the user's actions.

Buttons on the Home tab are the same as in messages (canary step/promote/abort, deletion
approve/reject). Clicks from a view carry no response_url, so this module gives such requests a
`respond` that writes to the user's DM with the app instead; the refreshed Home shows the outcome.
"""
from __future__ import annotations

import logging
import threading

from blocks.home import home_view
from bot import canary
from bot.idle import report as idle_report
from bot.nodes import alerts
from bot.pipelines import requests as pipeline_requests
from bot.canary.traffic import canary_traffic
from bot.foundation.context import Context
from bot.deletion.requests import DeletionRequest
from commands.kit import user_of

log = logging.getLogger("deckhand.home")


def register(app, ctx: Context) -> None:
    viewers: set[str] = set()  # users who opened Home since start: only their Home is kept fresh
    queued: set[str] = set()   # a refresh is waiting to run: a burst of clicks costs one views.publish
    lock = threading.Lock()

    def publish(client, user: str) -> None:
        with lock:
            viewers.add(user)
            queued.discard(user)
        client.views_publish(user_id=user, view=build(ctx, user))

    @app.event("app_home_opened")
    def opened(event, client):
        if event.get("tab", "home") == "home":
            publish(client, event["user"])

    @app.middleware
    def home_actions(req, resp, next):  # noqa: A002 - Bolt's name
        body = req.body or {}
        user = user_of(body)
        from_view = (body.get("container") or {}).get("type") == "view"
        if from_view and not body.get("response_url"):  # Bolt's respond() would raise: no response_url
            req.context["respond"] = dm_respond(req.context.client, user)
        result = next()
        executor = ctx.extras.get("listener_executor")
        if body.get("type") in ("block_actions", "view_submission") and executor is not None:
            with lock:
                due = user in viewers and user not in queued
                if due:
                    queued.add(user)
            if due:
                # Queued behind the action's own listener on the same pool, so it usually shows the outcome.
                executor.submit(_safe, publish, req.context.client, user)
        return result


def _safe(fn, *args) -> None:
    try:
        fn(*args)
    except Exception as exc:  # a Home refresh must never surface as an error to the user
        log.info("home refresh failed: %s", exc)


def dm_respond(client, user: str):
    def respond(text: str = "", blocks=None, **_ignored):
        client.chat_postMessage(channel=user, text=text or "deckhand", blocks=blocks)

    return respond


def build(ctx: Context, user: str) -> dict:
    is_devops = ctx.access.is_devops(user)
    teams = ctx.access.teams_of(user)
    pulls = [r for r in pipeline_requests.live(ctx) if user in (r.get("requester"), r.get("editor"))]
    found = canary.discover(ctx) if (teams or is_devops) else canary.Discovery()
    live = [c for c in found.canaries if c.live and (is_devops or c.team in teams)]
    traffic = {item.ref.key: canary_traffic(ctx, item) for item in live[:5]}  # shows "unknown" on failure
    rows = ctx.store.query("SELECT * FROM deletion_requests WHERE state IN ('pending', 'failed', 'awaiting_merge') "
                           "ORDER BY id")
    requests_ = [DeletionRequest.from_row(r) for r in rows]
    awaiting = [r for r in requests_ if r.state == "pending" and r.requester != user]
    mine = [r for r in requests_ if r.requester == user]
    return home_view(user=user, is_devops=is_devops, teams=teams, pulls=pulls, canaries=live, traffic=traffic,
                     canary_errors=[str(e) for e in found.errors], awaiting=awaiting, mine=mine,
                     incidents=alerts.open_incidents(ctx), now=ctx.now(),
                     idle=idle_report.current(ctx, None if is_devops else teams)["shown"] if (teams or is_devops) else None)
