"""What retention reads and removes in the store (gateway/store/retention.py, issue #15), on a real SQLite
file and a real PostgreSQL database: the messages whose content is held, and the purge of a body and an
envelope that leaves the message row (dedupe, evidence) in place."""

from __future__ import annotations

import json

import pytest

from gateway.store import relay as st
from gateway.store import retention as sr
from gateway.store.db import Database
from gateway.store.schema import open_store


@pytest.fixture
def db(store_target):
    d = open_store(store_target)
    yield d
    d.close()


def _message(conn, jti: str, *, aud: str = "es", envelope: bytes = b"", next_hop: str | None = None) -> None:
    st.insert_message(conn, st.StoredMessage(
        jti=jti, dig="d", mt="notice", iss="mx", aud=aud, cid=jti, irt=None, cls="UNCLASSIFIED", exp=10_000,
        envelope=envelope, size=len(envelope), received_from="hub", received_at=5.0, ack=None, ack_idx=None,
        state="received", next_hop=next_hop, updated_at=5.0))


def test_held_lists_bodies_and_envelopes_and_purge_removes_them_leaving_the_row(db: Database) -> None:
    env = json.dumps({"token": "a.b.c", "payload": "x", "hops": []}).encode()

    def fill(conn):
        _message(conn, "delivered", envelope=env)
        st.to_inbox(conn, "delivered", b'{"title":"t"}', 6.0)
        st.inbox_take(conn, "delivered", 7.0)
        _message(conn, "queued", aud="it", envelope=env, next_hop="it")
        st.enqueue(conn, "queued", "it", 5.0)
        _message(conn, "dropped", aud="it")  # a transit copy already dropped: nothing held

    db.write_sync(fill)
    rows = {r.jti: r for r in db.read_sync(sr.held)}
    assert set(rows) == {"delivered", "queued"}
    d, q = rows["delivered"], rows["queued"]
    assert (d.body, d.taken, d.envelope, d.in_outbox, d.token) == (True, True, True, False, "a.b.c")
    assert (q.body, q.envelope, q.in_outbox) == (False, True, True)
    assert db.write_sync(lambda c: sr.purge(c, "delivered")) == ["body", "envelope"]
    assert db.write_sync(lambda c: sr.purge(c, "delivered")) == []  # once
    assert {r.jti for r in db.read_sync(sr.held)} == {"queued"}
    m = db.read_sync(lambda c: st.get_message(c, "delivered"))
    assert m is not None and m.dig == "d" and m.envelope == b""
