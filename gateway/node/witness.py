"""Witnessing, a service of the node (issue #11: composed services instead of mixins): the signed
checkpoints of the audit log (served, and proven consistent), cosigning a peer's checkpoint, and having
each linked peer cosign ours (SPEC §7.3), afresh every ``witness_refresh`` even when the log is quiet
(SPEC §7.2, 1.1), with retries and ``witness.stale`` audited once per episode. Its dependencies are the
node's :class:`~gateway.node.services.Shared`, the peer client of a node and the audit of node events.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any

from gateway.audit.db import AuditError
from gateway.audit.reader import StoredCheckpoint
from gateway.core.errors import Code, TrazaError
from gateway.core.events import Event, WitnessStale
from gateway.core.note import origin_for
from gateway.core.timeutil import rfc3339_seconds
from gateway.core.witnessing import WitnessSchedule
from gateway.node.services import Shared
from gateway.node.supervise import pause
from gateway.transport.peer import PeerClient, PeerUnavailable, Problem


class Witnessing:
    """Checkpoints and witnessing of one node (module docstring)."""

    def __init__(self, shared: Shared, *, client: Callable[[str], PeerClient],
                 audit_event: Callable[[Event], None]) -> None:
        self.s = shared
        self.client = client
        self.audit_event = audit_event
        self.schedule: WitnessSchedule | None = None  # created at first use (module docstring)
        self.lock = asyncio.Lock()
        self.wake = asyncio.Event()  # a new checkpoint: ask the witnesses now

    def elected(self) -> None:
        """This replica became the leader: start from the cosignatures in the database (the previous
        leader's), then check and ask at once."""
        self.schedule = None
        self.wake.set()

    # --- checkpoints and witnessing --------------------------------------------------------------------

    def checkpoint_text(self) -> str:
        """The latest checkpoint as served (SPEC §4.4); ``503`` with ``Retry-After`` (SPEC §4.1, the checkpoint
        interval) while there is none (the first is signed one ``checkpoint_interval`` after start)."""
        try:
            return self.s.audit.served_checkpoint()
        except AuditError:
            wait = max(1, round(self.s.cfg.limits.checkpoint_interval))
            raise Problem(503, Code.OVERLOADED.value, "no checkpoint signed yet; retry later",
                          {"Retry-After": str(wait)}) from None

    async def consistency_proof(self, old: int, new: int) -> list[str]:
        try:
            return await self.s.db.read(lambda c: self.s.audit.consistency(c, old, new))
        except (AuditError, ValueError) as exc:  # e.g. a size beyond the log: the caller's fault
            raise TrazaError(Code.MALFORMED, str(exc)) from None

    async def witness_add_checkpoint(self, peer: str, body: bytes) -> tuple[int, str, bytes]:
        before = self.s.audit.forks_detected
        out = await self.s.audit.witness_add(peer, body, self.s.fed, self.s.clock())
        if self.s.audit.forks_detected > before:
            self.s.metrics.witness_forks.labels(peer).inc(self.s.audit.forks_detected - before)
        return out

    async def checkpoint_loop(self) -> None:
        interval = self.s.cfg.limits.checkpoint_interval
        while not self.s.stopping.is_set():
            if await pause(self.s.stopping, interval):
                break
            if not self.s.leads():  # replicas of one node: checkpoints are the leader's (docs/ha.md)
                continue
            try:
                await self.checkpoint_tick()
            except Exception as exc:  # keep publishing on the next interval
                self.s.log.error("checkpoint.failed", detail=str(exc))

    async def checkpoint_tick(self) -> StoredCheckpoint | None:
        """Sign a checkpoint if the log grew; a new one is due at every witness not backing off."""
        cp = await self.s.audit.publish(self.s.clock())
        if cp is not None:
            (await self.witnesses()).checkpoint_signed(self.s.clock())
            self.wake.set()
        return cp

    # --- fresh witnessing (SPEC §7.2, 1.1): every witness_refresh, each linked peer cosigns our latest
    # checkpoint, even when the log did not grow; failures retried with back-off; stale ones audited

    def witness_peers(self) -> list[str]:
        """This node's witnesses: its directly linked peers in the manifest in force."""
        return [n for n in sorted(self.s.fed.nodes) if n != self.s.here and self.s.fed.linked(self.s.here, n)]

    async def witnesses(self) -> WitnessSchedule:
        """The refresh schedule, created at first use with each witness's newest stored cosignature, and
        kept in step with the manifest (peers linked or unlinked)."""
        now = self.s.clock()
        if self.schedule is None:
            lim = self.s.cfg.limits
            self.schedule = WitnessSchedule(lim.witness_refresh, base=lim.retry_min)
        sched = self.schedule
        peers = self.witness_peers()
        if sched.witnesses() != peers:
            newest = await self.s.audit.newest_cosignatures()
            cosigned = {p: newest[origin_for(self.s.fed.name, p)] for p in peers
                        if origin_for(self.s.fed.name, p) in newest}
            sched.sync(peers, now, cosigned=cosigned)
        return sched

    async def witness_tick(self) -> list[str]:
        """One step of the refresh loop at ``clock()``: ask every witness that is due, record each outcome,
        audit the witnesses that just became stale. Returns the witnesses asked."""
        async with self.lock:
            sched = await self.witnesses()
            due = sched.due(self.s.clock())
            if due:
                outcomes = await asyncio.gather(*(self.witness_one(p) for p in due))
                now = self.s.clock()
                for peer, (outcome, detail) in zip(due, outcomes, strict=True):
                    if outcome == "ok":
                        if sched.succeeded(peer, now):
                            self.s.log.info("witness.fresh", witness=peer)
                    elif outcome == "idle":
                        sched.idle(peer, now)
                    else:
                        sched.failed(peer, now, rand=random.random(), error=detail)
                if any(o == "ok" for o, _ in outcomes):
                    await self.s.audit.keep_latest()  # the checkpoint file, once for all of them
            now = self.s.clock()
            for peer, st in sched.newly_stale(now):
                age = sched.age(peer, now) or 0.0
                event = WitnessStale(witness=peer, name=origin_for(self.s.fed.name, peer),
                                     cosigned_at=None if st.cosigned_at is None else rfc3339_seconds(st.cosigned_at),
                                     age_s=int(age), refresh_s=round(sched.refresh), failures=st.failures,
                                     last_error=st.last_error)
                self.audit_event(event)
                self.s.log.warning("witness.stale", witness=peer, age_s=int(age), failures=st.failures,
                                 last_error=st.last_error)
            return due

    async def witness_loop(self) -> None:
        """Run :meth:`witness_tick` whenever a witness is due (or a new checkpoint wakes it), at least every
        ``witness_refresh``."""
        refresh = self.s.cfg.limits.witness_refresh
        wake = self.wake
        while not self.s.stopping.is_set():
            wake.clear()
            if not self.s.leads():  # replicas: the leader asks the witnesses; woken when elected
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=refresh)
                continue
            await self.witness_tick()
            nxt = (await self.witnesses()).next_due()
            delay = refresh if nxt is None else min(max(nxt - self.s.clock(), 0.05), refresh)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=delay)

    def witness_status(self) -> list[dict[str, Any]]:
        """Per witness: its newest cosignature (time, age), whether it is stale, failures since (ops view)."""
        sched = self.schedule
        if sched is None:
            return []
        now = self.s.clock()
        out = []
        for w in sched.witnesses():
            st = sched.state(w)
            age = sched.age(w, now)
            out.append({"id": w, "cosigned_at": None if st.cosigned_at is None else rfc3339_seconds(st.cosigned_at),
                        "age_s": None if age is None else round(age, 1), "stale": st.stale,
                        "failures": st.failures, "last_error": st.last_error})
        return out

    async def witness_one(self, peer: str) -> tuple[str, str]:
        """Ask ``peer`` to cosign our latest checkpoint: ``("ok", "")``, ``("idle", why)`` when there is no
        checkpoint yet, or ``("failed", why)``; never raises."""
        old: int | None = None
        try:
            for _ in range(2):  # a 409 names the size the witness holds: ask once more from there
                try:
                    size, body = await self.s.audit.witness_request(peer, old)
                except AuditError as exc:
                    if old is None:  # no checkpoint signed yet: nothing to cosign
                        return "idle", str(exc)
                    raise
                status, data, _ = await self.client(peer).request(
                    "POST", "/v1/witness/add-checkpoint", body=body, content_type="text/plain")
                if status == 200:
                    await self.s.audit.add_cosignatures(peer, size, data, self.s.fed, self.s.clock(), keep=False)
                    return "ok", ""
                if status == 409 and old is None:
                    with contextlib.suppress(ValueError):
                        old = int(data.decode("ascii", "replace").strip())
                        continue
                detail = data[:200].decode("utf-8", "replace")
                self.s.log.warning("witness.refused", peer=peer, status=status, detail=detail)
                return "failed", f"HTTP {status}: {detail}"
            return "failed", "409 twice"
        except PeerUnavailable as exc:
            self.s.log.debug("witness.unavailable", peer=peer, detail=str(exc)[:200])
            return "failed", f"unreachable: {str(exc)[:200]}"
        except Exception as exc:  # a witness problem never stops checkpointing
            self.s.log.warning("witness.failed", peer=peer, detail=str(exc)[:200])
            return "failed", str(exc)[:200]
