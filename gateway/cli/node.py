"""`traza run`, `traza send`, `traza status`, `traza peers`, `traza queue` (SPEC §10)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from adapters.standard import MEDIA_TYPE as STANDARD_CT
from gateway.cli.client import local_request, problem_text, upload_attachments
from gateway.cli.main import CheckFailed, UsageError
from gateway.config import Config, ConfigError, load_config
from gateway.core.printable import printable


def _cfg(args: argparse.Namespace) -> Config:
    try:
        return load_config(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def cmd_run(args: argparse.Namespace) -> int:
    from gateway import logging as tlog
    from gateway.node import NodeError, StoreDamaged, run_node
    from gateway.ops import install

    cfg = _cfg(args)
    reason = args.accept_damaged_store
    if reason is not None and not reason.strip():
        raise UsageError("--accept-damaged-store needs a reason (it is recorded in the audit log)")
    tlog.configure(cfg.log.format, cfg.log.level)
    try:
        return asyncio.run(run_node(cfg, setup=install, accept_damaged_store=reason))
    except StoreDamaged as exc:  # the operator must decide: exit 2 (docs/reliability.md)
        raise UsageError(str(exc)) from None
    except NodeError as exc:
        # a node that cannot be this node (files, keys, certificates, data_dir in use): bad usage, exit 2
        raise UsageError(str(exc)) from None
    except Exception:  # logged as one record (a JSON line in production), not a bare traceback
        tlog.get_logger().critical("node.crashed", exc_info=True)
        return 1


def _media_type_of(path: Path) -> str:
    import mimetypes

    if path.suffix.lower() == ".x3p":
        from adapters.x3p import X3P_MEDIA_TYPE

        return X3P_MEDIA_TYPE
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def x3p_message(path: Path, sidecar: str | Path | None = None, *, to: str | None = None, mt: str | None = None,
                handling: str = "H0", classification: str = "BASIC_PROTECTION_LEVEL",
                purpose: str = "INVESTIGATION") -> tuple[dict[str, Any], list[tuple[Path, str]], list[str]]:
    """An X3P file (and its sidecar: ``sidecar`` or the ``.json`` beside it) read with the x3p adapter:
    the standard form (``body.topography`` filled from the file; ``to`` wins over the sidecar's, the other
    options fill what it leaves out), the files to attach as (path, media type), and the adapter's warnings.
    Raises UsageError / CheckFailed naming the file and the fault."""
    from adapters.base import AdapterError
    from adapters.x3p import MT, X3pAdapter, sidecar_path

    if mt and mt != MT:
        raise UsageError(f"{path}: an X3P file is sent as {MT}, not {mt}")
    defaults: dict[str, Any] = {"handling": handling, "classification": classification, "purpose": purpose}
    if to:
        defaults["to"] = to
    try:
        tr = X3pAdapter(defaults=defaults).translate_file(path, sidecar)
    except AdapterError as exc:
        hint = "" if sidecar or sidecar_path(path).exists() else \
            f" (the submission fields come from --sidecar FILE or {sidecar_path(path).name} beside the file)"
        raise CheckFailed(f"{path}: {exc}{hint}") from None
    msg: dict[str, Any] = {"type": tr.mt, **tr.envelope(), "body": tr.body}
    if to:
        msg["to"] = to
    if not msg.get("to"):
        raise UsageError(f"{path}: --to is required (or `to` in the sidecar)")
    return msg, [(Path(a.path or path), a.media_type) for a in tr.attachments], list(tr.warnings)


def _x3p_form(args: argparse.Namespace, path: Path) -> tuple[dict[str, Any], list[tuple[Path, str]]]:
    """`traza send FILE.x3p`: :func:`x3p_message` with the command's options; warnings go to stderr."""
    msg, files, warnings = x3p_message(path, args.sidecar, to=args.to, mt=args.type, handling=args.handling,
                                       classification=args.classification, purpose=args.purpose)
    for w in warnings:
        print(f"warning: {printable(str(w))}", file=sys.stderr)
    return msg, files


def cmd_send(args: argparse.Namespace) -> int:
    cfg = _cfg(args)
    path = Path(args.body)
    attach = [Path(a) for a in args.attach or []]
    files: list[tuple[Path, str]] = []
    msg: dict[str, Any] | None = None
    if path.suffix.lower() == ".x3p" and not args.content_type:
        msg, files = _x3p_form(args, path)
        data = b""
    else:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror}") from None
    if args.content_type:
        if attach:
            raise UsageError("--attach needs the standard form (leave out --content-type)")
        ct, payload = args.content_type, data
    else:
        if msg is None:
            if not args.to or not args.type:
                raise UsageError("--to and --type are required unless --content-type names a national format")
            try:
                body = json.loads(data)
            except ValueError as exc:
                raise UsageError(f"{path}: not JSON: {exc}") from None
            msg = {"type": args.type, "to": args.to, "handling": args.handling,
                   "classification": args.classification, "purpose": args.purpose, "body": body}
        if args.reply_to:
            msg["reply_to"] = args.reply_to
        if args.ttl:
            msg["ttl_seconds"] = args.ttl
        files += [(a, _media_type_of(a)) for a in attach]
        if files:
            msg["attachments"] = upload_attachments(cfg, files, show=not args.no_progress)
        ct, payload = STANDARD_CT, json.dumps(msg).encode()
    status, doc = local_request(cfg, "system", "POST", "/local/v1/messages", payload, ct)
    if status != 201:
        raise CheckFailed(f"{path}: refused: {problem_text(status, doc)}")
    print(json.dumps(doc) if args.json else f"submitted {doc['id']} (status: {doc['status_url']})")
    return 0


def _print(doc: Any, as_json: bool) -> None:
    if as_json or not isinstance(doc, (dict, list)):
        print(json.dumps(doc, indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    rows = doc if isinstance(doc, list) else next((v for v in doc.values() if isinstance(v, list)), None)
    if rows and isinstance(rows[0], dict):
        t = Table()
        for k in rows[0]:
            t.add_column(Text(printable(str(k))))
        for r in rows:  # a peer's words as plain text: no control characters, no rich markup
            t.add_row(*(Text(printable(str(r.get(k, "")))) for k in rows[0]))
        Console().print(t)
    else:
        print(json.dumps(doc, indent=2))


def _view(args: argparse.Namespace, what: str) -> int:
    cfg = _cfg(args)
    status, doc = local_request(cfg, "operator", "GET", f"/ops/v1/{what}")
    if status != 200:
        raise CheckFailed(problem_text(status, doc))
    _print(doc, args.json)
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _view(args, "dead-letters" if args.dead else "overdue" if args.overdue else "queues")
    if args.id is None:
        what = "a message id" if args.action == "resend" else "a dead-letter id"
        raise UsageError(f"queue {args.action} needs {what}")
    if args.action == "resend":
        path = f"/ops/v1/messages/{args.id}/resend"
    else:
        try:
            path = f"/ops/v1/dead-letters/{int(args.id)}/{args.action}"
        except ValueError:
            raise UsageError(f"queue {args.action}: dead-letter id {args.id!r} is not an integer") from None
    cfg = _cfg(args)
    status, doc = local_request(cfg, "operator", "POST", path, b"")
    if status != 200:
        raise CheckFailed(problem_text(status, doc))
    _print(doc, True)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run one node", description="Run one Traza node until SIGINT/SIGTERM.")
    p.add_argument("--config", required=True, help="node TOML config file")
    p.add_argument("--accept-damaged-store", metavar="REASON",
                   help="start even though the start-up check found the store damaged; REASON and what was "
                        "found are recorded as a store.check_failed audit entry (docs/reliability.md)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("send", help="submit a message through the local API",
                       description="Submit a message to this node's local API as a national system.")
    p.add_argument("--config", required=True)
    p.add_argument("--to", help="recipient node id")
    p.add_argument("--type", help="message type, e.g. trace.request")
    p.add_argument("--handling", default="H0", choices=["H0", "H1", "H2", "H3"])
    p.add_argument("--classification", default="BASIC_PROTECTION_LEVEL")
    p.add_argument("--purpose", default="INVESTIGATION")
    p.add_argument("--reply-to", help="message id this replies to")
    p.add_argument("--ttl", type=int, help="time to live in seconds")
    p.add_argument("--content-type", help="send BODY as-is in this national format instead of the standard form")
    p.add_argument("--attach", action="append", metavar="FILE",
                   help="upload FILE first and send it as a blob with the message (repeatable)")
    p.add_argument("--sidecar", metavar="FILE.json",
                   help="for an X3P file: the submission fields (default: the .json beside the .x3p file)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while attachments upload")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("body", metavar="BODY.json|FILE.x3p",
                   help="the message body (JSON), or an X3P file sent as ballistic.submission with the file attached")
    p.set_defaults(func=cmd_send)

    for verb, what in (("status", "status"), ("peers", "peers")):
        p = sub.add_parser(verb, help=f"operator view: {what}")
        p.add_argument("--config", required=True)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=lambda a, w=what: _view(a, w))

    p = sub.add_parser("queue", help="operator: outbox queues and dead letters")
    p.add_argument("action", choices=["list", "retry", "discard", "resend"])
    p.add_argument("id", nargs="?", help="dead-letter id (retry, discard) or message id (resend)")
    p.add_argument("--dead", action="store_true", help="list dead letters instead of queues")
    p.add_argument("--overdue", action="store_true",
                   help="list messages forwarded without a receipt after limits.receipt_overdue")
    p.add_argument("--config", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_queue)


