"""A node starting on a PostgreSQL store that another replica is writing (found by the HA soak run: a replica
restarted under load exited 1 with "deadlock detected" in its schema migration). The migration's
`CREATE INDEX IF NOT EXISTS` of indexes that exist took SHARE locks on their tables, so it waited for
every write in progress, and deadlocked with a write that needed a table it already held. Real PostgreSQL."""

from __future__ import annotations

import threading

import psycopg

from gateway.store.schema import open_store

WRITTEN = ("messages", "outbox", "inbox", "timeline")  # the relay tables with indexes of their own


def test_a_replica_starting_while_another_writes_does_not_wait_for_those_writes(pg_url):
    open_store(pg_url).close()  # the store as the running replica made it
    with psycopg.connect(pg_url, autocommit=True) as other:
        other.execute("BEGIN")
        # the running replica's transaction in progress: the lock every INSERT/UPDATE/DELETE takes
        other.execute(f"LOCK TABLE {', '.join(WRITTEN)} IN ROW EXCLUSIVE MODE")
        opened: list[BaseException | None] = []

        def start() -> None:
            try:
                open_store(pg_url).close()
                opened.append(None)
            except BaseException as exc:  # reported by the assertion below
                opened.append(exc)

        starting = threading.Thread(target=start, daemon=True)
        starting.start()
        starting.join(timeout=10)
        waited = starting.is_alive()
        other.execute("ROLLBACK")
        starting.join(timeout=30)
    assert not waited, "the starting replica's migration waited for the other replica's writes"
    assert opened == [None], opened
