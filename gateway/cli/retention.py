"""``traza retention report``: what a running node holds of its messages' content (bodies, envelopes,
blobs), until when and by which rule, from its ``GET /ops/v1/retention`` (issue #15; docs/operations.md)."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.output import console, print_json, table
from gateway.national import client


def cmd_report(args: argparse.Namespace) -> int:
    cfg = client.node_config(args.config)
    doc = client.call(cfg, "operator", "GET", "/ops/v1/retention")
    if args.json:
        print_json(doc)
        return 0
    rows = doc.get("messages") or []
    out = console()
    out.print(f"node {doc.get('node')}, {doc.get('generated_at')}: content of {len(rows)} messages held")
    if rows:
        out.print(table(["id", "type", "role", "held", "blobs", "since", "until", "rule", "now", "review by"],
                        ([r["id"], r["type"], r["role"], ", ".join(r["held"]), r["blobs"], r["since"],
                          r["until"] or "—", r["rule"], _now(r), r["review_by"] or "—"] for r in rows),
                        title="Retention"))
    return 0


def _now(r: dict[str, Any]) -> str:
    marks = (["due"] if r.get("due") else []) + (["waiting: still needed"] if r.get("waiting") else []) \
        + (["review due"] if r.get("review_due") else [])
    return ", ".join(marks) or "kept"


def register(sub: Any) -> None:
    p = sub.add_parser("retention", help="retention: what a node holds of its messages' content and until when")
    verbs = p.add_subparsers(dest="retention_verb", metavar="VERB", required=True)
    r = verbs.add_parser("report", help="the messages whose content (body, envelope, blobs) the node holds, until "
                         "when and by which rule (a table, or --json)")
    r.add_argument("--config", required=True)
    r.add_argument("--json", action="store_true", help="print the local API's JSON")
    r.set_defaults(func=cmd_report)
