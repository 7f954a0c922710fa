"""Group commit on a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from gateway.store.db import Database


def _insert(v):
    def fn(c: sqlite3.Connection):
        c.execute("INSERT INTO t(v) VALUES (?)", (v,))
        return c.execute("SELECT last_insert_rowid()").fetchone()[0]

    return fn


async def test_concurrent_writes_share_transactions_and_survive_reopen(tmp_path):
    db = Database(tmp_path / "n.db")
    db.migrate("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    ids = await asyncio.gather(*(db.write(_insert(f"v{i}")) for i in range(2000)))
    assert sorted(ids) == list(range(1, 2001))
    assert db.commits < 2000  # batched
    db.close()
    db2 = Database(tmp_path / "n.db")
    assert db2.read_sync(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 2000
    db2.close()


async def test_a_failing_write_is_rolled_back_alone(tmp_path):
    db = Database(tmp_path / "n.db")
    db.migrate("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)")

    def bad(c):
        c.execute("INSERT INTO t(v) VALUES ('x')")
        raise ValueError("refused")

    results = await asyncio.gather(db.write(_insert("a")), db.write(bad), db.write(_insert("b")),
                                   return_exceptions=True)
    assert isinstance(results[1], ValueError)
    rows = await db.read(lambda c: [r[0] for r in c.execute("SELECT v FROM t ORDER BY id")])
    assert rows == ["a", "b"]
    with pytest.raises(sqlite3.IntegrityError):
        await db.write(_insert("a"))
    db.close()
