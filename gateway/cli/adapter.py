"""`traza adapter` verbs (SPEC §10): check national files offline.

``traza adapter check NAME FILE`` translates FILE with adapter NAME and prints the standard message
(JSON, SPEC §6 form) on stdout, warnings and attachments on stderr; exit 1 naming the national field at
fault. ``--reverse`` reads a standard message (or, with ``--type``, a bare body) and prints the national
form. ``traza adapter list`` shows the adapters and the media types they read and write.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from adapters import ADAPTERS, AdapterError, UnknownAdapter, get_adapter
from adapters.base import Adapter, Translation, media_type
from adapters.standard import from_form, load_json_object
from adapters.x3p import X3P_MEDIA_TYPE, X3pAdapter
from gateway.core.messages import MESSAGE_TYPES
from gateway.core.printable import json_safe, printable
from gateway.failures import CheckFailed, UsageError


def _adapter(name: str) -> Adapter:
    try:
        return get_adapter(name)
    except UnknownAdapter as exc:
        raise UsageError(f"adapter check: {exc}") from None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"adapter check: cannot read {path}: {exc.strerror or exc}") from None


def _forward(adapter: Adapter, path: Path, args: argparse.Namespace) -> Translation:
    ct = args.content_type or adapter.content_types[0]
    if isinstance(adapter, X3pAdapter) and media_type(ct) == X3P_MEDIA_TYPE:
        if not path.is_file():
            raise UsageError(f"adapter check: cannot read {path}: no such file")
        return adapter.translate_file(path, args.sidecar)
    if args.sidecar is not None:
        raise UsageError("adapter check: --sidecar is only for the x3p adapter")
    return adapter.to_standard(_read(path), ct)


def _reverse(adapter: Adapter, path: Path, args: argparse.Namespace) -> bytes:
    doc = load_json_object(_read(path))
    if "type" not in doc and "body" not in doc:
        if args.type is None:
            raise AdapterError(
                "type", "missing: FILE is not a standard message (give --type MT for a bare body)"
            )
        mt, body, meta = args.type, doc, {}
    else:
        t = from_form(doc)
        if args.type is not None and args.type != t.mt:
            raise AdapterError("type", f"the message is {t.mt}, not {args.type}")
        mt, body, meta = t.mt, t.body, t.meta()
    return adapter.from_standard(mt, body, meta)


def _run_check(args: argparse.Namespace) -> int:
    adapter = _adapter(args.name)
    if args.type is not None and args.type not in MESSAGE_TYPES:
        raise UsageError(
            f"adapter check: unknown message type {args.type!r} (known: {', '.join(MESSAGE_TYPES)})"
        )
    path = Path(args.file)
    try:
        if args.reverse:
            out = _reverse(adapter, path, args)
            sys.stdout.buffer.write(out)
            sys.stdout.flush()
            return 0
        t = _forward(adapter, path, args)
        if args.type is not None and t.mt != args.type:
            raise AdapterError("type", f"the file holds a {t.mt}, not a {args.type}")
    except AdapterError as exc:
        raise CheckFailed(f"{path}: {exc}") from None
    print(json_safe(json.dumps(t.standard_form(), ensure_ascii=False, indent=2)))
    for w in t.warnings:
        print(f"warning: {printable(str(w))}", file=sys.stderr)
    for a in t.attachments:
        print(printable(f"attachment: {a.name} ({a.media_type}, {a.length} bytes, sha256 {a.sha256})"), file=sys.stderr)
    return 0


def _run_list(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = [
        {"name": a.name, "reads": list(a.content_types), "writes": a.output_content_type}
        for a in ADAPTERS.values()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['name']:<9} reads {', '.join(r['reads'])}; writes {r['writes']}")
    return 0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "adapter",
        help="check national files against an adapter",
        description="Translate national files with a node adapter, offline (SPEC §8, §10).",
    )
    verbs = p.add_subparsers(dest="adapter_verb", metavar="VERB", required=True)

    c = verbs.add_parser(
        "check",
        help="translate a national file and print the standard message (or, with --reverse, the national form)",
        description=(
            "Translate FILE with adapter NAME and print the standard message as JSON on stdout; warnings go "
            "to stderr. Exit 1 naming the national field at fault, 2 for an unknown adapter. With --reverse, "
            "FILE is a standard message (application/vnd.traza.message+json) and the national form is printed. "
            "For the x3p adapter FILE is an .x3p file and its submission fields come from the sidecar "
            "<name>.json beside it (or --sidecar)."
        ),
    )
    c.add_argument("name", metavar="NAME", help=f"adapter name ({', '.join(ADAPTERS)})")
    c.add_argument("file", metavar="FILE", help="the national file (or, with --reverse, a standard message)")
    c.add_argument("--reverse", action="store_true", help="standard message -> national form")
    c.add_argument(
        "--type",
        metavar="MT",
        help="expected message type; with --reverse, FILE may then be a bare body of this type",
    )
    c.add_argument("--content-type", metavar="CT", help="media type of FILE (default: the adapter's first)")
    c.add_argument("--sidecar", metavar="PATH", help="x3p only: the sidecar JSON (default: FILE with .json)")
    c.set_defaults(func=_run_check)

    lst = verbs.add_parser("list", help="list the adapters and the media types they read and write")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=_run_list)
