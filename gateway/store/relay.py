"""Durable relay state: messages (also the dedupe store), outbox per next hop, inbox, dead letters and a
per-message timeline. Plain functions over a ``sqlite3.Connection`` so that callers compose them with the
audit log inside one ``Database.write`` transaction.

The same functions run on PostgreSQL: there the connection is a :class:`gateway.store.pg.PgConnection`
with the same surface, and the few differences of spelling (placeholders, ``INSERT OR IGNORE``, column
types) are rewritten by its dialect (:mod:`gateway.store.dialect`). So the SQL here keeps to what both
engines take: no ``lastrowid`` (``RETURNING``), no blob literals (parameters).

Schema version (:data:`SCHEMA_VERSION`) in ``kv`` under ``store.schema``: 1 is the first recorded one
(the tables as they were before versions were recorded are version 1); 2 keeps the envelope as it
travels in its own table, ``envelopes``, out of the ``messages`` row (issue #19), with the ack this node
gave for it: a transit copy's row there is deleted once the next hop has acknowledged it, so its pages
are freed and reused, where emptying columns left every message page half empty (a ``messages`` row
never shrinks; the evidence keeps the ack). :func:`gateway.store.schema.migrate` moves a
version-1 store's envelopes there; 3 gives ``outbox`` its lease
columns ``lease_owner`` and ``lease_until`` (active-active replicas, :func:`claim`; docs/ha.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

import msgspec

from gateway.core import relay
from gateway.core.manifest import Federation
from gateway.store.dialect import dialect_of

SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    jti TEXT PRIMARY KEY,
    dig TEXT NOT NULL,
    mt TEXT NOT NULL,
    iss TEXT NOT NULL,
    aud TEXT NOT NULL,
    cid TEXT NOT NULL,
    irt TEXT,
    cls TEXT NOT NULL,
    exp INTEGER NOT NULL,
    size INTEGER NOT NULL,
    received_from TEXT,
    received_at REAL NOT NULL,
    ack_idx INTEGER,
    state TEXT NOT NULL,
    next_hop TEXT,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_exp ON messages(exp);
CREATE TABLE IF NOT EXISTS envelopes (
    jti TEXT PRIMARY KEY REFERENCES messages(jti),
    envelope BLOB NOT NULL,
    ack TEXT
);
CREATE INDEX IF NOT EXISTS messages_state ON messages(state);
-- this node's own messages by state and last change (the receipt watchdog: forwarded, waiting for a
-- receipt, oldest first), not the messages it relays for others (received_from set), nearly all at a hub
CREATE INDEX IF NOT EXISTS messages_own_state ON messages(state, updated_at) WHERE received_from IS NULL;
CREATE TABLE IF NOT EXISTS overdue (
    jti TEXT PRIMARY KEY REFERENCES messages(jti),
    since REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    jti TEXT NOT NULL UNIQUE REFERENCES messages(jti),
    peer TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT,
    lease_owner TEXT,
    lease_until REAL
);
CREATE INDEX IF NOT EXISTS outbox_peer ON outbox(peer, next_at);
-- a peer's queue in queue order: the next batch is its first rows, whatever the queue's length
CREATE INDEX IF NOT EXISTS outbox_fifo ON outbox(peer, seq);
CREATE TABLE IF NOT EXISTS inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    jti TEXT NOT NULL UNIQUE REFERENCES messages(jti),
    body BLOB,
    delivered_at REAL NOT NULL,
    pushed_at REAL,
    taken_at REAL
);
-- the bodies still held (retention: content is found from what is held, not from every message)
CREATE INDEX IF NOT EXISTS inbox_held ON inbox(jti) WHERE body IS NOT NULL;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    jti TEXT NOT NULL UNIQUE REFERENCES messages(jti),
    peer TEXT,
    code TEXT NOT NULL,
    detail TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS timeline (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    jti TEXT NOT NULL,
    at REAL NOT NULL,
    state TEXT NOT NULL,
    node TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS timeline_jti ON timeline(jti);
CREATE TABLE IF NOT EXISTS message_blobs (
    sha TEXT NOT NULL,
    jti TEXT NOT NULL REFERENCES messages(jti),
    PRIMARY KEY (sha, jti)
);
CREATE TABLE IF NOT EXISTS kv (
    k TEXT PRIMARY KEY,
    v BLOB NOT NULL
)
"""


class StoredMessage(msgspec.Struct, frozen=True):
    """A message row; ``envelope`` and ``ack`` (the ack this node gave; both in table ``envelopes``) are
    ``b""`` and None once the envelope was dropped or purged (the evidence keeps the ack)."""

    jti: str
    dig: str
    mt: str
    iss: str
    aud: str
    cid: str
    irt: str | None
    cls: str
    exp: int
    envelope: bytes
    size: int
    received_from: str | None
    received_at: float
    ack: str | None
    ack_idx: int | None
    state: str
    next_hop: str | None
    updated_at: float


_FIELDS = StoredMessage.__struct_fields__
_APART = ("envelope", "ack")  # in table envelopes
_ROW_COLS = [f for f in _FIELDS if f not in _APART]  # the messages table's columns
_SELECT_MESSAGE = ("SELECT " + ",".join(f"e.{f}" if f in _APART else f"m.{f}" for f in _FIELDS)  # noqa: S608
                   + " FROM messages m LEFT JOIN envelopes e ON e.jti=m.jti WHERE m.jti=?")
# what a decision reads of a message (gateway.core.relay.Known): not the envelope as it travels, which may
# be max_envelope bytes, read on every ack a node settles
_KNOWN = [f for f in relay.Known.__struct_fields__ if f != "ack"]
_SELECT_KNOWN = (f"SELECT {','.join(f'm.{f}' for f in _KNOWN)}, m.received_from, e.ack "  # noqa: S608
                 "FROM messages m LEFT JOIN envelopes e ON e.jti=m.jti WHERE m.jti=?")
_INSERT_MESSAGE = f"INSERT INTO messages({','.join(_ROW_COLS)}) VALUES ({','.join('?' * len(_ROW_COLS))})"  # noqa: S608


def _row_msg(row: tuple[Any, ...] | None) -> StoredMessage | None:
    if row is None:
        return None
    d = dict(zip(_FIELDS, row, strict=True))
    d["envelope"] = b"" if d["envelope"] is None else bytes(d["envelope"])
    return StoredMessage(**d)


def get_message(conn: sqlite3.Connection, jti: str) -> StoredMessage | None:
    return _row_msg(conn.execute(_SELECT_MESSAGE, (jti,)).fetchone())


_INSERT_ENVELOPE = "INSERT INTO envelopes(jti, envelope, ack) VALUES (?, ?, ?)"


def insert_message(conn: sqlite3.Connection, m: StoredMessage, *, envelope_row: bool = True) -> None:
    """Insert message ``m`` and, unless ``envelope_row`` is false (the caller writes it later with
    :func:`insert_envelopes`, in the same transaction), its envelope and ack."""
    conn.execute(_INSERT_MESSAGE, tuple(getattr(m, f) for f in _ROW_COLS))
    if envelope_row and (m.envelope or m.ack is not None):
        conn.execute(_INSERT_ENVELOPE, (m.jti, m.envelope, m.ack))


def insert_envelopes(conn: sqlite3.Connection, rows: Sequence[tuple[str, bytes, str]]) -> None:
    """``(jti, envelope, ack)`` of messages inserted without their envelope row: the acks of a batch are
    signed once the whole batch was staged (protocol 1.1), and each envelope is then written with its ack
    in one statement (not inserted, then updated)."""
    conn.executemany(_INSERT_ENVELOPE, rows)


def set_state(conn: sqlite3.Connection, jti: str, state: str, now: float, *, node: str | None = None,
              detail: str | None = None, only_from: str | None = None) -> None:
    """Set the message's state (only from state ``only_from`` if given) and add a timeline step named
    ``state`` (always)."""
    if only_from is None:
        conn.execute("UPDATE messages SET state=?, updated_at=? WHERE jti=?", (state, now, jti))
    else:
        conn.execute("UPDATE messages SET state=?, updated_at=? WHERE jti=? AND state=?", (state, now, jti, only_from))
    add_timeline(conn, jti, state, now, node=node, detail=detail)


def add_timeline(conn: sqlite3.Connection, jti: str, state: str, now: float, *, node: str | None = None,
                 detail: str | None = None) -> None:
    conn.execute("INSERT INTO timeline(jti, at, state, node, detail) VALUES (?,?,?,?,?)", (jti, now, state, node, detail))


def timeline(conn: sqlite3.Connection, jti: str) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT at, state, node, detail FROM timeline WHERE jti=? ORDER BY id", (jti,)).fetchall()
    return [{"at": r[0], "state": r[1], "node": r[2], "detail": r[3]} for r in rows]


# --- transit copies (SPEC §11, 1.1) -----------------------------------------------------------------------


def note_blobs(conn: sqlite3.Connection, jti: str, shas: Iterable[str]) -> None:
    """Message ``jti`` (relayed through here) names blobs ``shas``."""
    conn.executemany("INSERT OR IGNORE INTO message_blobs(sha, jti) VALUES (?, ?)", [(s, jti) for s in shas])


def drop_payload(conn: sqlite3.Connection, jti: str) -> None:
    """Forget the envelope as it travelled (payload and hops) and the ack this node gave for it: the
    evidence keeps token, hops and both acks (a duplicate is answered with the ack from there). Its row
    is deleted, so its page space is freed and reused. The message row stays (dedupe: id, digest)."""
    conn.execute("DELETE FROM envelopes WHERE jti=?", (jti,))


def blob_held(conn: sqlite3.Connection, sha: str) -> bool:
    """Does a message still held here in full (its payload not dropped) name blob ``sha``?"""
    return conn.execute("SELECT 1 FROM message_blobs b JOIN envelopes e ON e.jti=b.jti "
                        "WHERE b.sha=? LIMIT 1", (sha,)).fetchone() is not None


# --- outbox --------------------------------------------------------------------------------------------


class OutboxRow(msgspec.Struct, frozen=True):
    """A message waiting in the outbox for a peer: queue position, id, tries so far, the envelope as it
    travels, its signed expiry, its token's digest (what the peer's ack must name: ``messages.dig``,
    stored from the same verified envelope)."""

    seq: int
    jti: str
    attempts: int
    envelope: bytes
    exp: int
    dig: str


_DUE = ("SELECT o.seq, o.jti, o.attempts, e.envelope, m.exp, m.dig FROM outbox o JOIN messages m ON m.jti=o.jti "
        "JOIN envelopes e ON e.jti=o.jti WHERE o.peer=? ")


def _outbox_rows(rows: Iterable[Sequence[Any]], max_bytes: int | None = None) -> list[OutboxRow]:
    """:class:`OutboxRow` from rows of :data:`_DUE`'s columns. With ``max_bytes``, the rows are read one at a
    time and reading stops after the row whose envelope takes the envelopes read past ``max_bytes`` (it is
    returned too: what fits in a request is the caller's rule, ``gateway.core.relay.fit_batch``), so a
    queue of large envelopes is not read whole to send the few that fit in one request."""
    out: list[OutboxRow] = []
    total = 0
    for s, j, a, e, x, d in rows:
        env = bytes(e)
        out.append(OutboxRow(s, j, a, env, x, d))
        total += len(env)
        if max_bytes is not None and total > max_bytes:
            break
    return out


def enqueue(conn: sqlite3.Connection, jti: str, peer: str, now: float) -> None:
    conn.execute("INSERT INTO outbox(jti, peer, next_at) VALUES (?,?,?)", (jti, peer, now))


def due(conn: sqlite3.Connection, peer: str, now: float, limit: int) -> list[OutboxRow]:
    """Oldest-first outbox rows for ``peer`` that are due."""
    rows = conn.execute(_DUE + "AND o.next_at<=? ORDER BY o.seq LIMIT ?", (peer, now, limit)).fetchall()
    return _outbox_rows(rows)


def due_fifo(conn: sqlite3.Connection, peer: str, now: float, limit: int,
             skip: Collection[str] = (), max_bytes: int | None = None) -> list[OutboxRow]:
    """If any outbox row for ``peer`` is due at ``now``, the oldest ``limit`` rows for ``peer`` whether due
    or not (the queue to a peer is FIFO: after an outage, rows retried on jittered schedules still go in
    the order they were queued); else ``[]``. Rows as :func:`due`. Rows named in ``skip`` (a batch whose
    answers are still being stored) are passed over without reading their envelopes: the rows' ids
    first, then the envelopes of those taken (a row deleted in between is not returned). With
    ``max_bytes`` (a request's limit), no more rows are read once their envelopes pass it
    (:func:`_outbox_rows`)."""
    first_if_due = "AND EXISTS (SELECT 1 FROM outbox d WHERE d.peer=? AND d.next_at<=?) ORDER BY o.seq LIMIT ?"
    if not skip:  # one statement, one snapshot
        return _read_rows(conn, _DUE + first_if_due, (peer, peer, now, limit), max_bytes)
    ids = conn.execute("SELECT o.seq, o.jti FROM outbox o WHERE o.peer=? " + first_if_due,  # noqa: S608 - fixed text
                       (peer, peer, now, limit + len(skip))).fetchall()
    return _rows_at(conn, [s for s, j in ids if j not in skip][:limit], max_bytes)


def _rows_at(conn: sqlite3.Connection, seqs: list[int], max_bytes: int | None = None) -> list[OutboxRow]:
    """The outbox rows ``seqs`` with their envelopes, in queue order (``max_bytes``: :func:`_outbox_rows`)."""
    if not seqs:
        return []
    marks = ",".join("?" * len(seqs))
    return _read_rows(conn, _DUE.replace("WHERE o.peer=? ", f"WHERE o.seq IN ({marks}) ") + "ORDER BY o.seq", seqs,
                      max_bytes)


def _read_rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any], max_bytes: int | None) -> list[OutboxRow]:
    """:func:`_outbox_rows` of a statement of :data:`_DUE`'s columns; the statement is closed at once, also
    when reading stopped early (an unfinished read would keep its snapshot of the database open)."""
    cur = conn.execute(sql, params)
    try:
        return _outbox_rows(cur, max_bytes)
    finally:
        cur.close()


def pull_in(conn: sqlite3.Connection, peer: str, now: float, horizon: float) -> int:
    """Rows for ``peer`` scheduled more than ``horizon`` seconds after ``now`` (only a clock moved back puts
    them there: no backoff or lease is that long) are due at ``now``, their leases ended; how many."""
    return conn.execute("UPDATE outbox SET next_at=?, lease_until=NULL, lease_owner=NULL "
                        "WHERE peer=? AND (next_at>? OR lease_until>?)",
                        (now, peer, now + horizon, now + horizon)).rowcount


def next_due_at(conn: sqlite3.Connection, peer: str) -> float | None:
    row = conn.execute("SELECT min(next_at) FROM outbox WHERE peer=?", (peer,)).fetchone()
    return None if row is None else row[0]


def dequeue(conn: sqlite3.Connection, jti: str) -> int:
    """Remove ``jti`` from the outbox; the number of rows removed (0 or 1)."""
    return conn.execute("DELETE FROM outbox WHERE jti=?", (jti,)).rowcount


def reschedule(conn: sqlite3.Connection, jti: str, next_at: float, error: str) -> None:
    """Retry ``jti`` at ``next_at``; its lease (if any) ends: any replica may send it then."""
    conn.execute("UPDATE outbox SET attempts=attempts+1, next_at=?, last_error=?, lease_owner=NULL, lease_until=NULL "
                 "WHERE jti=?", (next_at, error, jti))


# --- outbox leases (active-active replicas, issue #13; the rule is gateway.core.replicas.claimable) -------

# a row replica ? may claim at ? (gateway.core.replicas.claimable, in SQL)
_CLAIMABLE = "(lease_owner IS NULL OR lease_owner=? OR lease_until IS NULL OR lease_until<=?)"


def claim(conn: sqlite3.Connection, peer: str, *, me: str, now: float, until: float, limit: int,
          skip: Collection[str] = (), max_bytes: int | None = None) -> list[OutboxRow]:
    """For replica ``me``: if any row for ``peer`` that ``me`` may claim is due at ``now``, the oldest
    ``limit`` such rows (due or not: FIFO, as :func:`due_fifo`), leased to ``me`` until ``until``; else
    ``[]``. Rows leased to another replica are skipped until their lease ends (on PostgreSQL rows being
    claimed by another transaction too: ``FOR UPDATE SKIP LOCKED``). Inside a writing transaction. Rows
    named in ``skip`` are claimed (their lease renewed) but not returned, nor their envelopes read; with
    ``max_bytes``, no more rows are read once their envelopes pass it (:func:`_outbox_rows`): rows claimed
    and not returned stay leased to ``me``, which claims them again with its next batch."""
    lock = dialect_of(conn).skip_locked
    rows = conn.execute(
        f"UPDATE outbox SET lease_owner=?, lease_until=? WHERE seq IN (SELECT seq FROM outbox WHERE peer=? "  # noqa: S608
        f"AND {_CLAIMABLE} AND EXISTS (SELECT 1 FROM outbox d WHERE d.peer=? AND d.next_at<=? "
        f"AND (d.lease_owner IS NULL OR d.lease_owner=? OR d.lease_until IS NULL OR d.lease_until<=?)) "
        f"ORDER BY seq LIMIT ?{lock}) RETURNING seq, jti",
        (me, until, peer, me, now, peer, now, me, now, limit)).fetchall()
    return _rows_at(conn, sorted(int(r[0]) for r in rows if r[1] not in skip), max_bytes)


def claim_one(conn: sqlite3.Connection, jti: str, owner: str | None, until: float | None) -> None:
    """Set the lease of ``jti`` (tests and tools; the node claims with :func:`claim`)."""
    conn.execute("UPDATE outbox SET lease_owner=?, lease_until=? WHERE jti=?", (owner, until, jti))


def lease_of(conn: sqlite3.Connection, jti: str) -> tuple[str | None, float | None] | None:
    """``(owner, until)`` of the outbox row of ``jti``; None if it is not in the outbox."""
    row = conn.execute("SELECT lease_owner, lease_until FROM outbox WHERE jti=?", (jti,)).fetchone()
    return None if row is None else (row[0], row[1])


def next_claim_at(conn: sqlite3.Connection, peer: str, me: str) -> float | None:
    """When replica ``me`` may next send a row for ``peer`` (gateway.core.replicas.available_at of the
    soonest row), or None if the outbox holds none for ``peer``."""
    row = conn.execute(
        "SELECT min(CASE WHEN lease_owner IS NOT NULL AND lease_owner<>? AND lease_until IS NOT NULL "
        "AND lease_until>next_at THEN lease_until ELSE next_at END) FROM outbox WHERE peer=?", (me, peer)).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def upgrade(conn: sqlite3.Connection, have: int) -> None:
    """Bring the relay tables from schema version ``have`` to :data:`SCHEMA_VERSION` inside the caller's
    transaction: 2 -> 3 adds the outbox lease columns (missing ones only; rows stay, unleased)."""
    if have < 3:
        cols = dialect_of(conn).columns(conn, "outbox")
        for col, kind in (("lease_owner", "TEXT"), ("lease_until", "REAL")):
            if col not in cols:
                conn.execute(dialect_of(conn).script(f"ALTER TABLE outbox ADD COLUMN {col} {kind}")[0])


def queue_depths(conn: sqlite3.Connection, now: float) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT o.peer, count(*), min(m.received_at), sum(CASE WHEN o.attempts>0 THEN 1 ELSE 0 END) "
        "FROM outbox o JOIN messages m ON m.jti=o.jti GROUP BY o.peer ORDER BY o.peer"
    ).fetchall()
    return [
        {"peer": r[0], "depth": r[1], "oldest_age_s": round(now - r[2], 3) if r[2] else 0.0, "retrying": r[3]}
        for r in rows
    ]


def queue_total(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])


def outbox_peer(conn: sqlite3.Connection, jti: str) -> str | None:
    """The next hop ``jti`` is queued for, or None if it is not in the outbox."""
    row = conn.execute("SELECT peer FROM outbox WHERE jti=?", (jti,)).fetchone()
    return None if row is None else str(row[0])


def outbox_peers(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT peer FROM outbox")]


# --- inbox ---------------------------------------------------------------------------------------------


def to_inbox(conn: sqlite3.Connection, jti: str, body: bytes, now: float) -> int:
    row = conn.execute("INSERT INTO inbox(jti, body, delivered_at) VALUES (?,?,?) RETURNING seq", (jti, body, now)).fetchone()
    return int(row[0])


def inbox_waiting(conn: sqlite3.Connection) -> int:
    """Messages in the inbox the national system has not taken yet."""
    return int(conn.execute("SELECT count(*) FROM inbox WHERE taken_at IS NULL").fetchone()[0])


def inbox_take(conn: sqlite3.Connection, jti: str, now: float) -> bool:
    """Mark taken; False if it was already taken (idempotent) — raises KeyError if unknown."""
    row = conn.execute("SELECT taken_at FROM inbox WHERE jti=?", (jti,)).fetchone()
    if row is None:
        raise KeyError(jti)
    if row[0] is not None:
        return False
    conn.execute("UPDATE inbox SET taken_at=? WHERE jti=?", (now, jti))
    return True


# --- dead letters --------------------------------------------------------------------------------------


def dead_letter(conn: sqlite3.Connection, jti: str, peer: str | None, code: str, detail: str, now: float) -> int:
    """Move ``jti`` from the outbox to the dead letters; the number of outbox rows removed."""
    removed = dequeue(conn, jti)
    conn.execute(
        "INSERT INTO dead_letters(jti, peer, code, detail, at) VALUES (?,?,?,?,?) "
        "ON CONFLICT(jti) DO UPDATE SET peer=excluded.peer, code=excluded.code, detail=excluded.detail, at=excluded.at",
        (jti, peer, code, detail, now),
    )
    return removed


def dead_letters(conn: sqlite3.Connection, limit: int = 500) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT d.id, d.jti, d.peer, d.code, d.detail, d.at, m.mt, m.iss, m.aud, m.exp FROM dead_letters d "
        "JOIN messages m ON m.jti=d.jti ORDER BY d.id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    keys = ("id", "jti", "peer", "code", "detail", "at", "type", "from", "to", "exp")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def get_dead_letter(conn: sqlite3.Connection, dl_id: int) -> tuple[str, str | None] | None:
    """(jti, peer) of dead letter ``dl_id``, left in place; None if there is no such dead letter."""
    row = conn.execute("SELECT jti, peer FROM dead_letters WHERE id=?", (dl_id,)).fetchone()
    return None if row is None else (row[0], row[1])


def take_dead_letter(conn: sqlite3.Connection, dl_id: int) -> tuple[str, str | None] | None:
    row = conn.execute("SELECT jti, peer FROM dead_letters WHERE id=?", (dl_id,)).fetchone()
    if row is None:
        return None
    conn.execute("DELETE FROM dead_letters WHERE id=?", (dl_id,))
    return row[0], row[1]


# --- receipts overdue (issue #11: a receipt watchdog) ------------------------------------------------


def mark_overdue(conn: sqlite3.Connection, *, origin: str, forwarded_before: float, now: float,
                 no_receipt: Iterable[str], limit: int = 500) -> list[StoredMessage]:
    """Messages that ``origin`` sent, forwarded (acked by the first hop) before ``forwarded_before`` and still
    without a receipt or error, not yet marked overdue: mark them (``since`` = ``now``) and return them.
    Types in ``no_receipt`` (receipts, errors) are never answered and never overdue."""
    skip = tuple(no_receipt)
    marks = ",".join("?" * len(skip)) or "''"
    rows = conn.execute(  # only "?" placeholders are formatted in
        f"SELECT jti FROM messages WHERE state='forwarded' AND received_from IS NULL AND iss=? AND updated_at<=? "  # noqa: S608
        f"AND mt NOT IN ({marks}) "
        "AND jti NOT IN (SELECT jti FROM overdue) ORDER BY updated_at LIMIT ?",
        (origin, forwarded_before, *skip, limit),
    ).fetchall()
    out = []
    for (jti,) in rows:
        conn.execute("INSERT INTO overdue(jti, since) VALUES (?, ?)", (jti, now))
        m = get_message(conn, jti)
        assert m is not None
        out.append(m)
    return out


def overdue(conn: sqlite3.Connection, limit: int = 500) -> list[dict[str, Any]]:
    """Messages marked overdue that still have no receipt or error (state ``forwarded`` or ``queued``
    again after a resend), oldest first."""
    rows = conn.execute(
        "SELECT m.jti, m.mt, m.aud, m.state, o.since, m.updated_at, m.exp, m.next_hop FROM overdue o "
        "JOIN messages m ON m.jti=o.jti WHERE m.state IN ('forwarded', 'queued') ORDER BY o.since LIMIT ?",
        (limit,),
    ).fetchall()
    keys = ("jti", "type", "to", "state", "overdue_since", "updated_at", "exp", "next_hop")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def in_outbox(conn: sqlite3.Connection, jti: str) -> bool:
    return conn.execute("SELECT 1 FROM outbox WHERE jti=?", (jti,)).fetchone() is not None


# --- small key/value state (manifest version, last checkpoint seen, ...) -------------------------------


def kv_get(conn: sqlite3.Connection, k: str) -> bytes | None:
    row = conn.execute("SELECT v FROM kv WHERE k=?", (k,)).fetchone()
    return None if row is None else bytes(row[0])


def kv_put(conn: sqlite3.Connection, k: str, v: bytes) -> None:
    conn.execute("INSERT INTO kv(k, v) VALUES (?,?) ON CONFLICT(k) DO UPDATE SET v=excluded.v", (k, v))


def counts_by_state(conn: sqlite3.Connection) -> dict[str, int]:
    return {r[0]: r[1] for r in conn.execute("SELECT state, count(*) FROM messages GROUP BY state")}


# --- the relay's commands (gateway.core.relay) -----------------------------------------------------------


class StoreView:
    """:class:`gateway.core.relay.View` over the store, inside the transaction that applies the decision."""

    def __init__(self, conn: sqlite3.Connection, fed: Federation,
                 given_ack: Callable[[sqlite3.Connection, str], str | None] | None = None) -> None:
        self.conn = conn
        self.fed = fed
        self.given_ack = given_ack  # the ack this node gave, from the evidence (once the envelope is gone)

    def message(self, jti: str) -> relay.Known | None:
        row = self.conn.execute(_SELECT_KNOWN, (jti,)).fetchone()
        if row is None:
            return None
        *fields, received_from, ack = row
        if ack is None and self.given_ack is not None and received_from is not None:
            ack = self.given_ack(self.conn, jti)
        return relay.Known(**dict(zip(_KNOWN, fields, strict=True)), ack=ack)

    def route(self, iss: str, aud: str) -> list[str]:
        nodes = self.fed.nodes
        return self.fed.route(iss, aud) if iss in nodes and aud in nodes else []

    def in_outbox(self, jti: str) -> bool:
        return in_outbox(self.conn, jti)

    def inbox_taken(self, jti: str) -> bool | None:
        row = self.conn.execute("SELECT taken_at FROM inbox WHERE jti=?", (jti,)).fetchone()
        return None if row is None else row[0] is not None

    def dead_letter(self, dl_id: int) -> tuple[str, str | None] | None:
        return get_dead_letter(self.conn, dl_id)


def apply(conn: sqlite3.Connection, cmd: relay.Write, now: float) -> int:
    """Apply one of the relay's store commands inside the caller's transaction; the change it made to the
    size of the outbox (from the rows it touched: counters follow committed state, issue #11 F2). Commands
    that need more than SQL (StoreReceived, Reply, Audit, evidence, AnswerPeer) are the node's; TypeError."""
    match cmd:
        case relay.Enqueue(jti=jti, peer=peer):
            enqueue(conn, jti, peer, now)
            return 1
        case relay.Dequeue(jti=jti):
            return -dequeue(conn, jti)
        case relay.Reschedule(jti=jti, at=at, error=error):
            reschedule(conn, jti, at, error)
        case relay.DeadLetter(jti=jti, peer=peer, code=code, detail=detail):
            return -dead_letter(conn, jti, peer, code, detail, now)
        case relay.TakeDeadLetter(dl_id=dl_id):
            take_dead_letter(conn, dl_id)
        case relay.SetState(jti=jti, state=state, node=node, detail=detail, only_from=only_from):
            set_state(conn, jti, state, now, node=node, detail=detail, only_from=only_from)
        case relay.Timeline(jti=jti, step=step, node=node, detail=detail):
            add_timeline(conn, jti, step, now, node=node, detail=detail)
        case relay.TakeInbox(jti=jti):
            inbox_take(conn, jti, now)
        case _:
            raise TypeError(f"not a store command: {type(cmd).__name__}")
    return 0
