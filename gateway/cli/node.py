"""`traza run`, `traza send`, `traza status`, `traza peers`, `traza queue` (SPEC §10)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from adapters.standard import MEDIA_TYPE as STANDARD_CT
from gateway.cli.output import console, dict_table, fields, print_json, rows_of, styled, table
from gateway.core import strictjson
from gateway.core.printable import printable
from gateway.failures import CheckFailed, UsageError
from gateway.national import client
from gateway.national.x3p import x3p_message


def cmd_run(args: argparse.Namespace) -> int:
    from gateway import logging as tlog
    from gateway.node import NodeError, StoreDamaged, run_node
    from gateway.ops import install

    cfg = client.node_config(args.config)
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


def _x3p_form(args: argparse.Namespace, path: Path) -> tuple[dict[str, Any], list[tuple[Path, str]]]:
    """`traza send FILE.x3p`: :func:`x3p_message` with the command's options; warnings go to stderr."""
    msg, files, warnings = x3p_message(path, args.sidecar, to=args.to, mt=args.type, handling=args.handling,
                                       classification=args.classification, purpose=args.purpose)
    for w in warnings:
        print(f"warning: {printable(str(w))}", file=sys.stderr)
    return msg, files


def cmd_send(args: argparse.Namespace) -> int:
    cfg = client.node_config(args.config)
    path = Path(args.body)
    attach = [Path(a) for a in args.attach or []]
    files: list[tuple[Path, str]] = []
    msg: dict[str, Any] | None = None
    raw_body: bytes | None = None  # BODY.json as read, when the message's body is that file
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
            try:  # strict JSON (SPEC §3.4), checked here; the file's bytes go out as they are
                strictjson.object_of(data, str(path))
            except strictjson.StrictJSONError as exc:
                raise UsageError(exc.detail) from None
            raw_body = data
            msg = {"type": args.type, "to": _recipients(args.to), "handling": args.handling,
                   "classification": args.classification, "purpose": args.purpose}
        if args.handling_restrictions:
            msg["handling_restrictions"] = args.handling_restrictions
        if args.onward_transfer:
            msg["onward_transfer"] = args.onward_transfer
        if args.reply_to:
            msg["reply_to"] = args.reply_to
        if args.ttl:
            msg["ttl_seconds"] = args.ttl
        files += [(a, _media_type_of(a)) for a in attach]
        if files:
            msg["attachments"] = client.upload_attachments(cfg, files, show=not args.no_progress)
        ct, payload = STANDARD_CT, _standard_form(msg, raw_body)
    status, doc = client.local_request(cfg, "system", "POST", "/local/v1/messages", payload, ct)
    if status != 201:
        raise CheckFailed(f"{path}: refused: {client.problem_text(status, doc)}")
    if args.json:
        print(json.dumps(doc))
    elif "ids" in doc:  # a fan-out (SPEC §6, 1.1)
        if args.quiet:
            print("\n".join(doc["ids"]))
        else:
            print(f"submitted {len(doc['ids'])} messages in conversation {doc['conversation']}: {', '.join(doc['ids'])}; "
                  f"gather the answers with: traza conversation show --config {args.config} {doc['conversation']}")
    elif args.quiet:
        print(doc["id"])
    else:
        print(f"submitted {doc['id']}; follow it with: traza message show --config {args.config} {doc['id']}")
    return 0


def _standard_form(msg: dict[str, Any], raw_body: bytes | None) -> bytes:
    """The standard form (SPEC §6) of ``msg``; with ``raw_body``, the body member is those bytes verbatim
    (already checked as strict JSON), not a re-encoding of what a parser made of them."""
    if raw_body is None:
        return json.dumps(msg).encode()
    head = json.dumps(msg).encode()
    return head[:-1] + (b", " if msg else b"") + b'"body": ' + raw_body + b"}"


def _recipients(to: str) -> str | list[str]:
    """``--to``: one node id, ``es,it`` (a list: fan-out) or ``group:NAME``."""
    if "," not in to:
        return to
    names = [n.strip() for n in to.split(",")]
    if not all(names):
        raise UsageError(f"--to {to!r}: an empty name between commas")
    return names


def cmd_status(args: argparse.Namespace) -> int:
    doc = client.call(client.node_config(args.config), "operator", "GET", "/ops/v1/status")
    if args.json:
        print_json(doc)
        return 0
    rows = [("node", doc.get("node")), ("federation", doc.get("federation")),
            ("manifest", f"version {doc.get('manifest_version')}, expires {doc.get('manifest_expires_at')}"),
            ("queue depth", doc.get("queue_depth")), ("messages", doc.get("messages") or {}),
            ("counters", doc.get("counters") or {})]
    console().print(fields(rows))
    return 0


STATS_TITLES = {"volume": "Messages by type, country pair and week", "trace_outcomes": "Trace outcomes by country of "
                "manufacture", "response_times": "Response times per answering country (hours)",
                "status_hits": "Status queries per answering country", "ballistic": "Ballistic hits",
                "time_to_crime": "Time-to-crime (first retail sale to recovery) of traced firearms"}


def cmd_stats(args: argparse.Namespace) -> int:
    cfg = client.node_config(args.config)
    if args.csv:
        status, text = client.local_request(cfg, "operator", "GET", "/ops/v1/stats?format=csv")
        if status != 200:
            raise CheckFailed(client.problem_text(status, text))
        sys.stdout.write(str(text).replace("\r\n", "\n"))
        return 0
    doc = client.call(cfg, "operator", "GET", "/ops/v1/stats")
    if args.json:
        print_json(doc)
        return 0
    out = console()
    out.print(f"node {doc.get('node')}, {doc.get('generated_at')}; {doc.get('small_cells')}")
    for key, title in STATS_TITLES.items():
        rows = doc.get(key) or []
        if not rows:
            out.print(f"{title}: none")
            continue
        cols = list(rows[0])
        out.print(table(cols, ([("—" if r[c] is None else r[c]) for c in cols] for r in rows), title=title))
        if key == "time_to_crime":
            median = doc.get("time_to_crime_median_days")
            out.print(f"median time-to-crime: {'not shown (fewer than 5 cases)' if median is None else f'{median} days'}")
    return 0


def cmd_peers(args: argparse.Namespace) -> int:
    doc = client.call(client.node_config(args.config), "operator", "GET", "/ops/v1/peers")
    if args.json:
        print_json(doc)
        return 0
    peers = rows_of(doc, "peers")
    out = console()
    if not peers:
        out.print("no linked peer")
        return 0
    out.print(table(["peer", "kind", "status", "failures", "endpoint", "last error"],
                    ([p.get("id"), p.get("kind"), styled(p.get("status")), p.get("failures"), p.get("endpoint"),
                      f"{p.get('last_error_at')}: {p.get('last_error')}" if p.get("last_error") else ""]
                     for p in peers)))
    out.print("up: exchanging; down: failing, left alone until a cooldown ends; probing: one trial exchange; "
              "unknown: no exchange since the node started", style="dim", markup=False)
    return 0


LISTS = {"queues": ("queues", "no message queued for any peer"),
         "dead-letters": ("dead_letters", "no dead letter"),
         "overdue": ("overdue", "no message waiting for its receipt past limits.receipt_overdue")}


def cmd_queue_list(args: argparse.Namespace) -> int:
    what = "dead-letters" if args.dead else "overdue" if args.overdue else "queues"
    doc = client.call(client.node_config(args.config), "operator", "GET", f"/ops/v1/{what}")
    if args.json:
        print_json(doc)
        return 0
    key, empty = LISTS[what]
    console().print(dict_table(rows_of(doc, key), empty=empty))
    return 0


def cmd_queue_action(args: argparse.Namespace) -> int:
    if args.action == "resend":
        path = f"/ops/v1/messages/{urllib.parse.quote(args.id, safe='')}/resend"
    else:
        try:
            path = f"/ops/v1/dead-letters/{int(args.id)}/{args.action}"
        except ValueError:
            raise UsageError(f"queue {args.action}: dead-letter id {args.id!r} is not an integer") from None
    doc = client.call(client.node_config(args.config), "operator", "POST", path, b"")
    if args.json:
        print_json(doc)
        return 0
    done = {"retry": "queued again", "discard": "discarded", "resend": "offered again"}[args.action]
    what = f"dead letter {doc.get('id')} (message {doc.get('jti')})" if args.action != "resend" else f"message {doc.get('jti')}"
    to = f" for {doc.get('peer')}" if doc.get("peer") and args.action != "discard" else ""
    console().print(printable(f"{what}: {done}{to}; audited as operator.action"), markup=False)
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
    p.add_argument("--to", help="recipient node id; es,it or group:NAME send one message to each (fan-out, "
                   "one conversation)")
    p.add_argument("--type", help="message type, e.g. trace.request")
    p.add_argument("--handling", default="H0", choices=["H0", "H1", "H2", "H3"])
    p.add_argument("--handling-restrictions", metavar="TEXT",
                   help="the restrictions of an H3 message (required with --handling H3; docs/security.md)")
    p.add_argument("--onward-transfer", choices=["ALLOWED", "PROVIDER_CONSENT_REQUIRED", "PROHIBITED"],
                   help="may the recipient pass it on (H2 implies PROVIDER_CONSENT_REQUIRED; docs/security.md)")
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
    p.add_argument("-q", "--quiet", action="store_true", help="print the message id only (ID=$(traza send ... -q))")
    p.add_argument("body", metavar="BODY.json|FILE.x3p",
                   help="the message body (JSON), or an X3P file sent as ballistic.submission with the file attached")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("status", help="operator view: the node, its manifest, messages by state, counters")
    p.add_argument("--config", required=True)
    p.add_argument("--json", action="store_true", help="print the local API's JSON instead of a table")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("stats", help="insights for policy makers: messages by type, country pair and week, trace "
                       "outcomes, response times, hit rates (aggregates; counts under 5 shown as <5)")
    p.add_argument("--config", required=True)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="print the local API's JSON")
    g.add_argument("--csv", action="store_true", help="print every table as CSV (a `table` column first)")
    p.set_defaults(func=cmd_stats)
    p = sub.add_parser("peers", help="operator view: linked peers, up / down / probing")
    p.add_argument("--config", required=True)
    p.add_argument("--json", action="store_true",
                   help="print the local API's JSON (with the circuit breaker's `state` beside `status`)")
    p.set_defaults(func=cmd_peers)

    p = sub.add_parser("queue", help="operator: outbox queues, dead letters, messages without a receipt")
    verbs = p.add_subparsers(dest="action", metavar="VERB", required=True)
    q = verbs.add_parser("list", help="messages queued per peer (or --dead, --overdue)")
    which = q.add_mutually_exclusive_group()  # one list at a time: both together is bad usage (exit 2)
    which.add_argument("--dead", action="store_true", help="list dead letters instead of queues")
    which.add_argument("--overdue", action="store_true",
                       help="list messages forwarded without a receipt after limits.receipt_overdue")
    q.add_argument("--config", required=True)
    q.add_argument("--json", action="store_true", help="print the local API's JSON instead of a table")
    q.set_defaults(func=cmd_queue_list)
    for action, what, help_ in (
            ("retry", "dead-letter id", "queue a dead letter again (audited)"),
            ("discard", "dead-letter id", "discard a dead letter (audited)"),
            ("resend", "message id", "offer an overdue message again to its first hop, same id (audited)")):
        q = verbs.add_parser(action, help=help_)
        q.add_argument("--config", required=True)
        q.add_argument("--json", action="store_true", help="print the local API's JSON")
        q.add_argument("id", metavar="ID", help=what)
        q.set_defaults(func=cmd_queue_action)
