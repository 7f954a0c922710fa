"""Where the relay's CPU goes, by library, and what that bounds (not a test; needs Linux ``perf``).

    .venv/bin/python bench/cpu_by_library.py                   # a table
    .venv/bin/python bench/cpu_by_library.py --json            # one JSON object
    .venv/bin/python bench/cpu_by_library.py --messages 4000 --size 1024

It runs ``traza bench`` (``gateway.benchmark.run``, the same four node processes on this machine) and,
from the first message sent to the last one delivered at es (the as-fast-as-possible phase, where
``cpu_floor_ratio`` is measured), samples those four processes with ``perf record -p`` (the kernel's CPU
clock: a sample is taken only while a thread is on a core, so threads waiting for one are not counted, as
they are by py-spy). The samples are grouped by the shared object they fell in: the Python interpreter,
the kernel, the ``cryptography`` package's Rust and OpenSSL code, SQLite, libc, and the rest.

It reports, beside the shares, ``cpu_floor_ratio`` of the same run and ``ratio_if_python_were_free``:
the ratio the same run would have had if the interpreter's samples cost nothing and every other library
and the kernel did the same work (``cpu_floor_ratio × (1 − interpreter share)``). Issue #17's target is
``cpu_floor_ratio ≤ 1.2``; when this bound is above it, no change confined to Python code can reach the
target (docs/benchmark.md, "Session 13").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.benchmark import BenchError, run

# shared object (perf's "dso" column) -> group; first match wins, unmatched ones are "other"
GROUPS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("python interpreter", re.compile(r"^libpython|^python3")),
    ("kernel", re.compile(r"^\[kernel")),
    ("cryptography (Rust, Ed25519, ML-KEM, X25519)", re.compile(r"^_rust\.abi3")),
    ("SQLite", re.compile(r"^libsqlite3|^_sqlite3")),
    ("libc", re.compile(r"^libc\.so|^libm\.so|^ld-linux")),
    ("OpenSSL (TLS records, hashlib)", re.compile(r"^libcrypto|^libssl|^_ssl\.|^_hashlib")),
)
INTERPRETER = GROUPS[0][0]
_ROW = re.compile(r"^\s*([0-9.]+)%\s+(\S.*?)\s*$")


def dso_shares(report: str) -> dict[str, float]:
    """The ``perf report --sort dso --stdio`` text as {shared object: percent}. Comment and blank lines are
    skipped; any other line that is not ``<percent>% <name>`` is an error (a changed perf output format
    must not be read as zeros)."""
    shares: dict[str, float] = {}
    for line in report.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _ROW.match(line)
        if m is None:
            raise ValueError(f"perf report: unexpected line {line!r}")
        shares[m.group(2)] = shares.get(m.group(2), 0.0) + float(m.group(1))
    if not shares:
        raise ValueError("perf report: no samples")
    return shares


def grouped(shares: dict[str, float]) -> dict[str, float]:
    """Shares of :data:`GROUPS` (and ``other``) as fractions of all samples, largest first."""
    out: dict[str, float] = {}
    total = sum(shares.values())
    for dso, pct in shares.items():
        group = next((g for g, pat in GROUPS if pat.search(dso)), "other")
        out[group] = out.get(group, 0.0) + pct / total
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def bound_without_python(cpu_floor_ratio: float, groups: dict[str, float]) -> float:
    """The ratio had the interpreter's share cost nothing and everything else stayed as measured."""
    return cpu_floor_ratio * (1.0 - groups.get(INTERPRETER, 0.0))


def _node_pids() -> list[int]:
    """This process's children that are Traza nodes (``gateway.cli.main run``)."""
    me = os.getpid()
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == me and b"gateway.cli.main" in cmd and b"run" in cmd:
            pids.append(int(d.name))
    return sorted(pids)


class _Sampler:
    """Starts ``perf record`` on the nodes when the first message is sent, stops it when the last one is
    delivered at es (the benchmark's progress callback)."""

    def __init__(self, data: Path, freq: int) -> None:
        self.data, self.freq = data, freq
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []
        self.done = False

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase.startswith("sending") and self.proc is None and not self.done:
            self.pids = _node_pids()
            if len(self.pids) != 4:
                raise BenchError(f"expected the 4 node processes of the benchmark, found {self.pids}")
            self.proc = subprocess.Popen(
                ["perf", "record", "-q", "-F", str(self.freq), "-o", str(self.data), "-p", ",".join(map(str, self.pids))],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elif phase.startswith("delivered") and done >= total and self.proc is not None and not self.done:
            self.stop()

    def stop(self) -> None:
        self.done = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            _out, err = self.proc.communicate(timeout=60)
            if self.proc.returncode not in (0, -signal.SIGINT):
                raise BenchError(f"perf record exited {self.proc.returncode}: {err.decode(errors='replace').strip()}")


def measure(messages: int, size: int, freq: int) -> dict[str, Any]:
    if shutil.which("perf") is None:
        raise BenchError("perf is not installed (Debian: apt-get install linux-perf)")
    with tempfile.TemporaryDirectory(prefix="traza-perf-") as tmp:
        sampler = _Sampler(Path(tmp) / "perf.data", freq)
        try:
            res = run(messages, size, progress=sampler)
        finally:
            sampler.stop()
        if not (Path(tmp) / "perf.data").exists():
            raise BenchError("perf recorded nothing (did the benchmark send any message?)")
        rep = subprocess.run(["perf", "report", "-i", str(Path(tmp) / "perf.data"), "--sort", "dso", "--stdio"],
                             capture_output=True, text=True, timeout=120, check=True)
    groups = grouped(dso_shares(rep.stdout))
    return {"messages": messages, "size": size, "cpu_floor_ratio": res["cpu_floor_ratio"],
            "cpu_us_per_envelope": res["cpu_us_per_envelope"], "traza_eps": res["traza_eps"],
            "floor_eps_v1": res["floor_eps_v1"], "shares": {g: round(v, 4) for g, v in groups.items()},
            "ratio_if_python_were_free": round(bound_without_python(res["cpu_floor_ratio"], groups), 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=4000, help="messages of the benchmark (default 4000)")
    ap.add_argument("--size", type=int, default=1024, help="bytes per message (default 1024)")
    ap.add_argument("--freq", type=int, default=499, help="perf samples per second and thread (default 499)")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    a = ap.parse_args(argv)
    if a.messages < 1 or a.size < 1 or a.freq < 1:
        ap.error("--messages, --size and --freq must be positive")
    try:
        doc = measure(a.messages, a.size, a.freq)
    except (BenchError, subprocess.SubprocessError, ValueError) as exc:
        print(f"cpu_by_library: {exc}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(doc))
        return 0
    print(f"{'share of the nodes CPU (as fast as possible)':48} ")
    for g, v in doc["shares"].items():
        print(f"  {g:46} {100 * v:5.1f} %")
    print(f"cpu_floor_ratio {doc['cpu_floor_ratio']:.3f}; "
          f"if the interpreter cost nothing: {doc['ratio_if_python_were_free']:.3f} (target 1.2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
