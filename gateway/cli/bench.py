"""`traza bench` (SPEC §11): real nodes vs a null relay vs the crypto floor, on this machine."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.failures import CheckFailed, UsageError

if TYPE_CHECKING:  # gateway.benchmark loads aiohttp: not at every `traza` start
    from gateway.benchmark import Progress as BenchProgress


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="throughput, latency, CPU and memory of a 4-node route vs a null relay "
                                     "and the crypto floor; with --nodes N, of a federation of N nodes")
    p.add_argument("--nodes", type=int, default=None,
                   help="build a federation of N real nodes (two hubs, N-2 national and service nodes) and send "
                        "--messages between random pairs, each receipted, then idle a minute (docs/scale.md)")
    p.add_argument("--messages", type=int, default=2000,
                   help="messages to send (default 2000): mx → es, or with --nodes between random pairs")
    p.add_argument("--size", type=int, default=1024, help="bytes per message (a padded notice; default 1024)")
    p.add_argument("--timeout", type=float, default=None,
                   help="give up after this many seconds (default 600; with --nodes 3600)")
    p.add_argument("--rate", type=float, default=None,
                   help="messages per second offered open loop in the steady-rate phase (default: half the maximum "
                        "just measured with receipts on: round_trip_eps / 2); with --nodes: the pace of the whole run (default 0: as fast as 16 "
                        "submissions in flight go)")
    p.add_argument("--idle", type=float, default=60.0,
                   help="with --nodes: seconds of quiet after the messages, over which manifest polls and witness "
                        "freshness are measured (default 60)")
    p.add_argument("--manifest-poll", type=float, default=30.0,
                   help="with --nodes: every node's manifest_poll_seconds (default 30, a node's own default); the "
                        "idle window waits for every node's first poll and should hold at least one more")
    p.add_argument("--seed", type=int, default=1, help="with --nodes: seed of the random pairs (default 1)")
    p.add_argument("--dir", type=Path, default=None,
                   help="with --nodes: build the federation in DIR and keep it (configs, databases, logs)")
    p.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                   help="every node's store: SQLite (default) or a database of its own on a throw-away PostgreSQL 15 "
                        "server (docs/ha.md)")
    p.add_argument("--replicas", type=int, choices=(1, 2), default=1,
                   help="latam-hub's replicas sharing its database (2 needs --store postgresql)")
    p.add_argument("--v1", action="store_true",
                   help="run the four nodes as version-1 nodes: no batch signatures (protocol 1.1 is the default)")
    p.add_argument("--json", action="store_true", help="print one JSON object (SPEC §11 keys)")
    p.add_argument("--no-progress", action="store_true", help="no progress display (shown only on a terminal)")
    p.set_defaults(func=cmd_bench)


@contextlib.contextmanager
def progress_display(show: bool) -> Iterator[BenchProgress | None]:
    """A progress display on stderr, one line per phase, cleared at the end; None when not ``show``."""
    if not show:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from gateway.cli.output import console

    tasks: dict[str, Any] = {}
    with Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console(stderr=True), transient=True) as bar:
        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update


def line_progress() -> BenchProgress:
    """Progress on a pipe (`traza bench --nodes`): one line on stderr as each phase begins and ends."""
    seen: set[str] = set()

    def show(phase: str, done: int, total: int) -> None:
        key = f"{phase}:{'end' if done >= total else 'start'}"
        if key not in seen:
            seen.add(key)
            print(f"{time.strftime('%H:%M:%S')} {phase}: {done}/{total}", file=sys.stderr, flush=True)
    return show


def cmd_bench(args: argparse.Namespace) -> int:
    if args.nodes is not None:
        return cmd_scale(args)
    from gateway.benchmark import BenchError, BenchUsage, check_args, run

    try:
        check_args(args.messages, args.size, args.store, args.replicas, args.rate)
    except BenchUsage as exc:
        raise UsageError(f"bench: {exc}") from None
    try:
        with progress_display(sys.stdout.isatty() and not args.no_progress) as progress:
            res = run(args.messages, args.size, timeout=args.timeout or 600.0, progress=progress, store=args.store,
                      replicas=args.replicas, rate=args.rate, batch=not args.v1)
    except (BenchError, RuntimeError, TimeoutError) as exc:
        raise CheckFailed(f"bench: {exc}") from None
    if args.json:
        print(json.dumps(res))
        return 0
    from rich.table import Table

    from gateway.cli.output import console

    hub = "latam-hub" if args.replicas == 1 else f"latam-hub ×{args.replicas}"
    t = Table(title=f"traza bench: {res['messages']} messages of {res['size']} bytes, mx → {hub} → eu-hub → es "
                    f"({args.store})")
    t.add_column("measure")
    t.add_column("value", justify="right")
    rows: list[tuple[str, Any]] = [("null relay (envelopes/s)", res["null_relay_eps"]), ("Traza (envelopes/s)", res["traza_eps"]),
            ("Traza / null relay", res["ratio"]), ("crypto floor (envelopes/s)", res["floor_eps"]),
            ("Traza / crypto floor", res["floor_ratio"]), ("latency p50 (ms)", res["p50_ms"]),
            ("latency p99 (ms)", res["p99_ms"]), ("CPU per envelope (µs, all nodes)", res["cpu_us_per_envelope"]),
            ("peak RSS of a node (MiB)", res["peak_rss_mib"]),
            ("round trips: message and receipt (messages/s)", res["round_trip_eps"]),
            ("crypto floor, per-envelope protocol (envelopes/s)", res["floor_eps_v1"]),
            ("CPU per message / the floor's", res["cpu_floor_ratio"]),
            ("steady rate offered (messages/s)", res["rate"]),
            ("latency p50 / p99 at that rate (ms)", f"{res['p50_ms_at_rate']} / {res['p99_ms_at_rate']}")]
    rows += [(f"  hop {h} p50 / p99 (ms)", f"{res['hop_p50_ms_at_rate'][h]} / {res['hop_p99_ms_at_rate'][h]}")
             for h in res["hop_p99_ms_at_rate"]]
    for k, v in rows:
        t.add_row(k, str(v))
    console().print(t)
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    if args.rate is None:
        args.rate = 0.0
    from gateway.benchmark import BenchError, BenchUsage
    from gateway.config import MANIFEST_POLL_MAX, MANIFEST_POLL_MIN
    from gateway.scalebench import KEYS, check_args, run

    try:
        check_args(args.nodes, args.messages)
        if args.store != "sqlite" or args.replicas != 1:
            raise BenchUsage("--store and --replicas are for the four-node bench (without --nodes)")
        if args.size < 1 or args.rate < 0 or args.idle <= 0:
            raise BenchUsage(f"--size {args.size}, --rate {args.rate:g}, --idle {args.idle:g}: --size and --idle "
                             "must be positive, --rate at least 0")
        if not MANIFEST_POLL_MIN <= args.manifest_poll <= MANIFEST_POLL_MAX:
            raise BenchUsage(f"--manifest-poll {args.manifest_poll:g}: from {MANIFEST_POLL_MIN:g} to "
                             f"{MANIFEST_POLL_MAX:g} seconds, as [trust] manifest_poll_seconds")
    except BenchUsage as exc:
        raise UsageError(f"bench: {exc}") from None
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        if any(args.dir.iterdir()):
            raise UsageError(f"bench: --dir {args.dir} is not empty")
    details: dict[str, Any] = {}
    try:
        with progress_display(sys.stderr.isatty() and not args.no_progress) as bar:
            progress = bar if bar is not None else (None if args.no_progress else line_progress())
            res = run(args.nodes, args.messages, size=args.size, rate=args.rate, idle=args.idle, seed=args.seed,
                      manifest_poll=args.manifest_poll, timeout=args.timeout or 3600.0, workdir=args.dir,
                      progress=progress, details=details)
    except (BenchError, RuntimeError, TimeoutError) as exc:
        raise CheckFailed(f"bench: {exc}") from None
    if not args.no_progress:
        print(f"details: {json.dumps(details)}", file=sys.stderr)
    if args.json:
        print(json.dumps(res))
        return 0
    from rich.table import Table

    from gateway.cli.output import console

    t = Table(title=f"traza bench: {res['nodes']} nodes, {res['messages']} messages of {args.size} bytes with receipts")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for k in KEYS:
        t.add_row(k, str(res[k]))
    console().print(t)
    return 0
