"""Transparency and trust upkeep: the signed checkpoints of the audit log (served, and proven
consistent), witnessing (cosigning a peer's checkpoint, and having each linked peer cosign ours,
SPEC §7.3), and the manifest loop that picks up a newer manifest from the configured file or a hub.
"""

from __future__ import annotations

import asyncio
import contextlib

from gateway.audit.db import AuditError
from gateway.core.errors import Code, TrazaError
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
            try:
                cp = await self.audit.publish(self.clock())
            except Exception as exc:  # keep publishing on the next interval
                self.log.error("checkpoint.failed", detail=str(exc))
                continue
            if cp is not None and not self.stopping.is_set():
                await self._witness_all()

    async def _witness_all(self) -> None:
        """Have each directly linked peer cosign our latest checkpoint (SPEC §7.3); never fatal."""
        peers = [n for n in sorted(self.fed.nodes) if n != self.id and self.fed.linked(self.id, n)]
        await asyncio.gather(*(self._witness_one(p) for p in peers))

    async def _witness_one(self, peer: str) -> None:
        old: int | None = None
        try:
            for _ in range(2):  # a 409 names the size the witness holds: ask once more from there
                size, body = await self.audit.witness_request(peer, old)
                status, data, _ = await self._client(peer).request(
                    "POST", "/v1/witness/add-checkpoint", body=body, content_type="text/plain")
                if status == 200:
                    await self.audit.add_cosignatures(peer, size, data, self.fed, self.clock())
                    return
                if status == 409 and old is None:
                    with contextlib.suppress(ValueError):
                        old = int(data.decode("ascii", "replace").strip())
                        continue
                self.log.warning("witness.refused", peer=peer, status=status,
                                 detail=data[:200].decode("utf-8", "replace"))
                return
        except PeerUnavailable as exc:
            self.log.debug("witness.unavailable", peer=peer, detail=str(exc)[:200])
        except Exception as exc:  # a witness problem never stops checkpointing
            self.log.warning("witness.failed", peer=peer, detail=str(exc)[:200])


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
