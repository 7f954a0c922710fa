"""Crash-point matrix (issue #11): a real relaying hub process dies (``os._exit``, like kill -9) at each
durable step of the relay (``gateway.store.crashpoints``), is restarted, and then:

- lost = 0: every message submitted at mx reaches es's inbox;
- duplicated = 0: each exactly once;
- nothing stuck: every message is receipted back to mx, every outbox and dead-letter queue is empty;
- every node's audit log verifies (tree, checkpoint signatures, consistency) with ``traza audit verify``.

mx → latam-hub → eu-hub → es, real ``traza run`` processes on 127.0.0.1; latam-hub is the one that dies.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from fedproc import FOUR, Federation, inbox, submit

from gateway.store.crashpoints import CRASH_STATUS, POINTS

LIMITS = {"retry_min": 0.1, "retry_max": 0.5, "checkpoint_interval": 0.3}
MESSAGES = 30
WAVES = 5


def _wait_exit(fed: Federation, node: str, timeout: float = 30.0) -> int:
    p = fed.procs[node]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            return int(p.returncode)
        time.sleep(0.05)
    raise TimeoutError(f"{node} did not reach its crash point within {timeout} s")


@pytest.mark.parametrize("point", POINTS)
def test_hub_killed_at_a_durable_step_loses_and_duplicates_nothing(tmp_path: Path, point: str) -> None:
    fed = Federation(tmp_path / "fed", FOUR, limits=LIMITS)
    try:
        for n in ("eu-hub", "es", "mx"):
            fed.spawn(n)
        fed.spawn("latam-hub", env={"TRAZA_CRASH_AT": f"{point}:2"})
        for n in fed.nodes:
            fed.wait_ready(n)
        sent: list[str] = []
        for w in range(WAVES):
            for i in range(MESSAGES // WAVES):
                sent.append(submit(fed, "mx", "es", "notice", {"title": f"crash {point}", "text": f"{w}/{i}"}))
            time.sleep(0.4)  # several batches (and checkpoints) at latam-hub
        status = _wait_exit(fed, "latam-hub")
        assert status == CRASH_STATUS, f"latam-hub exited with {status}, not at its crash point"
        assert f"crash point {point} reached" in fed.log_path("latam-hub").read_text()
        fed.stop("latam-hub")
        fed.start("latam-hub")  # restarted without the crash point

        # lost = 0, duplicated = 0
        def arrived() -> list[dict]:
            got = inbox(fed, "es")
            return got if len({m["id"] for m in got}) >= len(sent) else []

        got = fed.wait_for(arrived, timeout=60.0)
        ids = [m["id"] for m in got]
        assert sorted(ids) == sorted(sent), "lost or foreign messages"
        assert len(ids) == len(set(ids)), "a message reached the inbox twice"
        for mid in ids:
            st, doc = fed.call("es", "system", "POST", f"/local/v1/inbox/{mid}/ack", b"")
            assert st == 200, doc

        # nothing stuck: receipts back at mx, queues and dead letters empty everywhere
        def receipted() -> bool:
            return all(fed.call("mx", "system", "GET", f"/local/v1/messages/{m}")[1]["state"] == "delivered"
                       for m in sent)

        fed.wait_for(receipted, timeout=60.0)
        for n in fed.nodes:
            def empty(n: str = n) -> bool:
                queues = fed.call(n, "operator", "GET", "/ops/v1/queues")[1]["queues"]
                return all(q["depth"] == 0 for q in queues)

            fed.wait_for(empty, timeout=30.0)
            assert fed.call(n, "operator", "GET", "/ops/v1/dead-letters")[1]["dead_letters"] == [], n
    finally:
        fed.stop_all()
    # every audit log verifies, its checkpoints consistent across the crash
    for n, node in fed.nodes.items():
        r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "audit", "verify", "--db",
                            str(node.data_dir / "node.db")], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (n, r.stdout, r.stderr)
