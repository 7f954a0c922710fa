"""This process as one replica of its node (issue #13, docs/ha.md): several ``traza run`` processes with one
node id, one key set and one PostgreSQL database, each with its own data_dir.

Any replica accepts peers' batches and local submissions (every write is one transaction under the
database's write lock, so dedupe and the audit log's order hold across processes). Outbox rows are sent by
the replica that claimed them with a lease (``gateway.store.relay.claim``; the rule is
``gateway.core.replicas.claimable``); :meth:`Replica.scan_loop` looks at every peer's queue now and then,
so a dead replica's rows are taken over once their leases end (and the node counts its outbox again). Checkpoints and witnessing are the
leader's: :meth:`Replica.leader_loop` probes the session advisory lock of ``gateway.store.leader`` every
``[store] leader_poll`` seconds. On SQLite a node is one process: it always leads and needs no leases.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.config import Config
from gateway.core.replicas import Leadership
from gateway.node.supervise import pause
from gateway.store.leader import LeaderLock


def replica_id() -> str:
    """A name for this process among the node's replicas: host, PID and a random part (a restarted
    process is a new replica; its old leases end by themselves)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Replica:
    """Leadership and the outbox scan of one replica (module docstring)."""

    def __init__(self, cfg: Config, *, clock: Callable[[], float], log: Any, stopping: asyncio.Event,
                 rescan: Callable[[], Awaitable[None]], on_elected: Callable[[], None]) -> None:
        self.cfg = cfg
        self.url = cfg.store.url
        self.id = replica_id()
        self.clock = clock
        self.log = log
        self.stopping = stopping
        self.rescan = rescan
        self.on_elected = on_elected
        self.lock = LeaderLock(self.url) if self.url is not None else None
        self.state = Leadership(leader=self.lock is None)

    @property
    def replicated(self) -> bool:
        """Can other processes share this node's store (PostgreSQL)? Then outbox rows are leased."""
        return self.lock is not None

    def leads(self) -> bool:
        return self.state.leader

    async def probe(self) -> None:
        """Probe the leader lock once; log a change (and wake the leader's work when elected)."""
        if self.lock is None:
            return
        held = await asyncio.to_thread(self.lock.probe)
        self.state, change = self.state.step(held, self.clock())
        if change == "elected":
            self.log.info("replica.elected", replica=self.id)
            self.on_elected()
        elif change == "lost":
            self.log.warning("replica.leadership_lost", replica=self.id, detail=self.lock.last_error)

    async def leader_loop(self) -> None:
        while not self.stopping.is_set():
            await self.probe()
            await pause(self.stopping, self.cfg.store.leader_poll)

    async def scan_loop(self) -> None:
        """Every half lease (at most 5 s): ``rescan`` (wake the queue of every peer with rows, so that rows
        another replica claimed and left are sent once their leases end)."""
        interval = min(self.cfg.store.lease / 2, 5.0)
        while not self.stopping.is_set():
            if not await pause(self.stopping, interval):
                await self.rescan()

    async def release(self) -> None:
        if self.lock is not None:
            await asyncio.to_thread(self.lock.release)
            self.state = Leadership()
