"""Shared state of a node and the helpers every part of it uses.

:class:`_NodeState` declares the attributes ``Node.__init__`` (``gateway.node.core``) sets, so that
each mixin of ``Node`` (api, keys, tls) is type-checked against them;
it holds the few helpers all of them call (``fed``, ``count``, ``audit_event_bg``, the audit field
helpers) and, under ``TYPE_CHECKING`` only, the signatures of the methods one mixin calls on another.
Nothing here runs on its own.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import sqlite3
import ssl
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from adapters.base import Adapter
from gateway.audit import facade as audit_facade
from gateway.config import Config
from gateway.core import relay as core_relay
from gateway.core.codes import DEFAULT_CLASSIFICATION, DEFAULT_PURPOSE
from gateway.core.envelope import (
    Limits,
    Verified,
)
from gateway.core.events import Event, NodeTaskFailed
from gateway.core.manifest import Federation
from gateway.crypto.hpke import EncKey
from gateway.crypto.keys import Ed25519Key, SigningKey
from gateway.metrics import Metrics
from gateway.national.delivery import Delivery
from gateway.node.inbound import Inbound
from gateway.node.origin import Origin
from gateway.node.outbound import Outbound
from gateway.node.relay import Applied, Applier
from gateway.node.retention import Retention
from gateway.node.services import Shared
from gateway.node.supervise import pause, supervised
from gateway.store import relay as st
from gateway.store.blobs import BlobStore
from gateway.store.db import Database
from gateway.transport.peer import PeerClient
from gateway.trust.trusted import TrustedManifest


class _NodeState:
    """What every part of :class:`~gateway.node.core.Node` shares: the attributes ``Node.__init__`` sets,
    the small helpers all parts use, and (for the type checker only) the methods one part calls on
    another."""

    cfg: Config
    id: str
    clock: Callable[[], float]
    log: Any
    data_dir: Path
    limits: Limits
    max_request: int
    trust: TrustedManifest
    manifest_path: Path
    _manifest_mtime: tuple[tuple[int, int], ...]
    signer: SigningKey
    enc_keys: dict[str, EncKey]
    audit_key: Ed25519Key
    tls_cert: Path
    tls_key: Path
    db: Database
    audit: audit_facade.NodeAudit
    adapter: Adapter
    blobs: BlobStore
    plain_blobs: BlobStore
    metrics: Metrics
    tasks: list[asyncio.Task[Any]]
    runners: list[web.AppRunner]
    inbox_event: asyncio.Event
    queue_depth: int
    audit_backlog: collections.deque[tuple[float, Event]]
    _disk_checked: float
    _disk_ok: bool
    stopping: asyncio.Event
    ready: bool
    counters: dict[str, int]
    local_routes: list[Callable[[web.Application], None]]
    delivery: Delivery | None
    relay: core_relay.Relay
    applier: Applier
    shared: Shared
    inbound: Inbound
    outbound: Outbound
    origin: Origin
    retention: Retention

    # --- trust ---------------------------------------------------------------------------------------

    @property
    def fed(self) -> Federation:
        return self.trust.federation

    # --- audit helpers -------------------------------------------------------------------------------

    def _msg_fields(self, v: Verified | None, env_token: str | None = None) -> dict[str, Any]:
        if v is None:
            return {}
        c = v.claims
        return {"jti": c.jti, "mt": c.mt, "iss": c.iss, "aud": c.aud, "dig": v.dig}

    def _signing_keys(self, *nodes: str) -> list[dict[str, Any]]:
        """Manifest ``sig`` keys of ``nodes`` (for evidence bundles)."""
        out = []
        for ref in self.fed.keys.values():
            if ref.node in nodes and ref.key.use == "sig" and ref.key.jwk is not None:
                out.append({"kid": ref.key.kid, "alg": ref.key.alg, "jwk": ref.key.jwk})
        return out

    def audit_event_bg(self, event: Event) -> None:
        """Append an audit entry from outside a write (group-committed; the caller does not wait). If the
        write fails the event is kept in ``audit_backlog`` and written by the supervised flush loop once
        the store takes writes again: a node event is never dropped silently (issue #11, F5)."""
        at = self.clock()

        def done(fut: Any) -> None:  # on the writer thread
            exc = fut.exception()
            if exc is not None:
                self.audit_backlog.append((at, event))
                self.log.error("audit.write_failed", audit_event=event.__struct_config__.tag, error=str(exc)[:300],
                               backlog=len(self.audit_backlog))

        try:
            self.db.submit(lambda conn: self.audit.stage(conn, [event], at)).add_done_callback(done)
        except RuntimeError:  # the database is closed (the node is stopping): say so, do not lose it silently
            self.log.error("audit.write_failed", audit_event=event.__struct_config__.tag, error="database closed")

    async def _audit_backlog_loop(self) -> None:
        """Write the node events whose first write failed, oldest first, every second."""
        while not self.stopping.is_set():
            self.metrics.audit_backlog.set(len(self.audit_backlog))
            if self.audit_backlog:
                items = list(self.audit_backlog)
                try:
                    await self.db.write(functools.partial(self._stage_backlog, items=items))
                except Exception as exc:
                    self.log.warning("audit.backlog_retry_failed", backlog=len(items), error=str(exc)[:300])
                else:
                    for _ in items:
                        self.audit_backlog.popleft()
                    self.log.info("audit.backlog_written", entries=len(items))
            await pause(self.stopping, 1.0)

    def _stage_backlog(self, conn: sqlite3.Connection, items: list[tuple[float, Event]]) -> None:
        for at, event in items:
            self.audit.stage(conn, [event], at)

    def _queued(self, n: int) -> None:
        """From inside a write: the outbox grew (or shrank) by ``n`` once this write commits. The counter
        follows committed state only: a rolled-back write changes nothing (issue #11, F2)."""
        self.db.after_commit(lambda: self._apply_queued(n))

    def _apply_queued(self, n: int) -> None:
        self.queue_depth = max(0, self.queue_depth + n)

    def _run_effects(self, effects: list[core_relay.Effect], queued: int) -> None:
        """After a commit: the in-memory effects of the relay's commands (gateway/core/relay.py), and the
        change the committed rows made to the outbox size."""
        self._apply_queued(queued)
        for e in effects:
            match e:
                case core_relay.Wake(peer=peer):
                    self.outbound.wake(peer)
                case core_relay.WakeInbox():
                    self.inbox_event.set()
                case core_relay.Count(what="forwarded", labels=labels):
                    self.metrics.inc(self.metrics.forwarded, *labels)
                case core_relay.Count(what="delivered", labels=labels):
                    self.metrics.inc(self.metrics.delivered, *labels)
                case core_relay.ForgetBlobAt(peer=peer, sha=sha):
                    self.outbound.blobs_at.discard((peer, sha))
                case core_relay.PurgeBlob(sha=sha):
                    self.blobs.delete(sha)
                    self.count("blobs_dropped")
                case _:
                    raise TypeError(f"unknown effect {e!r}")

    async def _operator_decision(self, decide: Callable[[st.StoreView], list[core_relay.Command]],
                                 now: float) -> None:
        await self.shared.operator_decision(decide, now)

    async def _decide(self, decide: Callable[[st.StoreView], list[core_relay.Command]], now: float,
                      batch: Sequence[Verified | None] = (), peer: str | None = None) -> Applied:
        return await self.shared.decide(decide, now, batch=batch, peer=peer)

    def _supervise(self, name: str, factory: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Start a long-running loop under :func:`gateway.node.supervise.supervised`."""
        return asyncio.create_task(supervised(name, factory, log=self.log, stopping=self.stopping,
                                              on_crash=self._task_crashed), name=name)

    def _task_crashed(self, name: str, exc: BaseException) -> None:
        self.metrics.task_restarts.labels(name).inc()
        self.count("task_restarts")
        self.audit_event_bg(NodeTaskFailed(task=name, detail=f"{type(exc).__name__}: {exc}"[:500]))

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    if TYPE_CHECKING:  # defined by the mixins of Node; declared here for the type checker only

        def _apply_manifest_files(self, mpath: Path, spath: Path, *, initial: bool = False) -> bool: ...

        def apply_manifest(self, mbytes: bytes, sbytes: bytes, *, source: str, initial: bool = False) -> bool: ...

        async def submit(self, *, mt: str, to: str, body: bytes, system: str, hc: str = "H0",
                         cls: str = DEFAULT_CLASSIFICATION, pur: str = DEFAULT_PURPOSE, irt: str | None = None,
                         ttl: int | None = None, cid: str | None = None,
                         attachments: list[dict[str, Any]] | None = None) -> str: ...

        def _reply_in_txn(self, conn: sqlite3.Connection, *, mt: str, to: str, body: dict[str, Any], irt: str,
                          cid: str, now: float, source: str) -> str | None: ...

        def _wake(self, peer: str) -> None: ...

        def _client(self, peer: str) -> PeerClient: ...

        async def _manifest_loop(self) -> None: ...

        def reload_keys(self, reason: str) -> list[dict[str, Any]]: ...

        def reload_tls(self, reason: str) -> dict[str, Any] | None: ...

        def client_tls_context(self) -> ssl.SSLContext: ...



def _rfc3339(ts: float) -> str:
    from gateway.core.timeutil import rfc3339

    return rfc3339(ts)
