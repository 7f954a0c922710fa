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


def _v1_store(target) -> None:
    """A store as version 1 left it: the envelope in the messages row (one held, one emptied transit copy)."""
    d = Database(target)
    v1 = st.SCHEMA.replace("    exp INTEGER NOT NULL,\n", "    exp INTEGER NOT NULL,\n    envelope BLOB NOT NULL,\n", 1)
    v1 = v1.replace("    ack_idx INTEGER,\n", "    ack TEXT,\n    ack_idx INTEGER,\n", 1)
    d.migrate(v1.split("CREATE TABLE IF NOT EXISTS envelopes")[0].rstrip() + "\nCREATE TABLE IF NOT EXISTS kv "
              "(k TEXT PRIMARY KEY, v BLOB NOT NULL)")

    def fn(conn):
        for jti, env, ack in (("held", b'{"token":"t.h.s"}', "ack-held"), ("dropped", b"", "ack-dropped")):
            conn.execute("INSERT INTO messages(jti, dig, mt, iss, aud, cid, irt, cls, exp, envelope, size, "
                         "received_from, received_at, ack, ack_idx, state, next_hop, updated_at) VALUES "
                         "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                         (jti, "d", "notice", "mx", "es", jti, None, "UNCLASSIFIED", 10_000, env, 17, "mx", 1.0, ack,
                          1, "queued", "es", 1.0))
        st.kv_put(conn, "store.schema", b"1")

    d.write_sync(fn)
    d.close()


def test_a_version_1_store_gets_its_envelopes_moved_to_their_own_table_and_nothing_lost(store_target):
    from gateway.store.dialect import dialect_of
    from gateway.store.schema import open_store

    _v1_store(store_target)
    d = open_store(store_target)
    try:
        assert d.read_sync(lambda c: st.kv_get(c, "store.schema")) == str(st.SCHEMA_VERSION).encode()
        assert not {"envelope", "ack"} & set(d.read_sync(lambda c: dialect_of(c).columns(c, "messages")))
        held = d.read_sync(lambda c: st.get_message(c, "held"))
        dropped = d.read_sync(lambda c: st.get_message(c, "dropped"))
        assert held is not None and held.envelope == b'{"token":"t.h.s"}' and held.ack == "ack-held"
        # a transit copy dropped before: its ack is in the evidence (the relay answers a duplicate from there)
        assert dropped is not None and dropped.envelope == b"" and dropped.ack is None and dropped.dig == "d"
        assert d.read_sync(lambda c: c.execute("SELECT jti FROM envelopes").fetchall()) == [("held",)]
    finally:
        d.close()
    open_store(store_target).close()  # and again: the current version stays as it is


def test_dropping_a_transit_copy_deletes_its_envelope_row_so_its_pages_are_reused(db):
    _queue(db, "t", "es", 1.0)
    db.write_sync(lambda c: (st.dequeue(c, "t"), st.drop_payload(c, "t")))
    m = db.read_sync(lambda c: st.get_message(c, "t"))
    assert m is not None and m.envelope == b"" and m.dig == "d"  # the row stays for dedupe
    assert db.read_sync(lambda c: c.execute("SELECT count(*) FROM envelopes").fetchone()[0]) == 0


# --- outbox leases (issue #13: active-active replicas; gateway/core/replicas.py) -------------------------


def _claim(db: Database, peer: str, me: str, now: float, lease: float = 30.0, limit: int = 10) -> list[str]:
    return [r.jti for r in db.write_sync(lambda c: st.claim(c, peer, me=me, now=now, until=now + lease, limit=limit))]


def test_a_claimed_row_is_sent_by_one_replica_until_its_lease_ends_then_taken_over(db):
    for i, jti in enumerate(("a", "b", "c")):
        _queue(db, jti, "eu-hub", 100.0 + i)
    assert _claim(db, "eu-hub", "A", 103.0, limit=2) == ["a", "b"]
    assert _claim(db, "eu-hub", "B", 104.0) == ["c"]  # A's rows are skipped, not waited for
    assert _claim(db, "eu-hub", "B", 105.0) == ["c"]  # B renews its own
    assert _claim(db, "eu-hub", "A", 106.0) == ["a", "b"]
    # A dies: its lease (until 136) ends, B takes its rows over, in queue order
    assert _claim(db, "eu-hub", "B", 135.9) == ["c"]
    assert _claim(db, "eu-hub", "B", 136.0) == ["a", "b", "c"]
    assert db.read_sync(lambda c: st.next_claim_at(c, "eu-hub", "A")) == 166.0  # B's lease (taken at 136) ends then


def test_a_rescheduled_row_is_free_for_any_replica_when_due_and_a_dequeued_one_for_none(db):
    _queue(db, "a", "eu-hub", 100.0)
    _queue(db, "b", "eu-hub", 100.0)
    assert _claim(db, "eu-hub", "A", 100.0) == ["a", "b"]
    db.write_sync(lambda c: (st.reschedule(c, "a", 110.0, "down"), st.dequeue(c, "b")))
    assert _claim(db, "eu-hub", "B", 109.0) == []  # nothing due
    assert db.read_sync(lambda c: st.next_claim_at(c, "eu-hub", "B")) == 110.0
    assert _claim(db, "eu-hub", "B", 110.0) == ["a"]
    assert db.read_sync(lambda c: st.lease_of(c, "a")) == ("B", 140.0)


def test_claim_agrees_with_the_pure_rule_for_every_lease(db):
    from gateway.core.replicas import claimable

    cases = {"free": (None, None), "mine": ("A", 200.0), "theirs": ("B", 200.0), "ended": ("B", 150.0)}
    for i, (jti, (owner, until)) in enumerate(cases.items()):
        _queue(db, jti, "eu-hub", 100.0 + i)
        if owner is not None:
            db.write_sync(lambda c, jti=jti, owner=owner, until=until: st.claim_one(c, jti, owner, until))
    got = _claim(db, "eu-hub", "A", 150.0)
    assert got == [j for j, (o, u) in cases.items() if claimable(o, u, "A", 150.0)] == ["free", "mine", "ended"]


# --- the cost of reading a batch does not grow with the queue (issue #17) ---------------------------------


def _steps(conn, fn):
    """SQLite virtual-machine steps ``fn(conn)`` takes (a measure of work that does not depend on timing)."""
    n = [0]

    def tick() -> int:
        n[0] += 1
        return 0

    conn.set_progress_handler(tick, 1)
    try:
        fn(conn)
    finally:
        conn.set_progress_handler(None, 1)
    return n[0]


def _queue_many(db: Database, peer: str, first: int, count: int) -> None:
    def fn(conn):
        for i in range(first, first + count):
            jti = f"m{i:05d}"
            st.insert_message(conn, st.StoredMessage(
                jti=jti, dig="d", mt="notice", iss="mx", aud="es", cid=jti, irt=None, cls="UNCLASSIFIED",
                exp=10_000, envelope=b"x" * 3000, size=3000, received_from=None, received_at=1.0, ack=None,
                ack_idx=None, state="queued", next_hop=peer, updated_at=1.0))
            st.enqueue(conn, jti, peer, 1.0)

    db.write_sync(fn)


def test_reading_a_peers_next_batch_does_not_join_and_sort_the_whole_queue(tmp_path):
    """The forward loop reads the oldest rows of a peer's queue once per batch, on the event loop: with
    thousands queued (a peer that was down, a burst), each read joined every queued row to its envelope
    and sorted them all to return the first 16 (12 ms per batch at 3,000 queued). It must cost about the
    same whatever the queue's length, for the replicas' claim as for a single node's read."""
    with Database(tmp_path / "node.db") as db:
        db.migrate(st.SCHEMA)
        _queue_many(db, "es", 0, 20)
        short = db.read_sync(lambda c: _steps(c, lambda c: st.due_fifo(c, "es", 2.0, 16)))
        short_claim = db.write_sync(lambda c: _steps(c, lambda c: st.claim(c, "es", me="A", now=2.0, until=1.0,
                                                                            limit=16)))
        _queue_many(db, "es", 20, 3000)
        rows = db.read_sync(lambda c: st.due_fifo(c, "es", 2.0, 16))
        assert [r.jti for r in rows] == [f"m{i:05d}" for i in range(16)]  # still the oldest, in order
        long = db.read_sync(lambda c: _steps(c, lambda c: st.due_fifo(c, "es", 2.0, 16)))
        long_claim = db.write_sync(lambda c: _steps(c, lambda c: st.claim(c, "es", me="A", now=2.0, until=1.0,
                                                                           limit=16)))
        assert long < 2 * short, (short, long)
        assert long_claim < 2 * short_claim, (short_claim, long_claim)


def _forwarded_many(db: Database, first: int, count: int, *, origin: str, received_from: str | None) -> None:
    def fn(conn):
        for i in range(first, first + count):
            jti = f"f{i:06d}"
            st.insert_message(conn, st.StoredMessage(
                jti=jti, dig="d", mt="notice", iss=origin, aud="es", cid=jti, irt=None, cls="UNCLASSIFIED",
                exp=10_000, envelope=b"", size=3000, received_from=received_from, received_at=1.0 + i,
                ack=None, ack_idx=None, state="forwarded", next_hop="eu-hub", updated_at=1.0 + i))

    db.write_sync(fn)


def test_the_receipt_watchdog_does_not_walk_every_message_a_hub_relayed(tmp_path):
    """The receipt watchdog (every node, every 30 s by default, inside a write transaction: every commit
    waits for it) looked for this node's own forwarded messages among every message in state
    ``forwarded``, which at a hub is every message it ever relayed and still keeps (36 ms at 200,000, and
    growing with retention). Its work must not grow with the messages other nodes sent through here, nor
    with this node's own messages not yet due."""
    def sweep(conn):
        return st.mark_overdue(conn, origin="latam-hub", forwarded_before=50.0, now=100.0, no_receipt=("receipt",))

    with Database(tmp_path / "node.db") as db:
        db.migrate(st.SCHEMA)
        _forwarded_many(db, 0, 10, origin="latam-hub", received_from=None)  # its own: 10 due (t 1..10)
        _forwarded_many(db, 10, 20, origin="mx", received_from="mx")  # relayed for mx
        few = db.write_sync(lambda c: _steps(c, lambda c: c.execute("SAVEPOINT s") and sweep(c)
                                              and c.execute("ROLLBACK TO s")))
        _forwarded_many(db, 30, 3000, origin="mx", received_from="mx")
        _forwarded_many(db, 3030, 500, origin="latam-hub", received_from=None)  # its own, forwarded at t >= 3031
        many = db.write_sync(lambda c: _steps(c, lambda c: c.execute("SAVEPOINT s") and sweep(c)
                                               and c.execute("ROLLBACK TO s")))
        marked = db.write_sync(sweep)
        assert [m.jti for m in marked] == [f"f{i:06d}" for i in range(10)]  # still exactly its own, oldest first
        assert many < 2 * few, (few, many)


class _Counting:
    """A connection that counts the bytes of the values its statements return."""

    def __init__(self, conn):
        self.conn, self.fetched = conn, 0

    def execute(self, sql, params=()):
        rows = self.conn.execute(sql, params).fetchall()
        self.fetched += sum(len(v) for r in rows for v in r if isinstance(v, bytes | str))
        return _Rows(rows)


class _Rows:
    def __init__(self, rows):
        self.rows = rows

    def fetchone(self):
        return self.rows[0] if self.rows else None

    def fetchall(self):
        return self.rows

    def __iter__(self):
        return iter(self.rows)

    def close(self):
        pass


class _LazyCounting:
    """A connection whose statements' rows are counted (bytes of their values) as they are read."""

    def __init__(self, conn):
        self.conn, self.fetched = conn, 0

    def execute(self, sql, params=()):
        return _LazyRows(self, self.conn.execute(sql, params))


class _LazyRows:
    def __init__(self, owner, cur):
        self.owner, self.cur = owner, cur

    def fetchall(self):
        return list(self)

    def __iter__(self):
        for row in self.cur:
            self.owner.fetched += sum(len(v) for v in row if isinstance(v, bytes | str))
            yield row

    def close(self):
        self.cur.close()


def test_a_queue_of_large_envelopes_is_read_only_as_far_as_one_request_can_take(db):
    """The forward loop sends what fits in one request (``max_request``, gateway.core.relay.fit_batch): it
    read ``max_batch`` rows whatever their size, up to 256 envelopes of 1 MiB on the event loop to send 16
    of them. With ``max_bytes`` it stops at the first row past the limit (returned too: the caller decides)."""
    for i in range(8):
        _queue(db, f"m{i}", "es", 1.0 + i)
    db.write_sync(lambda c: c.execute("UPDATE envelopes SET envelope=?", (b"x" * 100_000,)))

    def fifo(conn, **kw):
        counting = _LazyCounting(conn)
        return [r.jti for r in st.due_fifo(counting, "es", 10.0, 256, **kw)], counting.fetched

    assert db.read_sync(lambda c: fifo(c))[0] == [f"m{i}" for i in range(8)]
    taken, fetched = db.read_sync(lambda c: fifo(c, max_bytes=250_000))
    assert taken == ["m0", "m1", "m2"] and fetched < 350_000, (taken, fetched)
    taken, fetched = db.read_sync(lambda c: fifo(c, max_bytes=250_000, skip={"m0"}))
    assert taken == ["m1", "m2", "m3"] and fetched < 350_000, (taken, fetched)

    def claimed(conn, **kw):
        counting = _LazyCounting(conn)
        rows = st.claim(counting, "es", me="A", now=10.0, until=40.0, limit=256, **kw)
        return [r.jti for r in rows], counting.fetched

    taken, fetched = db.write_sync(lambda c: claimed(c, max_bytes=250_000, skip={"m0"}))
    assert taken == ["m1", "m2", "m3"] and fetched < 350_000, (taken, fetched)
    assert db.read_sync(lambda c: st.lease_of(c, "m0")) == ("A", 40.0)  # still claimed (lease renewed)


def test_the_relays_view_of_a_message_does_not_read_its_envelope(db):
    """Each ack a node settles, and each envelope it receives, looks the message up (state, route, the ack it
    gave): it read the whole envelope as it travels with it, a copy of up to max_envelope bytes per
    lookup that nothing used."""
    from gateway.core.manifest import Federation

    _queue(db, "big", "eu-hub", 1.0)
    db.write_sync(lambda c: c.execute("UPDATE envelopes SET envelope=?, ack=? WHERE jti='big'",
                                      (b"x" * 1_000_000, "the-ack")))
    fed = Federation.__new__(Federation)  # the view's route lookups are not used here

    def look(conn, jti):
        counting = _Counting(conn)
        return st.StoreView(counting, fed).message(jti), counting.fetched

    known, fetched = db.read_sync(lambda c: look(c, "big"))
    assert known is not None
    assert (known.jti, known.state, known.next_hop, known.ack, known.exp) == ("big", "queued", "eu-hub", "the-ack",
                                                                              10_000)
    assert fetched < 1_000, fetched
    assert db.read_sync(lambda c: look(c, "nothing"))[0] is None


def test_a_batch_still_settling_is_passed_over_without_reading_its_envelopes(db):
    """The forward loop sends the next batch while the previous one's answers are stored: it read those
    rows again, envelopes and all, to skip them (about as many rows read as sent)."""
    for i, jti in enumerate(("a", "b", "c", "d", "e")):
        _queue(db, jti, "es", 1.0 + i)
    db.write_sync(lambda c: c.execute("UPDATE envelopes SET envelope=? WHERE jti IN ('a', 'b')", (b"x" * 100_000,)))

    def fifo(conn, now=10.0, **kw):
        counting = _Counting(conn)
        return [r.jti for r in st.due_fifo(counting, "es", now, **kw)], counting.fetched

    taken, fetched = db.read_sync(lambda c: fifo(c, limit=2, skip={"a", "b"}))
    assert taken == ["c", "d"] and fetched < 1_000, (taken, fetched)
    assert db.read_sync(lambda c: fifo(c, limit=10, skip={"b", "d"}))[0] == ["a", "c", "e"]  # queue order
    assert db.read_sync(lambda c: fifo(c, limit=2, skip={"a", "b", "c", "d", "e"}))[0] == []
    assert db.read_sync(lambda c: fifo(c, 0.5, limit=2, skip={"a"}))[0] == []  # nothing due yet
    assert db.read_sync(lambda c: fifo(c, limit=2))[0] == ["a", "b"]  # nothing skipped: one statement
