"""Database failover (issue #13, docs/ha.md): the store on a PostgreSQL primary with a synchronous standby,
reached through a libpq multi-host URL (``target_session_attrs=read-write``). The primary is killed and the
standby promoted: every write acknowledged before is on the new primary, a write caught in the failover
fails as StorageUnavailable (503 for the peer or the national system, which retry), and the writer and the
readers reconnect to the promoted standby by themselves."""

from __future__ import annotations

import time

from gateway.store import relay as st
from gateway.store.db import StorageUnavailable
from gateway.store.schema import open_store


def _message(jti: str, now: float) -> st.StoredMessage:
    return st.StoredMessage(jti=jti, dig="d", mt="notice", iss="mx", aud="es", cid=jti, irt=None, cls="UNCLASSIFIED",
                            exp=10_000_000_000, envelope=jti.encode(), size=len(jti), received_from="mx",
                            received_at=now, ack=None, ack_idx=None, state="queued", next_hop="es", updated_at=now)


def _store(jti: str):
    def fn(conn):
        st.insert_message(conn, _message(jti, time.time()))
        st.enqueue(conn, jti, "es", time.time())
    return fn


def test_acknowledged_writes_survive_a_failover_and_the_store_follows_the_promoted_standby(ha_cluster):
    ha_cluster.create_database("traza_ha")
    db = open_store(ha_cluster.multi_url("traza_ha"))
    try:
        acked = []
        for i in range(50):
            db.write_sync(_store(f"before-{i}"))  # returned: committed on the primary and the standby
            acked.append(f"before-{i}")
        assert db.read_sync(st.queue_total) == 50
        ha_cluster.fail_over()
        refused = 0
        deadline = time.monotonic() + 30
        i = 0
        while len(acked) < 80 and time.monotonic() < deadline:
            try:
                db.write_sync(_store(f"after-{i}"))
            except StorageUnavailable:  # caught in the failover: answered 503, the sender retries
                refused += 1
                time.sleep(0.05)
                continue
            acked.append(f"after-{i}")
            i += 1
        assert len(acked) == 80, f"writes did not resume after the failover ({refused} refused)"
        assert refused >= 1  # the write on the dead primary's connection failed, it was not lost silently
        # the readers' pool follows too; nothing acknowledged was lost
        rows = set(db.read_sync(lambda c: [r[0] for r in c.execute("SELECT jti FROM messages")]))
        assert rows == set(acked)
        assert db.healthy
    finally:
        db.close()
