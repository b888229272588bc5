"""The App Home tab: what needs the user's attention, within Slack's 100-block view limit."""
from __future__ import annotations

from datetime import datetime

from blocks.canary import card_blocks
from blocks.common import (MAX_VIEW_BLOCKS, actions, button, confirm, context, cores, divider, escape, gib, header,
                           link, mention, section)
from blocks.service import ACTION_APPROVE, ACTION_REJECT

MAX_ITEMS = 8
MAX_CANARY_CARDS = 5


def _ago(now: datetime, then: datetime | str | None) -> str:
    if then is None:
        return "?"
    if isinstance(then, str):
        then = datetime.fromisoformat(then)
    minutes = int((now - then).total_seconds() // 60)
    if minutes < 60:
        return f"{max(minutes, 0)}m"
    if minutes < 48 * 60:
        return f"{minutes // 60}h"
    return f"{minutes // 1440}d"


def _more(count: int, shown: int, what: str) -> list[dict]:
    return [context(f"and {count - shown} more {what}")] if count > shown else []


def home_view(*, user: str, is_devops: bool, teams: list[str], pulls: list[dict], canaries: list, traffic: dict,
              canary_errors: list[str], awaiting: list, mine: list, incidents: list[dict], now: datetime,
              idle: dict | None = None) -> dict:
    who = "DevOps" if is_devops else (", ".join(teams) if teams else "no team in deckhand's config")
    blocks: list[dict] = [header("deckhand"), context(f"{mention(user)} · {escape(who)} · updated {now:%Y-%m-%d %H:%M} UTC")]

    blocks += [divider(), section("*Your pipeline pull requests*")]
    if pulls:
        for row in pulls[:MAX_ITEMS]:
            pr = link(row["pr_url"], f"#{row['pr_number']}") if row.get("pr_url") else "_opening…_"
            blocks.append(section(f"*{escape(row['target'])}* ({escape(row['action'])}) — {pr} · {escape(row['state'])}"
                                  f" · {_ago(now, row.get('updated_at'))} ago"))
        blocks += _more(len(pulls), MAX_ITEMS, "pull requests")
    else:
        blocks.append(context("None open. `/pipeline create` starts one."))

    scope = "All live canaries" if is_devops else "Your teams' live canaries"
    blocks += [divider(), section(f"*{scope}*")]
    if canaries:
        for canary in canaries[:MAX_CANARY_CARDS]:
            blocks += card_blocks(canary, traffic.get(canary.ref.key), now)
        extra = canaries[MAX_CANARY_CARDS:]
        if extra:
            lines = [f"• *{escape(c.ref.service)}* in `{escape(c.ref.cluster)}/{escape(c.ref.namespace)}` at "
                     f"{c.canary_weight}% — `/canary {escape(c.ref.service)} {escape(c.ref.cluster)}`" for c in extra[:10]]
            blocks.append(section("\n".join(lines)))
            blocks += _more(len(extra), 10, "canaries")
    else:
        blocks.append(context("No live canaries." if teams or is_devops else "You are in no team in deckhand's config."))
    if canary_errors:
        blocks.append(context(":warning: Not shown: " + "; ".join(escape(e) for e in canary_errors[:3])))

    blocks += [divider(), section("*Deletion requests awaiting your approval*" if is_devops else "*Your deletion requests*")]
    rows = awaiting if is_devops else mine
    for req in rows[:MAX_ITEMS]:
        line = (f"*{escape(req.service)}* in `{escape(req.cluster)}/{escape(req.namespace)}` — requested by "
                f"{mention(req.requester)} · {escape(req.state)} · expires in {_ago(req.expires_at, now)}")
        blocks.append(section(line))
        if is_devops and req.state == "pending":
            blocks.append(actions(
                button("Approve", ACTION_APPROVE, str(req.id), style="primary", confirm_dialog=confirm(
                    f"Delete {req.service}?", f"Re-checks dependencies, then deletes *{escape(req.service)}* from "
                    f"`{escape(req.cluster)}`.", "Approve")),
                button("Reject", ACTION_REJECT, str(req.id), confirm_dialog=confirm(
                    f"Reject deleting {req.service}?", "The requester is told.", "Reject", danger=False)),
                block_id=f"home-deletion-{req.id}"))
    blocks += _more(len(rows), MAX_ITEMS, "requests")
    if is_devops and mine:
        blocks.append(context(f"You also have {len(mine)} request(s) of your own waiting for someone else."))
    if not rows:
        blocks.append(context("Nothing waiting."))

    blocks += [divider(), section("*Open node-join incidents*")]
    if incidents:
        lines = [f"• `{escape(i['cluster'])}` *{escape(i['node'])}* — {escape(i['reason'])} · since "
                 f"{_ago(now, i.get('failing_since'))} ago" + (f" · ack {mention(i['acked_by'])}" if i.get("acked_by") else "")
                 for i in incidents[:15]]
        blocks.append(section("\n".join(lines)))
        blocks += _more(len(incidents), 15, "incidents")
    else:
        blocks.append(context("None. :white_check_mark:"))
    blocks.append(context("`/nodes` shows every cluster's nodes; `/nodes &lt;cluster&gt; &lt;node&gt;` a node's whole "
                          "join story."))

    blocks += [divider(), section("*Idle services*" if is_devops else "*Your teams' idle services*")]
    if idle and idle["count"]:
        kept = f" ({escape(idle['kept'])} kept)" if idle["kept"] else ""
        blocks.append(section(f"{escape(idle['count'])} idle{kept}, reclaimable *{cores(idle['cpu_cores'])}, "
                              f"{gib(idle['memory_bytes'])}*"))
    else:
        blocks.append(context("None listed. :white_check_mark:" if teams or is_devops else "You are in no team."))
    blocks.append(context("`/idle` lists them with their buttons; `/idle savings` shows what was reclaimed."))

    if len(blocks) > MAX_VIEW_BLOCKS:
        blocks = blocks[: MAX_VIEW_BLOCKS - 1] + [context("Some items were left out to fit Slack's limit.")]
    return {"type": "home", "blocks": blocks}
