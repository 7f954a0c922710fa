"""Helpers for the audit tests: a node's audit database with its own keys, publisher and witness."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.audit.checkpoints import Publisher
from gateway.audit.log import AuditAppender
from gateway.audit.witness import Witness
from gateway.core.b64 import b64url_encode
from gateway.crypto.keys import Ed25519Key

FED = "traza-test"
T0 = 1_795_000_000.0

_counter = itertools.count()


def message_event(i: int, event: str = "envelope.accepted", jti: str | None = None) -> dict[str, Any]:
    jti = jti or f"0197a6f0-0000-7000-8000-{i:012d}"
    return {
        "event": event,
        "jti": jti,
        "mt": "trace.request",
        "iss": "mx",
        "aud": "es",
        "from": "eu-hub",
        "to": "es",
        "dig": b64url_encode(hashlib.sha256(jti.encode()).digest()),
    }


@dataclass
class LogNode:
    node: str
    db: Path | str  # a SQLite file or a PostgreSQL URL
    key: Ed25519Key
    origin: str
    appender: AuditAppender
    publisher: Publisher
    clock: list[float]

    def append(self, n: int, **kw: Any) -> list[int]:
        return self.appender.append_sync([message_event(next(_counter), **kw) for _ in range(n)])

    def publish(self) -> int:
        self.clock[0] += 1
        cp = self.publisher.publish()
        assert cp is not None
        return cp.size

    def witness(self, logs: dict[str, bytes]) -> Witness:
        return Witness(
            self.db, name=self.origin, key=self.key, node=self.node, logs=logs, clock=lambda: self.clock[0]
        )

    def close(self) -> None:
        self.appender.close()
        self.publisher.close()


def rewrite_log(db: Path | str, edit: Callable[[int, bytes], bytes]) -> None:
    """What an attacker with write access does: change entries with ``edit`` and rebuild the stored
    leaf hashes and tree nodes so that they agree with the changed entries (on either engine)."""
    from gateway.audit.db import connect
    from gateway.core.merkle import CompactRange, leaf_hash

    conn = connect(db)
    rows = conn.execute("SELECT idx, entry FROM audit_entries ORDER BY idx").fetchall()
    cr = CompactRange()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DELETE FROM audit_nodes")
    for i, e in rows:
        new = edit(i, bytes(e))
        h = leaf_hash(new)
        conn.execute("UPDATE audit_entries SET entry=?, leaf_hash=? WHERE idx=?", (new, h, i))
        conn.executemany("INSERT INTO audit_nodes VALUES (?, ?, ?)", cr.append(h))
    conn.execute("COMMIT")
    conn.close()
