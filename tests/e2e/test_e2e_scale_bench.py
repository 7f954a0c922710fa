"""`traza bench --nodes N --messages M --json` (SPEC §11, 1.1): a federation of real `traza run` processes,
every message delivered to its national system and receipted, the SPEC's keys on stdout; bad arguments
exit 2 with one line."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

KEYS = ["nodes", "messages", "delivered", "ready_s", "traza_eps", "p50_ms", "p99_ms", "rss_mib_per_node",
        "hub_cpu_ms_per_message", "hub_bytes_per_message", "manifest_poll_bytes_per_node_min", "witness_fresh_ratio"]


def _rows(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_bench_nodes_delivers_and_receipts_every_message_and_prints_the_spec_keys(tmp_path):
    root = tmp_path / "fed"
    # six nodes start in about 5 s; the bench waits for every node's first manifest poll (--manifest-poll
    # seconds after its start) before its idle window, here 7 s instead of a minute: a poll every 3 s
    r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "bench", "--nodes", "6", "--messages", "20",
                        "--manifest-poll", "3", "--idle", "7", "--json", "--timeout", "150", "--dir", str(root)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert list(doc) == KEYS
    assert doc["nodes"] == 6 and doc["messages"] == 20 and doc["delivered"] == 20
    for k in KEYS:
        assert isinstance(doc[k], (int, float)) and doc[k] > 0, (k, doc[k])
    assert doc["p99_ms"] >= doc["p50_ms"]
    assert doc["witness_fresh_ratio"] == 1.0, r.stderr[-2000:]
    polls_a_minute = 60 / 3
    assert doc["manifest_poll_bytes_per_node_min"] / polls_a_minute <= 1024, "unchanged polls cost a few hundred bytes"
    assert "starting 6 nodes" in r.stderr and "receipts back: 20/20" in r.stderr  # progress on stderr

    # what the federation left behind, read independently of the bench: the six nodes, 20 notices sent
    # by national nodes, each receipted at its origin and written to its recipient's drop folder
    nodes = sorted(p.stem for p in (root / "nodes").glob("*.toml"))
    assert nodes == ["arms-registry", "co", "es", "eu-hub", "latam-hub", "mx"]
    for n in nodes:  # the configs carry the poll interval asked for
        assert tomllib.loads((root / "nodes" / f"{n}.toml").read_text())["trust"]["manifest_poll_seconds"] == 3
    sent: dict[str, str] = {}
    for n in ("co", "es", "mx"):
        for jti, aud, state in _rows(root / "data" / n / "node.db",
                                     f"SELECT jti, aud, state FROM messages WHERE mt = 'notice' AND iss = '{n}'"):
            assert state == "delivered", (n, jti, state)  # its receipt came back
            sent[jti] = aud
    assert len(sent) == 20
    dropped = {f.name.split(".")[0]: f.parent.parent.name for f in (root / "drop").glob("*/inbox/*")}
    assert dropped == sent


@pytest.mark.parametrize(("args", "text"), [
    (["--nodes", "3"], "--nodes 3: at least 4"),
    (["--nodes", "100000"], "--nodes 100000: at most"),
    (["--nodes", "6", "--messages", "0"], "--messages 0: at least 1"),
    (["--nodes", "6", "--manifest-poll", "0.5"], "--manifest-poll 0.5: from 1 to 86400 seconds"),
    (["--nodes", "6", "--manifest-poll", "100000"], "--manifest-poll 100000: from 1 to 86400 seconds"),
])
def test_bench_nodes_refuses_bad_arguments_with_one_line(args, text):
    r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "bench", *args, "--json"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and text in r.stderr, r.stderr
