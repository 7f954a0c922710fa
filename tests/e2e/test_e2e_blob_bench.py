"""Smoke test of bench/blob_relay.py at a small size: the blob arrives intact through both hubs, the
resumed upload sends only the remainder, every node's peak RSS is read and under the target, and each
hop's MiB/s, the relay's stages and the nodes' CPU seconds are reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_blob_relay_bench_at_8_mib(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "blob_relay.py"), "--size", "8MiB", "--dir",
                        str(tmp_path), "--timeout", "60"], capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads(r.stdout)
    assert s["size"] == 8 * 1024 * 1024 and s["intact"] is True, s
    res = s["resume"]
    assert res["received_after_drop"] == 4 * 1024 * 1024, s
    assert res["resumed_bytes_sent"] == 4 * 1024 * 1024 and res["only_remainder_sent"] is True, s
    assert set(s["peak_rss_mib"]) == {"mx", "latam-hub", "eu-hub", "es"}
    assert all(0 < v < 200 for v in s["peak_rss_mib"].values()), s
    # each hop uploaded the blob (ciphertext: longer than the file by the TZB1 header and the chunk tags)
    assert {(h["from"], h["to"]) for h in s["hops"]} == {("mx", "latam-hub"), ("latam-hub", "eu-hub"), ("eu-hub", "es")}, s
    assert all(0 < h["sent"] <= h["len"] and h["len"] > s["size"] for h in s["hops"]), s
    assert s["relay_mib_s"] > 0
    # each hop's MiB/s, the stages of the relay (from the logs) and each node's CPU time are reported
    assert set(s["hop_mib_s"]) == {"mx→latam-hub", "latam-hub→eu-hub", "eu-hub→es"}, s
    assert all(v > 0 for v in s["hop_mib_s"].values()), s
    assert set(s["stages"]) == {*s["hop_mib_s"], "decrypt_at_es"}, s
    assert all(v >= 0 for v in s["stages"].values()), s
    assert set(s["relay_cpu_seconds"]) == set(s["peak_rss_mib"]) and all(v > 0 for v in s["relay_cpu_seconds"].values()), s
