"""Audit log benchmark (not a test): group-commit appends per second, verifying a large log, and one
inclusion proof on a large log.

    .venv/bin/python bench/audit_bench.py                 # 1,000,000 entries (several minutes of setup)
    .venv/bin/python bench/audit_bench.py --entries 100000 --json

Goals on the project's 2-core machine: >= 20,000 appends/s, verify 1,000,000 entries <= 30 s, one
inclusion proof at 1,000,000 entries <= 1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog

from gateway.audit.checkpoints import Publisher
from gateway.audit.log import AuditAppender
from gateway.audit.reader import AuditReader
from gateway.audit.verify import CheckpointRecord, verify_log
from gateway.core.b64 import b64url_encode
from gateway.core.note import origin_for
from gateway.crypto.keys import Ed25519Key


def event(i: int) -> dict[str, object]:
    jti = f"0197a6f0-{i >> 16 & 0xFFFF:04x}-7000-8000-{i:012x}"
    return {
        "event": "envelope.accepted",
        "jti": jti,
        "mt": "trace.request",
        "iss": "mx",
        "aud": "es",
        "from": "eu-hub",
        "to": "es",
        "dig": b64url_encode(hashlib.sha256(jti.encode()).digest()),
    }


async def bench_appends(path: Path, total: int, producers: int) -> dict[str, float]:
    """``producers`` tasks, each awaiting its append before the next (like request handlers)."""
    app = AuditAppender(path, "es")
    per = total // producers

    async def producer(p: int) -> None:
        for k in range(per):
            await app.append(event(p * per + k))

    t0 = time.perf_counter()
    await asyncio.gather(*(producer(p) for p in range(producers)))
    dt = time.perf_counter() - t0
    commits, n = app.commits, app.appended
    await app.aclose()
    return {
        "appends": n,
        "seconds": dt,
        "appends_per_s": n / dt,
        "commits": commits,
        "per_commit": n / commits,
    }


def build_log(path: Path, entries: int, every: int, key: Ed25519Key) -> tuple[float, int]:
    app = AuditAppender(path, "es")
    pub = Publisher(path, origin=origin_for("bench", "es"), key=key)
    t0 = time.perf_counter()
    done = 0
    while done < entries:
        n = min(every, entries - done)
        app.append_sync([event(done + k) for k in range(n)])
        done += n
        pub.publish()
    dt = time.perf_counter() - t0
    app.close()
    pub.close()
    return dt, done


def bench_verify(path: Path) -> dict[str, float]:
    with AuditReader(path) as reader:
        records = [
            CheckpointRecord(cp.served(), cp.public_key, {n: k for n, k, _ in cp.cosignatures})
            for cp in reader.checkpoints()
        ]
        t0 = time.perf_counter()
        report = verify_log(
            reader.iter_entries(),
            records,
            node=reader.node,
            origin=reader.origin,
            consistency=reader.consistency_proof,
        )
        dt = time.perf_counter() - t0
    return {"entries": report.size, "checkpoints": report.checkpoints, "seconds": dt}


def bench_proofs(path: Path, samples: int) -> dict[str, float]:
    with AuditReader(path) as reader:
        size = reader.size()
        rng = random.Random(7)
        idxs = [rng.randrange(size) for _ in range(samples)]
        reader.inclusion_proof(idxs[0], size)  # warm the statement cache
        times = []
        for i in idxs:
            t0 = time.perf_counter()
            reader.inclusion_proof(i, size)
            times.append(time.perf_counter() - t0)
    times.sort()
    return {
        "size": size,
        "median_ms": statistics.median(times) * 1000,
        "p99_ms": times[int(len(times) * 0.99)] * 1000,
        "mean_ms": statistics.fmean(times) * 1000,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=1_000_000, help="size of the log to verify and prove in")
    ap.add_argument("--appends", type=int, default=100_000, help="appends for the group-commit run")
    ap.add_argument("--producers", type=int, default=512, help="concurrent appenders")
    ap.add_argument("--checkpoint-every", type=int, default=5000, help="entries between checkpoints")
    ap.add_argument("--dir", type=Path, help="work folder (default: a temporary one)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        appends = asyncio.run(bench_appends(d / "appends.db", args.appends, args.producers))
        if not args.json:
            print(
                f"group commit: {appends['appends_per_s']:,.0f} appends/s "
                f"({appends['appends']:,} appends by {args.producers} tasks, {appends['commits']:,} commits, "
                f"{appends['per_commit']:.0f} per commit)",
                flush=True,
            )
        build_s, n = build_log(d / "big.db", args.entries, args.checkpoint_every, Ed25519Key.generate())
        if not args.json:
            print(
                f"built a {n:,}-entry log in {build_s:.1f} s ({n / build_s:,.0f} entries/s in batches)",
                flush=True,
            )
        verify = bench_verify(d / "big.db")
        if not args.json:
            print(
                f"verify: {verify['entries']:,} entries and {verify['checkpoints']:,} checkpoints in "
                f"{verify['seconds']:.1f} s",
                flush=True,
            )
        proofs = bench_proofs(d / "big.db", 2000)
        if not args.json:
            print(
                f"inclusion proof at {proofs['size']:,} entries: median {proofs['median_ms']:.3f} ms, "
                f"p99 {proofs['p99_ms']:.3f} ms",
                flush=True,
            )
        db_mib = (d / "big.db").stat().st_size / 2**20
        if args.json:
            print(
                json.dumps(
                    {
                        "appends": appends,
                        "build_seconds": build_s,
                        "verify": verify,
                        "proof": proofs,
                        "db_mib": db_mib,
                    }
                )
            )
        else:
            print(f"database size: {db_mib:,.0f} MiB for {n:,} entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
