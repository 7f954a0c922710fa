"""A node that never gets stuck (issue #11, F1, F2, F3, F5, F6), on real nodes in-process over real mTLS
on 127.0.0.1 and real SQLite files. Storage faults come through an injection seam (a proxy in front of
the writer's SQLite connection that fails chosen statements with the error SQLite itself raises) or for
real (``PRAGMA max_page_count``: the database file cannot grow, SQLITE_FULL)."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from kit.nodes import started
from kit.waiting import eventually

from gateway.config import Config, load_config
from gateway.core.events import AuthDenied
from gateway.core.retry import CircuitBreaker
from gateway.crypto.tls import client_context
from gateway.localfed import NodeSpec, build
from gateway.node import Node
from gateway.store import relay as st
from gateway.store.db import SQLITE_IOERR_FSYNC, StorageUnavailable
from gateway.transport.peer import PeerClient

LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 60.0}
SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]
BODY = msgspec.json.encode({"title": "t", "text": "x"})


def sqlite_error(code: int, text: str) -> sqlite3.OperationalError:
    """The exception SQLite raises for ``code`` (e.g. 13 SQLITE_FULL, 10 SQLITE_IOERR, 1034 IOERR_FSYNC)."""
    exc = sqlite3.OperationalError(text)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    return exc


class FaultyConnection:
    """Stands in front of the writer's connection; ``fail(pred, exc, times)`` makes matching statements
    raise ``exc`` the next ``times`` times (the statement is not run)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._faults: list[list[Any]] = []
        self.raised = 0

    def fail(self, pred: Callable[[str], bool], exc: BaseException, times: int) -> None:
        self._faults.append([pred, exc, times])

    def _check(self, sql: str) -> None:
        for f in self._faults:
            if f[2] > 0 and f[0](sql):
                f[2] -= 1
                self.raised += 1
                raise f[1]

    def execute(self, sql: str, *args: Any) -> Any:
        self._check(sql)
        return self._conn.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        self._check(sql)
        return self._conn.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def commit_of(prefix: str) -> Callable[[str], bool]:
    """Matches the COMMIT of a transaction that ran a statement starting with ``prefix`` (so that other
    writers of the node, e.g. its watchdog, do not take the injected failures)."""
    seen = {"on": False}

    def pred(sql: str) -> bool:
        if sql.startswith(prefix):
            seen["on"] = True
        elif sql in ("BEGIN IMMEDIATE", "ROLLBACK"):
            seen["on"] = False
        return sql == "COMMIT" and seen["on"]

    return pred


def inject(node: Node) -> FaultyConnection:
    fc = FaultyConnection(node.db._conn)
    node.db._conn = fc  # type: ignore[assignment]  # read by the writer thread for the next transaction
    return fc



async def outbox_count(node: Node) -> int:
    return int(await node.db.read(st.queue_total))


async def delivered_at(node: Node, jti: str) -> bool:
    return bool(await node.db.read(lambda c: st.get_message(c, jti)))


async def test_one_failed_write_in_the_forward_path_does_not_stop_the_queue(tmp_path: Path) -> None:
    """F1: the hub's forwarder hits one storage error (a failed settle transaction); the loop is
    restarted by its supervisor and the message still reaches es, with no restart of anything."""
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    async with started(built["hub"].config) as hub, started(built["mx"].config) as mx, \
            started(built["es"].config) as es:
        fc = inject(hub)
        # the next transaction that dequeues (the forwarder settling es's ack) fails at COMMIT
        fc.fail(commit_of("DELETE FROM outbox"), sqlite_error(10, "disk I/O error"), times=1)
        jti = await mx.submit(mt="notice", to="es", body=BODY, system="test")
        await eventually(lambda: delivered_at(es, jti), timeout=20.0)
        assert fc.raised == 1
        # the hub's queue drains and its counter agrees with the outbox
        await eventually(lambda: _zero(hub), timeout=20.0)
        assert hub.queue_depth == 0


async def _zero(node: Node) -> bool:
    return await outbox_count(node) == 0


async def test_forward_loop_that_crashes_is_restarted_counted_and_audited(tmp_path: Path) -> None:
    """F1: an exception in the loop itself (here: its read of the outbox) restarts it, with a metric and a
    ``node.task_failed`` audit entry; the message is still delivered."""
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    async with started(built["hub"].config) as hub, started(built["mx"].config) as mx, \
            started(built["es"].config) as es:
        real_read = hub.db.read_now  # the forward loop reads its next batch on its own thread
        failures = {"n": 2}

        async def flaky_read(fn: Any) -> Any:
            if getattr(fn, "func", None) is st.due_fifo and failures["n"] > 0:
                failures["n"] -= 1
                raise sqlite_error(10, "disk I/O error")
            return await real_read(fn)

        hub.db.read_now = flaky_read  # type: ignore[method-assign]
        jti = await mx.submit(mt="notice", to="es", body=BODY, system="test")
        await eventually(lambda: delivered_at(es, jti), timeout=20.0)
        assert failures["n"] == 0
        assert hub.metrics.task_restarts.labels("forward:es")._value.get() == 2
        doc = await hub.audit_entries({"event": "node.task_failed", "limit": "10"})
        entries = [json.loads(base64.b64decode(e["entry"])) for e in doc["entries"]]
        assert [(e["task"], "disk I/O error" in e["detail"]) for e in entries] == [("forward:es", True)] * 2


async def test_queue_counter_does_not_count_rolled_back_work(tmp_path: Path) -> None:
    """F2: transactions that fail at COMMIT (here 5 submissions in a row) leave the counter equal to the
    outbox; a node with max_queue=3 does not end up refusing everything."""
    built = build(tmp_path / "fed", SPECS, limits={**LIMITS, "max_queue": 3})
    async with started(built["mx"].config) as mx:  # the hub is down: what mx accepts stays queued
        fc = inject(mx)
        fc.fail(commit_of("INSERT INTO outbox"), sqlite_error(13, "database or disk is full"), times=5)
        for _ in range(5):
            with pytest.raises(StorageUnavailable):
                await mx.submit(mt="notice", to="es", body=BODY, system="test")
        assert mx.queue_depth == 0 == await outbox_count(mx)
        assert mx.shed_load() is None
        for _ in range(2):
            await mx.submit(mt="notice", to="es", body=BODY, system="test")
        assert mx.queue_depth == 2 == await outbox_count(mx)


async def test_disk_full_answers_503_with_retry_after_and_recovers_by_itself(tmp_path: Path) -> None:
    """F3: a database that cannot grow (SQLITE_FULL, for real) makes POST /v1/envelopes and
    POST /local/v1/messages answer 503 with Retry-After, /readyz 503; once space is back, both work again
    with no restart."""
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    cfg = load_config(built["hub"].config)
    async with started(built["hub"].config) as hub:
        pages = await hub.db.write(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
        await hub.db.write(lambda c: c.execute(f"PRAGMA max_page_count = {pages}").fetchone())
        mx = Node(load_config(built["mx"].config))  # mx only signs the envelope and lends its certificate
        client = PeerClient("hub", hub.fed.nodes["hub"].endpoint,
                            client_context(mx.tls_cert, mx.tls_key, mx.fed.manifest.tls_ca))
        try:
            # fill the last free pages until the store refuses
            status = 200
            for _ in range(400):
                status, data, headers = await _post_local(cfg, BODY)
                if status != 201:
                    break
            assert status == 503, data
            assert headers.get("Retry-After", "").isdigit(), headers
            assert json.loads(data)["code"] == "overloaded"
            ready = await _ops(cfg, "/readyz")
            assert ready[0] == 503 and "storage" in ready[1]["detail"], ready
            s2, d2, h2 = await client.request("POST", "/v1/envelopes", body=_one_envelope(mx, hub))
            assert s2 == 503 and h2.get("Retry-After", "").isdigit(), d2
            # space comes back: everything resumes by itself
            await hub.db.write(lambda c: c.execute("PRAGMA max_page_count = 1073741823").fetchone())
            status, data, _ = await _post_local(cfg, BODY)
            assert status == 201, data
            assert (await _ops(cfg, "/readyz"))[0] == 200
        finally:
            await client.close()
            mx.db.close()


def _one_envelope(mx: Node, hub: Node) -> bytes:
    env = mx.origin._build(mt="notice", to="es", body=BODY, now=hub.clock(), ttl=600)
    from gateway.core.envelope import encode_envelope
    return b'{"envelopes":[' + encode_envelope(env) + b"]}"


async def _post_local(cfg: Config, body: bytes) -> tuple[int, bytes, dict[str, str]]:
    import ssl
    import urllib.error
    import urllib.request

    from gateway.national.client import local_tls

    doc = json.dumps({"type": "notice", "to": "es", "handling": "H0", "classification": "BASIC_PROTECTION_LEVEL",
                      "purpose": "INVESTIGATION", "body": json.loads(body)}).encode()

    def call() -> tuple[int, bytes, dict[str, str]]:
        ctx: ssl.SSLContext = local_tls(cfg, "system")
        req = urllib.request.Request(f"https://{cfg.listen.local}/local/v1/messages", data=doc, method="POST",
                                     headers={"Content-Type": "application/vnd.traza.message+json"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    return await asyncio.to_thread(call)


async def _ops(cfg: Config, path: str) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    def call() -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"http://{cfg.listen.ops}{path}", timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    return await asyncio.to_thread(call)


async def test_node_event_whose_write_fails_is_kept_and_written_later(tmp_path: Path) -> None:
    """F5: auth.denied (and every other node event written in the background) is not dropped when its
    write fails: it waits in the backlog (a metric says how many) and is written once writes succeed."""
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    async with started(built["hub"].config) as hub:
        fc = inject(hub)
        fc.fail(commit_of("INSERT INTO audit_entries"), sqlite_error(10, "disk I/O error"), times=1)
        hub.audit_event_bg(AuthDenied(listener="peer", code="peer_mismatch", detail="test", remote="127.0.0.1"))
        await eventually(lambda: _entries(hub, "auth.denied"), timeout=20.0)
        assert fc.raised == 1 and not hub.audit_backlog


async def _entries(node: Node, event: str) -> list[Any]:
    return list((await node.audit_entries({"event": event, "limit": "10"}))["entries"])


async def test_failed_fsync_stops_the_node_and_refuses_every_later_write(tmp_path: Path) -> None:
    """An fsync error is fatal: the database takes no write after it (it never retries the fsync and
    carries on) and the node asks to stop with exit status 75, for its supervisor to restart it."""
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    async with started(built["mx"].config) as mx:
        fc = inject(mx)
        fc.fail(commit_of("INSERT INTO outbox"), sqlite_error(SQLITE_IOERR_FSYNC, "disk I/O error"), times=1)
        with pytest.raises(StorageUnavailable) as e:
            await mx.submit(mt="notice", to="es", body=BODY, system="test")
        assert e.value.fatal
        await asyncio.wait_for(mx.fatal.wait(), timeout=5)
        assert mx.exit_code == 75
        with pytest.raises(StorageUnavailable, match="fsync failed"):
            await mx.submit(mt="notice", to="es", body=BODY, system="test")
        assert fc.raised == 1  # no second fsync was attempted


def test_open_breaker_backs_off_exponentially_with_jitter() -> None:
    """F6: a peer that stays down is probed after growing, jittered cooldowns (not every 4 s for ever);
    a success resets it."""
    cb = CircuitBreaker(threshold=3, cooldown=4.0, max_cooldown=300.0)
    t = 0.0
    for _ in range(3):
        cb.failure(t, rand=0.5)
    cooldowns = [cb.cooldown]
    for _ in range(8):  # each failed probe
        t += cb.cooldown
        assert cb.allow(t)
        cb.failure(t, rand=0.5)
        cooldowns.append(cb.cooldown)
    assert cooldowns == sorted(cooldowns) and cooldowns[-1] == 225.0 and cooldowns[0] == 3.0, cooldowns
    jittered = CircuitBreaker(threshold=1, cooldown=4.0, max_cooldown=300.0)
    jittered.failure(0.0, rand=0.0)
    assert jittered.cooldown == 2.0  # half the nominal delay at the low end of the jitter
    cb.success()
    assert cb.cooldown == 4.0 and cb.state(t) == "closed"
