"""What the services of one node share (issue #11: composed services instead of mixins).

A node is :class:`~gateway.node.core.Node` wiring a few services, each a class with the dependencies it
names in its constructor: :class:`~gateway.node.inbound.Inbound` (peers' batches in),
:class:`~gateway.node.outbound.Outbound` (the queues out, with the blob pusher),
:class:`~gateway.node.origin.Origin` (messages this node makes, the receipt watchdog). :class:`Shared` is
the infrastructure they all use — configuration, clock, log, the database and audit log, the manifest in
force, metrics, the relay's rules and what applies them — and nothing in it decides anything.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from gateway.audit.facade import NodeAudit
from gateway.config import Config
from gateway.core import relay
from gateway.core.envelope import Verified
from gateway.core.errors import Fault, TrazaError
from gateway.core.manifest import Federation, NodeKey
from gateway.metrics import Metrics
from gateway.node.relay import Applied, Applier
from gateway.store import relay as st
from gateway.store.db import Database
from gateway.trust.trusted import TrustedManifest

Decision = Callable[[st.StoreView], list[relay.Command]]


class Shared:
    """The infrastructure every service of a node uses (set by ``Node``; ``applier`` once it is built)."""

    def __init__(self, *, cfg: Config, here: str, clock: Callable[[], float], log: Any, db: Database,
                 audit: NodeAudit, trust: TrustedManifest, metrics: Metrics, rules: relay.Relay,
                 stopping: asyncio.Event, count: Callable[..., None],
                 supervise: Callable[[str, Callable[[], Awaitable[None]]], asyncio.Task[None]],
                 replica: str | None = None, leads: Callable[[], bool] = lambda: True) -> None:
        """``replica`` names this process among the node's replicas when outbox rows are leased (a store
        on PostgreSQL, docs/ha.md), else None; ``leads`` says whether it is the leader now."""
        self.cfg = cfg
        self.here = here
        self.clock = clock
        self.log = log
        self.db = db
        self.audit = audit
        self.trust = trust
        self.metrics = metrics
        self.rules = rules
        self.stopping = stopping
        self.count = count
        self.supervise = supervise
        self.replica = replica
        self.leads = leads
        self.applier: Applier | None = None

    @property
    def fed(self) -> Federation:
        return self.trust.federation

    def enc_key(self, node: str, now: float) -> NodeKey | None:
        """The encryption key to seal to for ``node``: its newest valid one that every node can know by now
        (Federation.usable_key, ``[trust] key_settle_seconds``), else an older one it still holds."""
        return self.fed.usable_key(node, "enc", now, self.trust.known_since, self.cfg.key_settle)

    def applier_ready(self) -> Applier:
        assert self.applier is not None, "the node's applier is wired before it starts"
        return self.applier

    async def decide(self, decide: Decision, now: float, batch: Sequence[Verified | None] = (),
                     peer: str | None = None) -> Applied:
        """One write: the relay's decision on a view of the store, its commands applied, effects after commit."""
        applier = self.applier_ready()
        return await self.db.write(lambda conn: applier.decide(conn, decide, now, batch=batch, peer=peer))

    async def operator_decision(self, decide: Decision, now: float) -> None:
        """An operator's action: applied, or refused with its audit entry kept and TrazaError raised after
        the commit (KeyError when it names nothing)."""
        applier = self.applier_ready()

        def fn(conn: sqlite3.Connection) -> relay.Refusal | None:
            view = applier.view(conn)
            try:
                commands = decide(view)
            except relay.Refusal as refusal:
                applier.apply(conn, refusal.writes, now)
                return refusal
            applier.apply(conn, commands, now)
            return None

        refusal = await self.db.write(fn)
        if refusal is not None:
            self.log.warning("operator.refused", detail=refusal.detail)
            raise TrazaError(refusal.code, refusal.detail, fault=Fault.OPERATOR)
