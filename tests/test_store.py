"""Store: migrations, compare-and-set under concurrency, idempotency keys, locks, audit atomicity."""
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.foundation.store import MIGRATIONS, Audit, Store


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "t.db"))
    yield s
    s.close()


def test_schema_is_migrated_and_wal(store, tmp_path):
    assert store.schema_version == len(MIGRATIONS)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = Store(str(tmp_path / "t.db"))  # reopening applies nothing twice
    assert again.schema_version == len(MIGRATIONS)
    again.close()


def test_newer_schema_is_refused(tmp_path):
    path = str(tmp_path / "new.db")
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this deckhand"):
        Store(path)


def test_transition_has_exactly_one_winner_among_twenty_threads(store):
    store.db.execute("CREATE TABLE req (id INTEGER PRIMARY KEY, state TEXT, approver TEXT)")
    store.insert("req", {"state": "pending"})
    barrier = threading.Barrier(20)

    def approve(n):
        barrier.wait()
        return store.transition("req", {"id": 1}, "pending", "approved", {"approver": f"U{n}"},
                                audit=Audit(actor=f"U{n}", action="approve", result="ok", target="req:1"))

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(approve, range(20)))
    assert results.count(True) == 1
    assert len(store.audit_log("req:1")) == 1  # the losers left no audit row
    assert store.get("req", 1)["approver"] == f"U{results.index(True)}"


def test_audit_rolls_back_with_the_state_change(store):
    store.db.execute("CREATE TABLE req (id INTEGER PRIMARY KEY, state TEXT)")
    store.insert("req", {"state": "pending"})
    with pytest.raises(RuntimeError):
        with store.tx():
            store.transition("req", {"id": 1}, "pending", "done", audit=Audit(actor="U1", action="x", result="ok"))
            raise RuntimeError("crash before commit")
    assert store.get("req", 1)["state"] == "pending"
    assert store.audit_log() == []


def test_once_and_locks(store):
    assert store.once("trigger:1") is True
    assert store.once("trigger:1") is False
    assert store.acquire("canary:prod-a/pay", "promote") is None
    holder = store.acquire("canary:prod-a/pay", "abort")
    assert holder["op"] == "promote"
    store.release("canary:prod-a/pay")
    with store.locked("canary:prod-a/pay", "abort") as busy:
        assert busy is None


def test_savings_count_once_per_ref(store):
    for _ in range(3):
        store.record_saving(cluster="prod-a", service="pay", cpu_cores=1.5, memory_bytes=2**30, source="deletion",
                            ref="deletion:7", team="payments")
    rows = store.savings_by_team_month()
    assert len(rows) == 1 and rows[0]["cpu_cores"] == 1.5 and rows[0]["actions"] == 1
