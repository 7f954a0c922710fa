"""One SQLite database per node with group commit.

Every durable change goes through ``Database.write(fn)``: ``fn(conn)`` runs on the single writer thread
inside a transaction shared with every other write that arrived meanwhile, and the awaiting coroutines
resume only after that transaction's COMMIT, i.e. after fsync (WAL, ``synchronous=FULL``). Each write
runs in its own SAVEPOINT, so one that raises is rolled back alone and its caller gets the exception.
Reads use separate connections on a small thread pool and never block the writer (WAL).

``await write(fn)`` resolves an asyncio future directly: after each COMMIT the writer wakes every event
loop that has writers waiting once (one ``call_soon_threadsafe`` per loop and group, not one per write).
``rollbacks`` counts rolled-back writes and transactions, so a caller that caches what it wrote
(``gateway.audit.facade``) knows when the database may no longer hold it.

The store, the audit log and the relay share this engine so that an envelope and its audit entry become
durable in one transaction and one fsync (SPEC §4.1: no ack before both are on disk).

Effects after commit: a write that changes in-memory state (a counter, a wake-up) registers it with
``after_commit(fn)`` from inside the transaction; ``fn`` runs on the caller's event loop once the
transaction is durable, just before the caller resumes, and never if the write or its transaction rolls
back (issue #11: counters come from committed state).

Storage failures: when the disk is full or the database cannot be written (SQLITE_FULL, SQLITE_IOERR,
SQLITE_CANTOPEN, SQLITE_READONLY, SQLITE_NOTADB, SQLITE_CORRUPT) callers get :class:`StorageUnavailable`
(the APIs answer ``503`` with ``Retry-After``) and ``healthy`` is False until a transaction commits again.
A failed fsync (SQLITE_IOERR_FSYNC) is fatal: the page cache may no longer say what is on disk, so the
database refuses every later write and ``on_fatal`` is called (the node exits non-zero and its supervisor
restarts it); it never retries the fsync and carries on.

Two engines (issue #13): ``Database(path)`` is the SQLite file; ``Database("postgresql://...")`` runs the
same group commit on PostgreSQL (:mod:`gateway.store.pg`): the writer thread holds one connection,
readers take theirs from a pool, every statement goes through the engine's :attr:`dialect`
(:mod:`gateway.store.dialect`), so the relay store and the audit log are the same code on both. On
PostgreSQL a lost connection, a full disk or a read-only server is :class:`StorageUnavailable` (503) and
the writer reconnects before its next transaction; nothing there is fatal (the server does its own fsync).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from gateway.store.dialect import SQLITE, Dialect, is_url, postgresql

T = TypeVar("T")

MAX_BATCH = 4096
# Prepared statements kept per connection: every statement the relay and the audit log issue fits, so
# none is compiled again under load.
STATEMENT_CACHE = 512
# PostgreSQL advisory lock key held while a schema is created or migrated ("traza" in ASCII)
MIGRATE_LOCK = 0x7472617A61


def connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    """Open a connection with the node's pragmas (WAL, synchronous=FULL, foreign keys)."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None,
                               cached_statements=STATEMENT_CACHE)
    else:
        conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None,
                               cached_statements=STATEMENT_CACHE)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        # content deleted or dropped (a transit copy's payload, a purged body) is overwritten with zeros,
        # also in the pages it frees: FAST left whole freed pages (a large body's overflow pages) readable in
        # the file. About 1 µs per deleted envelope (docs/security.md, "Data at rest")
        conn.execute("PRAGMA secure_delete=ON")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


class _Stop:
    pass


class StorageUnavailable(Exception):
    """The database cannot take writes now (disk full, I/O error, ...): retry later (503 + Retry-After)."""

    def __init__(self, detail: str, *, fatal: bool = False, retry_after: float = 5.0) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fatal = fatal
        self.retry_after = retry_after


# SQLite primary result codes that mean "the storage failed", not "this statement was wrong"
_STORAGE_CODES = {13: "SQLITE_FULL", 10: "SQLITE_IOERR", 14: "SQLITE_CANTOPEN", 8: "SQLITE_READONLY",
                  26: "SQLITE_NOTADB", 11: "SQLITE_CORRUPT"}
SQLITE_IOERR_FSYNC = 10 | (4 << 8)


def storage_error(exc: BaseException) -> StorageUnavailable | None:
    """The :class:`StorageUnavailable` an exception from SQLite stands for, or None if it is not one."""
    if isinstance(exc, StorageUnavailable):
        return exc
    if type(exc).__module__.startswith("psycopg"):
        from gateway.store.pg import storage_error_kind

        kind = storage_error_kind(exc)
        return None if kind is None else StorageUnavailable(f"storage: PostgreSQL {kind}: {str(exc).strip()}")
    if not isinstance(exc, sqlite3.Error):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        text = str(exc).lower()
        if "disk is full" in text or "disk i/o error" in text:
            return StorageUnavailable(f"storage: {exc}")
        return None
    if code == SQLITE_IOERR_FSYNC:
        return StorageUnavailable(f"storage: fsync failed ({exc}); the node must restart", fatal=True)
    name = _STORAGE_CODES.get(code & 0xFF)
    return StorageUnavailable(f"storage: {name}: {exc}") if name else None


# A queued write: the function, and where its outcome goes (a concurrent Future for ``submit``, or an
# asyncio future and its loop for ``write``).
_Item = tuple[Callable[[sqlite3.Connection], Any], "Future[Any] | asyncio.Future[Any]", "asyncio.AbstractEventLoop | None"]
# (ok, result or exception, effects to run after commit)
_Outcome = tuple[bool, Any, list[Callable[[], None]]]


def _run_effects(effects: list[Callable[[], None]]) -> None:
    for fn in effects:
        fn()


def _resolve(outcomes: list[tuple[asyncio.Future[Any], bool, Any, list[Callable[[], None]]]]) -> None:
    """On the event loop: run the committed writes' effects, then hand the outcomes to the coroutines."""
    for fut, ok, value, effects in outcomes:
        if ok:
            _run_effects(effects)  # committed: its effects happen even if the caller went away
        if fut.cancelled():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


class Database:
    """Group-committing database on a SQLite file or a PostgreSQL URL. Create it, ``migrate`` schemas,
    then ``write``/``read``."""

    def __init__(self, path: Path | str, *, readers: int = 2,
                 on_fatal: Callable[[StorageUnavailable], None] | None = None) -> None:
        self.url: str | None = None
        self._pool: Any = None
        self.dialect: Dialect = SQLITE
        if is_url(path):
            from gateway.store import pg

            self.url = str(path)
            self.dialect = postgresql()
            self.where = pg.redact(self.url)
            self.path = Path(self.where)  # for messages only
            self._conn: Any = pg.connect(self.url, application_name="traza-write")
            self._pool = pg.pool(self.url, readers)
        else:
            self.path = Path(path)
            self.where = str(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = connect(self.path)
        self._queue: queue.SimpleQueue[_Item | _Stop] = queue.SimpleQueue()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._reader_conns: list[sqlite3.Connection] = []  # every reader connection, closed by close()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="db-read")
        self.commits = 0  # number of transactions committed (for tests and metrics)
        # number of write transactions begun: a value read inside a write names that transaction, so a
        # cache filled in it (the audit log's size) is known to be current until the next one begins
        self.transactions = 0
        self.writes = 0
        self.rollbacks = 0  # writes rolled back alone, plus whole transactions rolled back
        self._closed = False
        self.healthy = True  # False from a failed transaction until one commits again
        self.last_error: str | None = None
        self.fatal: StorageUnavailable | None = None  # set once an fsync failed: no write is taken after it
        self.on_fatal = on_fatal
        self._effects: list[Callable[[], None]] = []  # of the write running on the writer thread
        self._thread = threading.Thread(target=self._run, name=f"db-writer:{self.path.name or self.dialect.name}",
                                        daemon=True)
        self._thread.start()

    # --- writer --------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if isinstance(first, _Stop):
                break
            conn = self._conn  # per transaction: a test may put a fault-injecting proxy in front of it
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(nxt, _Stop):
                    stop = True
                    break
                batch.append(nxt)
            if self.fatal is not None:
                self._deliver(batch, [(False, self.fatal, [])] * len(batch))
                if stop:
                    break
                continue
            if self.url is not None and self._conn.broken:  # PostgreSQL: the last connection was lost
                try:
                    self._reconnect()
                except Exception as exc:
                    lost = StorageUnavailable(f"storage: {exc}")
                    self.healthy, self.last_error = False, lost.detail
                    self._deliver(batch, [(False, lost, [])] * len(batch))
                    if stop:
                        break
                    continue
                conn = self._conn
            results: list[_Outcome] = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                self.transactions += 1
                # one savepoint at a time, always the same name (so the statements stay prepared)
                for fn, _fut, _loop in batch:
                    conn.execute("SAVEPOINT w")
                    self._effects = []
                    try:
                        res = fn(conn)
                    except BaseException as exc:  # handed to the caller
                        self.rollbacks += 1
                        if not conn.in_transaction:  # SQLite rolled it all back (e.g. SQLITE_FULL): fail the group
                            raise
                        conn.execute("ROLLBACK TO w")
                        conn.execute("RELEASE w")
                        results.append((False, storage_error(exc) or exc, []))
                    else:
                        conn.execute("RELEASE w")
                        results.append((True, res, self._effects))
                conn.execute("COMMIT")
                self.commits += 1
                self.writes += len(batch)
                self.healthy, self.last_error = True, None
            except BaseException as exc:  # the whole transaction failed (disk full, I/O error)
                self.rollbacks += 1
                try:
                    conn.execute("ROLLBACK")
                except Exception:  # noqa: S110 - the connection may be gone; the error below says why
                    pass
                err = storage_error(exc)
                self.healthy, self.last_error = False, str(err or exc)
                results = [(False, err or exc, [])] * len(batch)
                if err is not None and err.fatal:
                    self.fatal = err
                    if self.on_fatal is not None:
                        self.on_fatal(err)
            finally:
                self._effects = []
            self._deliver(batch, results)
            if stop:
                break

    def _reconnect(self) -> None:
        from gateway.store import pg

        assert self.url is not None
        try:
            self._conn.close()
        except Exception:  # noqa: S110 - it is broken already
            pass
        self._conn = pg.connect(self.url, application_name="traza-write")

    def after_commit(self, fn: Callable[[], None]) -> None:
        """From inside a write: run ``fn`` once this write's transaction has committed (on the caller's
        event loop, before it resumes); never if the write or the transaction rolls back."""
        if threading.current_thread() is not self._thread:
            raise RuntimeError("after_commit is for functions running inside Database.write")
        self._effects.append(fn)

    @staticmethod
    def _deliver(batch: list[_Item], results: list[_Outcome]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any, list[Callable[[], None]]]]] = {}
        for (_fn, fut, loop), (ok, value, effects) in zip(batch, results, strict=True):
            if loop is None:
                assert isinstance(fut, Future)
                if ok:
                    _run_effects(effects)
                if fut.set_running_or_notify_cancel():
                    if ok:
                        fut.set_result(value)
                    else:
                        fut.set_exception(value)
            else:
                assert isinstance(fut, asyncio.Future)
                by_loop.setdefault(loop, []).append((fut, ok, value, effects))
        for loop, outcomes in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, outcomes)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        if self._closed:
            raise RuntimeError(f"database {self.where} is closed")
        fut: Future[T] = Future()
        self._queue.put((fn, fut, None))
        return fut

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the next group-committed transaction; return once it is durable."""
        if self._closed:
            raise RuntimeError(f"database {self.where} is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, fut, loop))
        return await fut

    def write_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self.submit(fn).result()

    # --- readers -------------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return conn

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._pool is None:
            return fn(self._reader())
        from gateway.store.pg import PgConnection

        with self._pool.connection() as raw:
            return fn(PgConnection(raw))  # type: ignore[arg-type]  # the sqlite3.Connection surface

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read, fn)

    def read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._readers.submit(self._read, fn).result()

    async def read_now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A short read (an indexed lookup of a few rows, e.g. the next outbox batch) run on the caller's
        thread with a connection of its own: on SQLite (WAL: a reader never waits for the writer) that
        saves the hand-off to a reader thread and back, which under load costs more than the read itself
        (issue #17); on PostgreSQL every read is a network round trip, so it goes to the pool as
        :meth:`read`."""
        if self._pool is not None:
            return await self.read(fn)
        if self._closed:
            raise RuntimeError(f"database {self.where} is closed")
        return fn(self._reader())

    # --- lifecycle -----------------------------------------------------------------------------------

    def migrate(self, ddl: str) -> None:
        """Apply idempotent DDL (``CREATE ... IF NOT EXISTS``) in one transaction (on PostgreSQL under an
        advisory lock, so that replicas starting together do not race, and without the statements whose
        table or index exists: they would lock tables a running replica is writing,
        :func:`gateway.store.pg.creates_existing`)."""
        if self.url is not None:
            from gateway.store import pg

            pconn = pg.connect(self.url, application_name="traza-migrate")
            try:
                pconn.execute("BEGIN")
                pconn.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATE_LOCK,))
                pconn.executescript(ddl, skip_existing=True)
                pconn.execute("COMMIT")
            finally:
                pconn.close()
            return
        conn = connect(self.path)
        try:
            conn.executescript(f"BEGIN IMMEDIATE; {ddl}; COMMIT;")
        finally:
            conn.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_Stop())
        self._thread.join()
        self._readers.shutdown(wait=True)
        if self._pool is not None:
            self._pool.close()
        with self._lock:
            readers, self._reader_conns = self._reader_conns, []
        for conn in readers:
            conn.close()
        self._conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
