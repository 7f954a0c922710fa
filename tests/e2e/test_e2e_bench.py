"""`traza bench` smoke run: real node processes, the null relay and the crypto floor, JSON output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

KEYS = ["messages", "size", "null_relay_eps", "traza_eps", "ratio", "floor_eps", "floor_ratio", "p50_ms", "p99_ms",
        "cpu_us_per_envelope", "peak_rss_mib", "floor_eps_v1", "cpu_floor_ratio", "rate", "p50_ms_at_rate",
        "p99_ms_at_rate", "hop_p50_ms_at_rate", "hop_p99_ms_at_rate", "round_trip_eps"]
HOPS = ["mx→latam-hub", "latam-hub→eu-hub", "eu-hub→es"]


def _every_key_positive(doc: dict) -> None:
    """Every key a positive number; the per-hop ones, one per hop of the route."""
    for k in KEYS:
        if k.startswith("hop_"):
            assert list(doc[k]) == HOPS, (k, doc[k])
            assert all(isinstance(v, (int, float)) and v > 0 for v in doc[k].values()), (k, doc[k])
        else:
            assert isinstance(doc[k], (int, float)) and doc[k] > 0, (k, doc[k])


def test_bench_json_has_every_key_with_positive_numbers():
    r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "bench", "--messages", "200", "--size", "512",
                        "--json", "--timeout", "50"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert list(doc) == KEYS
    assert doc["messages"] == 200 and doc["size"] == 512
    _every_key_positive(doc)
    assert doc["p99_ms"] >= doc["p50_ms"]
    assert abs(doc["ratio"] - doc["traza_eps"] / doc["null_relay_eps"]) < 0.01
    assert abs(doc["floor_ratio"] - doc["traza_eps"] / doc["floor_eps"]) < 0.01
    # a message and its receipt: the whole round trip is done no faster than the message's way there
    assert doc["round_trip_eps"] <= doc["traza_eps"], (doc["round_trip_eps"], doc["traza_eps"])
    # the steady-rate phase offers half the measured maximum with receipts on by default, open loop
    assert abs(doc["rate"] - doc["round_trip_eps"] / 2) <= 0.1, (doc["rate"], doc["round_trip_eps"])
    assert doc["p99_ms_at_rate"] >= doc["p50_ms_at_rate"]
    for hop in HOPS:
        assert doc["hop_p99_ms_at_rate"][hop] >= doc["hop_p50_ms_at_rate"][hop]
    # each hop's latency is part of the end-to-end latency (same messages, same clock)
    assert sum(doc["hop_p50_ms_at_rate"].values()) <= doc["p99_ms_at_rate"] + 1


def test_bench_offers_the_rate_it_is_given_and_refuses_a_negative_one():
    r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "bench", "--messages", "60", "--size", "256",
                        "--rate", "20", "--json", "--timeout", "50"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["rate"] == 20
    r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "bench", "--messages", "10", "--rate", "-1",
                        "--json"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--rate" in r.stderr, r.stderr  # bad usage (SPEC §10)


@pytest.mark.parametrize("args", [["--messages", "0"], ["--size", "0"], ["--store", "mysql"]],
                         ids=["messages", "size", "store"])
def test_bench_refuses_bad_usage_with_exit_status_2(args):
    """SPEC §10: exit status 2 on bad usage, as for ``--nodes`` (it was 1, the status of a failed check)."""
    r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "bench", *args, "--json"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and args[0] in r.stderr and r.stdout == "", (r.returncode, r.stderr)


def on_a_terminal(argv: list[str], timeout: float) -> tuple[int, str]:
    """Run ``argv`` with stdout and stderr on a pseudo-terminal; returns (exit status, what it showed)."""
    import os
    import threading

    master, slave = os.openpty()
    proc = subprocess.Popen(argv, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL,
                            env={**os.environ, "TERM": "xterm", "COLUMNS": "120"})
    os.close(slave)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO once the process has closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(5)
        os.close(master)
    return rc, b"".join(chunks).decode("utf-8", "replace")


def test_bench_shows_its_progress_on_a_terminal_and_not_on_a_pipe():
    import re

    argv = [sys.executable, "-m", "gateway.cli.main", "bench", "--messages", "60", "--size", "256", "--json",
            "--timeout", "50"]
    rc, shown = on_a_terminal(argv, timeout=60)
    assert rc == 0, shown[-3000:]
    for phase in ("starting 4 nodes", "sending mx → es", "delivered at es", "receipts back at mx"):
        assert phase in shown, (phase, shown[-3000:])
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", shown)
    doc = json.loads(re.findall(r"^\{.*\}\s*$", plain, re.M)[-1])  # the JSON object, after the progress
    assert doc["messages"] == 60
    r = subprocess.run([*argv[:5], "2", "--json", "--timeout", "50"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "sending mx" not in r.stderr + r.stdout, r.stderr  # a pipe: no progress


def test_bench_on_postgresql_with_two_replicas_of_latam_hub_reports_the_same_keys():
    """`traza bench --store postgresql --replicas 2` (issue #13): every node on a throw-away PostgreSQL server,
    latam-hub as two replicas on its database; the same SPEC §11 keys."""
    from kit.pg import pg_bin

    if pg_bin() is None:
        import pytest
        from kit.pg import NOT_INSTALLED

        pytest.skip(NOT_INSTALLED)
    r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "bench", "--messages", "200", "--size", "512",
                        "--store", "postgresql", "--replicas", "2", "--json", "--timeout", "100"],
                       capture_output=True, text=True, timeout=150)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert list(doc) == KEYS and doc["messages"] == 200
    _every_key_positive(doc)


def test_bench_refuses_two_replicas_on_sqlite_and_store_with_nodes():
    r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "bench", "--replicas", "2", "--json"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--replicas 2: 1, or 2 with --store postgresql" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "bench", "--nodes", "11", "--store", "postgresql"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--store and --replicas are for the four-node bench" in r.stderr, r.stderr
