"""The outbox queries of gateway.store.relay on a real SQLite file and a real PostgreSQL database: FIFO per
peer, next hop of a message."""

from __future__ import annotations

import pytest

from gateway.store import relay as st
from gateway.store.db import Database


@pytest.fixture
def db(store_target):
    d = Database(store_target)
    assert d.dialect.name == ("postgresql" if isinstance(store_target, str) else "sqlite")
    d.migrate(st.SCHEMA)
    yield d
    d.close()


def _queue(db: Database, jti: str, peer: str, at: float) -> None:
    def fn(conn):
        st.insert_message(conn, st.StoredMessage(
            jti=jti, dig="d", mt="notice", iss="mx", aud="es", cid=jti, irt=None, cls="UNCLASSIFIED", exp=10_000,
            envelope=jti.encode(), size=3, received_from=None, received_at=at, ack=None, ack_idx=None,
            state="queued", next_hop=peer, updated_at=at))
        st.enqueue(conn, jti, peer, at)

    db.write_sync(fn)


def test_due_fifo_gives_the_oldest_rows_of_a_peer_once_any_is_due(db):
    for i, jti in enumerate(("a", "b", "c")):
        _queue(db, jti, "latam-hub", 100.0 + i)
    _queue(db, "x", "eu-hub", 100.0)
    # a: retried later than b and c (jittered backoff); nothing due before t=103
    db.write_sync(lambda c: (st.reschedule(c, "a", 200.0, "down"), st.reschedule(c, "b", 150.0, "down"),
                             st.reschedule(c, "c", 103.0, "down")))
    assert db.read_sync(lambda c: st.due_fifo(c, "latam-hub", 102.0, 10)) == []
    rows = db.read_sync(lambda c: st.due_fifo(c, "latam-hub", 103.0, 10))
    assert [r.jti for r in rows] == ["a", "b", "c"]  # queue order, not retry order
    assert [r.jti for r in db.read_sync(lambda c: st.due(c, "latam-hub", 103.0, 10))] == ["c"]
    assert [r.jti for r in db.read_sync(lambda c: st.due_fifo(c, "latam-hub", 300.0, 2))] == ["a", "b"]
    assert [r.jti for r in db.read_sync(lambda c: st.due_fifo(c, "eu-hub", 100.0, 10))] == ["x"]


def test_outbox_peer_names_the_next_hop_until_dequeued(db):
    _queue(db, "r", "eu-hub", 1.0)
    assert db.read_sync(lambda c: st.outbox_peer(c, "r")) == "eu-hub"
    assert db.read_sync(lambda c: st.outbox_peer(c, "nothing")) is None
    db.write_sync(lambda c: st.dequeue(c, "r"))
    assert db.read_sync(lambda c: st.outbox_peer(c, "r")) is None
