"""Real nodes with their stores on PostgreSQL (``[store] url``, issue #13): mx -> hub -> es, each node's
relay tables and audit log in a PostgreSQL database of its own, over real mTLS on 127.0.0.1; the hub's log
verifies with ``traza audit verify --db URL`` and is checked again at its restart. And the configuration errors of ``store.url``: each names the key,
and ``traza run`` exits 2 with one line."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import msgspec
import psycopg
import pytest
from kit.nodes import started, state
from kit.waiting import eventually

from gateway.cli.main import main
from gateway.config import ConfigError, load_config
from gateway.localfed import NodeSpec, build, write_config
from gateway.store.relay import SCHEMA_VERSION

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]
LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 3600.0}


def with_store(cfg: Path, url: str) -> None:
    doc = tomllib.loads(cfg.read_text())
    doc["store"] = {"url": url}
    write_config(cfg, doc)


async def test_a_hub_with_its_store_on_postgresql_relays_a_message_and_its_log_verifies(tmp_path, pg_url, pg_cluster, request):
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    with_store(built["hub"].config, pg_url)
    # the sender and the recipient on PostgreSQL too (submit, receipts, inbox, delivery)
    for n in ("mx", "es"):
        url = pg_cluster.create_database()
        request.addfinalizer(lambda url=url: pg_cluster.drop_database(url))
        with_store(built[n].config, url)
    async with started(built["hub"].config) as hub, started(built["mx"].config) as mx, \
            started(built["es"].config) as es:
        assert {n.db.dialect.name for n in (hub, mx, es)} == {"postgresql"}
        jti = await mx.submit(mt="notice", to="es", body=msgspec.json.encode({"title": "t", "text": "x"}),
                              system="test")
        await eventually(lambda: es.inbox_page(0, 10), timeout=30.0)
        assert await es.inbox_ack(jti, "system:test")

        async def delivered() -> bool:
            return await state(mx, jti) == "delivered"

        await eventually(delivered, timeout=30.0)
        assert await hub.audit.publish(hub.clock()) is not None
    # the hub's rows are in PostgreSQL, and no SQLite file was made beside them
    assert not (built["hub"].data_dir / "node.db").exists()
    with psycopg.connect(pg_url) as c:
        rows = dict(c.execute("SELECT m.jti, coalesce(octet_length(e.envelope), 0) FROM messages m "
                                "LEFT JOIN envelopes e ON e.jti=m.jti").fetchall())
        events = [r[0] for r in c.execute("SELECT event FROM audit_entries ORDER BY idx")]
        version = c.execute("SELECT v FROM kv WHERE k='store.schema'").fetchone()[0]
    assert rows[jti] == 0  # relayed and acked by es: the hub dropped the payload (transit copy)
    assert len(rows) == 2  # the message and its receipt, both relayed
    assert {"node.started", "envelope.accepted", "envelope.forwarded"} <= set(events)
    assert bytes(version) == str(SCHEMA_VERSION).encode()
    assert main(["audit", "verify", "--db", pg_url, "--no-progress"]) == 0
    # restarted: the start-up check reads the log in PostgreSQL against the checkpoint kept in data_dir
    async with started(built["hub"].config) as hub:
        assert hub.store_report.ok, hub.store_report.problems
        assert hub.store_report.size == len(events) and 0 < hub.store_report.signed_size <= len(events)


def test_store_url_that_is_not_postgresql_is_refused_naming_the_key(tmp_path):
    built = build(tmp_path / "fed", SPECS[:1])
    cfg = built["hub"].config
    with_store(cfg, "mysql://db.example/traza")
    with pytest.raises(ConfigError, match=r"hub\.toml: store\.url: 'mysql://db\.example/traza' is not a postgresql:// URL"):
        load_config(cfg)
    with_store(cfg, "postgresql://traza:s3cret@127.0.0.1:5432/traza?colour=blue")
    with pytest.raises(ConfigError, match=r"store\.url: .*invalid URI query parameter: \"colour\"") as info:
        load_config(cfg)
    assert "s3cret" not in str(info.value)


def test_an_unreachable_postgresql_server_stops_traza_run_with_one_line_and_exit_2(tmp_path):
    from kit.pg import free_port

    built = build(tmp_path / "fed", SPECS[:1])
    cfg = built["hub"].config
    with_store(cfg, f"postgresql://traza:s3cret@127.0.0.1:{free_port()}/traza")  # nobody listens there
    done = subprocess.run([sys.executable, "-m", "gateway.cli.main", "run", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "store.url" in lines[0] and "cannot be reached" in lines[0] and "s3cret" not in lines[0], lines[0]
