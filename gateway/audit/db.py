"""The audit log's SQLite schema and connection helpers (tables are prefixed ``audit_``).

One SQLite file (WAL, synchronous=FULL) may hold the audit tables beside other tables of the node (so the
relay can store an envelope and its audit entry in one transaction). Schema, version 3:

- ``audit_meta(key, value)``: ``schema`` (``3``), ``node`` (the node id written into every entry),
  ``origin`` (checkpoint origin ``traza/<federation>/<node>``).
- ``audit_entries(idx, entry, leaf_hash, jti, event)``: the log. ``idx`` is the leaf index (0, 1, ...
  without gaps), ``entry`` the exact canonical JSON bytes, ``leaf_hash`` = SHA-256(0x00 || entry).
- ``audit_nodes(level, idx, hash)``: every complete perfect subtree of level >= 1 (level 0 is
  ``audit_entries.leaf_hash``): the subtree of ``2**level`` leaves starting at ``idx * 2**level``. Any
  root or proof is a fold of at most ~2·log2(n) of these rows.
- ``audit_checkpoints(size, root, note, public_key, signed_at)``: every checkpoint this node signed, as
  a signed note; ``size`` is the primary key, so one size can never hold two roots.
- ``audit_cosignatures(id, size, name, public_key, line, received_at)``: witness cosignature lines
  (tlog-cosignature v1) collected for a checkpoint, with the witness key they were verified with. A
  witness cosigns the same checkpoint again at every refresh while the log is quiet (SPEC §7.2, 1.1), so
  one ``(size, name)`` may hold several lines; per witness the newest and the first of each UTC day are
  kept (``gateway.audit.checkpoints.compact_cosignatures``), and a checkpoint is served with each
  witness's newest line.
- ``audit_witness_state(origin, size, root, checkpoint, updated_at)``: as a witness, the latest
  checkpoint cosigned for each peer log.
- ``audit_witness_alerts(id, origin, kind, detected_at, known_checkpoint, presented_checkpoint,
  old_size, proof, audit_idx)``: forks seen as a witness, with the evidence.
- ``audit_evidence(id, jti, kind, value, value_sha256)`` and ``audit_keys(kid, alg, jwk)``: the signed
  tokens, hops, acks and receipts recorded for evidence bundles, and the manifest keys that verified them.
  These are not in the tree; a bundle verifier checks them by their own signatures. Each distinct value
  is recorded once per ``(jti, kind)``: the unique index holds ``value_sha256`` (SHA-256 of the UTF-8
  value), not the value itself, which would store every token and hop chain a second time.

Versions: 1 had ``UNIQUE (jti, kind, value)`` and no ``value_sha256``; 2 keyed ``audit_cosignatures`` on
``(size, name)`` (one line per witness and checkpoint, replaced by each new one). Opening an older
database read-write migrates it in place, in one transaction (:func:`migrate_schema`); read-only readers
accept every version (the columns they select are in all of them).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.store.db import MIGRATE_LOCK
from gateway.store.dialect import StoreUrlError, dialect_of, is_url

SCHEMA_VERSION = "3"
# versions a read-only reader can read (the columns it selects are the same in all)
READABLE_VERSIONS = ("1", "2", "3")

EVIDENCE_DDL = """CREATE TABLE IF NOT EXISTS audit_evidence (
    id INTEGER PRIMARY KEY,
    jti TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('envelope', 'ack', 'receipt')),
    value TEXT NOT NULL,
    value_sha256 BLOB NOT NULL CHECK (length(value_sha256) = 32),
    UNIQUE (jti, kind, value_sha256)
)"""

COSIGNATURES_DDL = """CREATE TABLE IF NOT EXISTS audit_cosignatures (
    id INTEGER PRIMARY KEY,
    size INTEGER NOT NULL,
    name TEXT NOT NULL,
    public_key TEXT NOT NULL,
    line TEXT NOT NULL,
    received_at REAL NOT NULL,
    UNIQUE (size, name, line)
)"""

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
"""
SCHEMA += EVIDENCE_DDL + ";\n" + COSIGNATURES_DDL + """;
CREATE INDEX IF NOT EXISTS audit_cosignatures_name ON audit_cosignatures (name, received_at);
CREATE TABLE IF NOT EXISTS audit_keys (kid TEXT PRIMARY KEY, alg TEXT NOT NULL, jwk TEXT NOT NULL);
"""


def value_sha256(value: str) -> bytes:
    """The ``audit_evidence.value_sha256`` of ``value``: SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(value.encode()).digest()


class AuditError(Exception):
    """An audit log operation failed; the message names the database, table or field at fault."""


def connect(path: str | Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open (creating if needed) a read-write audit database: WAL, synchronous=FULL, explicit
    transactions (``isolation_level=None``), schema ensured. A ``postgresql://`` URL opens the audit
    tables in that PostgreSQL database (:mod:`gateway.store.pg`, same statements)."""
    if is_url(path):
        from gateway.store import pg

        pconn: Any = pg.connect(str(path), application_name="traza-audit")
        ensure_schema(pconn)
        return pconn  # type: ignore[no-any-return]  # the sqlite3.Connection surface
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=check_same_thread, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    ensure_schema(conn)
    return conn


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the audit tables in ``conn``'s database if they are missing, or migrate an older schema
    (idempotent, own transaction)."""
    if _has_meta(conn) and get_meta(conn, "schema") == SCHEMA_VERSION:
        return
    with transaction(conn):
        if dialect_of(conn).name == "postgresql":  # replicas starting together: one creates the tables
            conn.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATE_LOCK,))
        create_schema(conn)


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the audit tables inside the caller's transaction, migrating an older schema version in
    place first (idempotent)."""
    if not conn.in_transaction:
        raise AuditError("audit create_schema() must run inside the caller's transaction")
    if _has_meta(conn):
        migrate_schema(conn)
    for stmt in dialect_of(conn).script(SCHEMA):
        conn.execute(stmt)
    conn.execute("INSERT OR IGNORE INTO audit_meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
    check_schema_version(conn)


def check_schema_version(conn: sqlite3.Connection) -> None:
    row = conn.execute("SELECT value FROM audit_meta WHERE key='schema'").fetchone()
    if row is None or row[0] != SCHEMA_VERSION:
        raise AuditError(
            f"audit schema version {row[0] if row else None!r} is not supported (expected {SCHEMA_VERSION})"
        )


def migrate_schema(conn: sqlite3.Connection) -> None:
    """Bring an existing audit database to :data:`SCHEMA_VERSION` inside the caller's transaction (so a
    failure leaves it as it was), one version at a time. SQLite cannot drop a table's UNIQUE constraint or
    primary key, so each step rebuilds its table: create the new one, copy the rows, drop the old one,
    rename. An unknown version is left untouched (:func:`check_schema_version` refuses it).

    - 1 -> 2: ``audit_evidence`` gains ``value_sha256`` (filled for every row, same ``id``) and its unique
      key becomes ``(jti, kind, value_sha256)``;
    - 2 -> 3: ``audit_cosignatures`` gets an ``id`` and ``UNIQUE (size, name, line)`` instead of the
      primary key ``(size, name)``, so that a refreshed cosignature of the same checkpoint is a new row."""
    if not conn.in_transaction:
        raise AuditError("audit migrate_schema() must run inside the caller's transaction")
    version = get_meta(conn, "schema")
    if version == "1":
        conn.create_function("traza_value_sha256", 1, value_sha256, deterministic=True)
        _rebuild(conn, "1", "2", "audit_evidence", EVIDENCE_DDL,
                 "INSERT INTO audit_evidence_new (id, jti, kind, value, value_sha256) "
                 "SELECT id, jti, kind, value, traza_value_sha256(value) FROM audit_evidence ORDER BY id")
        version = "2"
    if version == "2":
        _rebuild(conn, "2", "3", "audit_cosignatures", COSIGNATURES_DDL,
                 "INSERT INTO audit_cosignatures_new (size, name, public_key, line, received_at) "
                 "SELECT size, name, public_key, line, received_at FROM audit_cosignatures "
                 "ORDER BY received_at, size, name")


def _rebuild(conn: sqlite3.Connection, old: str, new: str, table: str, ddl: str, copy: str) -> None:
    try:
        conn.execute(ddl.replace(f"CREATE TABLE IF NOT EXISTS {table}", f"CREATE TABLE {table}_new", 1))
        conn.execute(copy)
        conn.execute(f"DROP TABLE {table}")
        conn.execute(f"ALTER TABLE {table}_new RENAME TO {table}")
        conn.execute("UPDATE audit_meta SET value=? WHERE key='schema'", (new,))
    except sqlite3.Error as exc:
        raise AuditError(
            f"{_db_file(conn)}: migrating the audit schema from version {old} to {new} (table {table}) failed: {exc}"
        ) from exc


def _db_file(conn: sqlite3.Connection) -> str:
    """The file of ``conn``'s main database (for error messages)."""
    for _seq, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return str(file) or "in-memory database"
    return "audit database"


def _has_meta(conn: sqlite3.Connection) -> bool:
    return "audit_meta" in dialect_of(conn).tables(conn)


def connect_readonly(path: str | Path) -> sqlite3.Connection:
    """Open an audit database read-only from the file alone (an auditor's copy works too), or the audit
    tables of a PostgreSQL database (a ``postgresql://`` URL) in read-only transactions."""
    if is_url(path):
        return _connect_readonly_pg(str(path))
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
    if row is None or row[0] not in READABLE_VERSIONS:
        conn.close()
        raise AuditError(
            f"{p}: audit schema version {row[0] if row else None!r} is not one of {', '.join(READABLE_VERSIONS)}"
        )
    return conn


def _connect_readonly_pg(url: str) -> sqlite3.Connection:
    from gateway.store import pg

    try:
        conn: Any = pg.connect(url, application_name="traza-audit-read")
    except StoreUrlError as exc:
        raise AuditError(str(exc)) from None
    conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    where = pg.redact(url)
    if not _has_meta(conn):
        conn.close()
        raise AuditError(f"{where}: not a Traza audit database (no audit_meta table)")
    version = get_meta(conn, "schema")
    if version not in READABLE_VERSIONS:
        conn.close()
        raise AuditError(f"{where}: audit schema version {version!r} is not one of {', '.join(READABLE_VERSIONS)}")
    return conn  # type: ignore[no-any-return]  # the sqlite3.Connection surface


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
