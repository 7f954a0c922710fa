"""A node (re)started while its PostgreSQL database fails over (issue #13, found in session 11): the old
primary is gone and the standby not yet promoted. A replica restarted in that window used to exit 2 with
"cannot be reached" (the standby answers, read-only) and stay down; it now waits up to
``[store] startup_wait`` for a host that accepts writes (docs/ha.md). Real PostgreSQL, a real ``traza run``."""

from __future__ import annotations

import subprocess
import sys
import time

from kit.pg import with_store

from gateway.demo.procs import wait_ready
from gateway.localfed import NodeSpec, build


def test_a_node_started_during_a_database_failover_waits_for_the_promoted_standby(tmp_path, ha_cluster):
    """Started after the primary died, before the standby is promoted: the wait is in its log, it is still
    running a second later, and ready once the standby is promoted."""
    built = build(tmp_path / "fed", [NodeSpec("hub", "hub", "NL")])
    node = built["hub"]
    ha_cluster.create_database("hub")
    with_store(node.config, ha_cluster.multi_url("hub"), startup_wait=60.0)
    ha_cluster.kill_primary()
    log = tmp_path / "hub.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli.main", "run", "--config", str(node.config)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        # the operator sees why it waits (at its first attempt, however long a busy machine takes to get
        # there), and it keeps waiting rather than exiting
        deadline = time.monotonic() + 30
        while '"store.waiting"' not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "no store.waiting within 30 s: " + log.read_text(errors="replace")
            time.sleep(0.1)
        time.sleep(1.0)
        assert proc.poll() is None, log.read_text(errors="replace")[-2000:]  # still waiting, not exited
        ha_cluster.promote()
        wait_ready(proc, node.ops_port, log, timeout=60, name="hub")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
