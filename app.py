"""deckhand's composition root: load config, build store and gateways, wire Bolt, schedule jobs, serve.

    python app.py            serve (Socket Mode if SLACK_APP_TOKEN is set, else HTTP on $HOST:$PORT);
                             with no config file and no Slack credentials: the demo
    python app.py demo       the embedded demo world (local clusters, GitOps repo, Prometheus) in the console
    python app.py check      validate config and probe every integration; exit 1 if any failed
    python app.py console    chat with the bot in the terminal (its own database: $DECKHAND_CONSOLE_DB,
                             default ./deckhand-console.db)
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Response, request as flask_request
from slack_bolt import App, BoltResponse
from slack_bolt.adapter.flask import SlackRequestHandler
from slack_bolt.listener_matcher.builtins import BuiltinListenerMatcher
from slack_bolt.listener_matcher.listener_matcher import ListenerMatcher

import commands
from commands.kit import CheckedRespond
from commands.pool import ListenerPool, lane
import jobs
from bot.foundation.config import ConfigError, Secrets, load_settings
from bot.foundation.context import Context, build_context
from bot.foundation.doors import SlackDoor, check_slack_signature
from bot.foundation.health import probes
from bot.foundation.logs import setup_logging
from bot.foundation.traffic import token_values
from bot.foundation.web import create_web
from console import is_terminal

log = logging.getLogger("deckhand")
MANIFESTS = "deploy/slack/manifest.yaml (Socket Mode) or deploy/slack/manifest-http.yaml (HTTP)"


class DeckhandApp(App):
    """Bolt's App, plus the things that must wrap a whole request.

    Bolt's sync middleware `next()` only marks the chain as continued (slack_bolt/app/app.py
    dispatch): the listener runs after every middleware has returned, so anything that must
    surround the listener's submission or see the final response lives here, not in middleware.

    Verification lives here too, not in Bolt's RequestVerification middleware: Bolt's check raises
    on a timestamp that is not a number (`int("abc")`), which sends the *unverified* request to the
    global error handler, and it logs the whole body of every forged request at INFO. Here the
    signature is checked before Bolt sees the request; the HTTP route (build_web) has already
    checked it on the raw bytes, before any parsing; this catches every other caller (the console).
    """

    def __init__(self, ctx: Context, **kwargs):
        super().__init__(request_verification_enabled=False, **kwargs)
        self._ctx = ctx
        self.names = commands.SlackNames()
        self.door = SlackDoor(ctx.secrets.slack_signing_secret, ctx.store, ctx.metrics)
        ctx.extras["slack_replays"] = self.door.replays

    def dispatch(self, req):
        started = time.perf_counter()
        if req.mode != "socket_mode":  # Socket Mode: Slack's own WebSocket, opened with the app token
            reason = check_slack_signature(self._ctx.secrets.slack_signing_secret,
                                           (req.raw_body or "").encode("utf-8"), req.headers)
            if reason is not None:
                self._ctx.metrics.refused.labels(door="slack", reason=reason).inc()
                self.door.rejections.note(f"signature check failed: {reason}")
                return BoltResponse(status=401, body={"error": "invalid request"})
        req.context[commands.VERIFIED] = True
        if req.context.response_url:
            req.context["respond"] = CheckedRespond(req.context.response_url, self._ctx.secrets.slack_api_url)
        body = req.body or {}
        # commands/pool.py: the last middleware puts the listener on its lane (a modal's ack must
        # not queue behind slow work; everyone else's share of the pool); the lane ends here.
        with lane():
            response = super().dispatch(req)
        kind, name = commands.request_name(body, self.names)
        status = getattr(response, "status", 200) or 200
        self._ctx.metrics.requests.labels(kind=kind, name=name, outcome="ok" if status < 400 else "error").inc()
        log.debug("%s %s acked in %.1f ms", kind, name, (time.perf_counter() - started) * 1000)
        return response


class BodyMatcher(ListenerMatcher):
    """Bolt's built-in matcher (a command name, an action_id, a callback_id), called with the body alone.

    Bolt asks every listener in turn whether it matches, and its BuiltinListenerMatcher first builds
    every argument a listener could take (a client, say, respond, say_stream, the parsed view, action,
    command, ...: slack_bolt/kwargs_injection/utils.py build_required_kwargs) to hand its function the
    one it takes, `body`. With deckhand's 38 listeners that was 15 % of the CPU of every ack
    (bench/ack.py, py-spy over the modal phase), spent before the listener was even found."""

    def __init__(self, func):
        self.func = func

    def matches(self, req, resp) -> bool:
        return self.func(req.body)


def fast_matchers(bolt: App) -> None:
    for listener in bolt._listeners:  # Bolt keeps no public handle on them
        listener.matchers = [BodyMatcher(m.func) if type(m) is BuiltinListenerMatcher and m.arg_names == ["body"] else m
                             for m in listener.matchers]


def wire_features(ctx: Context) -> None:
    """Connections between features that must not import each other: service deletion owns the
    `deckhand/delete/*` pull requests that the GitHub webhook and the pr-poll job (bot/pipelines) see."""
    from bot.deletion import lifecycle

    ctx.pull_request_handlers[lifecycle.BRANCH_PREFIX] = ("service deletion", lifecycle.on_pull_request_closed)


def build_bolt(ctx: Context, workers: int = 8) -> App:
    """The Bolt app: signature verification on; acks never wait behind slow work (commands/pool.py).
    Every way of running deckhand builds it, so the features are wired here too."""
    wire_features(ctx)
    executor = ListenerPool(workers)
    ctx.extras["listener_executor"] = executor
    bolt = DeckhandApp(
        ctx,
        signing_secret=ctx.secrets.slack_signing_secret,  # None in Socket Mode: no /slack/events exists
        client=ctx.slack,
        token_verification_enabled=False,  # `check` and startup report auth problems clearly instead
        listener_executor=executor,
        logger=logging.getLogger("deckhand.bolt"),
    )
    bolt.names = commands.register_all(bolt, ctx)
    fast_matchers(bolt)
    bolt.middleware(executor.middleware())  # last: after the signature check and our own middleware
    return bolt


def warm_authorization(bolt: App, ctx: Context) -> None:
    """Call auth.test once at start, in the background, and hand the answer to Bolt.

    Bolt's single-workspace authorization otherwise calls auth.test on the first request, inside
    Slack's 3-second ack window (a slow Slack makes the first ack slow). A failure here is only
    logged: the bot still serves, and `python app.py check` explains it.
    """
    from slack_bolt.middleware.authorization.single_team_authorization import SingleTeamAuthorization

    try:
        result = ctx.slack.auth_test()
    except Exception as exc:
        log.warning("Slack auth.test failed at start (%s); check SLACK_BOT_TOKEN with `python app.py check`", exc)
        return
    ctx.bot_user_id = result.get("user_id")
    for middleware in bolt._middleware_list:  # Bolt keeps no public handle on it
        if isinstance(middleware, SingleTeamAuthorization) and not middleware.auth_test_result:
            middleware.auth_test_result = result


def hooks(ctx: Context) -> dict:
    from bot import pipelines
    from bot.nodes import reports as nodes

    return {"node-join": lambda body, headers: nodes.handle_report(ctx, body, headers),
            "github": lambda body, headers: pipelines.handle_github_webhook(ctx, body, headers)}


def build_web(ctx: Context, bolt: App):
    web = create_web(ctx, hooks(ctx))
    handler = SlackRequestHandler(bolt)

    def slack_events():
        # The signature is checked on the raw bytes before Bolt parses a byte of the body.
        refusal = bolt.door.admit(flask_request.get_data(), flask_request.headers, flask_request.remote_addr)
        if refusal is not None:
            return Response(refusal[1], status=refusal[0], mimetype="text/plain")
        return handler.handle(flask_request)

    web.add_url_rule("/slack/events", "slack_events", slack_events, methods=["POST"])
    return web


def start_background(ctx: Context) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1,
                                                                   "misfire_grace_time": 300})
    jobs.schedule_all(scheduler, ctx)
    scheduler.start()
    ctx.outbox.start()
    return scheduler


def shutdown(ctx: Context, scheduler: BackgroundScheduler | None, grace: float = 20.0) -> None:
    """Stop taking work, let running listeners and jobs finish (bounded), close the DB."""
    log.info("shutting down: finishing running work (up to %.0fs)", grace)
    if scheduler is not None:
        scheduler.shutdown(wait=False)
    executor = ctx.extras.get("listener_executor")
    if executor is not None:
        done = threading.Event()
        threading.Thread(target=lambda: (executor.shutdown(wait=True), done.set()), daemon=True).start()
        if not done.wait(grace):
            log.warning("listeners still running after %.0fs; exiting anyway", grace)
    ctx.outbox.stop()
    replays = ctx.extras.get("slack_replays")
    if replays is not None:
        replays.stop()  # write the last requests' keys, so they stay replay-proof across the restart
    ctx.kube.close()
    ctx.traffic.close()
    ctx.store.close()
    log.info("stopped")


def socket_mode_listener(bolt: App):
    """What Bolt's SocketModeHandler does per envelope: dispatch, then ack with the response's body."""
    from slack_bolt.adapter.socket_mode.internals import run_bolt_app, send_response

    def listen(client, req) -> None:
        started = time.time()
        send_response(client, req, run_bolt_app(bolt, req), started)

    return listen


def serve(ctx: Context) -> int:
    """Serve hooks on PORT and probes on HEALTH_PORT at once; Slack comes over HTTP (`/slack/events`,
    signed) or, with SLACK_APP_TOKEN, over a Socket Mode link that the leader opens in the background."""
    from bot.foundation.leader import start_leader_election
    from bot.foundation.serving import create_listeners
    from bot.foundation.socket_mode import SocketModeLink
    from bot.foundation.web import create_health_web, create_web

    secrets = ctx.secrets
    socket_mode = bool(secrets.slack_app_token)
    if not socket_mode and not secrets.slack_signing_secret:
        # Without it nothing could tell Slack's requests from anyone's (main() says so before this).
        raise SystemExit("SLACK_SIGNING_SECRET is not set: HTTP mode cannot verify Slack's requests")
    bolt = build_bolt(ctx)
    warm = threading.Thread(target=warm_authorization, args=(bolt, ctx), name="auth-test", daemon=True)
    warm.start()
    warm.join(timeout=5)  # serve without it if Slack is slow or down; the first request then pays for it
    link = None
    if socket_mode:
        link = SocketModeLink(secrets.slack_app_token, secrets.slack_api_url, socket_mode_listener(bolt),
                              ctx.metrics).start()
        web = create_web(ctx, hooks(ctx))  # no /slack/events: the socket is Slack's only way in
    else:
        web = build_web(ctx, bolt)
    health_web = create_health_web(
        ctx, details={"slack": lambda: (link.problem() or "").removeprefix("slack: ") or None} if link else None)
    host = os.environ.get("HOST", "0.0.0.0")
    port, health_port = int(os.environ.get("PORT", "3000")), int(os.environ.get("HEALTH_PORT", "8081"))
    listeners = create_listeners(web, health_web, host=host, port=port, health_port=health_port,
                                 threads=int(os.environ.get("HTTP_THREADS", "8")))
    if link:
        log.info("Socket Mode: hooks on http://%s:%s, health and metrics on port %s", host, port, health_port)
    else:
        log.info("serving Slack events on http://%s:%s/slack/events, health and metrics on port %s",
                 host, port, health_port)

    elector = start_leader_election(ctx, on_leading=link.want if link else None)
    scheduler = start_background(ctx)
    stopping = threading.Event()
    closing_socket: list[threading.Thread] = []

    def on_signal(signum, _frame):
        if not stopping.is_set():
            stopping.set()
            log.info("received %s", signal.Signals(signum).name)
            if link is not None:  # first, so Slack stops sending here; it waits, so not on this thread
                closing_socket.append(threading.Thread(target=link.stop, name="socket-mode-close"))
                closing_socket[0].start()
            listeners.close_main()  # stop accepting; waitress finishes the requests it has

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        listeners.serve()
    except (OSError, ValueError) as exc:
        if not stopping.is_set():
            log.error("HTTP server stopped: %s", exc)
    finally:
        if link is not None:
            for thread in closing_socket:
                thread.join()
            link.stop()
        if elector is not None:
            elector.stop()
        listeners.close()
        shutdown(ctx, scheduler)
    return 0


def missing_slack(secrets: Secrets) -> list[str]:
    missing = [] if secrets.slack_bot_token else ["SLACK_BOT_TOKEN"]
    if not secrets.slack_app_token and not secrets.slack_signing_secret:
        missing.append("SLACK_SIGNING_SECRET (HTTP mode) or SLACK_APP_TOKEN (Socket Mode)")
    return missing


def run_demo() -> int:
    """`python app.py demo`: deckhand's real context, listeners and jobs over the embedded world (demo/),
    with the console in front. Its database lives in the world's temporary directory."""
    from console import run_console

    try:
        import demo
    except ImportError as exc:  # the container image carries no demo (nor the fakes it runs on)
        print(f"demo: not available here ({exc}); run it from a clone of the repository: make run", file=sys.stderr)
        return 2
    try:
        world = demo.start()
    except Exception as exc:
        print(f"demo: failed to start its local world: {exc}", file=sys.stderr)
        return 1
    try:
        ctx = build_context(world.settings(), world.secrets, world.db_path, clock=world.clock)
        handlers = hooks(ctx)
        jobs.attach(ctx)  # `/ops run` and `/ops jobs` work; nothing is scheduled in the console
        return run_console(ctx, build_bolt=build_bolt, shutdown=shutdown, log_path="deckhand-demo.log",
                           intro=world.intro(), commands=world.console_commands(handlers),
                           on_start=lambda: world.seed(ctx, handlers))
    finally:
        world.stop()


def console_db() -> str:
    """The console's own database: console actions must never queue posts for the real bot's Slack."""
    return os.environ.get("DECKHAND_CONSOLE_DB") or "./deckhand-console.db"


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "serve"
    if command in ("-h", "--help", "help"):
        print(__doc__.strip())
        return 0
    if command not in ("serve", "check", "console", "demo"):
        print(f"unknown command {command!r}\n\n{__doc__.strip()}", file=sys.stderr)
        return 2
    secrets = Secrets.from_env()
    setup_logging(secrets.values())
    if command == "serve" and secrets.slack_bot_token and not secrets.slack_app_token \
            and not secrets.slack_signing_secret:
        print("SLACK_SIGNING_SECRET is not set: HTTP mode verifies every Slack request with it "
              "(or set SLACK_APP_TOKEN for Socket Mode)", file=sys.stderr)
        return 2
    config_path = os.environ.get("DECKHAND_CONFIG", "./deckhand.yaml")
    if command == "demo" or (command == "serve" and "DECKHAND_CONFIG" not in os.environ
                             and not os.path.exists(config_path) and missing_slack(secrets)):
        if command == "serve":
            print(f"No {config_path} and no Slack credentials: starting the demo world "
                  "(`python app.py demo`). To run for real, see README.md, Install.", file=sys.stderr)
        return run_demo()
    terminal = is_terminal(sys.stdin)
    if command == "serve" and missing_slack(secrets) and not terminal:
        # A pod whose Secret has empty values must crash loudly, not read EOF and exit 0 in a loop.
        print(f"Slack credentials missing: {', '.join(missing_slack(secrets))}. Set them (create the app from "
              f"{MANIFESTS}), or run `python app.py console` to try deckhand in a terminal.", file=sys.stderr)
        return 2
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        if command == "check":
            print("config: failed")
        print("\n".join(exc.problems), file=sys.stderr)
        return 1 if command == "check" else 2
    setup_logging(secrets.values() + token_values(settings.clusters, settings.prometheus))
    as_console = command == "console" or (command == "serve" and bool(missing_slack(secrets)))
    db_path = console_db() if as_console else os.environ.get("DECKHAND_DB", "./deckhand.db")
    try:
        ctx = build_context(settings, secrets, db_path)
    except Exception as exc:  # e.g. the database path is not writable
        print(f"database: failed: {db_path}: {exc}", file=sys.stderr)
        return 1 if command == "check" else 2

    if command == "check":
        results = probes(ctx)
        print(f"config: ok: {config_path} ({len(settings.clusters)} clusters)")
        for probe in results:
            print(probe.line())
        ctx.store.close()
        return 0 if all(p.ok for p in results) else 1
    if as_console:
        if command != "console":
            print(f"Slack credentials missing ({', '.join(missing_slack(secrets))}); starting the terminal "
                  f"console instead. To connect to Slack, create the app from {MANIFESTS} and set them.",
                  file=sys.stderr)
        from console import run_console

        jobs.attach(ctx)  # `/ops run` and `/ops jobs` work in the console; nothing is scheduled there
        return run_console(ctx, build_bolt=build_bolt, shutdown=shutdown,
                           log_path=os.path.splitext(db_path)[0] + ".log")
    return serve(ctx)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
