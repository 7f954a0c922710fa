"""Start a federation of real `traza run` processes on 127.0.0.1 for end-to-end tests, and the local-API
calls the e2e tests share.

The process logic lives in gateway.demo.procs (shared with `traza demo`)."""

from __future__ import annotations

import json
from typing import Any

from gateway.demo.procs import FOUR, Federation

__all__ = ["FOUR", "STANDARD", "Federation", "inbox", "submit"]

STANDARD = "application/vnd.traza.message+json"


def submit(fed: Federation, node: str, to: str, mt: str, body: dict[str, Any], **extra: Any) -> str:
    """Submit a standard-form message as ``node``'s national system; returns its id (asserts 201)."""
    msg = {"type": mt, "to": to, "handling": "H1", "classification": "BASIC_PROTECTION_LEVEL",
           "purpose": "INVESTIGATION", "body": body, **extra}
    status, doc = fed.call(node, "system", "POST", "/local/v1/messages", json.dumps(msg).encode(), STANDARD)
    assert status == 201, doc
    return str(doc["id"])


def inbox(fed: Federation, node: str) -> list[dict[str, Any]]:
    status, doc = fed.call(node, "system", "GET", "/local/v1/inbox?after=0&limit=100")
    assert status == 200, doc
    return list(doc["messages"])
