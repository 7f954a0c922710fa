"""`traza bench` smoke run: real node processes, the null relay and the crypto floor, JSON output."""

from __future__ import annotations

import json
import subprocess
import sys

KEYS = ["messages", "size", "null_relay_eps", "traza_eps", "ratio", "floor_eps", "floor_ratio", "p50_ms", "p99_ms",
        "cpu_us_per_envelope", "peak_rss_mib"]


def test_bench_json_has_every_key_with_positive_numbers():
    r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "bench", "--messages", "200", "--size", "512",
                        "--json", "--timeout", "50"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert list(doc) == KEYS
    assert doc["messages"] == 200 and doc["size"] == 512
    for k in KEYS:
        assert isinstance(doc[k], (int, float)) and doc[k] > 0, (k, doc[k])
    assert doc["p99_ms"] >= doc["p50_ms"]
    assert abs(doc["ratio"] - doc["traza_eps"] / doc["null_relay_eps"]) < 0.01
    assert abs(doc["floor_ratio"] - doc["traza_eps"] / doc["floor_eps"]) < 0.01


def test_bench_refuses_a_non_positive_count():
    r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "bench", "--messages", "0", "--json"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "--messages" in r.stderr
