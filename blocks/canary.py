"""Block Kit for /canary: the fleet list, one canary's card with its buttons, reminders.

Pure: canaries, traffic and outcomes come in as data (bot/canary/model.py, bot/canary/traffic.py
shapes), dicts go out. A card's buttons carry where the canary lives and, for Next step, what the
clicker saw, so a click on an out-of-date card changes nothing.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from blocks.common import (MAX_MESSAGE_BLOCKS, actions, button, confirm, context, cores, error_text, escape, fields,
                           fit_message, gib, group_mention, header, mention, section)

STEP, PROMOTE, ABORT, REFRESH = "canary_step", "canary_promote", "canary_abort", "canary_refresh"
BACKENDS = {"istio": "Istio", "argo": "Argo Rollouts"}
LABELS = {"step": "Next step", "promote": "Promote", "abort": "Abort"}


def ago(delta: timedelta | None) -> str:
    if delta is None:
        return "unknown"
    minutes = int(delta.total_seconds() // 60)
    if minutes < 1:
        return "just now"
    days, hours, mins = minutes // 1440, minutes % 1440 // 60, minutes % 60
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{mins}m" if mins and not days else ""]
    return " ".join(p for p in parts if p)


def _images(images: list[str]) -> str:
    return ", ".join(f"`{escape(i)}`" for i in images) or "—"


def _where(ref) -> str:
    return f"`{escape(ref.cluster)}/{escape(ref.namespace)}`"


def _plain_where(ref) -> str:
    """cluster/namespace for a message's notification text (mrkdwn too, so escaped)."""
    return f"{escape(ref.cluster)}/{escape(ref.namespace)}"


def _started(canary, now: datetime) -> str:
    who = mention(canary.started_by) if canary.started_by else "unknown"
    when = f"{ago(canary.age(now))} ago" if canary.started_at else "at an unknown time"
    return f"by {who}, {when}"


def _backend(ref) -> str:
    return BACKENDS.get(ref.backend) or escape(ref.backend)


def _reserved(canary) -> str:
    return f"{cores(canary.reserved_cpu)}, {gib(canary.reserved_memory)}"


# -- traffic ---------------------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def traffic_text(traffic) -> str:
    if traffic is None:
        return "*Traffic, last 10 min:* not loaded — click *Refresh*."
    minutes = int(traffic.window.total_seconds() // 60)
    title = f"*Traffic, last {minutes} min* (Istio, reporter=destination)"
    if traffic.unknown:
        return f"{title}: *unknown* — {escape(traffic.unknown)}"
    rows = [("", "req/s", "success", "p99")]
    for role, stats in (("stable", traffic.stable), ("canary", traffic.canary)):
        rows.append((role, f"{stats.rps:.2f}", _pct(stats.success), _ms(stats.p99_ms)))
    table = "\n".join(f"{a:<7}{b:>9}{c:>10}{d:>11}" for a, b, c, d in rows)
    text = f"{title}\n```{table}```"
    stable, canary = traffic.stable, traffic.canary
    if canary.success is not None and stable.success is not None and canary.success < stable.success - 0.01:
        text += "\n:warning: The canary's success rate is lower than stable's."
    if canary.p99_ms and stable.p99_ms and canary.p99_ms > 1.5 * stable.p99_ms:
        text += "\n:warning: The canary's p99 latency is well above stable's."
    if canary.rps == 0 and stable.rps == 0:
        text += "\n_No requests in the window: nothing to judge the canary by yet._"
    return text


def traffic_line(traffic) -> str:
    """One line of per-version traffic for the fleet list; the card has the full table."""
    minutes = int(traffic.window.total_seconds() // 60)
    if traffic.unknown:
        return f"traffic ({minutes} min): *unknown* — {escape(traffic.unknown)}"
    parts = []
    for role, stats in (("stable", traffic.stable), ("canary", traffic.canary)):
        parts.append(f"{role} {stats.rps:.2f} req/s, {_pct(stats.success)} ok, p99 {_ms(stats.p99_ms)}")
    stable, canary = traffic.stable, traffic.canary
    worse = ((canary.success is not None and stable.success is not None and canary.success < stable.success - 0.01)
             or bool(canary.p99_ms and stable.p99_ms and canary.p99_ms > 1.5 * stable.p99_ms))
    return f"traffic ({minutes} min): " + " · ".join(parts) + (" :warning: canary worse than stable" if worse else "")


# -- one canary ------------------------------------------------------------------------------------
def _summary_fields(canary, now: datetime) -> dict:
    return fields([
        ("Traffic split", f"stable *{canary.stable_weight}%* · canary *{canary.canary_weight}%*"),
        ("Progress", f"{escape(canary.step_label)} · {escape(canary.phase)}"),
        ("Stable", f"{_images(canary.stable_images)} ({escape(canary.stable_pods)} pods)"),
        ("Canary", f"{_images(canary.canary_images)} ({escape(canary.canary_pods)} pods)"),
        ("Started", _started(canary, now)),
        ("Reserved by the canary", _reserved(canary)),
    ])


def _buttons(canary) -> dict:
    ref, service = canary.ref, escape(canary.ref.service)
    elements = []
    if canary.live and canary.next_weight is not None:
        text = "Retry canary" if canary.phase == "Aborted" else f"Next step → {canary.next_weight}%"
        elements.append(button(text, STEP, ref.button_value(canary.seen), style="primary"))
    if canary.live:
        if ref.backend == "argo":
            promote_text = (f"Argo skips the remaining steps and makes {_images(canary.canary_images)} the stable "
                            f"version of *{service}* in {_where(ref)}.")
            abort_text = f"Argo sends all traffic of *{service}* back to the stable version and scales the canary down."
        else:
            promote_text = (f"Copies the canary's pod template onto the stable Deployment of *{service}*, waits for "
                            "its rollout, then sends 100% of traffic to stable and scales the canary to 0.")
            abort_text = f"Sends 100% of *{service}* traffic back to stable, then scales the canary to 0."
        elements.append(button("Promote", PROMOTE, ref.button_value(),
                               confirm_dialog=confirm(f"Promote {ref.service}?", promote_text, "Promote", danger=False)))
        elements.append(button("Abort", ABORT, ref.button_value(), style="danger",
                               confirm_dialog=confirm(f"Abort {ref.service}?", abort_text, "Abort")))
    elements.append(button("Refresh", REFRESH, ref.button_value()))
    return actions(*elements, block_id=f"canary:{ref.key}"[:255])


def card_blocks(canary, traffic, now: datetime, note: str | None = None, working: bool = False) -> list[dict]:
    ref = canary.ref
    owner = f" · owner *{escape(canary.team)}*" if canary.team else " · no owner team label"
    state = "" if canary.live else " · _ended_"
    blocks = [header(f"Canary: {ref.service}"),
              section(f"*{escape(ref.service)}* in {_where(ref)} · {_backend(ref)}{owner}{state}"),
              _summary_fields(canary, now)]
    if canary.live:
        blocks.append(section(traffic_text(traffic)))
    if canary.warnings:
        blocks.append(context(*(f":warning: {escape(w)}" for w in canary.warnings[:5])))
    if note:
        blocks.append(section(note))
    if working:
        # Refresh stays: if the process doing the work is killed, nothing ever finishes this card,
        # and Refresh is how its reader gets the live state (and the other buttons) back.
        blocks.append(context(":hourglass_flowing_sand: Working — the other buttons come back when this finishes. "
                              "If it looks stuck, *Refresh* shows where the canary is now."))
        blocks.append(actions(button("Refresh", REFRESH, ref.button_value()), block_id=f"canary:{ref.key}"[:255]))
    else:
        blocks.append(_buttons(canary))
    return blocks


def status_message(canary, traffic, now: datetime, note: str | None = None, working: bool = False) -> dict:
    text = (f"Canary {escape(canary.ref.service)} in {_plain_where(canary.ref)}: "
            f"{canary.canary_weight}% on the canary")
    return {"text": text, "blocks": fit_message(card_blocks(canary, traffic, now, note, working))[0]}


def outcome_note(outcome) -> str:
    label = LABELS.get(outcome.action) or escape(outcome.action)
    by = f" by {mention(outcome.actor)}" if outcome.actor else ""
    steps = "".join(f"\n• {escape(s)}" for s in outcome.steps)
    if outcome.status == "done":
        return f":white_check_mark: *{label}*{by}: {escape(outcome.summary)}{steps}"
    if outcome.status == "failed":
        done = f"\nDone before it:{steps}" if steps else "\nNothing was done before it."
        return error_text(f"{label}{by} stopped at step “{escape(outcome.failed_step)}”", escape(outcome.error or ""),
                          escape(outcome.next_hint or "") + done)
    if outcome.status == "refused":
        return f":no_entry_sign: {escape(outcome.summary)}"
    return f":information_source: {escape(outcome.summary)}"


def gone_message(ref, note: str | None = None) -> dict:
    text = f"No canary of {escape(ref.service)} in {_plain_where(ref)} any more."
    blocks = [section(f"*{escape(ref.service)}* in {_where(ref)}: no canary any more — nothing left to step, "
                      f"promote or abort.")]
    if note:
        blocks.append(section(note))
    return {"text": text, "blocks": blocks}


# -- the fleet -------------------------------------------------------------------------------------
def list_message(canaries: list, errors: list[Any], now: datetime, clusters: int,
                 traffic: dict[str, Any] | None = None) -> dict:
    """`traffic`: CanaryTraffic by canary key (`ref.key`), for a line per canary; absent keys show none."""
    traffic = traffic or {}
    title = f"Live canaries ({len(canaries)})"
    blocks = [header(title)]
    if not canaries:
        blocks.append(section(f"No live canaries in the {clusters - len(errors)} clusters that answered."))
    # Slack's 50-block limit: header, footer, the errors line and an "and N more" line stay.
    room = MAX_MESSAGE_BLOCKS - 2 - (1 if errors else 0)
    shown = canaries if len(canaries) <= room else canaries[: room - 1]
    for canary in shown:
        ref = canary.ref
        blocks.append(section(
            f"*{escape(ref.service)}* · {_where(ref)} · canary *{canary.canary_weight}%* ({escape(canary.step_label)},"
            f" {escape(canary.phase)}) · {_backend(ref)}\n"
            f"stable {_images(canary.stable_images)} → canary {_images(canary.canary_images)}\n"
            f"started {_started(canary, now)}"
            + (f"\n{traffic_line(traffic[ref.key])}" if ref.key in traffic else "")))
    if len(shown) < len(canaries):
        blocks.append(context(f"and {len(canaries) - len(shown)} more — narrow it down with "
                              "`/canary &lt;service&gt; &lt;cluster&gt;`"))
    if errors:
        blocks.append(context(*(f":warning: {escape(e)}" for e in errors[:9]),
                              *([f"and {len(errors) - 9} more clusters did not answer"] if len(errors) > 9 else [])))
    # Slack reads <…> as a link even inside backticks: placeholders are escaped.
    blocks.append(context("Details, traffic and buttons: `/canary &lt;service&gt; [cluster]`."))
    return {"text": title, "blocks": blocks}


# -- reminders -------------------------------------------------------------------------------------
def reminder_message(canary, traffic, now: datetime, stale_after: timedelta, mention: str | None = None) -> dict:
    ref = canary.ref
    who = f"{group_mention(mention)} " if mention else ""
    idle = ago(canary.idle_for(now))
    lead = section(
        f":hourglass: {who}The canary of *{escape(ref.service)}* in {_where(ref)} has been at "
        f"*{canary.canary_weight}%* for {idle} (the limit is {ago(stale_after)}). It keeps *{_reserved(canary)}* "
        "reserved that other services cannot be scheduled on. Promote it or abort it.")
    blocks = card_blocks(canary, traffic, now)
    blocks[0] = header(f"Forgotten canary: {ref.service}")
    blocks.insert(1, lead)
    text = f"Forgotten canary: {escape(ref.service)} in {_plain_where(ref)} at {canary.canary_weight}% for {idle}"
    return {"text": text, "blocks": fit_message(blocks)[0]}


def ended_message(service: str, cluster: str, namespace: str) -> dict:
    text = f"The canary of {escape(service)} in {escape(cluster)}/{escape(namespace)} has ended."
    return {"text": text, "blocks": [section(
        f":white_check_mark: The canary of *{escape(service)}* in `{escape(cluster)}/{escape(namespace)}` has ended "
        "(no canary traffic or pods any more). Nothing to do.")]}
