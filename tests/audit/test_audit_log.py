"""Appending: entries, stage() in the caller's transaction, group commit, the stored tree and proofs; on
both engines (``audit_db``: a SQLite file, a PostgreSQL database), but for the read-only file reader."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from audit.audit_kit import T0, message_event

from gateway.audit.db import AuditError, connect
from gateway.audit.log import AuditAppender, decode_entry, stage
from gateway.audit.reader import AuditReader
from gateway.core.canonical import canonical_bytes
from gateway.core.merkle import leaf_hash, root_of, verify_consistency, verify_inclusion


def test_entry_shape_is_canonical_with_idx_ts_node(audit_db):
    app = AuditAppender(audit_db("a"), "es", clock=lambda: T0 + 0.25)
    idxs = app.append_sync([message_event(1), {"event": "node.started"}])
    app.close()
    assert idxs == [0, 1]
    with AuditReader(audit_db("a")) as r:
        raw = r.entry(0)
        e = decode_entry(raw)
        assert canonical_bytes(e) == raw
        assert e["idx"] == 0 and e["node"] == "es" and e["event"] == "envelope.accepted"
        assert e["ts"] == "2026-11-18T11:06:40.250000Z"
        assert {"jti", "mt", "iss", "aud", "from", "to", "dig"} <= set(e)
        assert decode_entry(r.entry(1)) == {"event": "node.started", "idx": 1, "node": "es", "ts": e["ts"]}
        assert r.node == "es"


@pytest.mark.parametrize(
    ("event", "match"),
    [
        ({"event": "envelope.eaten"}, "not one of SPEC"),
        ({"event": "node.started", "idx": 4}, "set by the log"),
        ({"event": "node.started", "node": "xx"}, "set by the log"),
        ({"event": "envelope.rejected", "code": 3}, "must be a string"),
        ({"event": "operator.action", "ratio": 0.5}, "floats"),
        ({"event": "operator.action", "blob": "x" * 20000}, "too large"),
    ],
)
def test_bad_events_are_refused_naming_the_field(tmp_path, event, match):
    app = AuditAppender(tmp_path / "a.db", "es")  # refused before any SQL: one engine is enough
    with pytest.raises(AuditError, match=match):
        app.append_sync([event])
    app.close()


def test_a_database_belongs_to_one_node(audit_db):
    AuditAppender(audit_db("a"), "es").close()
    with pytest.raises(AuditError, match="belongs to node 'es'"):
        AuditAppender(audit_db("a"), "mx")


def test_stage_runs_inside_the_callers_transaction(audit_db):
    path = audit_db("node")
    conn = connect(path)
    conn.execute("CREATE TABLE envelopes (jti TEXT PRIMARY KEY)")
    with pytest.raises(AuditError, match="inside the caller's transaction"):
        stage(conn, [message_event(1)], node="es")
    # rolled back: neither the envelope nor its audit entry exist
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO envelopes VALUES ('a')")
    assert stage(conn, [message_event(1)], node="es") == [0]
    conn.execute("ROLLBACK")
    # committed: both, with one transaction
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO envelopes VALUES ('b')")
    assert stage(conn, [message_event(2), message_event(3)], node="es") == [0, 1]
    conn.execute("COMMIT")
    # an appender on another connection continues the same log and tree
    app = AuditAppender(path, "es")
    assert app.append_sync([message_event(4)]) == [2]
    conn.execute("BEGIN IMMEDIATE")
    assert stage(conn, [message_event(5)], node="es") == [3]
    conn.execute("COMMIT")
    app.close()
    conn.close()
    with AuditReader(path) as r:
        leaves = [leaf_hash(raw) for _, raw, _ in r.iter_entries()]
        assert len(leaves) == 4
        assert r.root() == root_of(leaves)


async def test_group_commit_batches_concurrent_appends(audit_db):
    path = audit_db("g")
    app = AuditAppender(path, "es")
    n = 600
    idxs = await asyncio.gather(*(app.append(message_event(i)) for i in range(n)))
    assert sorted(idxs) == list(range(n))  # distinct and contiguous
    assert app.appended == n
    assert app.commits < n / 10, f"{app.commits} transactions for {n} appends: no group commit"
    more = await asyncio.gather(*(app.append_many([message_event(i), message_event(i)]) for i in range(50)))
    assert sorted(i for pair in more for i in pair) == list(range(n, n + 100))
    await app.aclose()
    # durable after reopen, each entry at its own index, tree consistent with the entries
    with AuditReader(path) as r:
        assert r.size() == n + 100
        rows = list(r.iter_entries())
        assert [i for i, _, _ in rows] == list(range(n + 100))
        assert all(decode_entry(raw)["idx"] == i for i, raw, _ in rows)
        assert r.root() == root_of([leaf_hash(raw) for _, raw, _ in rows])


async def test_a_bad_event_fails_only_its_caller(audit_db):
    app = AuditAppender(audit_db("g"), "es")
    results = await asyncio.gather(
        app.append(message_event(1)),
        app.append({"event": "nope"}),
        app.append(message_event(2)),
        return_exceptions=True,
    )
    assert isinstance(results[1], AuditError)
    assert sorted(results[0:3:2]) == [0, 1]
    await app.aclose()


def test_stored_tree_gives_valid_proofs_at_every_size(audit_db):
    app = AuditAppender(audit_db("t"), "es")
    for k in range(37):
        app.append_sync([message_event(k)] * (k % 3 + 1))  # batches of 1..3
    app.close()
    with AuditReader(audit_db("t")) as r:
        leaves = [leaf_hash(raw) for _, raw, _ in r.iter_entries()]
        n = len(leaves)
        roots = [root_of(leaves[:s]) for s in range(n + 1)]
        for size in range(1, n + 1):
            assert r.root(size) == roots[size]
            for i in range(0, size, 7):
                verify_inclusion(i, size, leaves[i], r.inclusion_proof(i, size), roots[size])
            for old in range(1, size + 1, 5):
                verify_consistency(old, size, r.consistency_proof(old, size), roots[old], roots[size])
        assert r.inclusion_json(3, 10)["size"] == 10
        with pytest.raises(AuditError, match="beyond the log size"):
            r.inclusion_proof(0, n + 1)


def test_reader_is_read_only_and_pages_entries(tmp_path):
    app = AuditAppender(tmp_path / "r.db", "es")
    app.append_sync([message_event(i) for i in range(25)])
    app.append_sync([message_event(99, event="envelope.delivered", jti="J")])
    app.close()
    with AuditReader(tmp_path / "r.db") as r:
        with pytest.raises(sqlite3.OperationalError):
            r.conn.execute("DELETE FROM audit_entries")
        page = r.entries_json(start=0, limit=10)
        assert [e["index"] for e in page["entries"]] == list(range(10)) and page["next"] == 10
        assert r.entries_json(start=20, limit=10)["next"] is None
        assert [e["index"] for e in r.entries_json(jti="J")["entries"]] == [25]
        assert r.entries(event="envelope.delivered")[0][0] == 25
    with pytest.raises(AuditError, match="no such database"):
        AuditReader(tmp_path / "missing.db")
    (tmp_path / "other.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(AuditError):
        AuditReader(tmp_path / "other.db")
