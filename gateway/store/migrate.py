"""Copying a node's SQLite store into PostgreSQL (``traza store migrate``, issue #13): every row of every
table, as it is, in one PostgreSQL transaction, so that the audit log keeps its entries, tree nodes,
checkpoints and cosignatures byte for byte (the same roots, the checkpoints still consistent).

The destination's tables must exist already (the caller creates them with the node's own schemas) and
hold nothing but their schema-version rows. Identity columns (SQLite's ``INTEGER PRIMARY KEY``) then
continue after the copied ids, and after the highest id SQLite ever gave (``sqlite_sequence``), so the
node started on the copy never reuses one."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from gateway.store.dialect import redact

# rows the destination holds before the copy (written by its schema creation) and the copy replaces
META_TABLES = ("audit_meta", "kv")
# copied first: the tables others refer to (foreign keys)
PARENTS = ("messages",)


class MigrateError(Exception):
    """The copy cannot be made; the message names the table or database at fault and what to do."""


def open_source(path: Path) -> sqlite3.Connection:
    """The SQLite store read-only (the WAL a stopped node left is read, nothing is written)."""
    if not path.is_file():
        raise MigrateError(f"{path}: no such database file")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise MigrateError(f"{path}: not a readable SQLite database ({exc})") from None
    return conn


def source_tables(src: sqlite3.Connection) -> list[str]:
    names = sorted(r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                             "AND name NOT LIKE 'sqlite_%'"))
    return [n for n in PARENTS if n in names] + [n for n in names if n not in PARENTS]


def check_empty(dst: Any, url: str, tables: list[str]) -> None:
    """Raise :class:`MigrateError` if the destination holds rows (other than its schema versions)."""
    have = dst.dialect.tables(dst)
    for t in tables:
        if t in have and t not in META_TABLES and dst.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone():  # noqa: S608
            raise MigrateError(f"{redact(url)}: the database is not empty (table {t} has rows): migrate into an "
                               "empty database")


def copy_tables(src: sqlite3.Connection, dst: Any, url: str) -> dict[str, int]:
    """Copy every table of ``src`` into ``dst`` (a :class:`gateway.store.pg.PgConnection` whose tables
    exist) in one transaction; the rows copied per table."""
    tables = source_tables(src)
    missing = [t for t in tables if t not in dst.dialect.tables(dst)]
    if missing:
        raise MigrateError(f"{redact(url)}: no table {', '.join(missing)} to copy into (a newer store than this "
                           "Traza knows?)")
    seqs = dict(src.execute("SELECT name, seq FROM sqlite_sequence").fetchall()) if _has(src, "sqlite_sequence") else {}
    counts: dict[str, int] = {}
    dst.execute("BEGIN")
    try:
        for t in META_TABLES:
            if t in tables:
                dst.execute(f"DELETE FROM {t}")  # noqa: S608 - fixed names
        cur = dst.raw.cursor()
        for t in tables:
            cols = [r[1] for r in src.execute(f"PRAGMA table_info({t})")]
            col_list = ", ".join(cols)
            n = 0
            with cur.copy(f"COPY {t} ({col_list}) FROM STDIN") as cp:
                for row in src.execute(f"SELECT {col_list} FROM {t}"):  # noqa: S608 - names from the schema
                    cp.write_row(row)
                    n += 1
            counts[t] = n
        for t, col in dst.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND is_identity = 'YES'"
        ).fetchall():
            if t not in counts:
                continue
            top = dst.execute(f"SELECT max({col}) FROM {t}").fetchone()[0] or 0  # noqa: S608
            nxt = max(int(top), int(seqs.get(t) or 0)) + 1
            dst.execute("SELECT setval(pg_get_serial_sequence(?, ?), ?, false)", (t, col, nxt))
        dst.execute("COMMIT")
    except BaseException:
        dst.execute("ROLLBACK")
        raise
    return counts


def _has(conn: sqlite3.Connection, table: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name=?", (table,)).fetchone() is not None
