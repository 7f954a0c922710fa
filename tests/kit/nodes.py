"""Real nodes in-process for transport, attack and reliability tests: start one from its config file for
the length of a ``with`` block, read its audit entries, and its evidence bundle once a checkpoint covers it."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from gateway.audit.db import AuditError
from gateway.config import load_config
from gateway.node import Node
from gateway.transport.peer import Problem


@contextlib.asynccontextmanager
async def started(cfg_path: Path, *, clock: Callable[[], float] | None = None) -> AsyncIterator[Node]:
    """The node of ``cfg_path``, started (listeners and loops) until the block ends; ``clock`` injects the
    time it reads (default: the real clock)."""
    node = Node(load_config(cfg_path)) if clock is None else Node(load_config(cfg_path), clock=clock)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def entries(node: Node, **query: str) -> list[dict[str, Any]]:
    """The node's audit entries matching ``query`` (``jti``, ``event``, ...), decoded, oldest first."""
    doc = await node.audit_entries({"limit": "1000", **query})
    return [json.loads(base64.b64decode(e["entry"])) for e in doc["entries"]]


async def bundle_of(node: Node, jti: str) -> bytes | None:
    """The message's evidence bundle once a checkpoint covers its entries, else None."""
    try:
        return await node.audit_bundle(jti)
    except (AuditError, Problem):  # 409 not_checkpointed until then
        return None
