"""Group commit on a real SQLite file and on a real PostgreSQL database (``store_target``)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from gateway.store.db import Database


def _insert(v):
    def fn(c: sqlite3.Connection):
        return c.execute("INSERT INTO t(v) VALUES (?) RETURNING id", (v,)).fetchone()[0]

    return fn


async def test_concurrent_writes_share_transactions_and_survive_reopen(store_target):
    db = Database(store_target)
    db.migrate("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    ids = await asyncio.gather(*(db.write(_insert(f"v{i}")) for i in range(2000)))
    assert sorted(ids) == list(range(1, 2001))
    assert db.commits < 2000  # batched
    db.close()
    db2 = Database(store_target)
    assert db2.read_sync(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 2000
    db2.close()
    # the rows are where the target says: the SQLite file, or the PostgreSQL database (not a file named
    # after its URL)
    if isinstance(store_target, str):
        import psycopg

        with psycopg.connect(store_target) as c:
            assert c.execute("SELECT count(*) FROM t").fetchone()[0] == 2000
    else:
        with sqlite3.connect(store_target) as c:
            assert c.execute("SELECT count(*) FROM t").fetchone()[0] == 2000


async def test_a_failing_write_is_rolled_back_alone(store_target):
    db = Database(store_target)
    db.migrate("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)")

    def bad(c):
        c.execute("INSERT INTO t(v) VALUES ('x')")
        raise ValueError("refused")

    results = await asyncio.gather(db.write(_insert("a")), db.write(bad), db.write(_insert("b")),
                                   return_exceptions=True)
    assert isinstance(results[1], ValueError)
    rows = await db.read(lambda c: [r[0] for r in c.execute("SELECT v FROM t ORDER BY id")])
    assert rows == ["a", "b"]
    with pytest.raises(db.dialect.IntegrityError):
        await db.write(_insert("a"))
    db.close()


async def test_a_lost_postgresql_connection_is_a_503_and_the_writer_reconnects(pg_url):
    """The server drops the writer's connection (a restart, a failover): the writes of that moment fail
    as StorageUnavailable (503 + Retry-After), never as a crash, and the next ones commit on a new
    connection without a restart."""
    import psycopg

    from gateway.store.db import StorageUnavailable

    db = Database(pg_url)
    db.migrate("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    await db.write(_insert("before"))
    with psycopg.connect(pg_url, autocommit=True) as admin:
        killed = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE application_name = 'traza-write'").fetchall()
    assert killed == [(True,)]
    with pytest.raises(StorageUnavailable, match="PostgreSQL connection"):
        await db.write(_insert("lost"))
    assert not db.healthy
    await db.write(_insert("after"))  # reconnected
    assert db.healthy
    rows = await db.read(lambda c: [r[0] for r in c.execute("SELECT v FROM t ORDER BY id")])
    assert rows == ["before", "after"]
    db.close()
