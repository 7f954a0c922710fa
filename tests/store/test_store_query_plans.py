"""Every SQL statement a node runs is planned on an index (issue #17).

Two statements of the relay grew with the store's history: the forward loop's read of a peer's next
batch joined and sorted the whole queue, and the receipt watchdog walked every message a hub had ever
relayed. Both were found by profiling, long after they were written. This is the class of test that
was missing: three real nodes in-process relay messages and receipts, answer the operator's and the
auditor's queries, checkpoint, witness, sweep for overdue receipts, expire and purge, while every SQLite
connection records the statements it runs. Each distinct statement is then planned (``EXPLAIN QUERY
PLAN``) on the database it ran on: it must search through an index, neither scan a table nor sort its
result in a temporary B-tree, unless it is listed below with the reason its cost stays bounded.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import msgspec
from kit.nodes import attach, bundle_of, entries, started, state
from kit.waiting import eventually

from gateway.localfed import NodeSpec, build

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]
LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 0.5, "receipt_overdue": 0.5}
BODY = msgspec.json.encode({"title": "t", "text": "x"})

# statements allowed to scan or sort, each with why its cost does not grow with the traffic relayed
BOUNDED = {
    r"^SELECT count\(\*\) FROM outbox$": "once at start-up (the queue-depth gauge is kept in memory after)",
    r"^SELECT DISTINCT peer FROM outbox$": "at start-up and after a manifest change (wake every queue)",
    r"FROM sqlite_master": "schema checks at start-up",
    r"FROM audit_checkpoints ORDER BY size DESC LIMIT": "the newest checkpoint: the primary key read backwards, "
                                                        "stopped at the first row",
    r"FROM audit_cosignatures": "cosignatures are pruned to a few per witness and day",
    r"FROM overdue o JOIN messages": "the operator's overdue list: overdue receipts only, not relayed messages",
    r"FROM audit_witness_alerts": "fork alerts: none in normal operation, each one an incident",
    r"FROM dead_letters d JOIN messages m ON m.jti=d.jti ORDER BY d.id DESC LIMIT": "the newest dead letters: the "
                                                                                    "primary key read backwards",
    r"WHERE m.cid=\? ORDER BY|WHERE cid=\? AND iss=\? ORDER BY": "one conversation's messages, found by its id, "
                                                                 "then sorted",
    r"FROM audit_evidence WHERE jti=\? ORDER BY id": "one message's evidence rows, found by its id, then sorted",
    r"FROM outbox o JOIN messages m ON m.jti=o.jti GROUP BY o.peer": "the queues: what waits, at most max_queue",
    r"WHERE m.jti IN \(SELECT jti FROM envelopes UNION SELECT jti FROM inbox WHERE body IS NOT NULL\)":
        "retention: the content still held (envelopes, inbox bodies), which retention itself bounds",
}
# read every message a node holds, on an operator's request (docs/operations.md, "Queries that read the
# whole store"): they grow with retention, on a reader thread, never in the relay's path
WHOLE_STORE = {
    r"^SELECT jti, mt, iss, aud, received_at, irt FROM messages$": "GET /ops/v1/stats (insights)",
    r"FROM inbox i JOIN messages m ON m.jti=i.jti$": "GET /ops/v1/stats (insights: answers delivered here)",
    r"^SELECT state, count\(\*\) FROM messages GROUP BY state$": "GET /ops/v1/status (messages by state)",
}


def _shape(sql: str) -> str:
    """The statement with its literal values taken out: one entry per statement text."""
    sql = re.sub(r"X'[0-9A-Fa-f]*'", "?", sql)
    sql = re.sub(r"'(?:[^']|'')*'", "?", sql)
    sql = re.sub(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", "?", sql)
    sql = re.sub(r"\?(?:\s*,\s*\?)+", "?", sql)
    return " ".join(sql.split())


def _unbounded(plan: list[str]) -> list[str]:
    return [p for p in plan if "TEMP B-TREE" in p or (p.startswith("SCAN ") and not p.startswith("SCAN CONSTANT"))]


async def test_every_statement_a_node_runs_searches_an_index_or_is_listed_with_its_reason(tmp_path: Path,
                                                                                          monkeypatch: Any) -> None:
    seen: dict[str, tuple[str, str]] = {}  # shape -> (database, one statement as run)
    real = sqlite3.connect

    def connect(database: Any, *args: Any, **kw: Any) -> sqlite3.Connection:
        conn = real(database, *args, **kw)
        where = str(database)

        def trace(sql: str) -> None:
            if re.match(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH|REPLACE)\b", sql, re.IGNORECASE):
                seen.setdefault(_shape(sql), (where, sql))

        conn.set_trace_callback(trace)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    async with started(built["hub"].config) as hub, started(built["mx"].config) as mx, \
            started(built["es"].config) as es:
        scan = await attach(mx, tmp_path, 20_000)  # a blob travels ahead of its envelope, hop by hop
        sent = [await mx.submit(mt="notice", to="es", body=BODY, system="test", attachments=[scan] if i == 0 else None)
                for i in range(3)]
        for jti in sent:
            await eventually(lambda jti=jti: es.local_inbox_message(jti), timeout=20.0)
        for jti in sent[:2]:  # the third is never taken: no receipt, overdue at mx
            assert await es.inbox_ack(jti, "test")
        for jti in sent[:2]:
            await eventually(lambda jti=jti: _state_is(mx, jti, "delivered"), timeout=20.0)
        await eventually(lambda: _overdue(mx), timeout=20.0)
        await mx.check_receipts(time.time() + 3600)
        # what an operator and an auditor ask
        for node in (hub, mx, es):
            for view in ("status", "queues", "peers", "dead-letters", "overdue"):
                await node.ops_view(view)
            await node.insights()
            await node.retention_report()
            await entries(node, jti=sent[0])
            await node.message_status(sent[0])
        await eventually(lambda: _covered(mx, sent[0]), timeout=20.0)
        await mx.audit_route_bundle(sent[0])
        await mx.conversation(sent[0])
        await es.local_inbox(0, 10)

    flagged = []
    for shape, (where, sql) in sorted(seen.items()):
        if any(re.search(pattern, shape) for pattern in (*BOUNDED, *WHOLE_STORE)) or not Path(where).is_file():
            continue
        with real(f"file:{where}?mode=ro", uri=True) as conn:
            plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
        if _unbounded(plan):
            flagged.append(f"{Path(where).parent.name}: {shape[:300]}\n    {_unbounded(plan)}")
    assert len(seen) > 60, sorted(seen)  # the run went through the relay, the APIs and the audit log
    assert not flagged, "\n".join(flagged)


async def _overdue(node: Any) -> bool:
    return bool((await node.ops_view("overdue"))["overdue"])


async def _state_is(node: Any, jti: str, want: str) -> bool:
    return await state(node, jti) == want


async def _covered(node: Any, jti: str) -> bool:
    return await bundle_of(node, jti) is not None


def test_the_check_flags_a_scan_and_a_sort_and_passes_an_index_search(tmp_path: Path) -> None:
    """The check itself can fail: a filter on a column with no index, an order the index does not give."""
    with sqlite3.connect(tmp_path / "t.db") as conn:
        conn.executescript("CREATE TABLE q (seq INTEGER PRIMARY KEY, peer TEXT, at REAL);"
                           "CREATE INDEX q_peer_at ON q(peer, at);")

        def plan(sql: str) -> list[str]:
            return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]

        assert _unbounded(plan("SELECT seq FROM q WHERE at < 5"))  # no index on at alone: a scan
        assert _unbounded(plan("SELECT seq FROM q WHERE peer = 'es' ORDER BY seq LIMIT 16"))  # sorted in a temp B-tree
        assert not _unbounded(plan("SELECT seq FROM q WHERE peer = 'es' ORDER BY at LIMIT 16"))
