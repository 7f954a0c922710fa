"""PostgreSQL connections that the store and the audit log use exactly as they use ``sqlite3``.

:class:`PgConnection` wraps a psycopg 3 connection in autocommit mode (transactions are the explicit
``BEGIN``/``SAVEPOINT``/``COMMIT`` statements of :class:`gateway.store.db.Database`, as with SQLite's
``isolation_level=None``) and offers the part of ``sqlite3.Connection`` that Traza uses: ``execute``
(returning a cursor with ``fetchone``, ``fetchall``, ``rowcount`` and iteration), ``executemany``,
``executescript``, ``in_transaction``, ``close``. Every statement goes through the PostgreSQL dialect
(:mod:`gateway.store.dialect`) first; psycopg prepares the statements a connection repeats.

Readers take connections from a ``psycopg_pool.ConnectionPool``; the group-commit writer holds one of
its own. A password in a URL is never printed: :func:`redact` is what messages show.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import pq

from gateway.store.dialect import WRITE_LOCK, PostgresDialect, StoreUrlError, postgresql
from gateway.store.dialect import redact as redact

CONNECT_TIMEOUT = 10  # seconds to reach the server before the URL is called unreachable


def check_url(url: str) -> None:
    """Raise :class:`StoreUrlError` if ``url`` is not a ``postgresql://`` URL libpq can parse."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise StoreUrlError(f"{redact(url)}: not a postgresql:// URL")
    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise StoreUrlError(f"{redact(url)}: {str(exc).splitlines()[0]}") from None


class PgCursor:
    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur

    def fetchone(self) -> Any:
        return self._cur.fetchone() if self._cur.description is not None else None

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall() if self._cur.description is not None else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())

    def close(self) -> None:
        self._cur.close()

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount


class PgConnection:
    """A psycopg connection with the ``sqlite3.Connection`` surface the store uses (module docstring)."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self.dialect: PostgresDialect = postgresql()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> PgCursor:
        if self.dialect.begin_immediate(sql):  # SQLite's write lock: BEGIN, then the database's write lock
            self.raw.execute("BEGIN")
            return PgCursor(self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,)))
        # always with parameters (maybe none): psycopg then turns the dialect's "%%" back into "%"
        return PgCursor(self.raw.execute(self.dialect.sql(sql), tuple(params)))

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> PgCursor:
        cur = self.raw.cursor()
        rows = list(seq)
        if rows:
            cur.executemany(self.dialect.sql(sql), rows)
        return PgCursor(cur)

    def executescript(self, ddl: str, *, skip_existing: bool = False) -> None:
        """Each statement of ``ddl``; with ``skip_existing``, not a ``CREATE TABLE|INDEX IF NOT EXISTS`` of
        a relation that exists (:func:`creates_existing`)."""
        for stmt in self.dialect.script(ddl):
            if not (skip_existing and creates_existing(self, stmt)):
                self.raw.execute(stmt)

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR,
                                                    pq.TransactionStatus.ACTIVE)

    @property
    def broken(self) -> bool:
        return self.raw.closed or self.raw.info.transaction_status == pq.TransactionStatus.UNKNOWN

    def close(self) -> None:
        self.raw.close()


_CREATE = re.compile(r"^(?:\s*--[^\n]*\n)*\s*CREATE\s+(?:UNIQUE\s+)?(?:TABLE|INDEX)\s+IF\s+NOT\s+EXISTS\s+(\w+)\b",
                     re.IGNORECASE)


def creates_existing(conn: PgConnection, stmt: str) -> bool:
    """Whether ``stmt`` is a ``CREATE TABLE|INDEX IF NOT EXISTS`` of a relation that exists already. Such a
    statement changes nothing but still locks: ``CREATE INDEX`` takes a SHARE lock on its table before it
    finds the index there, which waits for every write in progress, and a node's migration that holds one
    table so while it waits for another deadlocks with a replica writing both (found by the HA soak run:
    a replica restarted under load exited 1 with "deadlock detected"). ``to_regclass`` locks nothing."""
    m = _CREATE.match(stmt)
    if m is None:
        return False
    row = conn.raw.execute("SELECT to_regclass(%s)", (m.group(1),)).fetchone()
    return row is not None and row[0] is not None


def connect(url: str, *, application_name: str = "traza") -> PgConnection:
    """A connection to ``url`` in autocommit mode; :class:`StoreUrlError` (one line) if it cannot be made."""
    check_url(url)
    try:
        raw = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                              application_name=application_name)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreUrlError(f"{redact(url)}: the PostgreSQL server cannot be reached ({first})") from None
    return PgConnection(raw)


# what waiting does not mend: the URL names a role or a database the server does not have, or credentials it
# refuses (anything else at connection time, a refused connection or a read-only standby, may be a restart
# or a failover in progress)
_PERMANENT = re.compile(r"authentication failed|does not exist|no pg_hba\.conf entry|password", re.IGNORECASE)


def wait_writable(url: str, wait: float, *, on_wait: Callable[[str, float], None] | None = None,
                  sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
    """Until a connection to ``url`` can be made (with ``target_session_attrs=read-write``: until a host
    accepts writes), for at most ``wait`` seconds: a node started while its database restarts or fails
    over (the old primary gone, the standby not yet promoted) waits for it instead of exiting. Retries
    every 0.25 s, then up to every 2 s; ``on_wait(reason, waited)`` is called before each retry. After
    ``wait`` seconds, :class:`StoreUrlError` naming the last reason and the time waited."""
    start = clock()
    pause = 0.25
    while True:
        try:
            connect(url, application_name="traza-start").close()
            return
        except StoreUrlError as exc:
            waited = clock() - start
            if _PERMANENT.search(str(exc)) or waited + pause > wait:
                raise StoreUrlError(f"{exc} (waited {waited:.0f} s, store.startup_wait = {wait:g})"
                                    if wait > 0 else str(exc)) from None
            if on_wait is not None:
                on_wait(str(exc), waited)
            sleep(pause)
            pause = min(2.0, pause * 2)


def pool(url: str, size: int) -> Any:
    """A pool of ``size`` autocommit connections to ``url`` for the readers (opened, waiting for them)."""
    from psycopg_pool import ConnectionPool

    # check: a connection is tried (an empty query) as it leaves the pool, so that after a failover or a
    # server restart a reader gets a new connection (to whichever host now accepts writes) instead of the
    # dead one
    p = ConnectionPool(url, min_size=1, max_size=size, open=False, name="traza-read",
                       check=ConnectionPool.check_connection, kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT,
                               "application_name": "traza-read"})
    p.open(wait=True, timeout=CONNECT_TIMEOUT)
    return p


def storage_error_kind(exc: BaseException) -> str | None:
    """A name for an exception from psycopg that means "the database cannot take writes now" (the server
    is gone, out of disk, shutting down, read-only after a failover), or None if it is not one."""
    if isinstance(exc, psycopg.errors.DiskFull | psycopg.errors.InsufficientResources):
        return "disk full"
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return "read-only server"
    if isinstance(exc, psycopg.errors.AdminShutdown):
        return "connection closed by the server"
    if isinstance(exc, psycopg.errors.CannotConnectNow):
        return "server starting or shutting down"
    if isinstance(exc, psycopg.OperationalError):
        return "connection lost"
    return None
