"""`traza manifest` verbs."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("manifest", help="manifest verbs (being built)")

    def run(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=run)
