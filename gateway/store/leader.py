"""The leader lock of a node's replicas (issue #13, docs/ha.md): a PostgreSQL session advisory lock held on
a connection of its own.

Several ``traza run`` processes of one node share one database; the work only one of them may do
(signing checkpoints, asking the witnesses to cosign them) is done by the replica holding
:data:`LEADER_LOCK`. :meth:`LeaderLock.probe` takes it with ``pg_try_advisory_lock`` when it is free and,
once held, checks that the session holding it is still alive: PostgreSQL drops a session's advisory locks
when the session ends, however the process died (kill -9 included), so another replica's next probe takes
it over. Blocking calls: the node runs them in a thread.
"""

from __future__ import annotations

import contextlib
from typing import Any

from gateway.store.dialect import StoreUrlError

# the session advisory lock of the leader ("traza-l" in ASCII); WRITE_LOCK is "traza-w", MIGRATE_LOCK "traza"
LEADER_LOCK = 0x7472617A612D6C


class LeaderLock:
    """The leader lock of the database at ``url`` (a connection made at the first probe)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: Any = None
        self.held = False
        self.last_error: str | None = None

    def probe(self) -> bool:
        """Is the lock held by this replica now? Takes it if it is free. A failure (server gone, failover)
        closes the connection and answers False: a lost session is a lost lock."""
        from gateway.store import pg

        try:
            if self._conn is None or self._conn.broken:
                self._drop()
                self._conn = pg.connect(self.url, application_name="traza-leader")
            if self.held:
                # still our session? (the lock lives as long as it does)
                row = self._conn.execute("SELECT count(*) FROM pg_locks WHERE locktype='advisory' AND granted "
                                         "AND pid=pg_backend_pid() AND ((classid::bigint << 32) | objid::bigint)=?",
                                         (LEADER_LOCK,)).fetchone()
                self.held = bool(row and row[0])
            else:
                self.held = bool(self._conn.execute("SELECT pg_try_advisory_lock(?)", (LEADER_LOCK,)).fetchone()[0])
            self.last_error = None
        except (StoreUrlError, Exception) as exc:  # any failure: not the leader until a probe succeeds
            self.last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self._drop()
        return self.held

    def _drop(self) -> None:
        self.held = False
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def release(self) -> None:
        """Give the lock up (a stopping replica): another replica's next probe takes it."""
        self._drop()
