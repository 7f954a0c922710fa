"""The national system's verbs over the local API (SPEC §6): `traza inbox list|show|ack`, `traza message
show`, `traza conversation show`. A human view by default, the API's JSON with ``--json``."""

from __future__ import annotations

import argparse
import json
import urllib.parse
from typing import Any

from rich.console import Group
from rich.text import Text

from gateway.cli.output import console, fields, print_json, styled, table, text
from gateway.core.b64 import b64url_decode
from gateway.core.handling import MEANINGS, notice
from gateway.core.printable import printable
from gateway.failures import CheckFailed, UsageError
from gateway.national import client


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _hint(args: argparse.Namespace, verb: str, what: str = "ID") -> str:
    return f"traza {verb} --config {args.config} {what}"


# -- inbox -----------------------------------------------------------------------------------------------


def cmd_inbox_list(args: argparse.Namespace) -> int:
    cfg = client.node_config(args.config)
    if args.limit < 1:
        raise UsageError(f"inbox list: --limit {args.limit} must be at least 1")
    doc = client.call(cfg, "system", "GET", f"/local/v1/inbox?after={args.after}&limit={args.limit}")
    if args.json:
        print_json(doc)
        return 0
    msgs = doc.get("messages") or []
    out = console()
    if not msgs:
        out.print(f"no message waiting in the inbox of {cfg.node.id}")
        return 0
    out.print(table(["id", "type", "from", "delivered at", "files"],
                    ([m.get("id"), m.get("type"), m.get("from"), m.get("delivered_at"), len(m.get("attachments") or [])]
                     for m in msgs),
                    title=f"inbox of {cfg.node.id}: {len(msgs)} message(s) waiting", ids=["id", "delivered at"]))
    if len(msgs) >= args.limit:
        out.print(f"more after this page: --after {printable(str(doc.get('next')))}")
    out.print(f"read one: {_hint(args, 'inbox show')}; once your system has it: {_hint(args, 'inbox ack')}",
              soft_wrap=True, markup=False)
    return 0


def _content(m: dict[str, Any]) -> Text:
    """The national form of the message: indented if it is JSON, as it came otherwise."""
    content = m.get("content")
    if content is None:
        return Text("(payload purged after its retention period)", style="dim")
    try:
        content = json.dumps(json.loads(content), indent=2, ensure_ascii=False)
    except ValueError:
        pass
    return Text(printable(str(content), newlines=True))


def _marking(m: dict[str, Any]) -> list[tuple[str, Any]]:
    """The message's marking from its signed token (issue #15): handling code with its meaning, restrictions,
    classification, purpose; an H1 message carries its notice."""
    hc = m.get("handling")
    if not hc:
        return []
    rows: list[tuple[str, Any]] = [("handling", f"{hc}: {MEANINGS.get(hc, '?')}")]
    if m.get("handling_restrictions"):
        rows.append(("restrictions", printable(str(m["handling_restrictions"]))))
    if m.get("onward_transfer"):
        rows.append(("onward transfer", printable(str(m["onward_transfer"]))))
    rows += [("classification", m.get("classification")), ("purpose", m.get("purpose"))]
    if notice(hc):
        rows.append(("notice", text(str(notice(hc)), "bold yellow")))
    return rows


def cmd_inbox_show(args: argparse.Namespace) -> int:
    cfg = client.node_config(args.config)
    m = client.call(cfg, "system", "GET", f"/local/v1/inbox/{_q(args.id)}")
    if args.json:
        print_json(m)
        return 0
    ack = m.get("acknowledged_at")
    rows: list[tuple[str, Any]] = [
        ("message", m.get("id")), ("type", m.get("type")), ("from", m.get("from")),
        ("conversation", m.get("conversation")), ("reply to", m.get("reply_to")),
        ("delivered at", m.get("delivered_at")),
        *_marking(m),
        ("acknowledged", ack if ack else text(f"not yet ({_hint(args, 'inbox ack', str(m.get('id')))} sends the "
                                               "receipt)", "yellow")),
    ]
    for a in m.get("attachments") or []:
        rows.append(("file", f"{a.get('name')} ({a.get('len')} bytes, {a.get('ct')}) {a.get('url')}"))
    rows.append(("content type", m.get("content_type")))
    out = console()
    out.print(Group(fields(rows), Text(""), _content(m)))
    return 0


def cmd_inbox_ack(args: argparse.Namespace) -> int:
    cfg = client.node_config(args.config)
    body = json.dumps({"status": "REFUSED_BY_SYSTEM", "detail": args.refuse} if args.refuse is not None
                      else {"status": "DELIVERED"}).encode()
    doc = client.call(cfg, "system", "POST", f"/local/v1/inbox/{_q(args.id)}/ack", body)
    if args.json:
        print_json(doc)
        return 0
    jti = printable(str(doc.get("id")))
    if not doc.get("first"):
        console().print(f"{jti} was already acknowledged (nothing sent again)", markup=False)
        return 0
    try:
        m = client.call(cfg, "system", "GET", f"/local/v1/inbox/{_q(args.id)}")
        to = f" to {printable(str(m.get('from')))}"
    except CheckFailed:
        to = ""
    what = "refused by your system" if args.refuse is not None else "delivered"
    console().print(f"acknowledged {jti} ({what}): the receipt goes back{to}", markup=False)
    return 0


# -- message and conversation ----------------------------------------------------------------------------


def step_detail(detail: Any) -> Any:
    """A timeline step's detail for a person: a hop's signed ack (a compact JWS) as who signed it."""
    if isinstance(detail, str) and detail.count(".") == 2 and len(detail) > 80:
        try:
            header = json.loads(b64url_decode(detail.split(".")[0]))
            return f"ack signed by {header['kid']} (--json shows it)"
        except (ValueError, KeyError, TypeError):
            pass
    return detail


def cmd_message_show(args: argparse.Namespace) -> int:
    cfg = client.node_config(args.config)
    m = client.call(cfg, "system", "GET", f"/local/v1/messages/{_q(args.id)}")
    if args.json:
        print_json(m)
        return 0
    head = fields([("message", m.get("id")), ("type", m.get("type")), ("from", m.get("from")), ("to", m.get("to")),
                   ("conversation", m.get("conversation")), ("reply to", m.get("reply_to")),
                   ("state", styled(m.get("state")))])
    steps = table(["at", "state", "node", "detail"],
                  ([s.get("at"), styled(s.get("state")), s.get("node"), step_detail(s.get("detail"))]
                   for s in m.get("timeline") or []),
                  title="timeline", ids=["at"])
    console().print(Group(head, Text(""), steps))
    return 0


def cmd_conversation_show(args: argparse.Namespace) -> int:
    cfg = client.node_config(args.config)
    doc = client.call(cfg, "system", "GET", f"/local/v1/conversations/{_q(args.cid)}")
    if args.json:
        print_json(doc)
        return 0
    out = console()
    s = doc.get("summary") or {}
    out.print(fields([("conversation", doc.get("conversation")),
                      ("summary", f"{s.get('recipients', 0)} recipient(s): {s.get('answered', 0)} answered, "
                                  f"{s.get('pending', 0)} pending, {s.get('failed', 0)} failed")]))
    sent = doc.get("messages") or []
    if sent:
        rows = []
        for m in sent:
            answers = m.get("answers") or []
            rows.append([m.get("id"), m.get("type"), m.get("to"), styled(m.get("state")), m.get("sent_at"),
                         "\n".join(f"{a.get('type')} {a.get('id')} ({a.get('delivered_at')})" for a in answers) or None])
        out.print(table(["id", "type", "to", "state", "sent at", "answers"], rows,
                        title=f"sent by {cfg.node.id}", ids=["id", "sent at"]))
    received = doc.get("received") or []
    if received:
        out.print(table(["id", "type", "from", "delivered at", "acknowledged"],
                        ([r.get("id"), r.get("type"), r.get("from"), r.get("delivered_at"),
                          r.get("acknowledged_at") or text("not yet", "yellow")] for r in received),
                        title=f"received by {cfg.node.id}", ids=["id", "delivered at"]))
    return 0


# -- parser ------------------------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="the node's TOML config (its system client certificate is used)")
    p.add_argument("--json", action="store_true", help="print the local API's JSON instead of a table")


def register(sub: Any) -> None:
    p = sub.add_parser("inbox", help="messages delivered to this node: list, show, acknowledge",
                       description="The pull inbox of the local API (SPEC §6), as the national system.")
    verbs = p.add_subparsers(dest="inbox_verb", metavar="VERB", required=True)
    q = verbs.add_parser("list", help="messages waiting (not acknowledged yet), oldest first")
    _common(q)
    q.add_argument("--after", type=int, default=0, metavar="CURSOR", help="start after this cursor (the `next` of a page)")
    q.add_argument("--limit", type=int, default=100, metavar="N", help="at most N messages (default 100)")
    q.set_defaults(func=cmd_inbox_list)
    q = verbs.add_parser("show", help="one delivered message: metadata and content (also once acknowledged)")
    _common(q)
    q.add_argument("id", metavar="ID", help="message id")
    q.set_defaults(func=cmd_inbox_show)
    q = verbs.add_parser("ack", help="your system has taken the message: the node sends the receipt to its origin",
                         description="Acknowledge a delivered message; only then does the node send the receipt "
                                     "(DELIVERED, or REFUSED_BY_SYSTEM with --refuse). Idempotent.")
    _common(q)
    q.add_argument("--refuse", metavar="REASON", help="your system refuses it: the receipt says REFUSED_BY_SYSTEM with REASON")
    q.add_argument("id", metavar="ID", help="message id")
    q.set_defaults(func=cmd_inbox_ack)

    p = sub.add_parser("message", help="a message's state and timeline on this node")
    verbs = p.add_subparsers(dest="message_verb", metavar="VERB", required=True)
    q = verbs.add_parser("show", help="state and timeline (queued, forwarded per hop, delivered with the receipt, failed)")
    _common(q)
    q.add_argument("id", metavar="ID", help="message id (as `traza send` printed it)")
    q.set_defaults(func=cmd_message_show)

    p = sub.add_parser("conversation", help="every message of a conversation on this node")
    verbs = p.add_subparsers(dest="conversation_verb", metavar="VERB", required=True)
    q = verbs.add_parser("show", help="what this node sent in the conversation (one row per recipient), their "
                                      "states and the answers, and what it received in it")
    _common(q)
    q.add_argument("cid", metavar="CID", help="conversation id (the id of its first message)")
    q.set_defaults(func=cmd_conversation_show)
