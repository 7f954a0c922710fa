"""Smoke test of bench/hot_paths.py (the CPU per envelope of the relay's pure hot paths, in process):
every path is measured and reported, and bad arguments are refused naming them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "bench" / "hot_paths.py")
PATHS = {"verify_envelope", "verify_ack", "sign_hops", "sign_acks", "decode_batch", "stored_reads", "audit_entries"}


def test_hot_paths_bench_reports_every_path_in_microseconds_per_envelope():
    r = subprocess.run([sys.executable, SCRIPT, "--json", "--batch", "4", "--repeats", "2"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["batch"] == 4 and doc["repeats"] == 2
    assert set(doc["us_per_envelope"]) == PATHS
    # each path does real work (a verification alone is tens of µs); nothing is zero or negative
    assert all(v > 0 for v in doc["us_per_envelope"].values()), doc
    assert doc["us_per_envelope"]["verify_envelope"] > doc["us_per_envelope"]["decode_batch"]


def test_hot_paths_bench_refuses_an_empty_batch():
    r = subprocess.run([sys.executable, SCRIPT, "--batch", "0"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "--batch" in r.stderr
