"""Issue #13's done-when, end to end with real processes: mx → latam-hub → eu-hub → es, where latam-hub runs
as two replicas (two `traza run` processes, one node id, one key set, each its own data_dir) on a
PostgreSQL primary with a synchronous standby, reached through a libpq multi-host URL. While messages
flow, a replica is killed with SIGKILL (and restarted) and the primary is killed and its standby promoted.
Afterwards: lost = 0, duplicated = 0 (es's inbox holds each message once), nothing stuck (no outbox row
left at either hub), latam-hub's one audit log verifies with `traza audit verify`, its checkpoints are
consistent across the failovers (verify checks every one), and none of its witnesses raised a fork alert.

The short version (600 messages, one replica kill, one promotion) runs in the normal suite; the
soak (5,000 messages, a replica killed twice, the primary once) is marked ``soak`` and runs with
``make soak``. Both print the counts."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from fedproc import FOUR, Federation  # tests/e2e helper
from kit.pg import Cluster
from test_e2e_crash import (  # tests/e2e: the crash test's feed and inbox reading
    _inbox_jtis,
    _inbox_when_complete,
    _submit_all,
    _submitted,
)

from gateway.localfed import add_replica, free_ports


def _ha_federation(root: Path, cluster: Cluster) -> tuple[Federation, str]:
    """FOUR with latam-hub as replicas latam-hub and latam-hub-b on ``cluster``'s multi-host URL."""
    ports = free_ports(15)
    # build order: hubs by id (eu-hub, latam-hub), then es, mx; latam-hub-b takes the last three
    a_port, b_port = ports[3], ports[12]
    fed = Federation(root, FOUR, ports=ports[:12],
                     limits={"retry_min": 0.2, "retry_max": 2.0, "checkpoint_interval": 1.0},
                     endpoints={"latam-hub": [f"https://127.0.0.1:{a_port}", f"https://127.0.0.1:{b_port}"]})
    cluster.create_database("latam")
    url = cluster.multi_url("latam")
    store = {"url": url, "blob_dir": str(root / "latam-shared"), "lease": 3.0, "leader_poll": 0.5}
    fed.nodes["latam-hub-b"] = add_replica(fed.nodes["latam-hub"], "latam-hub-b", ports[12:], store)
    return fed, url


def _pg(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as c:
        return c.execute(sql).fetchall()


def _sqlite(db: Path, sql: str) -> list[tuple[object, ...]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _run(tmp_path: Path, cluster: Cluster, total: int, faults: list[tuple[float, str]]) -> None:
    """Send ``total`` messages mx → es through the replicated latam-hub; at each fraction of the
    messages delivered at es in ``faults``, apply the fault: ``kill:<replica>`` (SIGKILL, restarted a second later) or
    ``failover`` (the primary killed, the standby promoted); then check and print the counts."""
    t_start = time.monotonic()
    fed, url = _ha_federation(tmp_path, cluster)
    applied: list[str] = []
    restarting: list[tuple[str, threading.Timer]] = []
    try:
        fed.start("latam-hub")  # the first replica leads
        fed.start_all()
        progress: list[str] = []
        result: dict[str, object] = {}

        def submitter() -> None:
            try:
                result["ids"] = asyncio.run(_submit_all(fed, "mx", "es", total, progress))
            except BaseException as exc:  # reported by the main thread
                result["error"] = exc

        th = threading.Thread(target=submitter, daemon=True)
        th.start()
        for at, name in faults:
            # at a fraction of the messages delivered: the hub is mid-relay (mx queues faster than it relays)
            fed.wait_for(lambda at=at: len(_inbox_jtis(fed, "es")) >= at * total, timeout=300, interval=0.05)
            before = (len(progress), len(_inbox_jtis(fed, "es")))
            assert before[1] < total, f"every message was delivered before fault {name}: it would test nothing"
            if name == "failover":
                cluster.fail_over()
            else:  # restarted a second later in the background: the other replica carries the flow meanwhile,
                # and the next fault is not held up (a fast relay could deliver everything in that second)
                replica = name.removeprefix("kill:")
                fed.stop(replica, signal.SIGKILL)
                timer = threading.Timer(1.0, fed.spawn, args=(replica,))
                timer.start()
                restarting.append((replica, timer))
            applied.append(f"{name} at {before[0]} submitted, {before[1]} in es's inbox")
            print(applied[-1])
        for replica, timer in restarting:
            timer.join()
            fed.wait_ready(replica, timeout=60)
        want = _submitted(th, result, total, timeout=600)
        got = _inbox_when_complete(fed, "es", want, timeout=300)
        lost = want - set(got)
        duplicated = len(got) - len(set(got))
        stuck_latam = fed.wait_for(lambda: _pg(url, "SELECT count(*) FROM outbox")[0][0] == 0 or None, timeout=60) and 0
        stuck_eu = fed.wait_for(lambda: _sqlite(fed.nodes["eu-hub"].data_dir / "node.db",
                                                "SELECT count(*) FROM outbox")[0][0] == 0 or None, timeout=60) and 0
        stored = _pg(url, "SELECT count(*), count(DISTINCT jti) FROM messages WHERE mt='notice'")[0]
        print(f"HA e2e: sent={total} delivered={len(set(got) & want)} lost={len(lost)} duplicated={duplicated} "
              f"stuck_latam={stuck_latam} stuck_eu={stuck_eu} latam_rows={stored[0]} "
              f"seconds={time.monotonic() - t_start:.1f}")
        assert not lost, f"{len(lost)} of {total} messages never reached es (e.g. {sorted(lost)[:3]})"
        assert duplicated == 0 and set(got) == want
        assert stuck_eu == 0 and stored == (total, total)
        # a checkpoint of the whole log signed by the leader after the faults, seen by its witnesses
        size = _pg(url, "SELECT count(*) FROM audit_entries")[0][0]
        fed.wait_for(lambda: _pg(url, "SELECT max(size) FROM audit_checkpoints")[0][0] == size or None, timeout=60)
        fed.stop_all()
        r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "audit", "verify", "--db", url, "--no-progress"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"audit verify latam-hub: {r.stdout}{r.stderr}"
        checkpoints = _pg(url, "SELECT count(*) FROM audit_checkpoints")[0][0]
        forks = sum(_sqlite(fed.nodes[n].data_dir / "node.db", "SELECT count(*) FROM audit_witness_alerts")[0][0]
                    for n in ("mx", "eu-hub"))
        print(f"HA e2e: latam-hub log {size} entries, {checkpoints} checkpoints verified, fork alerts {forks}; "
              + "; ".join(applied))
        assert forks == 0
    finally:
        for _replica, timer in restarting:  # a restart still pending when a check failed: not after the stop
            timer.cancel()
            timer.join()
        fed.stop_all()


def test_replicated_hub_survives_a_replica_kill_and_a_database_failover(tmp_path: Path, ha_cluster: Cluster) -> None:
    _run(tmp_path, ha_cluster, 600, [(0.15, "kill:latam-hub"), (0.35, "failover")])


@pytest.mark.soak
def test_soak_5000_messages_two_replica_kills_and_a_database_failover(tmp_path: Path, ha_cluster: Cluster) -> None:
    _run(tmp_path, ha_cluster, 5000, [(0.2, "kill:latam-hub"), (0.5, "failover"), (0.75, "kill:latam-hub-b")])
