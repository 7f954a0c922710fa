"""Opening a node's store on either engine: the SQLite file in ``node.data_dir`` (the default) or the
PostgreSQL database of ``[store] url``, with the relay tables (:mod:`gateway.store.relay`,
:mod:`gateway.store.lookup`) created or checked against their schema version. The audit tables are
created by :class:`gateway.audit.facade.NodeAudit` (their own version, ``audit_meta``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.store import lookup
from gateway.store import relay as st
from gateway.store.db import Database, StorageUnavailable
from gateway.store.dialect import dialect_of

VERSION_KEY = "store.schema"


class StoreVersionError(Exception):
    """The store was written by a newer Traza (its schema version is above :data:`relay.SCHEMA_VERSION`)."""


def migrate(db: Database) -> None:
    """Create the relay tables if missing, record the schema version, refuse a newer one. Versions so
    far: 1 (a store from before versions were recorded is version 1); 2: the envelopes in their own
    table (:func:`envelopes_apart`); 3: the outbox lease columns
    (:func:`gateway.store.relay.upgrade`)."""
    db.migrate(st.SCHEMA)
    db.migrate(lookup.SCHEMA)

    def check(conn: Any) -> int:
        raw = st.kv_get(conn, VERSION_KEY)
        have = 1 if raw is None else int(raw.decode())
        if have > st.SCHEMA_VERSION:
            raise StoreVersionError(
                f"{db.where}: store schema version {have} is newer than this Traza's ({st.SCHEMA_VERSION}): "
                "run the Traza that wrote it, or a newer one")
        if have < 2:
            envelopes_apart(conn)
        if have < 3:  # (a new store has every column already: the upgrade adds none)
            st.upgrade(conn, have)
        if raw is None or have < st.SCHEMA_VERSION:
            st.kv_put(conn, VERSION_KEY, str(st.SCHEMA_VERSION).encode())
        return have

    db.write_sync(check)


def envelopes_apart(conn: Any) -> int:
    """Version 1 to 2, in the caller's transaction: move the envelopes a version-1 store still holds in
    ``messages.envelope`` (an emptied transit copy's is ``''``), with the ack this node gave, into table
    ``envelopes``, then drop both columns (a dropped copy's ack is in the evidence). The number of
    envelopes moved (0 for a store that has no such column)."""
    if "envelope" not in dialect_of(conn).columns(conn, "messages"):
        return 0
    moved = conn.execute("INSERT INTO envelopes(jti, envelope, ack) SELECT jti, envelope, ack FROM messages "
                         "WHERE length(envelope)>0 RETURNING jti").fetchall()
    conn.execute("ALTER TABLE messages DROP COLUMN envelope")
    conn.execute("ALTER TABLE messages DROP COLUMN ack")
    return len(moved)


def open_store(target: Path | str, *, on_fatal: Callable[[StorageUnavailable], None] | None = None) -> Database:
    """The node's database on ``target`` (a SQLite file or a ``postgresql://`` URL), migrated."""
    db = Database(target, on_fatal=on_fatal)
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db
