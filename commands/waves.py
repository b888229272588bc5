"""`/nodes wave`: plan a node maintenance wave in a modal, start it with a second DevOps person, steer it.

The core (bot/nodes/waves.py, bot/nodes/wave_run.py) does the work; this module parses the modal,
checks who may click, and turns results into the card (blocks/waves.py). Every click acks first; the
step it triggers (a tick reads the cluster) runs after the ack.
"""
from __future__ import annotations

import logging
import re
from datetime import timedelta

from blocks import waves as wave_blocks
from bot.foundation.config import format_duration, parse_duration
from bot.foundation.context import Context
from bot.foundation.kube import KubeError
from bot.nodes import wave_run, waves
from bot.nodes.wave_plan import SpecError, WaveSpec, check_selection, parse_budget, parse_window
from commands.kit import action_value, after_ack, deny, fail, safe_respond, user_of
from commands.pipeline import form_values

log = logging.getLogger("deckhand.commands.waves")


def open_planner(ctx: Context, client, body: dict, respond) -> None:
    """`/nodes wave`: the planning modal (DevOps only; off when `waves.enabled` is false)."""
    user = user_of(body)
    if not ctx.settings.waves.enabled:
        return safe_respond(respond, response_type="ephemeral",
                            text=":no_entry_sign: Node maintenance waves are turned off in deckhand's config "
                                 "(`waves.enabled: false`).")
    decision = ctx.access.may(user, "wave.plan")
    if not decision:
        return deny(ctx, respond, user, "wave.plan", decision)
    view = wave_blocks.plan_modal([c.name for c in ctx.settings.clusters], ctx.settings.waves.role_label,
                                  format_duration(ctx.settings.waves.node_timeout), body.get("channel_id"))
    client.views_open(trigger_id=body["trigger_id"], view=view)


def parse_spec(ctx: Context, form: dict) -> tuple[WaveSpec | None, dict[str, str]]:
    """The modal's fields -> a WaveSpec, or errors by block id (every wrong field at once)."""
    errors: dict[str, str] = {}
    cluster = form.get("cluster") or ""
    if ctx.settings.cluster(cluster) is None:
        errors["cluster"] = "Choose one of the configured clusters."
    kind, selector = form.get("selector_kind") or "labels", (form.get("selector") or "").strip()
    role_label = (form.get("role_label") or "").strip()
    values = {}
    checks = {
        "selector": lambda: check_selection(kind, selector),
        "role_label": lambda: _role_label(role_label),
        "max_unavailable": lambda: values.setdefault(
            "max_unavailable", parse_budget("max_unavailable", form.get("max_unavailable") or "", allow_zero=False)),
        "floor": lambda: values.setdefault("floor", parse_budget("floor", form.get("floor") or "", allow_zero=True)),
        "window": lambda: values.setdefault("window", parse_window(form.get("window") or "")),
        "node_timeout": lambda: values.setdefault("node_timeout", _timeout(form.get("node_timeout") or "")),
        "traffic_guard": lambda: values.setdefault("traffic_guard", _guard(form.get("traffic_guard") or "")),
    }
    for block, check in checks.items():
        try:
            check()
        except SpecError as exc:
            errors[exc.field if exc.field in checks else block] = str(exc)
    procedure = form.get("procedure") or ""
    if procedure not in ("drain", "rejoin"):
        errors["procedure"] = "Choose a procedure."
    if errors:
        return None, errors
    return WaveSpec(cluster=cluster, selector_kind=kind, selector=selector, role_label=role_label,
                    max_unavailable=values["max_unavailable"], floor=values["floor"], procedure=procedure,
                    node_timeout=values["node_timeout"], window=values["window"],
                    traffic_guard=values["traffic_guard"]), {}


def _role_label(text: str) -> None:
    key = text[:-1] if text.endswith("*") else text
    if not key or "*" in key or not re.fullmatch(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[-A-Za-z0-9_.]*", key):
        raise SpecError("role_label", "Write a label key such as `node-role.kubernetes.io/*` or `example.com/role`.")


def _timeout(text: str) -> timedelta:
    try:
        value = parse_duration(text)
    except ValueError:
        raise SpecError("node_timeout", "Write a duration such as `45m` or `1h30m`.") from None
    if not timedelta(minutes=1) <= value <= timedelta(days=2):
        raise SpecError("node_timeout", "Choose between 1m and 2d.")
    return value


def _guard(text: str) -> float | None:
    if not text.strip():
        return None
    try:
        value = float(text.replace(",", "").strip())
    except ValueError:
        raise SpecError("traffic_guard", "Write a number of requests per second, e.g. `2000`.") from None
    if not 0 < value < 1e9:
        raise SpecError("traffic_guard", "Write a positive number of requests per second.")
    return value


def register(app, ctx: Context) -> None:
    ctx.extras[waves.RENDERER] = lambda wave, rows, settings: wave_blocks.card(wave, rows, settings, ctx.now())

    @app.view(wave_blocks.PLAN_CALLBACK)
    def planned(ack, body):
        user = user_of(body)
        decision = ctx.access.may(user, "wave.plan")
        if not decision:
            return ack(response_action="errors", errors={"cluster": f"You can't plan waves: {decision.reason}."})
        spec, errors = parse_spec(ctx, form_values((body["view"].get("state") or {}).get("values") or {}))
        if errors:
            return ack(response_action="errors", errors=errors)
        ack()
        after_ack(ctx, body, plan, spec, user)

    def plan(spec, user: str) -> None:
        try:
            wave = waves.propose(ctx, spec, user, ctx.settings.channels.alerts)
        except waves.WaveRefused as exc:
            return _tell(ctx, user, f":no_entry_sign: {exc}")
        except KubeError as exc:
            return _tell(ctx, user, f":warning: *Planning the wave failed* — {exc}\nCheck the cluster, then plan "
                                    "again with `/nodes wave`.")
        wave_run.publish(ctx, wave.id)
        _tell(ctx, user, f":clipboard: Wave #{wave.id} on `{wave.cluster}` is planned: {len(wave.plan.nodes)} nodes in "
                         f"{len(wave.plan.batches)} batches. The plan is in <#{ctx.settings.channels.alerts}>; a "
                         "second DevOps person starts it there.")

    def clicked(action: str, permission: str, run):
        @app.action(action)
        def handler(ack, body, respond):
            ack()
            user = user_of(body)
            value = action_value(body)
            try:
                wave_id = int(value.split(":", 1)[0])
            except ValueError:
                return safe_respond(respond, **wave_blocks.notice("That button does not name a wave."))
            wave = waves.get(ctx, wave_id)
            decision = ctx.access.may(user, permission)
            if not decision:
                return deny(ctx, respond, user, permission, decision, target=f"wave:{wave_id}",
                            cluster=wave.cluster if wave else None)
            try:
                said = run(wave_id, user, value)
            except waves.WaveRefused as exc:
                wave_run.publish(ctx, wave_id)
                return safe_respond(respond, **wave_blocks.notice(f":no_entry_sign: {exc}"))
            except KubeError as exc:
                return fail(respond, "The wave step", exc, "Press Refresh to see where it stands, then try again.")
            wave_run.publish(ctx, wave_id)
            # Last, so whoever watches the response knows the click's work is finished.
            safe_respond(respond, **wave_blocks.notice(said or f"Wave #{wave_id}: done."))

    def start(wave_id, user, _value):
        waves.start(ctx, wave_id, user)
        return f"Wave #{wave_id} started: {wave_run.tick(ctx, wave_id)}."

    def resume(wave_id, user, _value):
        waves.resume(ctx, wave_id, user)
        wave_run.restart_timeouts(ctx, wave_id)
        return f"Wave #{wave_id} resumed: {wave_run.tick(ctx, wave_id)}."

    def abort(wave_id, user, _value):
        _, said = waves.abort(ctx, wave_id, user)
        return f"Wave #{wave_id} aborted." + ("\n" + "\n".join(f"• {s}" for s in said) if said else "")

    def hand_back(wave_id, user, value):
        node = value.split(":", 1)[1] if ":" in value else ""
        waves.hand_back(ctx, wave_id, node, user)
        return f"`{node}` handed back: {wave_run.tick(ctx, wave_id)}."

    clicked(wave_blocks.START, "wave.start", start)
    clicked(wave_blocks.CANCEL, "wave.operate", lambda i, u, _v: (waves.cancel(ctx, i, u), None)[1])
    clicked(wave_blocks.PAUSE, "wave.operate", lambda i, u, _v: (waves.pause(ctx, i, u), None)[1])
    clicked(wave_blocks.RESUME, "wave.operate", resume)
    clicked(wave_blocks.ABORT, "wave.operate", abort)
    clicked(wave_blocks.HAND_BACK, "wave.operate", hand_back)
    clicked(wave_blocks.REFRESH, "wave.operate", lambda i, u, _v: None)


def _tell(ctx: Context, user: str, text: str) -> None:
    """A private note after a modal closed (there is no response_url): a DM from the bot, through the outbox."""
    ctx.outbox.post(user, text)
