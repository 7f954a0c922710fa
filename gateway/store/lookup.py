"""Read-only lookups for the local API's views of one inbox message and of one conversation
(``GET /local/v1/inbox/<id>``, ``GET /local/v1/conversations/<cid>``, SPEC §6), over the tables of
:mod:`gateway.store.relay`. Plain functions over a ``sqlite3.Connection``, like that module."""

from __future__ import annotations

import sqlite3
from typing import Any, NamedTuple

from gateway.store.dialect import dialect_of

# applied after gateway.store.relay.SCHEMA: a conversation is found by its id without a full scan
SCHEMA = "CREATE INDEX IF NOT EXISTS messages_cid ON messages(cid)"

# the origin token as stored with the envelope (its marking: handling code, restrictions, classification,
# purpose, reply-to), without reading the payload into Python; NULL once the envelope was dropped (the
# query joins ``envelopes e``)
def _token(conn: sqlite3.Connection) -> str:
    return dialect_of(conn).json_field("e.envelope", "token")


def _inbox(conn: sqlite3.Connection) -> str:
    # the dialect's constant text only, never a value
    columns = f"i.seq, i.jti, i.body, i.delivered_at, m.mt, m.iss, m.cid, i.taken_at, m.irt, {_token(conn)}"
    return ("SELECT " + columns + " FROM inbox i JOIN messages m ON m.jti=i.jti "  # noqa: S608
            "LEFT JOIN envelopes e ON e.jti=i.jti")


class InboxRow(NamedTuple):
    """A message delivered to this node, as the inbox reads it (typed, issue #11)."""

    seq: int  # inbox position (the cursor)
    jti: str
    body: bytes | None  # the standard body, JSON; None once purged after its retention
    delivered_at: float
    mt: str
    iss: str
    cid: str
    taken_at: float | None  # when the national system acknowledged it
    irt: str | None
    token: str | None  # the origin token (its marking); None once the envelope was dropped


def _rows(cursor: sqlite3.Cursor) -> list[InboxRow]:
    return [InboxRow(*r) for r in cursor.fetchall()]


def inbox_page(conn: sqlite3.Connection, after: int, limit: int) -> list[InboxRow]:
    """Messages delivered here and not yet taken, after inbox position ``after``, oldest first."""
    return _rows(conn.execute(_inbox(conn) + " WHERE i.seq>? AND i.taken_at IS NULL ORDER BY i.seq LIMIT ?",
                              (after, limit)))


def token_of(conn: sqlite3.Connection, jti: str) -> tuple[str, str | None] | None:
    """(origin, token) of message ``jti`` held here (token None once its envelope was dropped); None if unknown."""
    sql = f"SELECT m.iss, {_token(conn)} FROM messages m LEFT JOIN envelopes e ON e.jti=m.jti WHERE m.jti=?"  # noqa: S608 (the dialect's text)
    row: tuple[str, str | None] | None = conn.execute(sql, (jti,)).fetchone()
    return row


def inbox_message(conn: sqlite3.Connection, jti: str) -> InboxRow | None:
    """The inbox row of ``jti``, taken (acknowledged) or not; None if it was never delivered here."""
    row = conn.execute(f"{_inbox(conn)} WHERE i.jti=?", (jti,)).fetchone()
    return None if row is None else InboxRow(*row)


def conversation_inbox(conn: sqlite3.Connection, cid: str) -> list[InboxRow]:
    """Every message of conversation ``cid`` delivered to this node, taken or not, oldest first."""
    return _rows(conn.execute(f"{_inbox(conn)} WHERE m.cid=? ORDER BY i.seq", (cid,)))


def conversation_sent(conn: sqlite3.Connection, cid: str, origin: str, skip: frozenset[str]) -> list[dict[str, Any]]:
    """The messages of conversation ``cid`` that ``origin`` (this node) sent, but for the types in
    ``skip`` (receipts and errors, which the node sends itself), oldest first."""
    rows = conn.execute(
        "SELECT jti, mt, aud, state, irt, received_at FROM messages WHERE cid=? AND iss=? ORDER BY received_at, jti",
        (cid, origin)).fetchall()
    return [{"id": r[0], "type": r[1], "to": r[2], "state": r[3], "reply_to": r[4], "sent_at": r[5]}
            for r in rows if r[1] not in skip]
