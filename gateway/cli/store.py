"""``traza store migrate``: copy a stopped node's SQLite store (relay tables and audit log) into an empty
PostgreSQL database, keeping the same log (issue #13, docs/ha.md).

The source is ``<data_dir>/node.db`` of ``--config`` (whose data_dir lock is taken for the copy, so a
running node is refused) or a file named by ``--db``. The destination's tables are made by the node's own
schemas, the rows copied in one transaction (:mod:`gateway.store.migrate`), and the copy is checked: the
same rows per table, the same audit log size and root, the same latest checkpoint. Exit 0 with a summary;
2 for bad usage (a running node, a database that is not empty, an unreachable server); 1 if the check of
the copy fails."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.failures import CheckFailed, UsageError


def cmd_migrate(args: argparse.Namespace) -> int:
    from gateway.audit import db as audit_db
    from gateway.audit.reader import AuditReader
    from gateway.core.b64 import b64_encode
    from gateway.store import pg
    from gateway.store import relay as relay_store
    from gateway.store.dialect import StoreUrlError, is_url, redact
    from gateway.store.lock import DataDirLock, DataDirLocked
    from gateway.store.migrate import MigrateError, check_empty, copy_tables, open_source, source_tables
    from gateway.store.schema import open_store

    url = args.to
    if not is_url(url):
        raise UsageError(f"--to: {url!r} is not a postgresql:// URL")
    lock = None
    if args.config is not None:
        from gateway.national.client import node_config

        cfg = node_config(args.config)
        data_dir = cfg.resolve(cfg.node.data_dir)
        source = data_dir / "node.db"
        try:
            lock = DataDirLock(data_dir)
        except DataDirLocked as exc:
            raise UsageError(f"{exc}: stop the node before migrating its store") from None
        except FileNotFoundError:
            raise UsageError(f"{cfg.path}: node.data_dir: {data_dir} does not exist") from None
    else:
        source = Path(args.db)
    try:
        try:
            src = open_source(source)
        except MigrateError as exc:
            raise UsageError(str(exc)) from None
        try:
            version = src.execute("SELECT value FROM audit_meta WHERE key='schema'").fetchone()
        except Exception:
            version = None
        if version is None or version[0] != audit_db.SCHEMA_VERSION:
            raise UsageError(f"{source}: audit schema version {version[0] if version else None!r}, not "
                             f"{audit_db.SCHEMA_VERSION}: start and stop the node once with this Traza (it migrates "
                             "its SQLite store in place), then migrate")
        try:
            store = src.execute("SELECT v FROM kv WHERE k='store.schema'").fetchone()
        except Exception:
            store = None
        have = int(bytes(store[0]).decode()) if store else 1
        if have != relay_store.SCHEMA_VERSION:
            raise UsageError(f"{source}: store schema version {have}, not {relay_store.SCHEMA_VERSION}: start and "
                             "stop the node once with this Traza (it migrates its SQLite store in place), then migrate")
        try:
            dst = pg.connect(url, application_name="traza-migrate")
        except StoreUrlError as exc:
            raise UsageError(f"--to: {exc}") from None
        try:
            check_empty(dst, url, source_tables(src))
            open_store(url).close()  # the relay tables, as the node makes them
            audit_db.connect(url).close()  # the audit tables
            counts = copy_tables(src, dst, url)
        except MigrateError as exc:
            raise UsageError(str(exc)) from None
        finally:
            dst.close()
        # the check of the copy: the same rows, the same log
        for t, n in counts.items():
            have = src.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608 - names from the schema
            if have != n:
                raise CheckFailed(f"table {t}: {n} rows copied, {have} in {source}")
        with AuditReader(source) as a, AuditReader(url) as b:
            size = a.size()
            if (b.size(), b.root(size) if size else b"") != (size, a.root(size) if size else b""):
                raise CheckFailed(f"{redact(url)}: the copied audit log differs from {source}")
            cps_a, cps_b = a.checkpoints(), b.checkpoints()
            if [c.served() for c in cps_a] != [c.served() for c in cps_b]:
                raise CheckFailed(f"{redact(url)}: the copied checkpoints differ from {source}")
            root = b64_encode(a.root(size)) if size else "(empty log)"
        src.close()
    finally:
        if lock is not None:
            lock.release()
    rows = sum(counts.values())
    latest = f", latest of size {cps_a[-1].size}" if cps_a else ""
    print(f"copied {source} to {redact(url)}: {len(counts)} tables, {rows} rows; {size} audit entries, same root "
          f"{root}; {len(cps_a)} checkpoints{latest}, the same")
    print(f"next: traza audit verify --db {redact(url)}, then set [store] url in the node's config and start it")
    return 0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("store", help="the node's store: move it to PostgreSQL")
    verbs = p.add_subparsers(dest="store_verb", metavar="VERB", required=True)
    m = verbs.add_parser(
        "migrate", help="copy a stopped node's SQLite store and audit log into an empty PostgreSQL database",
        description="Copy every table of a stopped node's SQLite store (relay tables and audit log) into an "
                    "empty PostgreSQL database, keeping the same log (same entries, roots and checkpoints); "
                    "the SQLite file is left as it was. Then check the copy with `traza audit verify --db URL` "
                    "and set [store] url (docs/operations.md).")
    src = m.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="the node's TOML config: its data_dir's node.db (the node must be stopped)")
    src.add_argument("--db", metavar="FILE", help="a SQLite store file (e.g. a copy of a stopped node's node.db)")
    m.add_argument("--to", required=True, metavar="URL", help="the PostgreSQL database, postgresql://user@host:port/db")
    m.set_defaults(func=cmd_migrate)
