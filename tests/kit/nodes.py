"""Real nodes in-process for transport, attack and reliability tests: start one from its config file for
the length of a ``with`` block, read its audit entries, and its evidence bundle once a checkpoint covers it."""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gateway.audit.bundle import Witnessed
from gateway.audit.db import AuditError
from gateway.config import load_config
from gateway.node import Node
from gateway.transport.peer import Problem


@contextlib.asynccontextmanager
async def started(cfg_path: Path, **kw: Any) -> AsyncIterator[Node]:
    """The node of ``cfg_path``, started (listeners and loops) until the block ends; ``kw`` goes to
    :class:`Node` (e.g. ``clock=``, ``tls_at_clock=``)."""
    node = Node(load_config(cfg_path), **kw)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def entries(node: Node, **query: str) -> list[dict[str, Any]]:
    """The node's audit entries matching ``query`` (``jti``, ``event``, ...), decoded, oldest first."""
    doc = await node.audit_entries({"limit": "1000", **query})
    return [json.loads(base64.b64decode(e["entry"])) for e in doc["entries"]]


async def bundle_of(node: Node, jti: str, *, witnessed: Witnessed = "preferred") -> bytes | None:
    """The message's evidence bundle once a checkpoint covers its entries, else None; with ``witnessed=
    "required"``, once a cosigned checkpoint covers them (what a peer gets, SPEC §4.4)."""
    try:
        return await node.audit_bundle(jti, witnessed=witnessed)
    except (AuditError, Problem):  # 409 not_checkpointed until then
        return None


async def attach(node: Node, tmp: Path, size: int) -> dict[str, Any]:
    """A file of ``size`` random bytes put into the node's plaintext blob store, as an attachment."""
    f = tmp / f"scan-{size}.bin"
    f.write_bytes(os.urandom(size))
    sha, n = node.plain_blobs.put_file(f)
    return {"sha256": sha, "len": n, "ct": "application/octet-stream", "name": f.name}


async def state(node: Node, jti: str) -> str | None:
    """The message's state at ``node`` (None if it does not hold it)."""
    return (await node.message_status(jti) or {}).get("state")
