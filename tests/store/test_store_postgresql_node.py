"""Real nodes with their stores on PostgreSQL (``[store] url``, issue #13): mx -> hub -> es, each node's
relay tables and audit log in a PostgreSQL database of its own, over real mTLS on 127.0.0.1; the hub's log
verifies with ``traza audit verify --db URL`` and is checked again at its restart. And the configuration errors of ``store.url``: each names the key,
and ``traza run`` exits 2 with one line."""

from __future__ import annotations

import json
import subprocess
import sys

import msgspec
import psycopg
import pytest
from kit.nodes import started, state
from kit.pg import with_store
from kit.waiting import eventually

from gateway.cli.main import main
from gateway.config import ConfigError, load_config
from gateway.localfed import NodeSpec, build
from gateway.store.relay import SCHEMA_VERSION

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]
LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 3600.0}


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
    # nobody listens there; the node waits store.startup_wait for it (a restart, a failover), then gives up
    with_store(cfg, f"postgresql://traza:s3cret@127.0.0.1:{free_port()}/traza", startup_wait=1.0)
    done = subprocess.run([sys.executable, "-m", "gateway.cli.main", "run", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    *waiting, last = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr, done.stderr
    assert waiting and all(json.loads(w)["event"] == "store.waiting" for w in waiting), waiting  # log lines
    assert "store.url" in last and "cannot be reached" in last and "store.startup_wait = 1" in last, last


def test_waiting_for_the_database_gives_up_at_once_on_what_waiting_cannot_mend(monkeypatch):
    """A role, a database or credentials the server refuses: no wait. A refused connection or a read-only
    standby: retried until store.startup_wait, each retry reported."""
    from gateway.store import pg
    from gateway.store.dialect import StoreUrlError

    url = "postgresql://traza@127.0.0.1:5/traza"
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    def failing(reason: str, times: int):
        calls = [0]

        def connect(_url: str, **_kw: object) -> object:
            calls[0] += 1
            if calls[0] <= times:
                raise StoreUrlError(f"{_url}: the PostgreSQL server cannot be reached ({reason})")
            return type("C", (), {"close": lambda self: None})()
        return connect, calls

    connect, calls = failing('FATAL:  database "traza" does not exist', 99)
    monkeypatch.setattr(pg, "connect", connect)
    with pytest.raises(StoreUrlError, match="does not exist"):
        pg.wait_writable(url, 30.0, sleep=sleep, clock=lambda: now[0])
    assert calls[0] == 1 and slept == []

    connect, calls = failing("session is read-only", 3)
    monkeypatch.setattr(pg, "connect", connect)
    seen: list[str] = []
    pg.wait_writable(url, 30.0, on_wait=lambda why, _w: seen.append(why), sleep=sleep, clock=lambda: now[0])
    assert calls[0] == 4 and len(seen) == 3 and slept == [0.25, 0.5, 1.0]

    connect, calls = failing("Connection refused", 99)
    monkeypatch.setattr(pg, "connect", connect)
    now[0], slept[:] = 0.0, []
    with pytest.raises(StoreUrlError, match=r"Connection refused\) \(waited \d+ s, store.startup_wait = 5\)"):
        pg.wait_writable(url, 5.0, sleep=sleep, clock=lambda: now[0])
    assert sum(slept) <= 5.0
