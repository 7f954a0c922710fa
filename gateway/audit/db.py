"""The audit log's SQLite schema and connection helpers (tables are prefixed ``audit_``).

One SQLite file (WAL, synchronous=FULL) may hold the audit tables beside other tables of the node (so the
relay can store an envelope and its audit entry in one transaction). Schema, version 1:

- ``audit_meta(key, value)``: ``schema`` (``1``), ``node`` (the node id written into every entry),
  ``origin`` (checkpoint origin ``traza/<federation>/<node>``).
- ``audit_entries(idx, entry, leaf_hash, jti, event)``: the log. ``idx`` is the leaf index (0, 1, ...
  without gaps), ``entry`` the exact canonical JSON bytes, ``leaf_hash`` = SHA-256(0x00 || entry).
- ``audit_nodes(level, idx, hash)``: every complete perfect subtree of level >= 1 (level 0 is
  ``audit_entries.leaf_hash``): the subtree of ``2**level`` leaves starting at ``idx * 2**level``. Any
  root or proof is a fold of at most ~2·log2(n) of these rows.
- ``audit_checkpoints(size, root, note, public_key, signed_at)``: every checkpoint this node signed, as
  a signed note; ``size`` is the primary key, so one size can never hold two roots.
- ``audit_cosignatures(size, name, public_key, line, received_at)``: witness cosignature lines
  (tlog-cosignature v1) collected for a checkpoint, with the witness key they were verified with.
- ``audit_witness_state(origin, size, root, checkpoint, updated_at)``: as a witness, the latest
  checkpoint cosigned for each peer log.
- ``audit_witness_alerts(id, origin, kind, detected_at, known_checkpoint, presented_checkpoint,
  old_size, proof, audit_idx)``: forks seen as a witness, with the evidence.
- ``audit_evidence(id, jti, kind, value)`` and ``audit_keys(kid, alg, jwk)``: the signed tokens, hops,
  acks and receipts recorded for evidence bundles, and the manifest keys that verified them. These are
  not in the tree; a bundle verifier checks them by their own signatures.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA_VERSION = "1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_entries (
    idx INTEGER PRIMARY KEY,
    entry BLOB NOT NULL,
    leaf_hash BLOB NOT NULL,
    jti TEXT,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_entries_jti ON audit_entries (jti) WHERE jti IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit_nodes (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    public_key TEXT NOT NULL,
    signed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_cosignatures (
    size INTEGER NOT NULL,
    name TEXT NOT NULL,
    public_key TEXT NOT NULL,
    line TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (size, name)
);
CREATE TABLE IF NOT EXISTS audit_witness_state (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    checkpoint TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_witness_alerts (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    kind TEXT NOT NULL,
    detected_at REAL NOT NULL,
    known_checkpoint TEXT,
    presented_checkpoint TEXT NOT NULL,
    old_size INTEGER NOT NULL,
    proof TEXT NOT NULL,
    audit_idx INTEGER
);
CREATE TABLE IF NOT EXISTS audit_evidence (
    id INTEGER PRIMARY KEY,
    jti TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('envelope', 'ack', 'receipt')),
    value TEXT NOT NULL,
    UNIQUE (jti, kind, value)
);
CREATE TABLE IF NOT EXISTS audit_keys (kid TEXT PRIMARY KEY, alg TEXT NOT NULL, jwk TEXT NOT NULL);
"""


class AuditError(Exception):
    """An audit log operation failed; the message names the database, table or field at fault."""


def connect(path: str | Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open (creating if needed) a read-write audit database: WAL, synchronous=FULL, explicit
    transactions (``isolation_level=None``), schema ensured."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=check_same_thread, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    ensure_schema(conn)
    return conn


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the audit tables in ``conn``'s database if they are missing (idempotent, own transaction)."""
    if _has_meta(conn):
        check_schema_version(conn)
        return
    with transaction(conn):
        create_schema(conn)


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the audit tables inside the caller's transaction (idempotent)."""
    for stmt in SCHEMA.split(";"):
        if stmt.strip():
            conn.execute(stmt)
    conn.execute("INSERT OR IGNORE INTO audit_meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
    check_schema_version(conn)


def check_schema_version(conn: sqlite3.Connection) -> None:
    row = conn.execute("SELECT value FROM audit_meta WHERE key='schema'").fetchone()
    if row is None or row[0] != SCHEMA_VERSION:
        raise AuditError(
            f"audit schema version {row[0] if row else None!r} is not supported (expected {SCHEMA_VERSION})"
        )


def _has_meta(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='audit_meta'").fetchone()
    return row is not None


def connect_readonly(path: str | Path) -> sqlite3.Connection:
    """Open an audit database read-only from the file alone (an auditor's copy works too)."""
    p = Path(path)
    if not p.is_file():
        raise AuditError(f"{p}: no such database file")
    uri = p.resolve().as_uri()
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        # A WAL database in a read-only folder, without its -shm file: read the file as immutable.
        conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)
    try:
        if not _has_meta(conn):
            raise AuditError(f"{p}: not a Traza audit database (no audit_meta table)")
        row = conn.execute("SELECT value FROM audit_meta WHERE key='schema'").fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise AuditError(f"{p}: not a readable SQLite database ({exc})") from None
    if row is None or row[0] != SCHEMA_VERSION:
        conn.close()
        raise AuditError(f"{p}: audit schema version {row[0] if row else None!r} is not {SCHEMA_VERSION}")
    return conn


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM audit_meta WHERE key=?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    """Record ``key`` once; a different value later is an error (a database belongs to one node/log)."""
    have = get_meta(conn, key)
    if have is None:
        conn.execute("INSERT OR IGNORE INTO audit_meta (key, value) VALUES (?, ?)", (key, value))
        have = get_meta(conn, key)
    if have != value:
        raise AuditError(f"audit database belongs to {key} {have!r}, not {value!r}")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (one fsync), rolled back if the body raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
