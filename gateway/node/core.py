"""The :class:`Node` itself: construction (configuration, trust anchor and manifest, keys, database,
audit, blob stores), trust updates, peer identity and load shedding, and the lifecycle (listeners,
background loops, shutdown) with :func:`run_node`. The rest of its behaviour comes from the mixins
of the other modules of this package.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from adapters import get_adapter
from gateway import logging as tlog
from gateway.audit import facade as audit_facade
from gateway.audit import selfcheck
from gateway.audit.checkpoints import CHECKPOINT_FILE
from gateway.config import Config
from gateway.core.envelope import (
    Limits,
)
from gateway.core.errors import Code, TrazaError
from gateway.core.manifest import Federation
from gateway.core.retry import CircuitBreaker
from gateway.crypto.hpke import EncKey
from gateway.crypto.keys import Ed25519Key, SigningKey
from gateway.crypto.tls import cert_serial, peer_node_id, server_context
from gateway.metrics import Metrics
from gateway.node.api import ApiMixin
from gateway.node.blobs import BlobsMixin
from gateway.node.forward import ForwardMixin
from gateway.node.origin import OriginMixin
from gateway.node.receive import ReceiveMixin
from gateway.node.witness import WitnessMixin
from gateway.store import relay as st
from gateway.store.blobs import BlobStore
from gateway.store.db import Database
from gateway.transport.delivery import Delivery, make_delivery
from gateway.transport.local import local_app, ops_app
from gateway.transport.peer import PeerClient, peer_app
from gateway.trust.trusted import ManifestRejected, TrustAnchor, TrustedManifest


class NodeError(Exception):
    """Startup failure with a message naming the file and reason."""


class StoreDamaged(NodeError):
    """The start-up check found the node's own store damaged (``traza run`` exits 2)."""


def _load_signing_key(path: Path, fed: Federation, node_id: str) -> SigningKey:
    pem = path.read_bytes()
    for ref in fed.keys.values():
        k = ref.key
        if ref.node == node_id and k.use == "sig" and k.alg in ("EdDSA", "ES256") and k.jwk is not None:
            try:
                key = SigningKey.from_pem(k.kid, k.alg, pem)  # type: ignore[arg-type]
            except ValueError:
                continue
            if key.public_jwk() == {f: v for f, v in k.jwk.items() if f in ("kty", "crv", "x", "y")}:
                return key
    raise NodeError(f"{path}: this signing key is not a sig key of {node_id!r} in the manifest")


def _load_enc_key(path: Path, fed: Federation, node_id: str) -> dict[str, EncKey]:
    data = path.read_bytes()
    out: dict[str, EncKey] = {}
    for ref in fed.keys.values():
        k = ref.key
        if ref.node == node_id and k.use == "enc" and k.kem:
            try:
                key = EncKey.from_private_bytes(k.kid, k.kem, data)
            except ValueError:
                continue
            if key.public_b64() == k.public_key:
                out[k.kid] = key
    if not out:
        raise NodeError(f"{path}: this encryption key is not an enc key of {node_id!r} in the manifest")
    return out



class Node(ReceiveMixin, BlobsMixin, OriginMixin, ForwardMixin, ApiMixin, WitnessMixin):
    """A running Traza node."""

    def __init__(self, cfg: Config, *, clock: Callable[[], float] = time.time,
                 accept_damaged_store: str | None = None) -> None:
        self.cfg = cfg
        self.id = cfg.node.id
        self.clock = clock
        self.log = tlog.get_logger(node=self.id)
        self.data_dir = cfg.resolve(cfg.node.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # database, blobs: evidence
        lim = cfg.limits
        self.limits = Limits(max_envelope=lim.max_envelope, clock_skew=lim.clock_skew, max_ttl=lim.max_ttl)
        self.max_request = lim.max_request
        # trust: the anchor (or the authority set saved after a rotation), the newest manifest saved by
        # this node, then the configured one if it is newer
        anchor_path = self.data_dir / "trust-anchor.json"
        if not anchor_path.exists():
            anchor_path = cfg.resolve(cfg.trust.anchor)
        try:
            anchor = TrustAnchor.from_json(anchor_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise NodeError(f"{anchor_path}: {exc}") from None
        self.trust = TrustedManifest(anchor)
        self.manifest_path = cfg.resolve(cfg.trust.manifest)
        self._manifest_mtime = 0.0
        problems = []
        for mpath in (self.data_dir / "manifest.json", self.manifest_path):
            try:
                self._apply_manifest_files(mpath, mpath.with_name("manifest.sig"), initial=True)
            except (ManifestRejected, OSError) as exc:
                problems.append(f"{mpath}: {exc}")
        if not self.trust.has_manifest:
            raise NodeError("no trusted manifest: " + "; ".join(problems))
        self._save_trust()
        fed = self.fed
        if fed.node(self.id) is None:
            raise NodeError(f"{cfg.path}: node.id: {self.id!r} is not a node of the manifest")
        self.signer = _load_signing_key(cfg.resolve(cfg.keys.sig), fed, self.id)
        self.enc_keys = _load_enc_key(cfg.resolve(cfg.keys.enc), fed, self.id)
        self.audit_key = Ed25519Key.from_pem(cfg.resolve(cfg.keys.audit).read_bytes())
        self.tls_cert = cfg.resolve(cfg.keys.tls_cert)
        self.tls_key = cfg.resolve(cfg.keys.tls_key)
        # the store checks itself before it is opened for writing (docs/reliability.md)
        self.store_report = selfcheck.check_node_store(self.data_dir, fed, self.id, self.audit_key)
        if not self.store_report.ok:
            if accept_damaged_store is None:
                raise StoreDamaged(self.store_report.refusal())
            selfcheck.set_aside(self.data_dir / CHECKPOINT_FILE, clock())
        else:
            self.log.info("store.checked", entries=self.store_report.size,
                          signed_size=self.store_report.signed_size, seconds=round(self.store_report.seconds, 3))
        # store and audit share one database
        try:
            self.db = Database(self.data_dir / "node.db")
            self.db.migrate(st.SCHEMA)
            self.audit = audit_facade.NodeAudit(self.db, node=self.id, federation=fed.name, key=self.audit_key,
                                                checkpoint_file=self.data_dir / CHECKPOINT_FILE)
        except sqlite3.DatabaseError as exc:
            raise StoreDamaged(f"{self.data_dir / 'node.db'}: the database cannot be opened ({exc})") from None
        if not self.store_report.ok:
            incident = self.store_report.incident(accept_damaged_store or "")
            self.db.write_sync(lambda c: self.audit.stage(c, [incident], clock()))
            self.log.warning("store.check_failed", detail=incident["detail"], reason=incident["reason"])
        self.adapter = get_adapter(cfg.adapter.name)
        # blobs as they travel (ciphertext when encrypted) and plaintext blobs of the national system
        self.blobs = BlobStore(self.data_dir / "blobs", lim.max_blob)
        self.plain_blobs = BlobStore(self.data_dir / "local-blobs", lim.max_blob)
        self._blobs_at: set[tuple[str, str]] = set()  # (peer, sha) known to be complete at the peer
        self._uploads: dict[tuple[str, str], asyncio.Task[int]] = {}  # blob uploads in progress
        self._upload_locks: dict[str, asyncio.Lock] = {}
        self.metrics = Metrics()
        self.clients: dict[str, PeerClient] = {}
        self.breakers: dict[str, CircuitBreaker] = {}
        self.wake: dict[str, asyncio.Event] = {}
        self.forwarders: dict[str, asyncio.Task[None]] = {}
        self.tasks: list[asyncio.Task[Any]] = []
        self.runners: list[web.AppRunner] = []
        self.inbox_event = asyncio.Event()
        self.queue_depth = 0
        self._disk_checked = 0.0
        self._disk_ok = True
        self.stopping = asyncio.Event()
        self.ready = False
        self.counters: dict[str, int] = {}
        self.latency_samples: list[float] = []
        # routes added to the local listener by higher layers (the dashboard of gateway.ops)
        self.local_routes: list[Callable[[web.Application], None]] = []
        self.delivery: Delivery | None = None

    # --- trust ---------------------------------------------------------------------------------------

    def _apply_manifest_files(self, mpath: Path, spath: Path, *, initial: bool = False) -> bool:
        return self.apply_manifest(mpath.read_bytes(), spath.read_bytes(), source=str(mpath), initial=initial)

    def apply_manifest(self, mbytes: bytes, sbytes: bytes, *, source: str, initial: bool = False) -> bool:
        """Verify and apply a manifest (SPEC §2); False if it is the one in force. Raises ManifestRejected."""
        before = self.trust.version if self.trust.has_manifest else 0
        self.trust.update(mbytes, sbytes, self.clock())
        if self.trust.version == before:
            return False
        if not initial:
            self._save_trust()
            self.audit_event_bg({"event": "manifest.applied", "version": self.trust.version, "source": source})
            self.log.info("manifest.applied", version=self.trust.version, source=source)
        return True

    def _save_trust(self) -> None:
        """Keep the manifest in force and the authority set it trusts, for restarts."""
        for name, data in (("manifest.json", self.trust.raw), ("manifest.sig", self.trust.sig_raw),
                           ("trust-anchor.json", self.trust.anchor.to_json())):
            tmp = self.data_dir / f".{name}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, self.data_dir / name)

    def manifest_document(self) -> bytes:
        return self.trust.served()

    # --- peer identity and load shedding -------------------------------------------------------------

    def identify_peer(self, cert_der: bytes | None) -> str:
        if cert_der is None:
            raise TrazaError(Code.PEER_MISMATCH, "no client certificate")
        node = peer_node_id(cert_der)
        fed = self.fed
        if node is None or fed.node(node) is None:
            raise TrazaError(Code.UNKNOWN_NODE, "client certificate names no node of the manifest")
        if fed.is_serial_revoked(cert_serial(cert_der)):
            raise TrazaError(Code.PEER_MISMATCH, f"certificate of {node} is revoked")
        return node

    def shed_load(self) -> float | None:
        if self.queue_depth >= self.cfg.limits.max_queue:
            return 5.0
        now = self.clock()
        if now - self._disk_checked > 1.0:
            self._disk_checked = now
            self._disk_ok = shutil.disk_usage(self.data_dir).free >= self.cfg.limits.min_free_disk
        return None if self._disk_ok else 30.0

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        fed = self.fed
        me = fed.nodes[self.id]
        peer_ctx = server_context(self.tls_cert, self.tls_key, fed.manifest.tls_ca)
        app = peer_app(self, on_denied=self._denied)
        await self._serve(app, self.cfg.listen.peer, peer_ctx)
        local_ctx = server_context(self.tls_cert, self.tls_key, [self.cfg.resolve(self.cfg.keys.local_ca).read_text()])
        await self._serve(local_app(self, max_request=self.max_request, extra_routes=self._add_local_routes),
                          self.cfg.listen.local, local_ctx)
        await self._serve(ops_app(self), self.cfg.listen.ops, None)
        self.queue_depth = await self.db.read(st.queue_total)
        self.audit_event_bg({"event": "node.started", "manifest_version": fed.version, "endpoint": me.endpoint})
        for p in await self.db.read(st.outbox_peers):
            self._wake(p)
        self.tasks.append(asyncio.create_task(self._checkpoint_loop(), name="checkpoints"))
        self.tasks.append(asyncio.create_task(self._manifest_loop(), name="manifest"))
        self.tasks.append(asyncio.create_task(self._blob_purge_loop(), name="blob-purge"))
        self.delivery = make_delivery(self, self.cfg)
        if self.delivery is not None:
            self.tasks.append(asyncio.create_task(self.delivery.run(), name="delivery"))
        self.ready = True
        self.log.info("node.started", peer=self.cfg.listen.peer, manifest_version=fed.version)

    def _add_local_routes(self, app: web.Application) -> None:
        for add in self.local_routes:
            add(app)

    def _denied(self, request: web.Request, err: TrazaError) -> None:
        self.audit_event_bg({"event": "auth.denied", "listener": "peer", "code": err.code.value,
                             "detail": err.detail, "remote": request.remote or ""})
        self.metrics.auth_denied.labels("peer").inc()
        self.log.warning("auth.denied", listener="peer", code=err.code.value, detail=err.detail)

    async def _serve(self, app: web.Application, addr: str, ctx: Any) -> None:
        host, port = addr.rsplit(":", 1)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host.strip("[]"), int(port), ssl_context=ctx, reuse_address=True)
        await site.start()
        self.runners.append(runner)

    async def stop(self) -> None:
        self.stopping.set()
        for ev in self.wake.values():
            ev.set()
        for t in [*self.forwarders.values(), *self.tasks, *self._uploads.values()]:
            t.cancel()
        for t in [*self.forwarders.values(), *self.tasks, *self._uploads.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for r in self.runners:
            await r.cleanup()
        for cl in self.clients.values():
            await cl.close()
        with contextlib.suppress(Exception):
            await self.db.write(lambda c: self.audit.stage(c, [{"event": "node.stopped"}], self.clock()))
        self.db.close()



async def run_node(cfg: Config, *, setup: Callable[[Node], None] | None = None,
                   accept_damaged_store: str | None = None) -> None:
    """Run one node until SIGINT/SIGTERM; ``setup`` lets higher layers (gateway.ops) add to it first;
    ``accept_damaged_store`` (the operator's reason) starts it even if its store check fails."""
    node = Node(cfg, accept_damaged_store=accept_damaged_store)
    if setup is not None:
        setup(node)
    await node.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await node.stop()
