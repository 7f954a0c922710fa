"""``traza store migrate --to postgresql://...`` (issue #13): a stopped hub's SQLite store (relay tables and
audit log, checkpoints and witness cosignatures) copied to PostgreSQL keeps the same log: ``traza audit
verify`` gives the same size, root, checkpoints and cosignatures on the copy, and the hub started on the
copy goes on relaying (ids continue after the copied ones) with its log still verifying. Refused: a
running node, a database that is not empty."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import msgspec
import psycopg
from kit.nodes import started, state
from kit.pg import with_store
from kit.waiting import eventually

from gateway.cli.main import main
from gateway.localfed import NodeSpec, build

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]
LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 3600.0, "witness_refresh": 3600.0}
BODY = msgspec.json.encode({"title": "t", "text": "x"})


async def _exchange(mx, es, n: int) -> None:
    jtis = [await mx.submit(mt="notice", to="es", body=BODY, system="test") for _ in range(n)]

    async def arrived() -> bool:
        return {m[1] for m in await es.inbox_page(0, 100)} >= set(jtis)

    await eventually(arrived, timeout=30.0)
    for jti in jtis:
        assert await es.inbox_ack(jti, "system:test")

    async def delivered() -> bool:
        return all([await state(mx, j) == "delivered" for j in jtis])

    await eventually(delivered, timeout=30.0)


def _verify(db: str, capsys) -> dict:
    capsys.readouterr()
    assert main(["audit", "verify", "--db", db, "--json", "--no-progress"]) == 0, capsys.readouterr().err
    doc = json.loads(capsys.readouterr().out)
    return {k: doc[k] for k in ("origin", "node", "size", "root", "checkpoints", "latest_size", "latest_root",
                                "cosignatures", "witnesses")}


def _counts_sqlite(path: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as c:
        names = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        return {n: c.execute(f"SELECT count(*) FROM {n}").fetchone()[0] for n in names}


def _counts_pg(url: str, names) -> dict[str, int]:
    with psycopg.connect(url) as c:
        return {n: c.execute(f"SELECT count(*) FROM {n}").fetchone()[0] for n in names}


async def test_a_stopped_sqlite_hub_migrated_to_postgresql_keeps_the_same_log_and_goes_on(tmp_path, pg_url, capsys):
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    hub_cfg, hub_db = built["hub"].config, built["hub"].data_dir / "node.db"
    async with started(built["hub"].config) as hub, started(built["mx"].config) as mx, \
            started(built["es"].config) as es:
        await _exchange(mx, es, 3)
        assert await hub.checkpoint_tick() is not None
        assert sorted(await hub.witness_tick()) == ["es", "mx"]  # cosigned by both
        await _exchange(mx, es, 1)  # entries after the last checkpoint too
    before = _verify(str(hub_db), capsys)
    assert before["checkpoints"] >= 1 and before["cosignatures"] >= 2 and before["size"] > before["latest_size"]

    assert main(["store", "migrate", "--config", str(hub_cfg), "--to", pg_url]) == 0
    out = capsys.readouterr().out
    assert f"{before['size']} audit entries" in out and "same root" in out, out
    assert _verify(pg_url, capsys) == before  # same entries, roots, checkpoints and cosignatures
    counts = _counts_sqlite(hub_db)
    assert _counts_pg(pg_url, counts) == counts  # every row of every table

    # a second copy into the same (now full) database is refused, and so is a running node's store
    assert main(["store", "migrate", "--config", str(hub_cfg), "--to", pg_url]) == 2
    assert "is not empty" in capsys.readouterr().err

    # the hub, started on the copy, goes on: new rows get ids after the copied ones
    with_store(hub_cfg, pg_url)
    async with started(built["hub"].config) as hub, started(built["mx"].config) as mx, \
            started(built["es"].config) as es:
        assert hub.db.dialect.name == "postgresql" and hub.store_report.ok, hub.store_report.problems
        assert hub.store_report.signed_size == before["latest_size"]
        await _exchange(mx, es, 2)
        assert await hub.checkpoint_tick() is not None
        assert hub.db.rollbacks == 0  # no write failed (an id taken again would, then pass on a retry)
    after = _verify(pg_url, capsys)
    assert after["size"] > before["size"] and after["checkpoints"] == before["checkpoints"] + 1


def test_a_running_node_is_not_migrated(tmp_path, pg_url, capsys):
    from gateway.store.lock import DataDirLock

    built = build(tmp_path / "fed", SPECS[:1])
    built["hub"].data_dir.mkdir(parents=True, exist_ok=True)
    lock = DataDirLock(built["hub"].data_dir)  # what a running node holds
    try:
        assert main(["store", "migrate", "--config", str(built["hub"].config), "--to", pg_url]) == 2
    finally:
        lock.release()
    err = capsys.readouterr().err
    assert "stop the node" in err and err.count("\n") == 1, err
