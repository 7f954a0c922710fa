"""The node's check of its own store at start (issue 11, F4), and the copy of its last signed checkpoint
that it keeps outside the database.

:func:`check_store` runs before the node opens its database for writing and stops at the first problem:

1. ``PRAGMA quick_check`` on the database file (a malformed page, a broken b-tree, a file that is not a
   database);
2. the audit log's size against the largest checkpoint this node is known to have signed: the latest
   row of ``audit_checkpoints`` and the file ``<data_dir>/last-checkpoint``
   (:class:`gateway.audit.checkpoints.CheckpointFile`), which the node rewrites atomically (temporary
   file, fsync, rename, fsync of the folder) after every checkpoint is committed and every time witness
   cosignatures are stored for it. A log shorter than a
   size already signed lost its tail (a truncated WAL, a restored backup, lost writes);
3. the tree recomputed from every entry (each entry's bytes against its stored leaf hash, contiguous
   indices), its root against both checkpoints, their log signature against this node's audit keys,
   the cosignatures they carry against the witnesses' keys in the manifest, and their consistency
   (:func:`gateway.audit.verify.verify_log`, without the per-entry JSON checks);
4. the stored interior nodes (``audit_nodes``, which the node signs new checkpoints from) against the
   recomputed root.

The first problem is one line naming the database and the first bad index, the sizes, or the finding
of ``quick_check``. The node refuses to start on it unless the operator overrides with
``traza run --accept-damaged-store REASON``, which records a ``store.check_failed`` entry
(:meth:`StoreReport.incident`) and sets the file aside (:func:`set_aside`) so that the log can go on.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway.audit.checkpoints import CHECKPOINT_FILE, read_checkpoint_file
from gateway.audit.db import AuditError
from gateway.audit.facade import audit_keys
from gateway.audit.reader import AuditReader
from gateway.audit.tree import root_at
from gateway.audit.verify import CheckpointRecord, VerifyFailed, verify_log
from gateway.core.b64 import b64_encode
from gateway.core.events import StoreCheckFailed
from gateway.core.manifest import Federation
from gateway.core.note import origin_for
from gateway.crypto.keys import Ed25519Key
from gateway.store.dialect import StoreUrlError, redact

DB_FILE = "node.db"
QUICK_CHECK_ROWS = 10  # findings PRAGMA quick_check lists at most (the first one is reported)


@dataclass
class StoreReport:
    """What :func:`check_store` found: ``problems`` is empty when the store is sound."""

    db: Path | str  # a file, or a PostgreSQL URL without its password
    problems: list[str] = field(default_factory=list)
    size: int = 0  # entries in the log
    signed_size: int = 0  # the largest checkpoint size known to be signed (database or file)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def refusal(self) -> str:
        """The one line the node refuses to start with."""
        return (
            f"store check failed, start refused: {self.problems[0]}. Nothing was changed; see "
            "docs/reliability.md. To start anyway (recorded as store.check_failed in the audit log): "
            "traza run --config FILE --accept-damaged-store REASON"
        )

    def incident(self, reason: str) -> StoreCheckFailed:
        """The ``store.check_failed`` audit event an accepted override records."""
        return StoreCheckFailed(detail=self.problems[0], problems=len(self.problems), entries=self.size,
                                signed_size=self.signed_size, reason=reason)


def quick_check(conn: sqlite3.Connection) -> str | None:
    """``PRAGMA quick_check``: None if the file is sound, else its first finding and how many more it
    listed (or the error it stopped with: a page too broken to walk ends the pragma with "database disk
    image is malformed", a file that is no database with "file is not a database")."""
    try:
        rows = conn.execute(f"PRAGMA quick_check({QUICK_CHECK_ROWS})").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    found = [
        " ".join(line.split())
        for (row,) in rows
        for line in str(row).splitlines()
        if line.strip() and not line.startswith("*** in database")
    ]
    if found == ["ok"]:
        return None
    more = len(found) - 1
    return found[0] + (f" (and {more}{'+' if len(found) >= QUICK_CHECK_ROWS else ''} more)" if more else "")


def set_aside(path: Path, now: float) -> Path | None:
    """Rename the file to ``<name>.damaged-<unix time>`` (kept as evidence) after an accepted override, so
    that the next checkpoints, signed over the log as it now is, are not compared with it; its new name."""
    if not path.exists():
        return None
    target = path.with_name(f"{path.name}.damaged-{int(now)}")
    os.replace(path, target)
    return target


# -- the check -------------------------------------------------------------------------------------------


def node_keys(fed: Federation, node: str, key: Ed25519Key) -> tuple[list[bytes], dict[str, bytes]]:
    """This node's audit keys (its key file and its unrevoked manifest keys) and its witnesses' cosignature
    keys by name (every other node of the manifest; the first unrevoked audit key of each)."""
    mine = [key.public_raw, *(k for k in audit_keys(fed, node) if k != key.public_raw)]
    witnesses: dict[str, bytes] = {}
    for other in fed.nodes:
        keys = audit_keys(fed, other)
        if other != node and keys:
            witnesses[origin_for(fed.name, other)] = keys[0]
    return mine, witnesses


def check_node_store(data_dir: Path, fed: Federation, node: str, key: Ed25519Key, *,
                     db: Path | str | None = None) -> StoreReport:
    """:func:`check_store` on ``data_dir/node.db`` (or ``db``: another file, a ``postgresql://`` URL) and
    ``data_dir/last-checkpoint`` of ``node``."""
    log_keys, witnesses = node_keys(fed, node, key)
    return check_store(
        data_dir / DB_FILE if db is None else db,
        data_dir / CHECKPOINT_FILE,
        origin=origin_for(fed.name, node),
        log_keys=log_keys,
        witness_keys=witnesses,
    )


def check_store(
    db: Path | str,
    checkpoint_file: Path,
    *,
    origin: str,
    log_keys: Sequence[bytes],
    witness_keys: Mapping[str, bytes],
) -> StoreReport:
    """Check the store as the module docstring says; never raises for a damaged store (the problems are in
    the report), never writes to the database. On PostgreSQL (``db`` a URL) step 1 is the server's (its
    pages are checksummed and WAL-logged); a server that cannot be reached raises
    :class:`gateway.store.dialect.StoreUrlError` (a configuration error, not a damaged store)."""
    t0 = time.perf_counter()
    report = StoreReport(db=db if isinstance(db, Path) else redact(db))
    try:
        _check(report, db, checkpoint_file, origin, log_keys, witness_keys)
    except VerifyFailed as exc:
        report.problems.append(f"{db}: audit log {exc}")
    except AuditError as exc:
        report.problems.append(str(exc))
    except sqlite3.DatabaseError as exc:  # a page quick_check does not read, or a file it cannot open
        report.problems.append(f"{db}: the database cannot be read ({exc})")
    except StoreUrlError:
        raise
    except Exception as exc:
        if not type(exc).__module__.startswith("psycopg"):
            raise
        report.problems.append(f"{report.db}: the database cannot be read ({str(exc).strip()})")
    report.seconds = time.perf_counter() - t0
    return report


def _check(
    report: StoreReport,
    db: Path | str,
    checkpoint_file: Path,
    origin: str,
    log_keys: Sequence[bytes],
    witness_keys: Mapping[str, bytes],
) -> None:
    kept = read_checkpoint_file(checkpoint_file)
    kept_size = 0 if kept is None else kept[1]
    report.signed_size = kept_size
    if isinstance(db, str):  # PostgreSQL
        from gateway.store import pg

        pconn = pg.connect(db, application_name="traza-check")
        try:
            pconn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            if "audit_entries" not in pconn.dialect.tables(pconn):
                if kept_size:
                    report.problems.append(
                        f"{report.db}: log has 0 entries (no audit tables) but checkpoint of size {kept_size} was "
                        f"signed ({checkpoint_file})"
                    )
                return
            _check_log(report, AuditReader(pconn), report.db, checkpoint_file, kept, origin, log_keys,  # type: ignore[arg-type]
                       witness_keys)
        finally:
            pconn.close()
        return
    if not db.exists():
        if kept_size:
            report.problems.append(
                f"{db}: log has 0 entries (the database is missing) but checkpoint of size {kept_size} "
                f"was signed ({checkpoint_file})"
            )
        return
    # read-only: SQLite still reads the WAL a killed node left, and leaves every file as it was (a
    # read-write connection would fold the WAL into node.db when it closes)
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=30.0)
    try:
        found = quick_check(conn)
        if found is not None:
            report.problems.append(f"{db}: PRAGMA quick_check: {found}")
            return
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name='audit_entries'").fetchone() is None:
            if kept_size:
                report.problems.append(
                    f"{db}: log has 0 entries (no audit tables) but checkpoint of size {kept_size} was "
                    f"signed ({checkpoint_file})"
                )
            return
        _check_log(report, AuditReader(conn), db, checkpoint_file, kept, origin, log_keys, witness_keys)
    finally:
        conn.close()


def _check_log(
    report: StoreReport,
    reader: AuditReader,
    db: Path | str,
    checkpoint_file: Path,
    kept: tuple[str, int, bytes] | None,
    origin: str,
    log_keys: Sequence[bytes],
    witness_keys: Mapping[str, bytes],
) -> None:
    size = reader.size()
    report.size = size
    latest = reader.checkpoint()
    db_size = 0 if latest is None else latest.size
    report.signed_size = max(report.signed_size, db_size)
    if report.signed_size > size:
        where = "in the database" if db_size == report.signed_size else f"kept in {checkpoint_file}"
        report.problems.append(
            f"{db}: log has {size} entries but checkpoint of size {report.signed_size} was signed ({where}): "
            f"entries {size}..{report.signed_size - 1} are lost"
        )
        return
    records: list[CheckpointRecord] = []
    if latest is not None:
        recorded = {n: k for n, k, _ in latest.cosignatures}
        records.append(CheckpointRecord(latest.served(), latest.public_key, recorded, (latest.size, latest.root)))
    if kept is not None and (latest is None or kept[0] != latest.served()):
        records.append(CheckpointRecord(kept[0]))
    verified = verify_log(
        reader.iter_entries(end=size),  # the log as of ``size``: another replica may be appending meanwhile
        records,
        node=reader.node,
        origin=origin,
        log_keys=log_keys,
        witness_keys=witness_keys,
        consistency=reader.consistency_proof,
        check_content=False,
    )
    stored = root_at(reader.conn, size)
    if stored != verified.root:
        report.problems.append(
            f"{db}: the stored tree nodes (audit_nodes) give root {b64_encode(stored)} for size {size}, "
            f"the entries give {b64_encode(verified.root)}: new checkpoints would not match the entries"
        )
