"""Fixtures for the audit tests (helpers live in audit_kit.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from audit.audit_kit import FED, T0, LogNode

from gateway.audit.checkpoints import Publisher
from gateway.audit.log import AuditAppender
from gateway.core.note import origin_for
from gateway.crypto.keys import Ed25519Key


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Callable[..., LogNode]]:
    made: list[LogNode] = []

    def make(node: str, *, key: Ed25519Key | None = None, db: Path | None = None) -> LogNode:
        clock = [T0]
        path = db or tmp_path / f"{node}.db"
        k = key or Ed25519Key.generate()
        origin = origin_for(FED, node)
        app = AuditAppender(path, node, clock=lambda: clock[0])
        pub = Publisher(path, origin=origin, key=k, interval=0.05, clock=lambda: clock[0])
        ln = LogNode(node, path, k, origin, app, pub, clock)
        made.append(ln)
        return ln

    yield make
    for ln in made:
        try:
            ln.close()
        except Exception:
            pass
