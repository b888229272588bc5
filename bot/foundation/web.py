"""HTTP routes that are not Slack: hooks on PORT (`create_web`), probes and metrics on HEALTH_PORT
(`create_health_web`).

`/slack/events` is added by app.py (the only module that knows Bolt), in HTTP mode only. Hooks are plain
callables `(body: bytes, headers) -> (status, json)` supplied by the features, so each hook
does its own authentication (HMAC) over the raw body before anything is parsed. Health, readiness
and metrics live on their own listener (bot/foundation/serving.py) so that clients holding PORT's
connections cannot starve the kubelet's probes.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable, Mapping, Optional

from flask import Flask, Response, jsonify, request

from bot.foundation.context import Context, new_error_id
from bot.foundation.doors import RejectionLog

log = logging.getLogger("deckhand.web")

Hook = Callable[[bytes, Mapping[str, str]], tuple[int, dict]]
MAX_BODY = 1024 * 1024  # no route takes more; node-join reports are capped lower by their hook


def create_web(ctx: Context, hooks: dict[str, Hook]) -> Flask:
    web = Flask("deckhand")
    web.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    refusals = {name: RejectionLog(f"/hooks/{name}") for name in hooks}

    @web.post("/hooks/<name>")
    def hook(name: str):
        handler = hooks.get(name)
        if handler is None:
            return jsonify(error=f"no hook named {name}"), 404
        # Read outside the try: a body over MAX_BODY raises werkzeug's 413, which must answer 413
        # (too_large below), not be caught as a hook failure and turned into a 500.
        raw = request.get_data(cache=False)
        try:
            status, body = handler(raw, request.headers)
        except Exception as exc:
            error_id = new_error_id()
            log.error("hook %s failed (error id %s)", name, error_id, exc_info=exc)
            ctx.metrics.errors.labels(where=f"hook:{name}").inc()
            return jsonify(error="internal error", error_id=error_id), 500
        ctx.metrics.requests.labels(kind="hook", name=name, outcome=str(status)).inc()
        if status in (401, 413):  # the reason is deckhand's own words, never the unverified body
            refusals[name].note(f"{status} {str(body.get('error', ''))[:120]}", request.remote_addr)
        return jsonify(body), status

    @web.errorhandler(413)
    def too_large(_exc):
        return jsonify(error=f"request body over {MAX_BODY} bytes"), 413

    @web.errorhandler(405)
    def wrong_method(_exc):
        return jsonify(error="method not allowed"), 405

    @web.errorhandler(404)
    def not_found(_exc):
        return jsonify(error="not found"), 404

    return web


def create_health_web(ctx: Context, checks: Iterable[Callable[[], Optional[str]]] = (),
                      details: Optional[dict[str, Callable[[], Optional[str]]]] = None) -> Flask:
    """HEALTH_PORT: `/healthz` (the process answers), `/readyz` (it should get traffic: database
    writable, this instance the leader, and each of `checks`, which return a problem or None; `details`
    are shown by name but do not make it unready) and `/metrics`."""
    web = Flask("deckhand-health")
    checks = list(checks)
    details = dict(details or {})

    @web.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @web.get("/readyz")
    def readyz():
        problems = []
        if not ctx.store.writable():
            problems.append("database is not writable")
        if ctx.settings is None:
            problems.append("config not loaded")
        if not ctx.is_leader():
            problems.append(ctx.leader_problem() or "standing by: another instance holds the lease")
        problems.extend(problem for problem in (check() for check in checks) if problem)
        # Integrations are details, not readiness: a pod out of its Service because GitHub is down
        # would only stop the hooks as well (bot/foundation/integrations.py). The same holds for Slack's
        # Socket Mode link: while it reconnects, the hooks on PORT still work and Slack posts wait in the
        # outbox, so its state is a detail ("slack": "connecting (attempt N, …)"), not a 503.
        body = {"status": "ready" if not problems else "not ready", "problems": problems,
                "leader": bool(ctx.is_leader()), "integrations": ctx.health.snapshot(),
                "outbox": {"pending": ctx.outbox.pending(), "stuck": ctx.outbox.stuck}}
        for name, detail in details.items():
            body[name] = detail() or "ok"
        return jsonify(body), (200 if not problems else 503)

    @web.get("/metrics")
    def metrics():
        # Response(mimetype=…) appends "; charset=utf-8" itself for text/*: pass the whole header once.
        return Response(ctx.metrics.exposition(), content_type="text/plain; version=0.0.4; charset=utf-8")

    @web.errorhandler(404)
    def not_found(_exc):
        return jsonify(error="not found"), 404

    return web
