"""The rows :func:`gateway.core.insights.insights` aggregates, read from one node's relay tables: every
message it holds, and the answers delivered to it with their bodies (issue #16)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import msgspec

from gateway.core.insights import Answer, Sent


def sent_rows(conn: sqlite3.Connection) -> Iterator[Sent]:
    """Every message this node holds (made here, relayed or delivered here), streamed from the cursor:
    the caller aggregates them as they come (on SQLite they are never all in memory at once)."""
    for jti, mt, iss, aud, at, irt in conn.execute("SELECT jti, mt, iss, aud, received_at, irt FROM messages"):
        yield Sent(jti, mt, iss, aud, float(at), irt)


def answer_rows(conn: sqlite3.Connection) -> list[Answer]:
    """Messages delivered to this node, each with its body (None once purged or unreadable)."""
    out = []
    for mt, iss, at, irt, body in conn.execute(
            "SELECT m.mt, m.iss, i.delivered_at, m.irt, i.body FROM inbox i JOIN messages m ON m.jti=i.jti"):
        try:
            doc = None if body is None else msgspec.json.decode(body)
        except msgspec.DecodeError:
            doc = None
        out.append(Answer(mt, iss, float(at), irt, doc))
    return out
