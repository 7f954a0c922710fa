"""Fixtures for the audit tests (helpers live in audit_kit.py). ``audit_db`` and ``make_node`` run each
test on both engines: a SQLite file, and a fresh PostgreSQL database (tests/kit/pg.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from audit.audit_kit import FED, T0, LogNode

from gateway.audit.checkpoints import Publisher
from gateway.audit.log import AuditAppender
from gateway.core.note import origin_for
from gateway.crypto.keys import Ed25519Key


@pytest.fixture(params=["sqlite", "postgresql"])
def audit_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Path | str]]:
    """``audit_db(name)``: where the audit database ``name`` lives, a file ``<tmp>/<name>.db`` or the URL
    of a PostgreSQL database made for it (dropped after the test); the same name gives the same place."""
    made: dict[str, Path | str] = {}
    cluster = request.getfixturevalue("pg_cluster") if request.param == "postgresql" else None

    def target(name: str) -> Path | str:
        if name not in made:
            made[name] = tmp_path / f"{name}.db" if cluster is None else cluster.create_database()
        return made[name]

    yield target
    if cluster is not None:
        for url in made.values():
            # the log went into that PostgreSQL database (not into a file named after its URL)
            held = cluster.tables(str(url))
            cluster.drop_database(str(url))
            assert "audit_meta" in held, f"{url}: no audit tables in the PostgreSQL database"


@pytest.fixture
def make_node(audit_db: Callable[[str], Path | str]) -> Iterator[Callable[..., LogNode]]:
    made: list[LogNode] = []

    def make(node: str, *, key: Ed25519Key | None = None, db: Path | str | None = None) -> LogNode:
        clock = [T0]
        path = db or audit_db(node)
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
