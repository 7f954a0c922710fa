"""The audit log of a running node, over the node's shared group-commit database.

:class:`NodeAudit` is what ``gateway.node`` holds. The node's database object (``gateway.store.db.Database``
or anything with the same four methods, see :class:`SharedDatabase`) runs every write in its writer
thread inside one ``BEGIN IMMEDIATE`` transaction per group, so an envelope and its audit entry are
durable together (SPEC §4.1). All functions here only issue statements inside that transaction.

Keys and names come from the manifest: a node's log origin and its witness (cosigner) name are both
``traza/<federation>/<node>``, and both are signed with the node's ``audit`` Ed25519 key (checkpoint
signatures have key id type 0x01, cosignatures 0x04, so the two never collide).

With ``checkpoint_file``, the latest checkpoint (with the cosignatures collected for it) is also kept in
that file outside the database, rewritten atomically after each commit that signs a checkpoint or stores
cosignatures, and brought up to the database's latest at construction: the start-up check
(``gateway.audit.selfcheck``) compares the log with it, so a lost tail of the database is noticed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import structlog

from gateway.audit import log as audit_log
from gateway.audit.bundle import Witnessed, build_bundle, encode_bundle
from gateway.audit.checkpoints import (
    CheckpointFile,
    newest_cosignatures,
    publish_checkpoint,
    store_cosignatures,
    witness_request,
)
from gateway.audit.db import AuditError, create_schema, set_meta
from gateway.audit.reader import MAX_PAGE, AuditReader, StoredCheckpoint
from gateway.audit.tree import log_size
from gateway.audit.witness import WitnessCore, WitnessError, alert_count
from gateway.core.auditquery import parse_query
from gateway.core.b64 import b64_decode, b64_encode
from gateway.core.events import Event, as_entry
from gateway.core.manifest import Federation
from gateway.core.merkle import CompactRange
from gateway.core.note import origin_for
from gateway.core.params import int_param
from gateway.crypto.keys import Ed25519Key
from gateway.store.crashpoints import crash_point

T = TypeVar("T")

log = structlog.get_logger("traza.audit")


class SharedDatabase(Protocol):
    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    def write_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    def read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...


def audit_keys(fed: Federation, node: str, now: float | None = None) -> list[bytes]:
    """The unrevoked Ed25519 audit keys of ``node`` in the manifest, newest first; with ``now``, only those
    within their ``not_before``..``not_after`` (a rotated-out key stops being trusted at its end)."""
    return [b64_decode(k.public_key) for k in fed.valid_keys(node, "audit", now) if k.public_key]


class NodeAudit:
    def __init__(
        self,
        db: SharedDatabase,
        *,
        node: str,
        federation: str,
        key: Ed25519Key | Sequence[Ed25519Key],
        checkpoint_file: Path | None = None,
    ) -> None:
        self.db = db
        self.node = node
        self.origin = origin_for(federation, node)
        self.federation = federation
        self.keys: list[Ed25519Key] = []
        self.key: Ed25519Key
        self.witness = WitnessCore(name=self.origin, key=key if isinstance(key, Ed25519Key) else key[0],
                                   node=node, logs={}, append=lambda conn, event, now: self.stage(conn, [event], now)[0])
        self.set_keys(key)
        self._logs: dict[str, list[bytes]] = {}
        # What this node last wrote, kept between transactions so that appending costs no reads: the
        # log's compact range and the evidence keys recorded. Both are dropped when the database
        # reports a rollback since they were taken (``rollbacks`` of gateway.store.db.Database), or
        # when the log's size is not the range's (another writer appended: another process, or another
        # replica on PostgreSQL). The size is read once per write transaction (``_range_txn``, from
        # ``Database.transactions``): within one, the write lock keeps other writers out and every
        # append of this process goes through :meth:`stage`.
        self._range: CompactRange | None = None
        self._range_txn: int | None = None
        self._keys: dict[str, tuple[str, dict[str, str]]] = {}
        self._seen_rollbacks: int | None = None

        def init(conn: sqlite3.Connection) -> int:
            create_schema(conn)
            set_meta(conn, "node", node)
            set_meta(conn, "origin", self.origin)
            return alert_count(conn)

        self.forks_detected = db.write_sync(init)
        self.checkpoint_file = None if checkpoint_file is None else CheckpointFile(checkpoint_file)
        if self.checkpoint_file is not None:
            latest = db.read_sync(lambda c: AuditReader(c).checkpoint())
            if latest is not None:
                self.checkpoint_file.save(latest.served(), latest.size)

    def set_keys(self, key: Ed25519Key | Sequence[Ed25519Key]) -> None:
        """The audit key(s) to sign checkpoints with, newest first (several during a rotation's overlap:
        each checkpoint then carries every signature); the newest also cosigns as a witness."""
        keys = [key] if isinstance(key, Ed25519Key) else list(key)
        if not keys:
            raise AuditError("no audit key")
        self.keys, self.key = keys, keys[0]
        self.witness.set_key(keys[0])

    # -- appending (inside the caller's write) ----------------------------------------------------

    def _cache_valid(self) -> bool:
        """False (and the caches emptied) if the database rolled anything back since they were filled,
        or cannot tell."""
        rollbacks = getattr(self.db, "rollbacks", None)
        if not isinstance(rollbacks, int) or rollbacks != self._seen_rollbacks:
            self._range = None
            self._keys.clear()
            self._seen_rollbacks = rollbacks if isinstance(rollbacks, int) else None
            return False
        return True

    def stage(self, conn: sqlite3.Connection, typed: Iterable[Event], now: float) -> list[int]:
        """Append typed events (gateway.core.events) in the current transaction; their indices (see
        ``gateway.audit.log.stage``)."""
        events = [as_entry(e) for e in typed]
        self._cache_valid()
        if self._seen_rollbacks is None:  # a database that does not count rollbacks: no caching
            return audit_log.stage(conn, events, node=self.node, now=now)
        cr = self._range
        txn = getattr(self.db, "transactions", None)
        if cr is None or ((txn is None or txn != self._range_txn) and cr.size != log_size(conn)):
            cr = audit_log.frontier(conn)
        self._range = None  # until the append below has fully succeeded
        idxs = audit_log.stage_at(conn, events, node=self.node, now=now, cr=cr)
        self._range, self._range_txn = cr, txn
        return idxs

    def stage_acks(self, conn: sqlite3.Connection, acks: Sequence[tuple[str, str]]) -> None:
        """Record a batch's acks, ``(jti, ack)`` each, for evidence bundles in one statement."""
        audit_log.stage_acks(conn, acks)

    def stage_evidence(self, conn: sqlite3.Connection, jti: str, **kw: Any) -> None:
        """Record tokens, hops, acks, receipt and keys for evidence bundles (``log.stage_evidence``)."""
        if not self._cache_valid() and self._seen_rollbacks is None:
            audit_log.stage_evidence(conn, jti, **kw)
            return
        audit_log.stage_evidence(conn, jti, recorded=self._keys, **kw)

    # -- checkpoints ------------------------------------------------------------------------------

    async def publish(self, now: float) -> StoredCheckpoint | None:
        """Sign a checkpoint if the log grew (call every ``checkpoint_interval``)."""

        def fn(conn: sqlite3.Connection) -> StoredCheckpoint | None:
            size = publish_checkpoint(conn, origin=self.origin, key=self.keys, now=now)
            if size is not None:
                crash_point("checkpoint.before_commit")
            return None if size is None else AuditReader(conn).checkpoint(size)

        cp = await self.db.write(fn)
        if cp is not None:
            await self._keep(cp)
        return cp

    async def _keep(self, cp: StoredCheckpoint) -> None:
        """After the commit: copy ``cp`` (as served) to the checkpoint file. A failure is logged, not
        raised: the checkpoint is signed and durable; only the outside copy lags behind."""
        if self.checkpoint_file is None:
            return
        try:
            await asyncio.to_thread(self.checkpoint_file.save, cp.served(), cp.size)
        except OSError as exc:
            log.error("audit.checkpoint_file_failed", file=str(self.checkpoint_file.path), size=cp.size,
                      error=str(exc))

    def served_checkpoint(self) -> str:
        """``GET /v1/audit/checkpoint`` body; raises AuditError before the first checkpoint."""
        return self.db.read_sync(lambda c: AuditReader(c).served_checkpoint())

    def consistency(self, conn: sqlite3.Connection, old: int, new: int) -> list[str]:
        """``GET /v1/audit/proof/consistency`` hashes (base64)."""
        return [b64_encode(h) for h in AuditReader(conn).consistency_proof(old, new)]

    # -- this node's log, witnessed by peers --------------------------------------------------------

    async def witness_request(self, witness: str, old_size: int | None = None) -> tuple[int, bytes]:
        """``(checkpoint size, body)`` to ``POST /v1/witness/add-checkpoint`` on peer ``witness``.
        Without ``old_size``, the last size that peer cosigned; after a 409, pass the size it returned."""

        def fn(conn: sqlite3.Connection) -> tuple[int, bytes]:
            cp = AuditReader(conn).checkpoint()
            if cp is None:
                raise AuditError("no checkpoint to have witnessed yet")
            return cp.size, witness_request(conn, origin_for(self.federation, witness), old_size=old_size)

        return await self.db.read(fn)

    async def add_cosignatures(
        self, witness: str, size: int, body: bytes, fed: Federation, now: float, *, keep: bool = True
    ) -> list[str]:
        """Keep the cosignature lines peer ``witness`` returned for the checkpoint of ``size`` (and, per
        witness, only its newest and the first of each UTC day: ``compact_cosignatures``). ``keep=False``
        leaves rewriting the checkpoint file to the caller (:meth:`keep_latest`, once for several)."""
        name = origin_for(fed.name, witness)
        keys = audit_keys(fed, witness)
        stored: set[str] = set()
        for k in keys:  # usually one; several during an audit key rotation
            witnesses = {name: k}

            def fn(conn: sqlite3.Connection, witnesses: dict[str, bytes] = witnesses) -> list[str]:
                return store_cosignatures(conn, size, body, witnesses, now)

            stored.update(await self.db.write(fn))
        if stored and keep:
            await self.keep_latest()
        return sorted(stored)

    async def keep_latest(self) -> None:
        """Copy the latest checkpoint, with the cosignatures collected for it, to the checkpoint file."""
        latest = await self.db.read(lambda c: AuditReader(c).checkpoint())
        if latest is not None:
            await self._keep(latest)

    async def newest_cosignatures(self) -> dict[str, float]:
        """Witness key name -> when its newest cosignature of this node's checkpoints was received."""
        return await self.db.read(newest_cosignatures)

    # -- this node as a witness of its peers ------------------------------------------------------------

    def _sync_logs(self, fed: Federation, now: float) -> None:
        """The peers' audit keys valid at ``now`` (changes with a new manifest, and with time)."""
        logs = {origin_for(fed.name, n): audit_keys(fed, n, now) for n in fed.nodes if n != self.node}
        if logs != self._logs:
            self.witness.set_logs(logs)
            self._logs = logs

    async def witness_add(
        self, peer: str, body: bytes, fed: Federation, now: float
    ) -> tuple[int, str, bytes]:
        """``POST /v1/witness/add-checkpoint`` from ``peer``: ``(status, content type, body)``."""
        self._sync_logs(fed, now)
        try:
            req = self.witness.parse(body)
            checked = self.witness.check(None, req.old_size, req.proof, req.checkpoint)
        except WitnessError as exc:
            return exc.response()
        error = await self.db.write(lambda c: self.witness.apply(c, checked, now))
        if error is not None:
            if error.fork:
                self.forks_detected += 1
            return error.response()
        return 200, "text/plain; charset=utf-8", self.witness.cosign(checked, now).encode()

    # -- auditor API (SPEC §6) ----------------------------------------------------------------------

    async def entries(self, query: Mapping[str, str]) -> dict[str, Any]:
        """``GET /audit/v1/entries?from=&to=&jti=&event=&limit=`` (TrazaError ``malformed`` names a bad
        parameter: each is an integer within SQLite's 64-bit range, ``from`` and ``to`` >= 0, ``limit`` >= 1)."""
        start = int_param(query.get("from"), "from", default=0)
        end = int_param(query["to"], "to") if query.get("to") else None
        limit = int_param(query.get("limit"), "limit", default=MAX_PAGE, lo=1)
        jti, event = query.get("jti") or None, query.get("event") or None
        return await self.db.read(
            lambda c: AuditReader(c).entries_json(start=start, end=end, jti=jti, event=event, limit=limit)
        )

    async def search(self, query: Mapping[str, str]) -> list[tuple[int, bytes]]:
        """``GET /audit/v1/search`` (issue #16): entries matching the auditor's filters (TrazaError
        ``malformed`` naming a bad parameter; gateway/core/auditquery.py)."""
        q = parse_query(query)
        return await self.db.read(lambda c: AuditReader(c).search(q))

    async def recent(self, event: str, limit: int) -> list[tuple[int, bytes]]:
        """The newest ``limit`` entries of ``event``, newest first (the dashboard's recent rejections)."""
        return await self.db.read(lambda c: AuditReader(c).entries(event=event, limit=limit, newest_first=True))

    async def inclusion(self, index: int, size: int | None) -> dict[str, Any]:
        """``GET /audit/v1/proof/inclusion?index=&size=`` (size defaults to the latest checkpoint's)."""

        def fn(conn: sqlite3.Connection) -> dict[str, Any]:
            r = AuditReader(conn)
            n = size
            if n is None:
                cp = r.checkpoint()
                n = cp.size if cp is not None and cp.size > index else r.size()
            return r.inclusion_json(index, n)

        return await self.db.read(fn)

    async def bundle(self, jti: str, *, witnessed: Witnessed = "preferred") -> bytes | None:
        """The evidence bundle (``GET /audit/v1/bundle?jti=``; ``witnessed="required"`` for ``GET
        /v1/evidence/<jti>``, see :func:`build_bundle`), or None if nothing is about ``jti``."""

        def fn(conn: sqlite3.Connection) -> bytes | None:
            r = AuditReader(conn)
            if not r.jti_indices(jti):
                return None
            return encode_bundle(build_bundle(r, jti, witnessed=witnessed))

        return await self.db.read(fn)
