"""`traza schema` verbs: export the JSON Schema of every message type, check a body against one."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from gateway.core.errors import TrazaError
from gateway.core.messages import MESSAGE_TYPES, SCHEMA_VERSION, decode_body, json_schemas
from gateway.failures import CheckFailed, UsageError


def schema_file_name(mt: str) -> str:
    return f"{mt}.schema.json"


def export(directory: Path) -> list[Path]:
    """Write ``<mt>.schema.json`` for every message type into ``directory`` (created if missing).

    Each file is written to a temporary name and renamed, so a reader never sees half a schema.
    Raises ``UsageError`` if ``directory`` exists and is not a directory.
    """
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"schema export: {directory} exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckFailed(
            f"schema export: cannot create directory {directory}: {exc.strerror or exc}"
        ) from None
    written: list[Path] = []
    for mt, schema in json_schemas().items():
        path = directory / schema_file_name(mt)
        tmp = path.with_name(path.name + ".tmp")
        data = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
        try:
            tmp.write_text(data, encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            raise CheckFailed(f"schema export: cannot write {path}: {exc.strerror or exc}") from None
        written.append(path)
    return written


def _run_export(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    for path in export(directory):
        print(f"wrote {path}")
    print(f"{len(MESSAGE_TYPES)} message types, schema version {SCHEMA_VERSION}, in {directory}")
    return 0


def _run_check(args: argparse.Namespace) -> int:
    if args.type not in MESSAGE_TYPES:
        raise UsageError(
            f"schema check: unknown message type {args.type!r} (known: {', '.join(MESSAGE_TYPES)})"
        )
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise UsageError(f"schema check: cannot read {args.file}: {exc.strerror or exc}") from None
    try:
        decode_body(args.type, data, admit=True)  # the way a recipient accepts it (admission rules too)
    except TrazaError as exc:
        raise CheckFailed(f"{args.file}: {args.type}: {exc.code.value}: {exc.detail}") from None
    if args.json:
        print(json.dumps({"file": args.file, "type": args.type, "valid": True, "schema_version": SCHEMA_VERSION}))
    else:
        print(f"{args.file}: valid {args.type} (schema version {SCHEMA_VERSION})")
    return 0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "schema",
        help="JSON Schemas of the message types",
        description="JSON Schemas of the message bodies (SPEC §5), generated from the code.",
    )
    verbs = p.add_subparsers(dest="schema_verb", metavar="VERB")

    ex = verbs.add_parser(
        "export",
        help="write one <type>.schema.json per message type into DIR",
        description="Write the JSON Schema (draft 2020-12) of every message type, one file "
        "<type>.schema.json each, into DIR (created if missing; existing files are replaced).",
    )
    ex.add_argument("dir", metavar="DIR", help="output directory")
    ex.set_defaults(func=_run_export)

    ck = verbs.add_parser(
        "check",
        help="validate a message body (JSON file) against its type",
        description="Validate one message body exactly as a recipient node does; exit 1 naming the JSON "
        "path of the first fault.",
    )
    ck.add_argument("type", metavar="TYPE", help=f"message type, one of: {', '.join(MESSAGE_TYPES)}")
    ck.add_argument("file", metavar="FILE", help="the body as UTF-8 JSON ('-' for standard input)")
    ck.add_argument("--json", action="store_true",
                    help='print {"file", "type", "valid", "schema_version"} (a failed check: one line on stderr, exit 1)')
    ck.set_defaults(func=_run_check)

    def run(args: argparse.Namespace) -> int:
        p.print_help(sys.stderr)
        return 2

    p.set_defaults(func=run)
