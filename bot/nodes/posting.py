"""The Slack messages that show incidents: posted once, kept current in place, never lost.

Every message deckhand keeps current is a row in `alert_messages` holding its latest rendering
(`payload`) and a `version` that counts renderings. It travels through the outbox:

- posted once (`chat.postMessage`, ref `node-alert:<id>`); a thread reply waits (`state='waiting'`)
  until its parent's `ts` is known, because Slack needs `thread_ts` at post time;
- while the post is still queued, a newer rendering rewrites the queued post (`replace_pending`);
  once Slack gave us the `ts` (outbox `on_sent`), newer renderings go out as `chat.update`
  (ref `node-alert-update:<id>:<version>`), and `synced_version` records what Slack shows;
- `reconcile` (every scan tick) repairs what the hooks could not: a post the outbox gave up on
  (`channel_not_found` while someone fixes the channel, a 5xx burst past its attempts) is posted
  again, a ts learnt by the outbox but not by us (crash between the two) is picked up, and an
  update that was lost is sent again. So an alert is delayed by a Slack problem, never lost, and
  never posted twice: a post is repeated only when every earlier try of it failed.
"""
from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("deckhand.alerts")

POST_REF = "node-alert:"
UPDATE_REF = "node-alert-update:"
# Content errors: posting the same blocks again cannot work, so the retry goes out as text only.
BAD_CONTENT = {"invalid_blocks", "invalid_blocks_format", "msg_too_long", "invalid_arguments"}
# The message is gone on Slack's side (deleted by someone): further updates cannot land.
GONE = {"message_not_found", "cant_update_message"}


def attach(ctx) -> None:
    """Register the outbox hooks once per context (idempotent)."""
    if ctx.extras.get("node_alert_posting_attached"):
        return
    ctx.outbox.on_sent(POST_REF, lambda ref, channel, ts: posted(ctx, int(ref[len(POST_REF):]), ts))
    ctx.outbox.on_sent(UPDATE_REF, lambda ref, channel, ts: _updated(ctx, ref))
    ctx.extras["node_alert_posting_attached"] = True


# -- create and refresh ---------------------------------------------------------------------------
def create(ctx, db, kind: str, cluster: str, payload: dict, parent_id: int | None = None) -> int:
    """A new message (top level, or a reply in `parent_id`'s thread). Call inside `store.tx()`."""
    cursor = db.execute(
        "INSERT INTO alert_messages(kind, channel, cluster, parent_id, state, payload, created_at) "
        "VALUES(?, ?, ?, ?, 'waiting', ?, ?)",
        [kind, ctx.settings.channels.alerts, cluster, parent_id, _dump(payload), ctx.store.now()])
    _post(ctx, db, _row(db, cursor.lastrowid))
    return cursor.lastrowid


def refresh(ctx, db, message_id: int, payload: dict) -> bool:
    """Show `payload` in the message from now on. False (and no Slack call) when nothing changed."""
    row = _row(db, message_id)
    if row is None or row["payload"] == _dump(payload):
        return False
    db.execute("UPDATE alert_messages SET payload = ?, version = version + 1 WHERE id = ?",
               [_dump(payload), message_id])
    _sync(ctx, db, _row(db, message_id))
    return True


def message(db, message_id: int | None) -> dict | None:
    return _row(db, message_id) if message_id else None


# -- outbox hooks ---------------------------------------------------------------------------------
def posted(ctx, message_id: int, ts: str) -> None:
    """The post went out: remember its ts, catch up on renderings made meanwhile, release replies."""
    with ctx.store.tx() as db:
        row = _row(db, message_id)
        if row is None or row["ts"]:
            return
        db.execute("UPDATE alert_messages SET ts = ?, state = 'sent', synced_version = posted_version "
                   "WHERE id = ?", [ts, message_id])
        _sync(ctx, db, _row(db, message_id))
        for child in db.query("SELECT * FROM alert_messages WHERE parent_id = ? AND state = 'waiting' ORDER BY id",
                              [message_id]):
            _post(ctx, db, child)


def _updated(ctx, ref: str) -> None:
    message_id, version = (int(part) for part in ref[len(UPDATE_REF):].split(":"))
    with ctx.store.tx() as db:
        db.execute("UPDATE alert_messages SET synced_version = MAX(synced_version, ?) WHERE id = ?",
                   [version, message_id])


# -- repair ---------------------------------------------------------------------------------------
def reconcile(ctx) -> int:
    """Re-send what the outbox dropped or the hooks missed. Returns how many messages were re-sent."""
    repaired = 0
    with ctx.store.tx() as db:
        for row in list(db.query("SELECT * FROM alert_messages WHERE state = 'queued' AND ts IS NULL")):
            sent = _outbox_rows(db, f"{POST_REF}{row['id']}", exact=True)
            done = [r for r in sent if r["state"] == "sent" and r["ts"]]
            if done:
                posted(ctx, row["id"], done[-1]["ts"])
            elif not any(r["state"] == "pending" for r in sent):
                error = sent[-1]["error"] if sent else "never queued"
                log.warning("alert message %s was not posted (%s); posting it again", row["id"], error)
                _post(ctx, db, row, text_only=error in BAD_CONTENT)
                repaired += 1
        for row in list(db.query("SELECT * FROM alert_messages WHERE state = 'sent' AND synced_version < version")):
            updates = _outbox_rows(db, f"{UPDATE_REF}{row['id']}:")
            if any(r["state"] == "pending" for r in updates):
                continue
            if updates and updates[-1]["error"] in GONE | BAD_CONTENT:
                log.warning("alert message %s cannot be updated (%s); giving up on this version",
                            row["id"], updates[-1]["error"])
                db.execute("UPDATE alert_messages SET synced_version = version WHERE id = ?", [row["id"]])
                continue
            _sync(ctx, db, row)
            repaired += 1
        for row in list(db.query(
                "SELECT c.* FROM alert_messages c JOIN alert_messages p ON c.parent_id = p.id "
                "WHERE c.state = 'waiting' AND p.ts IS NOT NULL")):
            _post(ctx, db, row)
    return repaired


# -- internals ------------------------------------------------------------------------------------
def _post(ctx, db, row: dict, text_only: bool = False) -> None:
    thread_ts = None
    if row["parent_id"]:
        parent = _row(db, row["parent_id"])
        thread_ts = parent["ts"] if parent else None
        if not thread_ts:
            return  # stays 'waiting'; posted() releases it when the parent has a ts
    payload = json.loads(row["payload"])
    blocks = None if text_only else payload.get("blocks")
    ctx.outbox.post(row["channel"], payload["text"], blocks, thread_ts=thread_ts, ref=f"{POST_REF}{row['id']}")
    db.execute("UPDATE alert_messages SET state = 'queued', posted_version = version WHERE id = ?", [row["id"]])


def _sync(ctx, db, row: dict) -> None:
    """Make Slack show the latest rendering, by whichever route the message's state allows."""
    payload = json.loads(row["payload"])
    if row["ts"]:
        if row["synced_version"] < row["version"] and not any(
                r["state"] == "pending" and r["ref"].endswith(f":{row['version']}")
                for r in _outbox_rows(db, f"{UPDATE_REF}{row['id']}:")):
            ctx.outbox.update(row["channel"], row["ts"], payload["text"], payload.get("blocks"),
                              ref=f"{UPDATE_REF}{row['id']}:{row['version']}")
    elif row["state"] == "queued":
        ctx.outbox.replace_pending(f"{POST_REF}{row['id']}", payload["text"], payload.get("blocks"))
        # Whether or not the queued post took the new text, posted() compares versions and sends
        # a catch-up update; reconcile() re-posts if the post itself failed.


def _outbox_rows(db, ref: str, exact: bool = False) -> list[dict]:
    if exact:
        return list(db.query("SELECT id, state, ts, error, ref FROM outbox WHERE ref = ? ORDER BY id", [ref]))
    # A range instead of LIKE so the ref index is used (';' sorts right after ':').
    return list(db.query("SELECT id, state, ts, error, ref FROM outbox WHERE ref >= ? AND ref < ? ORDER BY id",
                         [ref, ref[:-1] + ";"]))


def _row(db, message_id: int) -> dict | None:
    rows = list(db.query("SELECT * FROM alert_messages WHERE id = ?", [message_id]))
    return rows[0] if rows else None


def _dump(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True)
