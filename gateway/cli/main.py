"""The ``traza`` command. Each verb group lives in its own module with ``register(subparsers)``.

Exit status: 0 success, 1 a failed check, 2 bad usage (SPEC §10).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gateway.core.printable import printable
from gateway.failures import CheckFailed, UsageError

# Modules under gateway.cli that each add one verb (group) to the parser.
VERB_MODULES: tuple[str, ...] = (
    "pki",
    "manifest",
    "schema",
    "audit",
    "adapter",
    "node",
    "messages",
    "demo",
    "bench",
    "store",
    "retention",
)




def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="traza",
        description="Traza: a gateway for trusted firearms-trace, lost/stolen, ballistic and licence messages.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name in VERB_MODULES:
        mod = importlib.import_module(f"gateway.cli.{name}")
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except CheckFailed as exc:  # may quote a node's or a peer's words: control characters removed
        print(f"traza: {printable(str(exc), newlines=True)}", file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"traza: {printable(str(exc), newlines=True)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    # `python -m gateway.cli.main` runs this file as __main__; the verbs raise gateway.cli.main's
    # CheckFailed/UsageError, so call main() of that module for its except clauses to match them
    from gateway.cli.main import main as _main

    sys.exit(_main())
