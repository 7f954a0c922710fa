"""Durable relay state: messages (also the dedupe store), outbox per next hop, inbox, dead letters and a
per-message timeline. Plain functions over a ``sqlite3.Connection`` so that callers compose them with the
audit log inside one ``Database.write`` transaction.

The same functions run on PostgreSQL: there the connection is a :class:`gateway.store.pg.PgConnection`
with the same surface, and the few differences of spelling (placeholders, ``INSERT OR IGNORE``, column
types) are rewritten by its dialect (:mod:`gateway.store.dialect`). So the SQL here keeps to what both
engines take: no ``lastrowid`` (``RETURNING``), no blob literals (parameters).

Schema version (:data:`SCHEMA_VERSION`) in ``kv`` under ``store.schema``: 1 is the first recorded one
(the tables as they were before versions were recorded are version 1).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from gateway.core import relay
from gateway.core.manifest import Federation

SCHEMA_VERSION = 1

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
    envelope BLOB NOT NULL,
    size INTEGER NOT NULL,
    received_from TEXT,
    received_at REAL NOT NULL,
    ack TEXT,
    ack_idx INTEGER,
    state TEXT NOT NULL,
    next_hop TEXT,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_exp ON messages(exp);
CREATE INDEX IF NOT EXISTS messages_state ON messages(state);
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
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_peer ON outbox(peer, next_at);
CREATE TABLE IF NOT EXISTS inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    jti TEXT NOT NULL UNIQUE REFERENCES messages(jti),
    body BLOB,
    delivered_at REAL NOT NULL,
    pushed_at REAL,
    taken_at REAL
);
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


_COLS = ",".join(StoredMessage.__struct_fields__)
_SELECT_MESSAGE = f"SELECT {_COLS} FROM messages WHERE jti=?"  # noqa: S608 - fixed column names
_INSERT_MESSAGE = f"INSERT INTO messages({_COLS}) VALUES ({','.join('?' * len(StoredMessage.__struct_fields__))})"  # noqa: S608


def _row_msg(row: tuple[Any, ...] | None) -> StoredMessage | None:
    return None if row is None else StoredMessage(*row)


def get_message(conn: sqlite3.Connection, jti: str) -> StoredMessage | None:
    return _row_msg(conn.execute(_SELECT_MESSAGE, (jti,)).fetchone())


def insert_message(conn: sqlite3.Connection, m: StoredMessage) -> None:
    conn.execute(_INSERT_MESSAGE, msgspec.structs.astuple(m))


def set_acks(conn: sqlite3.Connection, acks: Sequence[tuple[str, str]]) -> None:
    """The acks this node gave, ``(jti, ack)`` each (batched acks, signed once the whole batch was staged)."""
    conn.executemany("UPDATE messages SET ack=? WHERE jti=?", [(ack, jti) for jti, ack in acks])


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
    """Forget the envelope as it travelled (payload and hops; evidence keeps token, hops and acks): the
    space is reused by later rows. The message row stays (dedupe: id, digest, the ack we gave)."""
    conn.execute("UPDATE messages SET envelope=? WHERE jti=?", (b"", jti))


def blob_held(conn: sqlite3.Connection, sha: str) -> bool:
    """Does a message still held here in full (its payload not dropped) name blob ``sha``?"""
    return conn.execute("SELECT 1 FROM message_blobs b JOIN messages m ON m.jti=b.jti "
                        "WHERE b.sha=? AND length(m.envelope)>0 LIMIT 1", (sha,)).fetchone() is not None


# --- outbox --------------------------------------------------------------------------------------------


class OutboxRow(msgspec.Struct, frozen=True):
    """A message waiting in the outbox for a peer: queue position, id, tries so far, the envelope as it
    travels, its signed expiry."""

    seq: int
    jti: str
    attempts: int
    envelope: bytes
    exp: int


_DUE = ("SELECT o.seq, o.jti, o.attempts, m.envelope, m.exp FROM outbox o JOIN messages m ON m.jti=o.jti "
        "WHERE o.peer=? ")


def enqueue(conn: sqlite3.Connection, jti: str, peer: str, now: float) -> None:
    conn.execute("INSERT INTO outbox(jti, peer, next_at) VALUES (?,?,?)", (jti, peer, now))


def due(conn: sqlite3.Connection, peer: str, now: float, limit: int) -> list[OutboxRow]:
    """Oldest-first outbox rows for ``peer`` that are due."""
    rows = conn.execute(_DUE + "AND o.next_at<=? ORDER BY o.seq LIMIT ?", (peer, now, limit)).fetchall()
    return [OutboxRow(s, j, a, bytes(e), x) for s, j, a, e, x in rows]


def due_fifo(conn: sqlite3.Connection, peer: str, now: float, limit: int) -> list[OutboxRow]:
    """If any outbox row for ``peer`` is due at ``now``, the oldest ``limit`` rows for ``peer`` whether due
    or not (the queue to a peer is FIFO: after an outage, rows retried on jittered schedules still go in
    the order they were queued); else ``[]``. Rows as :func:`due`. One statement, one snapshot."""
    rows = conn.execute(_DUE + "AND EXISTS (SELECT 1 FROM outbox d WHERE d.peer=? AND d.next_at<=?) "  # noqa: S608 - fixed text
                        "ORDER BY o.seq LIMIT ?", (peer, peer, now, limit)).fetchall()
    return [OutboxRow(s, j, a, bytes(e), x) for s, j, a, e, x in rows]


def next_due_at(conn: sqlite3.Connection, peer: str) -> float | None:
    row = conn.execute("SELECT min(next_at) FROM outbox WHERE peer=?", (peer,)).fetchone()
    return None if row is None else row[0]


def dequeue(conn: sqlite3.Connection, jti: str) -> int:
    """Remove ``jti`` from the outbox; the number of rows removed (0 or 1)."""
    return conn.execute("DELETE FROM outbox WHERE jti=?", (jti,)).rowcount


def reschedule(conn: sqlite3.Connection, jti: str, next_at: float, error: str) -> None:
    conn.execute("UPDATE outbox SET attempts=attempts+1, next_at=?, last_error=? WHERE jti=?", (next_at, error, jti))


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
        f"SELECT jti FROM messages WHERE iss=? AND state='forwarded' AND updated_at<=? AND mt NOT IN ({marks}) "  # noqa: S608
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

    def __init__(self, conn: sqlite3.Connection, fed: Federation) -> None:
        self.conn = conn
        self.fed = fed

    def message(self, jti: str) -> relay.Known | None:
        m = get_message(self.conn, jti)
        if m is None:
            return None
        return relay.Known(jti=m.jti, dig=m.dig, mt=m.mt, iss=m.iss, aud=m.aud, cid=m.cid, exp=m.exp, state=m.state,
                           next_hop=m.next_hop, ack=m.ack)

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
