"""`traza demo` (SPEC §10): build a whole federation, run every node, play the story, report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gateway.failures import CheckFailed


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run a whole federation on this machine and play the exchanges Traza exists for")
    p.add_argument("--once", action="store_true", help="stop all nodes after the scenario instead of waiting for Ctrl-C")
    p.add_argument("--dir", type=Path, metavar="DIR",
                   help="build the federation in DIR (new or empty) and keep it after Ctrl-C, with "
                        "DIR/evidence/<id>.json; without it a temporary folder is used and deleted at the end")
    p.add_argument("--no-story", action="store_true",
                   help="start the federation without playing the story; no national system is played, so what "
                        "you send waits in the recipient's inbox (traza inbox list|show|ack)")
    p.add_argument("--json", action="store_true", help="end with one JSON summary on stdout (human output to stderr)")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from gateway.core.errors import TrazaError
    from gateway.demo.run import DemoError, run_demo

    try:
        result = run_demo(directory=args.dir, once=args.once, as_json=args.json, story=not args.no_story)
    except (DemoError, TrazaError, TimeoutError, RuntimeError) as exc:
        raise CheckFailed(f"demo: {exc}") from None
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    return 0
