"""Group commit on a real SQLite file and on a real PostgreSQL database (``store_target``)."""

from __future__ import annotations

import asyncio
import re
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


def test_a_version_1_store_gains_the_outbox_lease_columns_and_keeps_its_rows(store_target):
    """A store written before replicas (schema version 1, no lease columns) is brought to the current version in place
    when opened: the outbox rows stay, unleased (issue #13)."""
    from gateway.store import relay as st
    from gateway.store.schema import VERSION_KEY, open_store

    v1 = st.SCHEMA.replace(",\n    lease_owner TEXT,\n    lease_until REAL", "")
    assert "lease_owner" not in v1
    # and, as version 1 had it, the envelope in the messages row (no envelopes table: schema 2)
    v1 = v1.replace("    exp INTEGER NOT NULL,\n", "    exp INTEGER NOT NULL,\n    envelope BLOB NOT NULL,\n", 1)
    v1 = v1.replace("    ack_idx INTEGER,\n", "    ack TEXT,\n    ack_idx INTEGER,\n", 1)
    v1 = re.sub(r"CREATE TABLE IF NOT EXISTS envelopes \(.*?\);\n", "", v1, count=1, flags=re.S)
    assert "envelopes" not in v1
    with Database(store_target) as d:
        d.migrate(v1)

        def fill(c):
            st.kv_put(c, VERSION_KEY, b"1")
            c.execute("INSERT INTO messages(jti, dig, mt, iss, aud, cid, cls, exp, envelope, size, received_at, state, "
                      "updated_at) VALUES ('j','d','notice','mx','es','c','U',9,?,1,1.0,'queued',1.0)", (b"x",))
            c.execute("INSERT INTO outbox(jti, peer, next_at) VALUES ('j', 'eu-hub', 1.0)")

        d.write_sync(fill)
    with open_store(store_target) as d:
        assert d.read_sync(lambda c: st.kv_get(c, VERSION_KEY)) == str(st.SCHEMA_VERSION).encode()
        assert d.read_sync(lambda c: st.lease_of(c, "j")) == (None, None)
        rows = d.write_sync(lambda c: st.claim(c, "eu-hub", me="A", now=2.0, until=32.0, limit=5))
        assert [r.jti for r in rows] == ["j"]
