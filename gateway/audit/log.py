"""Appending to the audit log (SPEC §7.1): entries, ``stage`` inside a caller's transaction, and the
group-commit :class:`AuditAppender`.

An entry is canonical JSON with ``idx``, ``ts`` (RFC 3339 UTC, microseconds), ``node``, ``event`` and the
event's fields (for messages ``jti``, ``mt``, ``iss``, ``aud``, ``from``, ``to``, ``dig``). Callers give
the event and its fields; ``idx``, ``ts`` and ``node`` are set here.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from gateway.audit.db import AuditError, connect, set_meta, transaction, value_sha256
from gateway.audit.tree import load_range, log_size
from gateway.core import events
from gateway.core.canonical import CanonicalError, canonical_bytes
from gateway.core.merkle import CompactRange, leaf_hash
from gateway.core.timeutil import rfc3339
from gateway.store.dialect import is_url

# SPEC §7.1 (with the 1.1 additions witness.fork_detected, local.rejected, receipt.overdue and
# store.check_failed), plus node.task_failed (a supervised loop of the node failed and was restarted; issue #11):
# one definition, the typed events of gateway/core/events.py
EVENTS: frozenset[str] = events.EVENTS  # the tags of gateway.core.events.AuditEvent
RESERVED = ("idx", "ts", "node")
STRING_FIELDS = ("jti", "mt", "iss", "aud", "from", "to", "dig", "code")
MAX_ENTRY_BYTES = 16 * 1024

_decoder = msgspec.json.Decoder()
# The encoder behind canonical_bytes, for entries whose fields prepare() has already checked.
_sorted = msgspec.json.Encoder(order="sorted")
_last_ts: tuple[float, str] = (float("nan"), "")


def _rfc3339(now: float) -> str:
    """``rfc3339(now)``, remembered for the last ``now`` (a group of writes shares one)."""
    global _last_ts
    last = _last_ts
    if last[0] == now:
        return last[1]
    ts = rfc3339(now)
    _last_ts = (now, ts)
    return ts


def prepare(event: Mapping[str, Any]) -> dict[str, Any]:
    """Check one event dict (name, reserved keys, field types, canonical JSON) and return a copy."""
    if not isinstance(event, Mapping):
        raise AuditError(f"audit event must be a JSON object, got {type(event).__name__}")
    name = event.get("event")
    if name not in EVENTS:
        raise AuditError(f"audit event name {name!r} is not one of SPEC §7.1")
    for key in RESERVED:
        if key in event:
            raise AuditError(f"audit event {name}: field {key!r} is set by the log, not the caller")
    for key in STRING_FIELDS:
        if key in event and not isinstance(event[key], str):
            raise AuditError(f"audit event {name}: field {key!r} must be a string")
    ev = dict(event)
    try:
        size = len(canonical_bytes(ev))
    except CanonicalError as exc:
        raise AuditError(f"audit event {name}: {exc}") from None
    if size > MAX_ENTRY_BYTES - 100:
        raise AuditError(f"audit event {name}: {size} bytes is too large (entries hold digests, not content)")
    return ev


def _stage_prepared(
    conn: sqlite3.Connection, events: Sequence[dict[str, Any]], node: str, now: float,
    cr: CompactRange | None = None,
) -> list[int]:
    """Insert prepared events at the end of the log. ``cr`` is the log's compact range if the caller
    holds it (it must match the stored log); it is advanced in place."""
    if cr is None:
        cr = load_range(conn, log_size(conn))
    size = cr.size
    ts = _rfc3339(now)
    checked = type(node) is str  # prepare() checked the events; idx is an int and ts a string
    rows: list[tuple[int, bytes, bytes, str | None, str]] = []
    nodes: list[tuple[int, int, bytes]] = []
    for i, ev in enumerate(events):
        idx = size + i
        entry = {**ev, "idx": idx, "ts": ts, "node": node}
        raw = _sorted.encode(entry) if checked else canonical_bytes(entry)
        h = leaf_hash(raw)
        rows.append((idx, raw, h, ev.get("jti"), ev["event"]))
        nodes.extend(cr.append(h))
    conn.executemany(
        "INSERT INTO audit_entries (idx, entry, leaf_hash, jti, event) VALUES (?, ?, ?, ?, ?)", rows
    )
    if nodes:
        conn.executemany("INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
    return list(range(size, size + len(events)))


def stage(
    conn: sqlite3.Connection, events: Iterable[Mapping[str, Any]], *, node: str, now: float | None = None
) -> list[int]:
    """Insert audit entries inside a transaction the CALLER owns and return their indices.

    The caller must have started the transaction with ``BEGIN IMMEDIATE`` (so the log size read here
    cannot change before the insert) and commits it; the entries are durable when that commit returns
    (WAL + synchronous=FULL: one fsync). If the caller rolls back, the entries never existed. ``conn``
    must be a connection to the audit database (see ``gateway.audit.db.SCHEMA``).
    """
    if not conn.in_transaction:
        raise AuditError("audit stage() must run inside the caller's transaction (BEGIN IMMEDIATE)")
    prepared = [prepare(e) for e in events]
    if not prepared:
        return []
    return _stage_prepared(conn, prepared, node, time.time() if now is None else now)


def stage_at(
    conn: sqlite3.Connection, events: Iterable[Mapping[str, Any]], *, node: str, now: float, cr: CompactRange
) -> list[int]:
    """``stage`` for a caller that keeps the log's compact range ``cr`` between transactions (it must be
    the range of the log as stored in ``conn`` now); ``cr`` is advanced in place. If this raises, ``cr``
    may be ahead of the database: the caller must drop it."""
    if not conn.in_transaction:
        raise AuditError("audit stage() must run inside the caller's transaction (BEGIN IMMEDIATE)")
    prepared = [prepare(e) for e in events]
    if not prepared:
        return []
    return _stage_prepared(conn, prepared, node, now, cr)


def frontier(conn: sqlite3.Connection) -> CompactRange:
    """The compact range of the log as stored (for :func:`stage_at`)."""
    return load_range(conn, log_size(conn))


def stage_acks(conn: sqlite3.Connection, acks: Sequence[tuple[str, str]]) -> None:
    """Record the acks of a whole batch for evidence bundles, ``(jti, ack)`` each, in one statement (a
    batch signed once, protocol 1.1); like ``stage_evidence(conn, jti, ack=ack)`` for each."""
    if not conn.in_transaction:
        raise AuditError("audit stage_acks() must run inside the caller's transaction")
    if any(not isinstance(a, str) for _j, a in acks):
        raise AuditError("evidence: an ack must be a string")
    conn.executemany("INSERT OR IGNORE INTO audit_evidence (jti, kind, value, value_sha256) VALUES (?, 'ack', ?, ?)",
                     [(jti, ack, value_sha256(ack)) for jti, ack in acks])


def stage_evidence(
    conn: sqlite3.Connection,
    jti: str,
    *,
    envelope: Mapping[str, Any] | None = None,
    ack: str | None = None,
    receipt: Mapping[str, Any] | None = None,
    keys: Iterable[Mapping[str, Any]] = (),
    recorded: dict[str, tuple[str, dict[str, str]]] | None = None,
) -> None:
    """Record what an evidence bundle (SPEC §7.4) needs about message ``jti`` inside the caller's
    transaction: the envelope as this node holds it (``{"token", "hops"}``), an ack this node gave or
    received, the receipt (``{"token", "payload"}``), and the manifest ``sig`` keys that verified them
    (``{"kid", "alg", "jwk"}``). Not part of the Merkle tree: a bundle verifier checks these by their
    own signatures. Repeats are ignored; a kid recorded with a different key is an error.

    ``recorded`` (optional) remembers ``kid -> (alg, JWK)`` known to be in ``audit_keys`` of this database
    (JWKs of string members only), so that a key already recorded costs no statement; the caller must
    clear it whenever a transaction or savepoint that may have added to it is rolled back."""
    if not conn.in_transaction:
        raise AuditError("audit stage_evidence() must run inside the caller's transaction")
    rows: list[tuple[str, str]] = []
    if envelope is not None:
        token, hops = envelope.get("token"), envelope.get("hops", [])
        if (
            not isinstance(token, str)
            or not isinstance(hops, list)
            or not all(isinstance(h, str) for h in hops)
        ):
            raise AuditError(f"evidence for {jti}: envelope needs a token string and a list of hop strings")
        rows.append(("envelope", msgspec.json.encode({"token": token, "hops": hops}).decode()))
    if ack is not None:
        if not isinstance(ack, str):
            raise AuditError(f"evidence for {jti}: ack must be a compact JWS string")
        rows.append(("ack", ack))
    if receipt is not None:
        if not isinstance(receipt.get("token"), str) or not isinstance(receipt.get("payload"), str):
            raise AuditError(f"evidence for {jti}: receipt needs token and payload strings")
        rows.append(
            (
                "receipt",
                msgspec.json.encode({"token": receipt["token"], "payload": receipt["payload"]}).decode(),
            )
        )
    if rows:
        conn.executemany(
            "INSERT OR IGNORE INTO audit_evidence (jti, kind, value, value_sha256) VALUES (?, ?, ?, ?)",
            [(jti, k, v, value_sha256(v)) for k, v in rows],
        )
    for key in keys:
        kid, alg, jwk = key.get("kid"), key.get("alg"), key.get("jwk")
        if not isinstance(kid, str) or not isinstance(alg, str) or not isinstance(jwk, dict):
            raise AuditError(f"evidence for {jti}: a key needs kid, alg and jwk")
        if recorded is not None:
            hit = recorded.get(kid)
            # only JWKs of string members are remembered, so an equal one has string members too
            if hit is not None and hit[0] == alg and hit[1] == jwk:
                continue
        jwk_text = canonical_bytes(jwk).decode()
        conn.execute(
            "INSERT OR IGNORE INTO audit_keys (kid, alg, jwk) VALUES (?, ?, ?)", (kid, alg, jwk_text)
        )
        have = conn.execute("SELECT alg, jwk FROM audit_keys WHERE kid=?", (kid,)).fetchone()
        if tuple(have) != (alg, jwk_text):
            raise AuditError(f"evidence for {jti}: key {kid} is already recorded with a different alg or JWK")
        if recorded is not None and all(type(v) is str for v in jwk.values()):
            recorded[kid] = (alg, dict(jwk))


def decode_entry(raw: bytes) -> dict[str, Any]:
    value = _decoder.decode(raw)
    if not isinstance(value, dict):
        raise ValueError("audit entry is not a JSON object")
    return value


class _Batch:
    __slots__ = ("events", "future")

    def __init__(self, events: list[dict[str, Any]], future: asyncio.Future[list[int]]) -> None:
        self.events = events
        self.future = future


class AuditAppender:
    """Durable appends with group commit.

    ``await append(event)`` returns the entry's index once it is on disk. Appends that arrive while a
    commit is in flight are collected and written by the next commit: one transaction and one fsync for
    the whole group. The SQLite work runs in one worker thread so the event loop keeps collecting.
    """

    MAX_GROUP = 8192

    def __init__(self, path: str | Path, node: str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path if is_url(path) else Path(path)
        self.node = node
        self._clock = clock
        self._conn = connect(self.path, check_same_thread=False)
        set_meta(self._conn, "node", node)
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-commit")
        self._pending: list[_Batch] = []
        self._task: asyncio.Task[None] | None = None
        self.commits = 0  # transactions committed (a group commit counts once)
        self.appended = 0

    # -- synchronous API ----------------------------------------------------------------------------

    def stage(
        self, conn: sqlite3.Connection, events: Iterable[Mapping[str, Any]], now: float | None = None
    ) -> list[int]:
        """``stage`` with this log's node id (see the module function)."""
        return stage(conn, events, node=self.node, now=self._clock() if now is None else now)

    def append_sync(self, events: Iterable[Mapping[str, Any]]) -> list[int]:
        """Append events in one transaction now (blocking); for startup, shutdown and tools."""
        return self._commit([prepare(e) for e in events])

    def size(self) -> int:
        with self._lock:
            return log_size(self._conn)

    # -- asynchronous API with group commit ---------------------------------------------------------

    async def append(self, event: Mapping[str, Any]) -> int:
        return (await self.append_many([event]))[0]

    async def append_many(self, events: Iterable[Mapping[str, Any]]) -> list[int]:
        prepared = [prepare(e) for e in events]  # a bad event fails its caller, never the group
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[int]] = loop.create_future()
        if not prepared:
            return []
        self._pending.append(_Batch(prepared, fut))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        return await fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            group: list[_Batch] = []
            count = 0
            while self._pending and (count == 0 or count + len(self._pending[0].events) <= self.MAX_GROUP):
                b = self._pending.pop(0)
                group.append(b)
                count += len(b.events)
            events = [e for b in group for e in b.events]
            try:
                idxs = await loop.run_in_executor(self._executor, self._commit, events)
            except BaseException as exc:
                err = exc if isinstance(exc, Exception) else AuditError(f"audit commit interrupted: {exc!r}")
                for b in group:
                    if not b.future.done():
                        b.future.set_exception(err)
                if not isinstance(exc, Exception):
                    raise
                continue
            pos = 0
            for b in group:
                if not b.future.done():
                    b.future.set_result(idxs[pos : pos + len(b.events)])
                pos += len(b.events)

    def _commit(self, events: list[dict[str, Any]]) -> list[int]:
        with self._lock:
            with transaction(self._conn) as conn:
                idxs = _stage_prepared(conn, events, self.node, self._clock())
            self.commits += 1
            self.appended += len(events)
            return idxs

    async def aclose(self) -> None:
        """Wait for pending appends, then close."""
        while self._task is not None and not self._task.done():
            await self._task
        self.close()

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            self._conn.close()
