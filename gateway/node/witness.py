"""Transparency and trust upkeep: the signed checkpoints of the audit log (served, and proven
consistent), witnessing (cosigning a peer's checkpoint, and having each linked peer cosign ours,
SPEC §7.3, afresh every ``witness_refresh`` even when the log is quiet, SPEC §7.2 1.1), and the manifest loop that picks up a newer manifest from the configured file or a hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

from gateway.audit.db import AuditError
from gateway.audit.reader import StoredCheckpoint
from gateway.core.errors import Code, TrazaError
from gateway.core.events import WitnessStale
from gateway.core.note import origin_for
from gateway.core.timeutil import rfc3339_seconds
from gateway.core.witnessing import WitnessSchedule
from gateway.node.state import _NodeState
from gateway.transport.peer import PeerUnavailable
from gateway.trust.trusted import ManifestRejected, split_served


class WitnessMixin(_NodeState):
    # --- checkpoints and witnessing --------------------------------------------------------------------

    def checkpoint_text(self) -> str:
        try:
            return self.audit.served_checkpoint()
        except AuditError:
            raise TrazaError(Code.OVERLOADED, "no checkpoint signed yet; retry later") from None

    async def consistency_proof(self, old: int, new: int) -> list[str]:
        try:
            return await self.db.read(lambda c: self.audit.consistency(c, old, new))
        except (AuditError, ValueError) as exc:  # e.g. a size beyond the log: the caller's fault
            raise TrazaError(Code.MALFORMED, str(exc)) from None

    async def witness_add_checkpoint(self, peer: str, body: bytes) -> tuple[int, str, bytes]:
        before = self.audit.forks_detected
        out = await self.audit.witness_add(peer, body, self.fed, self.clock())
        if self.audit.forks_detected > before:
            self.metrics.witness_forks.labels(peer).inc(self.audit.forks_detected - before)
        return out

    async def _checkpoint_loop(self) -> None:
        interval = self.cfg.limits.checkpoint_interval
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=interval)
            if self.stopping.is_set():
                break
            try:
                await self.checkpoint_tick()
            except Exception as exc:  # keep publishing on the next interval
                self.log.error("checkpoint.failed", detail=str(exc))

    async def checkpoint_tick(self) -> StoredCheckpoint | None:
        """Sign a checkpoint if the log grew; a new one is due at every witness not backing off."""
        cp = await self.audit.publish(self.clock())
        if cp is not None:
            (await self._witnesses()).checkpoint_signed(self.clock())
            self._witness_wake.set()
        return cp

    # --- fresh witnessing (SPEC §7.2, 1.1): every witness_refresh, each linked peer cosigns our latest
    # checkpoint, even when the log did not grow; failures retried with back-off; stale ones audited

    _witness_schedule: WitnessSchedule | None = None
    _witness_lock: asyncio.Lock | None = None
    _witness_wake_event: asyncio.Event | None = None

    @property
    def _witness_wake(self) -> asyncio.Event:
        if self._witness_wake_event is None:
            self._witness_wake_event = asyncio.Event()
        return self._witness_wake_event

    def _witness_peers(self) -> list[str]:
        """This node's witnesses: its directly linked peers in the manifest in force."""
        return [n for n in sorted(self.fed.nodes) if n != self.id and self.fed.linked(self.id, n)]

    async def _witnesses(self) -> WitnessSchedule:
        """The refresh schedule, created at first use with each witness's newest stored cosignature, and
        kept in step with the manifest (peers linked or unlinked)."""
        now = self.clock()
        if self._witness_schedule is None:
            lim = self.cfg.limits
            self._witness_schedule = WitnessSchedule(lim.witness_refresh, base=lim.retry_min)
        sched = self._witness_schedule
        peers = self._witness_peers()
        if sched.witnesses() != peers:
            newest = await self.audit.newest_cosignatures()
            cosigned = {p: newest[origin_for(self.fed.name, p)] for p in peers
                        if origin_for(self.fed.name, p) in newest}
            sched.sync(peers, now, cosigned=cosigned)
        return sched

    async def witness_tick(self) -> list[str]:
        """One step of the refresh loop at ``clock()``: ask every witness that is due, record each outcome,
        audit the witnesses that just became stale. Returns the witnesses asked."""
        if self._witness_lock is None:
            self._witness_lock = asyncio.Lock()
        async with self._witness_lock:
            sched = await self._witnesses()
            due = sched.due(self.clock())
            if due:
                outcomes = await asyncio.gather(*(self._witness_one(p) for p in due))
                now = self.clock()
                for peer, (outcome, detail) in zip(due, outcomes, strict=True):
                    if outcome == "ok":
                        if sched.succeeded(peer, now):
                            self.log.info("witness.fresh", witness=peer)
                    elif outcome == "idle":
                        sched.idle(peer, now)
                    else:
                        sched.failed(peer, now, rand=random.random(), error=detail)
                if any(o == "ok" for o, _ in outcomes):
                    await self.audit.keep_latest()  # the checkpoint file, once for all of them
            now = self.clock()
            for peer, st in sched.newly_stale(now):
                age = sched.age(peer, now) or 0.0
                event = WitnessStale(witness=peer, name=origin_for(self.fed.name, peer),
                                     cosigned_at=None if st.cosigned_at is None else rfc3339_seconds(st.cosigned_at),
                                     age_s=int(age), refresh_s=round(sched.refresh), failures=st.failures,
                                     last_error=st.last_error)
                self.audit_event_bg(event)
                self.log.warning("witness.stale", witness=peer, age_s=int(age), failures=st.failures,
                                 last_error=st.last_error)
            return due

    async def _witness_loop(self) -> None:
        """Run :meth:`witness_tick` whenever a witness is due (or a new checkpoint wakes it), at least every
        ``witness_refresh``."""
        refresh = self.cfg.limits.witness_refresh
        wake = self._witness_wake
        while not self.stopping.is_set():
            wake.clear()
            await self.witness_tick()
            nxt = (await self._witnesses()).next_due()
            delay = refresh if nxt is None else min(max(nxt - self.clock(), 0.05), refresh)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=delay)

    def witness_status(self) -> list[dict[str, Any]]:
        """Per witness: its newest cosignature (time, age), whether it is stale, failures since (ops view)."""
        sched = self._witness_schedule
        if sched is None:
            return []
        now = self.clock()
        out = []
        for w in sched.witnesses():
            st = sched.state(w)
            age = sched.age(w, now)
            out.append({"id": w, "cosigned_at": None if st.cosigned_at is None else rfc3339_seconds(st.cosigned_at),
                        "age_s": None if age is None else round(age, 1), "stale": st.stale,
                        "failures": st.failures, "last_error": st.last_error})
        return out

    async def _witness_one(self, peer: str) -> tuple[str, str]:
        """Ask ``peer`` to cosign our latest checkpoint: ``("ok", "")``, ``("idle", why)`` when there is no
        checkpoint yet, or ``("failed", why)``; never raises."""
        old: int | None = None
        try:
            for _ in range(2):  # a 409 names the size the witness holds: ask once more from there
                try:
                    size, body = await self.audit.witness_request(peer, old)
                except AuditError as exc:
                    if old is None:  # no checkpoint signed yet: nothing to cosign
                        return "idle", str(exc)
                    raise
                status, data, _ = await self._client(peer).request(
                    "POST", "/v1/witness/add-checkpoint", body=body, content_type="text/plain")
                if status == 200:
                    await self.audit.add_cosignatures(peer, size, data, self.fed, self.clock(), keep=False)
                    return "ok", ""
                if status == 409 and old is None:
                    with contextlib.suppress(ValueError):
                        old = int(data.decode("ascii", "replace").strip())
                        continue
                detail = data[:200].decode("utf-8", "replace")
                self.log.warning("witness.refused", peer=peer, status=status, detail=detail)
                return "failed", f"HTTP {status}: {detail}"
            return "failed", "409 twice"
        except PeerUnavailable as exc:
            self.log.debug("witness.unavailable", peer=peer, detail=str(exc)[:200])
            return "failed", f"unreachable: {str(exc)[:200]}"
        except Exception as exc:  # a witness problem never stops checkpointing
            self.log.warning("witness.failed", peer=peer, detail=str(exc)[:200])
            return "failed", str(exc)[:200]

    async def _manifest_loop(self) -> None:
        interval = self.cfg.trust.manifest_poll_seconds
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=interval)
            if self.stopping.is_set():
                break
            await self.poll_manifest()

    async def poll_manifest(self) -> None:
        # a newer manifest dropped into the configured file by an operator
        with contextlib.suppress(OSError):
            mtime = self.manifest_path.stat().st_mtime
            if mtime != self._manifest_mtime:
                self._manifest_mtime = mtime
                try:
                    self._apply_manifest_files(self.manifest_path, self.manifest_path.with_name("manifest.sig"))
                except ManifestRejected as exc:
                    self.log.warning("manifest.rejected", source=str(self.manifest_path), reason=str(exc))
        me = self.fed.nodes[self.id]
        sources = [me.hub] if me.hub else [n.id for n in self.fed.manifest.nodes if n.kind == "hub" and n.id != self.id]
        for src in sources:
            if src is None:
                continue
            try:
                cl = self._client(src)
                got = await cl.get_manifest()
                if got is None:  # 304: unchanged since the last poll
                    continue
                data, etag = got
                cl.manifest_etag = None  # until this one is applied (a refused one is fetched again)
                mbytes, sbytes = split_served(data)
                self.apply_manifest(mbytes, sbytes, source=f"peer:{src}")
                cl.manifest_etag = etag
            except (PeerUnavailable, ValueError) as exc:
                self.log.debug("manifest.poll_failed", peer=src, detail=str(exc)[:200])
            except ManifestRejected as exc:
                self.log.warning("manifest.rejected", source=f"peer:{src}", reason=str(exc))
        self.reload_keys("manifest poll")  # keys become valid or expire with time, too
        self.reload_tls("manifest poll")  # and a renewed TLS certificate put beside the old one
