"""What a node holds of its messages' content, for retention (:mod:`gateway.core.retention`, issue #15),
and the purge itself: the plaintext body in the inbox and the envelope as it travelled (token and
payload ciphertext). The message row, its timeline, its audit entries and its evidence (token, hops,
acks, digests) stay, so the message's evidence bundle still verifies. Plain functions over a
``sqlite3.Connection``, like :mod:`gateway.store.relay`."""

from __future__ import annotations

import sqlite3
from typing import NamedTuple

from gateway.store.dialect import dialect_of


class HeldRow(NamedTuple):
    """A message whose content this node still holds (an envelope, an inbox body or both)."""

    jti: str
    mt: str
    iss: str
    aud: str
    received_at: float
    exp: int
    state: str
    in_outbox: bool
    body: bool  # the plaintext body is in the inbox
    taken: bool  # the national system has taken it (inbox)
    envelope: bool  # the envelope (token and payload ciphertext) is held
    token: str | None  # the origin token from the envelope (None once the envelope is gone)


def held(conn: sqlite3.Connection, limit: int = 100_000) -> list[HeldRow]:
    """Messages with content still held here, oldest first."""
    token = dialect_of(conn).json_field("e.envelope", "token")
    rows = conn.execute(
        "SELECT m.jti, m.mt, m.iss, m.aud, m.received_at, m.exp, m.state, "  # noqa: S608 - the dialect's text
        "EXISTS (SELECT 1 FROM outbox o WHERE o.jti=m.jti), i.body IS NOT NULL, i.taken_at IS NOT NULL, "
        f"e.jti IS NOT NULL, {token} "
        "FROM messages m LEFT JOIN envelopes e ON e.jti=m.jti LEFT JOIN inbox i ON i.jti=m.jti "
        # found from what is held (envelopes, inbox bodies), not by reading every message ever handled
        "WHERE m.jti IN (SELECT jti FROM envelopes UNION SELECT jti FROM inbox WHERE body IS NOT NULL) "
        "ORDER BY m.received_at, m.jti LIMIT ?", (limit,)).fetchall()
    return [HeldRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), bool(r[8]), bool(r[9]), bool(r[10]), r[11])
            for r in rows]


def purge(conn: sqlite3.Connection, jti: str) -> list[str]:
    """Remove the content of ``jti`` held here: what was removed (``body``, ``envelope``)."""
    gone = []
    if conn.execute("UPDATE inbox SET body=NULL WHERE jti=? AND body IS NOT NULL", (jti,)).rowcount:
        gone.append("body")
    if conn.execute("DELETE FROM envelopes WHERE jti=?", (jti,)).rowcount:
        gone.append("envelope")
    return gone
