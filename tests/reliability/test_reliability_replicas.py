"""Active-active replicas of one hub on one PostgreSQL database (issue #13, docs/ha.md): two real Node
instances (and a real `traza run` process killed mid-work) with one node id, one key set and one database,
each its own data_dir. Concurrent deliveries of the same envelopes to both replicas store each once; rows a
killed replica had claimed are sent by the other once their leases end; the leader's work (checkpoints)
passes to the survivor; the one log verifies."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time

import msgspec
import psycopg
import pytest
from kit.nodes import started, state
from kit.waiting import eventually

from gateway.cli.main import main
from gateway.config import load_config
from gateway.localfed import NodeSpec, add_replica, build, free_ports
from gateway.node import Node
from gateway.store import relay as st
from gateway.store.crashpoints import CRASH_STATUS

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]
LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 0.3}
LEASE = 8.0  # long enough for the test to read A's leases on a loaded machine


@pytest.fixture
def fed(tmp_path, pg_url):
    """hub (replica A) and hub-b (replica B) on one PostgreSQL database, both in the manifest's endpoints of
    hub; mx and es on SQLite. Ports: hub, es, mx (build order), then hub-b."""
    ports = free_ports(12)
    built = build(tmp_path / "fed", SPECS, limits=LIMITS, ports=ports[:9],
                  endpoints={"hub": [f"https://127.0.0.1:{ports[0]}", f"https://127.0.0.1:{ports[9]}"]})
    store = {"url": pg_url, "blob_dir": str(tmp_path / "fed" / "shared-blobs"), "lease": LEASE, "leader_poll": 0.2}
    built["hub-b"] = add_replica(built["hub"], "hub-b", ports[9:], store)
    return built


def _envelopes(mx: Node) -> list[msgspec.Raw]:
    return [msgspec.Raw(r.envelope) for r in mx.db.read_sync(lambda c: st.due(c, "hub", 1e12, 1000))]


async def test_the_same_envelopes_delivered_to_both_replicas_at_once_are_stored_once(fed, pg_url):
    mx = Node(load_config(fed["mx"].config))
    mx.stopping.set()  # not started: its envelopes stay in its outbox for the test to deliver
    try:
        jtis = [await mx.submit(mt="notice", to="es", body=msgspec.json.encode({"title": "t", "text": str(i)}),
                                system="test") for i in range(30)]
        raws = _envelopes(mx)
    finally:
        await mx.stop()
    assert len(raws) == 30
    async with started(fed["hub"].config) as a, started(fed["hub-b"].config) as b, started(fed["es"].config) as es:
        assert a.replica.id != b.replica.id and a.replica.leads() and not b.replica.leads()
        got_a, got_b = await asyncio.gather(a.receive_batch("mx", raws), b.receive_batch("mx", raws))
        for ra, rb in zip(got_a, got_b, strict=True):
            assert ra.jti == rb.jti and {ra.status, rb.status} <= {"accepted", "duplicate"}, (ra, rb)
            assert ra.ack == rb.ack  # the duplicate answers with the ack given the first time
        assert sum(r.status == "accepted" for r in [*got_a, *got_b]) == 30
        await eventually(lambda: _inbox_is(es, jtis), timeout=30.0)
        # each replica's outbox count follows the database, not only its own changes (the other replica
        # dequeues what it enqueued): a count drifted up would shed load for ever
        b.queue_depth = 10_000
        await eventually(lambda: (a.queue_depth, b.queue_depth) == (0, 0), timeout=LEASE + 2)
    with psycopg.connect(pg_url) as c:
        stored = [r[0] for r in c.execute("SELECT jti FROM messages WHERE mt='notice'")]
        accepted = [r[0] for r in c.execute("SELECT jti FROM audit_entries WHERE event='envelope.accepted'")]
    assert sorted(stored) == sorted(accepted[:30]) == sorted(jtis)
    assert main(["audit", "verify", "--db", pg_url, "--no-progress"]) == 0


async def _inbox_is(es: Node, jtis: list[str]) -> bool:
    return sorted(r.jti for r in await es.inbox_page(0, 1000)) == sorted(jtis)


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, f"replica exited early with {proc.returncode}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"port {port} not listening after {timeout} s")


async def test_rows_of_a_killed_replica_are_sent_by_the_other_after_their_lease_and_it_takes_the_lead(fed, pg_url, tmp_path):
    # replica A is a real process that dies (os._exit, like kill -9) right after it claimed rows for es
    env = {**os.environ, "TRAZA_CRASH_AT": "forward.before_send"}
    log = (tmp_path / "hub-a.log").open("wb")
    a = subprocess.Popen([sys.executable, "-m", "gateway.cli.main", "run", "--config", str(fed["hub"].config)],
                         env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_port(fed["hub"].peer_port, a)
        async with started(fed["hub-b"].config) as b, started(fed["es"].config) as es, \
                started(fed["mx"].config) as mx:
            assert not b.replica.leads()  # A started first and leads

            def a_signed() -> bool | None:  # A, the leader, signs its first checkpoint before it dies
                with psycopg.connect(pg_url) as c:
                    return c.execute("SELECT count(*) FROM audit_checkpoints").fetchone()[0] > 0 or None

            await eventually(lambda: asyncio.to_thread(a_signed), timeout=30.0)
            jtis = list(await asyncio.gather(*(
                mx.submit(mt="notice", to="es", body=msgspec.json.encode({"title": "t", "text": str(i)}), system="test")
                for i in range(20))))
            assert await asyncio.to_thread(a.wait, 60) == CRASH_STATUS
            died = time.time()
            with psycopg.connect(pg_url) as c:
                leased = dict(c.execute("SELECT jti, lease_until FROM outbox WHERE lease_owner LIKE %s",
                                        (f"%:{a.pid}:%",)).fetchall())
            assert leased, "A died holding no lease"
            # B leads once A's session is gone, and sends A's rows once their leases end
            await eventually(lambda: b.replica.leads() or None, timeout=10.0)

            async def all_delivered() -> bool:
                return all([await state(mx, j) == "delivered" for j in jtis])

            await eventually(lambda: _inbox_is(es, jtis), timeout=60.0)
            for j in jtis:
                assert await es.inbox_ack(j, "system:test")
            await eventually(all_delivered, timeout=60.0)  # the receipts came back through B
            received = dict(es.db.read_sync(lambda c: c.execute("SELECT jti, received_at FROM messages").fetchall()))
            for jti, until in leased.items():
                assert received[jti] >= until - 0.01, "B sent a row before A's lease on it ended"
            await b.audit.publish(b.clock())
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
        log.close()
    with psycopg.connect(pg_url) as c:
        hub_rows = [r[0] for r in c.execute("SELECT jti FROM messages WHERE mt='notice'")]
        accepted = [r[0] for r in c.execute("SELECT jti FROM audit_entries WHERE event='envelope.accepted' "
                                            "AND jti = ANY(%s)", (jtis,))]
        signed = c.execute("SELECT size, signed_at FROM audit_checkpoints ORDER BY size").fetchall()
        size = c.execute("SELECT count(*) FROM audit_entries").fetchone()[0]
    assert sorted(hub_rows) == sorted(jtis) and sorted(accepted) == sorted(jtis)  # each once
    # A signed the first checkpoints, B (the leader after A) the latest, of the whole log but the
    # node.stopped entry B's stop appended after it
    assert signed[0][1] < died < signed[-1][1] and signed[-1][0] == size - 1
    assert main(["audit", "verify", "--db", pg_url, "--no-progress"]) == 0
