"""A failed fsync is fatal (issue #11), with a real fault: libfiu's ``fiu-run`` (Debian's fiu-utils,
installed by ``.ci/run``) preloads into a real ``traza run`` process, and ``fiu-ctrl`` makes its
``fsync``/``fdatasync`` fail with EIO while it runs. The node must not retry the fsync and carry on: it
stops and exits 75; restarted, it still holds everything it had acknowledged, and delivers it once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fedproc import FOUR, Federation, inbox, submit

from gateway.failures import CheckFailed

LIMITS = {"retry_min": 0.1, "retry_max": 0.5, "checkpoint_interval": 0.3}


def _fiu() -> tuple[str, str]:
    run, ctrl = shutil.which("fiu-run"), shutil.which("fiu-ctrl")
    if run and ctrl:
        return run, ctrl
    if os.environ.get("CI"):
        pytest.fail("fiu-run/fiu-ctrl missing (Debian package fiu-utils; .ci/run installs it)")
    pytest.skip("fiu-run/fiu-ctrl missing: apt-get install fiu-utils")


def test_failed_fsync_stops_the_node_which_restarts_with_nothing_acknowledged_lost(tmp_path: Path) -> None:
    fiu_run, fiu_ctrl = _fiu()
    fed = Federation(tmp_path / "fed", FOUR, limits=LIMITS)
    try:
        fed.spawn("mx", wrap=[fiu_run, "-x"])  # its hubs are down: what mx accepts stays in its outbox
        fed.wait_ready("mx")
        accepted = [submit(fed, "mx", "es", "notice", {"title": "fsync", "text": str(i)}) for i in range(5)]
        pid = fed.procs["mx"].pid
        for point in ("posix/io/sync/fsync", "posix/io/sync/fdatasync"):
            subprocess.run([fiu_ctrl, "-c", f"enable name={point},failnum=-1,failinfo=5", str(pid)],
                           check=True, timeout=10)
        # the next write needs an fsync: refused (503), and the node stops itself with status 75
        msg = {"type": "notice", "to": "es", "handling": "H1", "classification": "BASIC_PROTECTION_LEVEL",
               "purpose": "INVESTIGATION", "body": {"title": "fsync", "text": "after"}}
        try:
            status, _doc = fed.call("mx", "system", "POST", "/local/v1/messages", json.dumps(msg).encode(),
                                    "application/vnd.traza.message+json")
            assert status == 503, _doc
        except CheckFailed:
            pass  # it may already be gone: a write of its own (a retry, a checkpoint) met the failing fsync first
        deadline = time.monotonic() + 20
        while fed.procs["mx"].poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fed.procs["mx"].returncode == 75, fed.log_path("mx").read_text()[-2000:]
        assert "store.fsync_failed" in fed.log_path("mx").read_text()
        fed.stop("mx")

        # restarted without the fault, with its hubs and es: everything acknowledged arrives, once
        fed.start_all()
        got = fed.wait_for(lambda: (lambda m: m if len(m) >= len(accepted) else [])(inbox(fed, "es")), timeout=60)
        ids = [m["id"] for m in got]
        assert set(accepted) <= set(ids) and len(ids) == len(set(ids)), (accepted, ids)
    finally:
        fed.stop_all()
    r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "audit", "verify", "--db",
                        str(fed.nodes["mx"].data_dir / "node.db")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (r.stdout, r.stderr)
