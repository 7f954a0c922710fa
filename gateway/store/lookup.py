"""Read-only lookups for the local API's views of one inbox message and of one conversation
(``GET /local/v1/inbox/<id>``, ``GET /local/v1/conversations/<cid>``, SPEC §6), over the tables of
:mod:`gateway.store.relay`. Plain functions over a ``sqlite3.Connection``, like that module."""

from __future__ import annotations

import sqlite3
from typing import Any

# applied after gateway.store.relay.SCHEMA: a conversation is found by its id without a full scan
SCHEMA = "CREATE INDEX IF NOT EXISTS messages_cid ON messages(cid)"

_INBOX = ("SELECT i.seq, i.jti, i.body, i.delivered_at, m.mt, m.iss, m.cid, i.taken_at, m.irt "
          "FROM inbox i JOIN messages m ON m.jti=i.jti")

InboxRow = tuple[int, str, bytes | None, float, str, str, str, float | None, str | None]
"""(seq, jti, body, delivered_at, mt, iss, cid, taken_at, irt) of a message delivered to this node."""


def inbox_message(conn: sqlite3.Connection, jti: str) -> InboxRow | None:
    """The inbox row of ``jti``, taken (acknowledged) or not; None if it was never delivered here."""
    row: InboxRow | None = conn.execute(f"{_INBOX} WHERE i.jti=?", (jti,)).fetchone()
    return row


def conversation_inbox(conn: sqlite3.Connection, cid: str) -> list[InboxRow]:
    """Every message of conversation ``cid`` delivered to this node, taken or not, oldest first."""
    return conn.execute(f"{_INBOX} WHERE m.cid=? ORDER BY i.seq", (cid,)).fetchall()


def conversation_sent(conn: sqlite3.Connection, cid: str, origin: str, skip: frozenset[str]) -> list[dict[str, Any]]:
    """The messages of conversation ``cid`` that ``origin`` (this node) sent, but for the types in
    ``skip`` (receipts and errors, which the node sends itself), oldest first."""
    rows = conn.execute(
        "SELECT jti, mt, aud, state, irt, received_at FROM messages WHERE cid=? AND iss=? ORDER BY received_at, jti",
        (cid, origin)).fetchall()
    return [{"id": r[0], "type": r[1], "to": r[2], "state": r[3], "reply_to": r[4], "sent_at": r[5]}
            for r in rows if r[1] not in skip]
