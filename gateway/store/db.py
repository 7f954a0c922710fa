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

T = TypeVar("T")

MAX_BATCH = 4096
# Prepared statements kept per connection: every statement the relay and the audit log issue fits, so
# none is compiled again under load.
STATEMENT_CACHE = 512


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
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


class _Stop:
    pass


# A queued write: the function, and where its outcome goes (a concurrent Future for ``submit``, or an
# asyncio future and its loop for ``write``).
_Item = tuple[Callable[[sqlite3.Connection], Any], "Future[Any] | asyncio.Future[Any]", "asyncio.AbstractEventLoop | None"]


def _resolve(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    """On the event loop: hand the group's outcomes to the awaiting coroutines."""
    for fut, ok, value in outcomes:
        if fut.cancelled():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


class Database:
    """Group-committing SQLite database. Create it, ``migrate`` schemas, then ``write``/``read``."""

    def __init__(self, path: Path | str, *, readers: int = 2) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = connect(self.path)
        self._queue: queue.SimpleQueue[_Item | _Stop] = queue.SimpleQueue()
        self._local = threading.local()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="db-read")
        self.commits = 0  # number of transactions committed (for tests and metrics)
        self.writes = 0
        self.rollbacks = 0  # writes rolled back alone, plus whole transactions rolled back
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"db-writer:{self.path.name}", daemon=True)
        self._thread.start()

    # --- writer --------------------------------------------------------------------------------------

    def _run(self) -> None:
        conn = self._conn
        while True:
            first = self._queue.get()
            if isinstance(first, _Stop):
                break
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
            results: list[tuple[bool, Any]] = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                # one savepoint at a time, always the same name (so the statements stay prepared)
                for fn, _fut, _loop in batch:
                    conn.execute("SAVEPOINT w")
                    try:
                        res = fn(conn)
                    except BaseException as exc:  # handed to the caller
                        self.rollbacks += 1
                        conn.execute("ROLLBACK TO w")
                        conn.execute("RELEASE w")
                        results.append((False, exc))
                    else:
                        conn.execute("RELEASE w")
                        results.append((True, res))
                conn.execute("COMMIT")
                self.commits += 1
                self.writes += len(batch)
            except BaseException as exc:  # the whole transaction failed (disk full, I/O error)
                self.rollbacks += 1
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                results = [(False, exc)] * len(batch)
            self._deliver(batch, results)
            if stop:
                break

    @staticmethod
    def _deliver(batch: list[_Item], results: list[tuple[bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_fn, fut, loop), (ok, value) in zip(batch, results, strict=True):
            if loop is None:
                assert isinstance(fut, Future)
                if fut.set_running_or_notify_cancel():
                    if ok:
                        fut.set_result(value)
                    else:
                        fut.set_exception(value)
            else:
                assert isinstance(fut, asyncio.Future)
                by_loop.setdefault(loop, []).append((fut, ok, value))
        for loop, outcomes in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, outcomes)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        if self._closed:
            raise RuntimeError(f"database {self.path} is closed")
        fut: Future[T] = Future()
        self._queue.put((fn, fut, None))
        return fut

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the next group-committed transaction; return once it is durable."""
        if self._closed:
            raise RuntimeError(f"database {self.path} is closed")
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
        return conn

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(self._reader()))

    def read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._readers.submit(lambda: fn(self._reader())).result()

    # --- lifecycle -----------------------------------------------------------------------------------

    def migrate(self, ddl: str) -> None:
        """Apply idempotent DDL (``CREATE ... IF NOT EXISTS``) in one transaction."""
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
        self._conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
