"""SQLite through sqlite-utils: schema, forward migrations, audit, compare-and-set transitions.

Threads: Bolt runs listeners on a thread pool and APScheduler on its own threads, so each
thread gets its own connection (sqlite3 connections must not be shared across threads while
in use). WAL lets readers run beside the one writer; `BEGIN IMMEDIATE` takes the write lock up
front so a transaction never fails half-way on lock upgrade, and busy_timeout makes writers
queue instead of erroring.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator

import sqlite_utils

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime | None) -> str | None:
    """Timestamps are stored as ISO-8601 UTC text, which sorts and compares as text."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def parse_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


# Forward-only migrations. Append; never edit a released one. Each is a list of statements.
MIGRATIONS: list[list[str]] = [
    # 1: foundation
    [
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
            target TEXT, cluster TEXT, params TEXT NOT NULL DEFAULT '{}', result TEXT NOT NULL,
            channel TEXT, ts TEXT, permalink TEXT, error_id TEXT, posted INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX audit_target ON audit(target, at)",
        "CREATE INDEX audit_at ON audit(at)",
        """CREATE TABLE job_runs (
            id INTEGER PRIMARY KEY, job TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT,
            outcome TEXT NOT NULL DEFAULT 'running', detail TEXT, trigger TEXT NOT NULL DEFAULT 'schedule')""",
        "CREATE INDEX job_runs_job ON job_runs(job, started_at)",
        # Idempotency keys: a Slack retry or webhook redelivery with a seen key does nothing.
        "CREATE TABLE processed (key TEXT PRIMARY KEY, at TEXT NOT NULL, outcome TEXT)",
        # Short-lived exclusive locks, e.g. one canary operation at a time.
        """CREATE TABLE locks (
            name TEXT PRIMARY KEY, holder TEXT NOT NULL, op TEXT, acquired_at TEXT NOT NULL,
            expires_at TEXT NOT NULL)""",
        # Slack messages to send, kept until Slack accepted them.
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY, channel TEXT NOT NULL, method TEXT NOT NULL, payload TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, next_at TEXT NOT NULL,
            created_at TEXT NOT NULL, sent_at TEXT, ts TEXT, error TEXT, ref TEXT)""",
        "CREATE INDEX outbox_pending ON outbox(state, channel, id)",
        """CREATE TABLE savings (
            id INTEGER PRIMARY KEY, at TEXT NOT NULL, team TEXT, cluster TEXT NOT NULL, namespace TEXT,
            service TEXT NOT NULL, cpu_cores REAL NOT NULL, memory_bytes INTEGER NOT NULL,
            source TEXT NOT NULL, ref TEXT, UNIQUE(source, ref))""",
    ],
    # 2: node-join failures (bot/nodes/reports.py, bot/nodes/alerts.py): join reports, join attempts, incidents,
    # the Slack messages that show them, silences.
    [
        """CREATE TABLE node_reports (
            id INTEGER PRIMARY KEY, received_at TEXT NOT NULL, cluster TEXT NOT NULL, node TEXT NOT NULL,
            phase TEXT NOT NULL, status TEXT NOT NULL, message TEXT NOT NULL DEFAULT '', log_tail TEXT NOT NULL DEFAULT '',
            exit_code INTEGER, script_version TEXT, reported_at TEXT)""",
        "CREATE INDEX node_reports_node ON node_reports(cluster, node, id)",
        # One row per (cluster, node): the current join attempt, so the scan can tell "never joined".
        """CREATE TABLE node_joins (
            cluster TEXT NOT NULL, node TEXT NOT NULL, started_at TEXT NOT NULL, last_phase TEXT NOT NULL,
            last_status TEXT NOT NULL, last_report_at TEXT NOT NULL, joined_at TEXT,
            PRIMARY KEY (cluster, node))""",
        # node = '*' for cluster-level incidents (unreachable API server, too many unhealthy nodes).
        """CREATE TABLE incidents (
            id INTEGER PRIMARY KEY, kind TEXT NOT NULL, cluster TEXT NOT NULL, node TEXT NOT NULL,
            reason TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'open', detail TEXT NOT NULL DEFAULT '{}',
            first_seen TEXT NOT NULL, last_seen TEXT NOT NULL, failing_since TEXT NOT NULL,
            resolved_at TEXT, resolution TEXT, message_id INTEGER, group_id INTEGER,
            acked_by TEXT, acked_at TEXT)""",
        # At most one OPEN incident per (kind, cluster, node, reason); resolved ones are history.
        "CREATE UNIQUE INDEX incidents_open ON incidents(kind, cluster, node, reason) WHERE state = 'open'",
        "CREATE INDEX incidents_message ON incidents(message_id)",
        "CREATE INDEX incidents_group ON incidents(group_id)",
        # A Slack message deckhand keeps current: version counts renders, synced_version what Slack shows.
        """CREATE TABLE alert_messages (
            id INTEGER PRIMARY KEY, kind TEXT NOT NULL, channel TEXT NOT NULL, cluster TEXT NOT NULL,
            parent_id INTEGER, state TEXT NOT NULL, ts TEXT, payload TEXT NOT NULL,
            version INTEGER NOT NULL DEFAULT 1, posted_version INTEGER NOT NULL DEFAULT 0,
            synced_version INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL)""",
        "CREATE INDEX alert_messages_parent ON alert_messages(parent_id)",
        # node = '*' silences the whole cluster.
        """CREATE TABLE alert_silences (
            kind TEXT NOT NULL, cluster TEXT NOT NULL, node TEXT NOT NULL, until TEXT NOT NULL,
            created_by TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (kind, cluster, node))""",
        # The alert posts are looked up by ref (replace_pending, recovery after a failed post).
        "CREATE INDEX IF NOT EXISTS outbox_ref ON outbox(ref)",
    ],
    # 3: idle services (bot/idle/store.py): what each service's last report and decision is, the digest
    # messages that list them (to update them in place), and clusters whose metrics are down.
    [
        """CREATE TABLE idle_services (
            cluster TEXT NOT NULL, namespace TEXT NOT NULL, service TEXT NOT NULL, team TEXT,
            finding TEXT NOT NULL, state TEXT NOT NULL, cpu_cores REAL NOT NULL DEFAULT 0,
            memory_bytes INTEGER NOT NULL DEFAULT 0, detail TEXT NOT NULL DEFAULT '{}',
            first_reported_at TEXT, last_reported_at TEXT, snoozed_until TEXT, decided_by TEXT,
            decided_at TEXT, reason TEXT, cleared_reason TEXT, PRIMARY KEY (cluster, namespace, service))""",
        "CREATE INDEX idle_services_team ON idle_services(team, state)",
        """CREATE TABLE idle_digests (
            id INTEGER PRIMARY KEY, run_at TEXT NOT NULL, team TEXT, channel TEXT NOT NULL,
            part INTEGER NOT NULL, parts INTEGER NOT NULL, parent_id INTEGER, ts TEXT,
            summary TEXT NOT NULL DEFAULT '{}', posted INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX idle_digests_ts ON idle_digests(channel, ts)",
        "CREATE INDEX idle_digests_parent ON idle_digests(parent_id)",
        """CREATE TABLE idle_digest_items (
            digest_id INTEGER NOT NULL, position INTEGER NOT NULL, cluster TEXT NOT NULL,
            namespace TEXT NOT NULL, service TEXT NOT NULL, snapshot TEXT NOT NULL,
            PRIMARY KEY (digest_id, position))""",
        "CREATE INDEX idle_digest_items_service ON idle_digest_items(cluster, namespace, service)",
        "CREATE TABLE idle_outages (cluster TEXT PRIMARY KEY, since TEXT NOT NULL, reason TEXT NOT NULL)",
    ],
    # 4: service deletion (bot/deletion/lifecycle.py): one row per deletion request, its state machine, the
    # dependency report it was approved on, and the deletion plan with each step's result.
    [
        """CREATE TABLE deletion_requests (
            id INTEGER PRIMARY KEY, cluster TEXT NOT NULL, namespace TEXT NOT NULL, service TEXT NOT NULL,
            team TEXT, requester TEXT NOT NULL, source TEXT NOT NULL DEFAULT 'command', state TEXT NOT NULL,
            override_reason TEXT, report TEXT NOT NULL, plan TEXT NOT NULL DEFAULT '[]',
            changes TEXT NOT NULL DEFAULT '[]', decided_by TEXT, decided_at TEXT, note TEXT,
            branch TEXT, pr_number INTEGER, pr_url TEXT,
            created_at TEXT NOT NULL, expires_at TEXT NOT NULL, updated_at TEXT NOT NULL)""",
        # At most one open request per service: a second "Request deletion" finds the first.
        """CREATE UNIQUE INDEX deletion_requests_open ON deletion_requests(cluster, namespace, service)
            WHERE state IN ('pending', 'approved', 'deleting', 'failed', 'awaiting_merge')""",
        "CREATE INDEX deletion_requests_state ON deletion_requests(state, expires_at)",
        "CREATE INDEX deletion_requests_pr ON deletion_requests(branch, pr_number)",
    ],
    # 5: pipelines (bot/pipelines/requests.py): one row per pipeline PR key ("pipeline:<service>" or
    # "batch-image:<image>"), recycled once its PR is merged or closed; states move by compare-and-set.
    [
        """CREATE TABLE pipeline_requests (
            id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, action TEXT NOT NULL, target TEXT NOT NULL,
            team TEXT, spec TEXT NOT NULL, state TEXT NOT NULL, requester TEXT NOT NULL, editor TEXT,
            channel TEXT, ts TEXT, permalink TEXT, branch TEXT NOT NULL, pr_number INTEGER, pr_url TEXT,
            files TEXT NOT NULL DEFAULT '[]', detail TEXT NOT NULL DEFAULT '{}', error TEXT,
            created_at TEXT NOT NULL, updated_at TEXT NOT NULL, settled_at TEXT)""",
        "CREATE INDEX pipeline_requests_state ON pipeline_requests(state)",
        "CREATE INDEX pipeline_requests_pr ON pipeline_requests(branch, pr_number)",
    ],
    # 6: canary reminders (bot/canary/reminders.py): when each half-promoted canary was last reminded
    # (at most once per canary.stale_after and revision), and the reminder message to update when it ends.
    [
        """CREATE TABLE canary_reminders (
            key TEXT PRIMARY KEY, cluster TEXT NOT NULL, namespace TEXT NOT NULL, service TEXT NOT NULL,
            revision TEXT NOT NULL, reminded_at TEXT NOT NULL, ref TEXT NOT NULL, channel TEXT, ts TEXT)""",
    ],
    # node maintenance waves (bot/nodes/waves.py): a wave per row, its nodes with their phase; one active
    # wave per cluster (the partial unique index), states and phases move by compare-and-set.
    [
        """CREATE TABLE waves (
            id INTEGER PRIMARY KEY, cluster TEXT NOT NULL, state TEXT NOT NULL, spec TEXT NOT NULL,
            plan TEXT NOT NULL, requested_by TEXT NOT NULL, started_by TEXT, batch INTEGER NOT NULL DEFAULT 0,
            waiting TEXT, note TEXT, channel TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
            ended_at TEXT)""",
        "CREATE UNIQUE INDEX waves_active ON waves(cluster) WHERE state IN ('planned', 'running', 'paused')",
        """CREATE TABLE wave_nodes (
            wave_id INTEGER NOT NULL, node TEXT NOT NULL, batch INTEGER NOT NULL, phase TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}', cordoned INTEGER NOT NULL DEFAULT 0, phase_at TEXT NOT NULL,
            PRIMARY KEY (wave_id, node))""",
    ],
]


@dataclass
class Audit:
    """One audit row: who did what to which target, with what result."""

    actor: str
    action: str
    result: str
    target: str | None = None
    cluster: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    channel: str | None = None
    ts: str | None = None
    error_id: str | None = None


class Store:
    def __init__(self, path: str, clock: Clock = utcnow):
        self.path = path
        self.clock = clock
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        # Locks name their holder with this process's id, so a new leader can drop the locks
        # a killed process left behind (see drop_foreign_locks).
        self.instance = uuid.uuid4().hex[:12]
        self.migrate()

    # -- connections -------------------------------------------------------------------------
    @property
    def db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            if self._closed:
                raise RuntimeError("the store is closed")
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            db = sqlite_utils.Database(conn)
            self._local.db = db
            with self._lock:
                self._connections.append(conn)
        return db

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._connections.clear()
        self._local = threading.local()

    @contextmanager
    def tx(self) -> Iterator[sqlite_utils.Database]:
        """A write transaction (BEGIN IMMEDIATE). Nested calls become savepoints."""
        db = self.db
        if db.conn.in_transaction:
            with db.atomic():
                yield db
            return
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            raise
        else:
            db.conn.execute("COMMIT")

    # -- schema ------------------------------------------------------------------------------
    def migrate(self) -> int:
        with self.tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"{self.path} has schema version {version}, newer than this deckhand ({len(MIGRATIONS)}); "
                    "upgrade deckhand or restore a backup"
                )
            for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                for sql in statements:
                    db.execute(sql)
                db.execute(
                    "INSERT INTO meta(key, value) VALUES('schema_version', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    [str(number)],
                )
            return len(MIGRATIONS)

    @property
    def schema_version(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def writable(self) -> bool:
        """Readiness: can we take the write lock and write right now?"""
        try:
            with self.tx() as db:
                db.execute(
                    "INSERT INTO meta(key, value) VALUES('ready_probe', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    [iso(self.clock())],
                )
            return True
        except (sqlite3.Error, RuntimeError):
            return False

    # -- generic helpers ---------------------------------------------------------------------
    def now(self) -> str:
        return iso(self.clock())

    def insert(self, table: str, row: dict[str, Any]) -> int:
        with self.tx() as db:
            cursor = db.execute(
                f"INSERT INTO [{table}] ({', '.join(f'[{k}]' for k in row)}) VALUES ({', '.join('?' for _ in row)})",
                [_encode(v) for v in row.values()],
            )
            return cursor.lastrowid

    def get(self, table: str, row_id: int) -> dict[str, Any] | None:
        rows = list(self.db.query(f"SELECT * FROM [{table}] WHERE id = ?", [row_id]))
        return rows[0] if rows else None

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        return list(self.db.query(sql, [_encode(p) for p in params]))

    def transition(
        self,
        table: str,
        where: dict[str, Any],
        from_states: str | Iterable[str],
        to_state: str,
        values: dict[str, Any] | None = None,
        audit: Audit | None = None,
        state_column: str = "state",
    ) -> bool:
        """Compare-and-set: move matching rows from one of `from_states` to `to_state`.

        Returns True when this caller won (exactly the rows it expected changed). A double
        click, a Slack retry or a second approver finds the state already moved and gets False.
        The audit row, when given, is written in the same transaction, and only if it won.
        """
        states = [from_states] if isinstance(from_states, str) else list(from_states)
        sets = {state_column: to_state, **(values or {})}
        sql = (
            f"UPDATE [{table}] SET {', '.join(f'[{k}] = ?' for k in sets)} "
            f"WHERE {' AND '.join(f'[{k}] = ?' for k in where)} "
            f"AND [{state_column}] IN ({', '.join('?' for _ in states)})"
        )
        params = [_encode(v) for v in sets.values()] + [_encode(v) for v in where.values()] + states
        with self.tx() as db:
            won = db.execute(sql, params).rowcount > 0
            if won and audit is not None:
                self.audit(audit)
            return won

    def once(self, key: str, outcome: str = "") -> bool:
        """True the first time `key` is seen; False for every repeat (retries, redeliveries)."""
        with self.tx() as db:
            cursor = db.execute(
                "INSERT INTO processed(key, at, outcome) VALUES(?, ?, ?) ON CONFLICT(key) DO NOTHING",
                [key, self.now(), outcome],
            )
            return cursor.rowcount == 1

    # -- locks -------------------------------------------------------------------------------
    def acquire(self, name: str, op: str, holder: str | None = None, ttl_seconds: float = 900) -> dict | None:
        """Take an exclusive, expiring lock. Returns None on success, else the current holder's row."""
        holder = f"{self.instance}:{holder or uuid.uuid4().hex[:8]}"
        now = self.clock()
        expires = iso(datetime.fromtimestamp(now.timestamp() + ttl_seconds, timezone.utc))
        with self.tx() as db:
            db.execute("DELETE FROM locks WHERE name = ? AND expires_at <= ?", [name, iso(now)])
            cursor = db.execute(
                "INSERT INTO locks(name, holder, op, acquired_at, expires_at) VALUES(?, ?, ?, ?, ?) "
                "ON CONFLICT(name) DO NOTHING",
                [name, holder, op, iso(now), expires],
            )
            if cursor.rowcount == 1:
                return None
            rows = list(db.query("SELECT * FROM locks WHERE name = ?", [name]))
            return rows[0] if rows else {"name": name, "holder": "?", "op": "?"}

    def drop_foreign_locks(self) -> int:
        """Called when this process becomes the one writer: any lock another process holds is stale
        (that process died or lost the lease), so an operation it left half-done can be resumed now
        instead of after the lock's TTL."""
        with self.tx() as db:
            return db.execute("DELETE FROM locks WHERE holder NOT LIKE ?", [f"{self.instance}:%"]).rowcount

    def release(self, name: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM locks WHERE name = ?", [name])

    @contextmanager
    def locked(self, name: str, op: str, ttl_seconds: float = 900, wait: float = 0.0) -> Iterator[dict | None]:
        """`with store.locked(...) as busy:` — busy is None when we hold the lock.

        `wait` > 0 queues behind a short-lived holder (e.g. a webhook arriving while the click that
        caused it is still finishing) instead of giving up at once."""
        busy = self.acquire(name, op, ttl_seconds=ttl_seconds)
        deadline = time.monotonic() + wait
        while busy is not None and time.monotonic() < deadline:
            time.sleep(0.05)
            busy = self.acquire(name, op, ttl_seconds=ttl_seconds)
        try:
            yield busy
        finally:
            if busy is None:
                self.release(name)

    # -- audit -------------------------------------------------------------------------------
    def audit(self, entry: Audit) -> int:
        with self.tx() as db:
            cursor = db.execute(
                "INSERT INTO audit(at, actor, action, target, cluster, params, result, channel, ts, error_id) "
                "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    self.now(), entry.actor, entry.action, entry.target, entry.cluster,
                    json.dumps(entry.params, sort_keys=True, default=str), entry.result,
                    entry.channel, entry.ts, entry.error_id,
                ],
            )
            return cursor.lastrowid

    def audit_log(self, target: str | None = None, since: datetime | None = None, limit: int = 20) -> list[dict]:
        clauses, params = [], []
        if target:
            clauses.append("target = ?")
            params.append(target)
        if since:
            clauses.append("at >= ?")
            params.append(iso(since))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return self.query(f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?", [*params, limit])

    # -- jobs --------------------------------------------------------------------------------
    def job_started(self, job: str, trigger: str = "schedule") -> int:
        return self.insert("job_runs", {"job": job, "started_at": self.now(), "trigger": trigger})

    def job_finished(self, run_id: int, outcome: str, detail: str = "") -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE job_runs SET ended_at = ?, outcome = ?, detail = ? WHERE id = ?",
                [self.now(), outcome, detail[:2000], run_id],
            )

    def last_job_runs(self) -> list[dict]:
        return self.query(
            "SELECT r.* FROM job_runs r JOIN (SELECT job, MAX(id) AS id FROM job_runs GROUP BY job) m "
            "ON r.id = m.id ORDER BY r.job"
        )

    # -- savings -----------------------------------------------------------------------------
    def record_saving(
        self, *, cluster: str, service: str, cpu_cores: float, memory_bytes: int, source: str,
        ref: str, team: str | None = None, namespace: str | None = None,
    ) -> bool:
        """Once per (source, ref): a repeated deletion or scale-down is not counted twice."""
        with self.tx() as db:
            cursor = db.execute(
                "INSERT INTO savings(at, team, cluster, namespace, service, cpu_cores, memory_bytes, source, ref) "
                "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(source, ref) DO NOTHING",
                [self.now(), team, cluster, namespace, service, cpu_cores, int(memory_bytes), source, ref],
            )
            return cursor.rowcount == 1

    def savings_by_team_month(self) -> list[dict]:
        return self.query(
            "SELECT COALESCE(team, 'unowned') AS team, substr(at, 1, 7) AS month, "
            "SUM(cpu_cores) AS cpu_cores, SUM(memory_bytes) AS memory_bytes, COUNT(*) AS actions "
            "FROM savings GROUP BY 1, 2 ORDER BY month DESC, cpu_cores DESC"
        )


def _encode(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, datetime):
        return iso(value)
    return value
