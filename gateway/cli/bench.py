"""`traza bench` (SPEC §11): real nodes vs a null relay vs the crypto floor, on this machine."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gateway.cli.main import CheckFailed


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="throughput, latency, CPU and memory of a 4-node route vs a null relay "
                                     "and the crypto floor")
    p.add_argument("--messages", type=int, default=2000, help="messages to send mx → es (default 2000)")
    p.add_argument("--size", type=int, default=1024, help="bytes per message (a padded notice; default 1024)")
    p.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds (default 600)")
    p.add_argument("--json", action="store_true", help="print one JSON object (SPEC §11 keys)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from gateway.benchmark import BenchError, run

    try:
        res = run(args.messages, args.size, timeout=args.timeout)
    except (BenchError, RuntimeError, TimeoutError) as exc:
        raise CheckFailed(f"bench: {exc}") from None
    if args.json:
        print(json.dumps(res))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"traza bench: {res['messages']} messages of {res['size']} bytes, mx → latam-hub → eu-hub → es")
    t.add_column("measure")
    t.add_column("value", justify="right")
    rows = [("null relay (envelopes/s)", res["null_relay_eps"]), ("Traza (envelopes/s)", res["traza_eps"]),
            ("Traza / null relay", res["ratio"]), ("crypto floor (envelopes/s)", res["floor_eps"]),
            ("Traza / crypto floor", res["floor_ratio"]), ("latency p50 (ms)", res["p50_ms"]),
            ("latency p99 (ms)", res["p99_ms"]), ("CPU per envelope (µs, all nodes)", res["cpu_us_per_envelope"]),
            ("peak RSS of a node (MiB)", res["peak_rss_mib"])]
    for k, v in rows:
        t.add_row(k, str(v))
    Console().print(t)
    return 0
