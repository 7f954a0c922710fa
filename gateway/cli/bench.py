"""`traza bench` (SPEC §11): real nodes vs a null relay vs the crypto floor, on this machine."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from gateway.failures import CheckFailed

if TYPE_CHECKING:  # gateway.benchmark loads aiohttp: not at every `traza` start
    from gateway.benchmark import Progress as BenchProgress


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="throughput, latency, CPU and memory of a 4-node route vs a null relay "
                                     "and the crypto floor")
    p.add_argument("--messages", type=int, default=2000, help="messages to send mx → es (default 2000)")
    p.add_argument("--size", type=int, default=1024, help="bytes per message (a padded notice; default 1024)")
    p.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds (default 600)")
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


def cmd_bench(args: argparse.Namespace) -> int:
    from gateway.benchmark import BenchError, run

    try:
        with progress_display(sys.stdout.isatty() and not args.no_progress) as progress:
            res = run(args.messages, args.size, timeout=args.timeout, progress=progress)
    except (BenchError, RuntimeError, TimeoutError) as exc:
        raise CheckFailed(f"bench: {exc}") from None
    if args.json:
        print(json.dumps(res))
        return 0
    from rich.table import Table

    from gateway.cli.output import console

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
    console().print(t)
    return 0
