"""The :class:`Node` itself: construction (configuration, trust anchor and manifest, keys, database,
audit, blob stores), trust updates, peer identity and load shedding, and the lifecycle (listeners,
background loops, shutdown) with :func:`run_node`. The rest of its behaviour comes from the mixins
of the other modules of this package.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import gc
import os
import shutil
import signal
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web

from adapters import get_adapter
from gateway import logging as tlog
from gateway.audit import facade as audit_facade
from gateway.audit import selfcheck
from gateway.audit.checkpoints import CHECKPOINT_FILE
from gateway.audit.reader import StoredCheckpoint
from gateway.config import Config
from gateway.core.codes import DEFAULT_CLASSIFICATION, DEFAULT_PURPOSE
from gateway.core.csrf import Origin as WebOrigin
from gateway.core.csrf import listener_origins
from gateway.core.envelope import (
    Limits,
)
from gateway.core.errors import Code, TrazaError
from gateway.core.events import AuthDenied, Event, ManifestApplied, NodeStarted, NodeStopped
from gateway.core.manifest import Federation
from gateway.core.ratelimit import LogBudget
from gateway.core.relay import Config as RelayConfig
from gateway.core.relay import Relay
from gateway.crypto.chunks import encrypted_size
from gateway.crypto.pki import PkiError, check_local_ca
from gateway.crypto.tls import node_cert_refusal, peer_node_id
from gateway.metrics import Metrics
from gateway.national.delivery import Delivery, make_delivery
from gateway.node.api import ApiMixin
from gateway.node.inbound import Inbound
from gateway.node.keys import KeyFileError, KeysMixin
from gateway.node.origin import Origin
from gateway.node.outbound import Outbound
from gateway.node.relay import Applier
from gateway.node.replica import Replica
from gateway.node.retention import Retention
from gateway.node.services import Shared
from gateway.node.supervise import pause
from gateway.node.tls import TlsFileError, TlsMixin
from gateway.node.witness import Witnessing
from gateway.store import relay as st
from gateway.store.blobs import BlobStore
from gateway.store.db import StorageUnavailable
from gateway.store.dialect import StoreUrlError, redact
from gateway.store.lock import DataDirLock, DataDirLocked
from gateway.store.schema import StoreVersionError, open_store
from gateway.transport.listener import Listener, ListenLimits, serve
from gateway.transport.local import local_app, ops_app
from gateway.transport.peer import PeerClient, PeerUnavailable, Result, peer_app
from gateway.trust.trusted import ManifestRejected, TrustAnchor, TrustedManifest, split_served, version_of


class NodeError(Exception):
    """Startup failure with a message naming the file and reason."""


class StoreDamaged(NodeError):
    """The start-up check found the node's own store damaged (``traza run`` exits 2)."""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise NodeError(f"{path}: cannot read the {what} ({exc.strerror})") from None


def _check_local_ca(cfg: Config, fed: Federation) -> None:
    """The local listener's client CA is a CA and not a federation CA. (The node's own certificate is
    chosen and checked by gateway/node/tls.py.)"""
    ca_path = cfg.resolve(cfg.keys.local_ca)
    try:
        check_local_ca(_read(ca_path, "local CA"), fed.manifest.tls_ca)
    except PkiError as exc:
        raise NodeError(f"{ca_path}: keys.local_ca: {exc}: set keys.local_ca to this node's local CA certificate "
                        "(<pki>/nodes/<node>/local/ca.pem, made by `traza pki add-node`)") from None


def _listen_failure(exc: OSError, name: str) -> str:
    """Why a listener could not bind, and what to do, in plain words."""
    if exc.errno == errno.EADDRINUSE:
        return (f"the address is already in use (another process listens there): stop that process or set "
                f"listen.{name} to a free port")
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"no network interface of this host has that address: set listen.{name} to one of its addresses"
    if exc.errno == errno.EACCES:
        return f"permission denied (ports below 1024 need privileges): set listen.{name} to a port above 1023"
    return f"{exc.strerror or exc}"


class Node(ApiMixin, KeysMixin, TlsMixin):
    """A running Traza node: it wires the services (``inbound``, ``outbound``, ``origin``, ``witnessing``;
    see gateway/node/services.py), keeps the manifest in force up to date, and owns start and stop; the
    API backends are its own methods."""

    def __init__(self, cfg: Config, *, clock: Callable[[], float] = time.time,
                 accept_damaged_store: str | None = None, tls_at_clock: bool = False) -> None:
        """``clock`` replaces the system time (tests and simulations); with ``tls_at_clock`` OpenSSL also
        checks certificate validity at ``clock()`` (re-pinned at each TLS reload) instead of the system
        time. Production uses neither."""
        self.cfg = cfg
        self.id = cfg.node.id
        self.clock = clock
        self.log = tlog.get_logger(node=self.id)
        self.data_dir = cfg.resolve(cfg.node.data_dir)
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # database, blobs: evidence
            # one process per data dir, for the node's whole life (released by stop(), or by the kernel)
            self.data_lock = DataDirLock(self.data_dir)
        except DataDirLocked as exc:
            raise NodeError(str(exc)) from None
        except OSError as exc:
            raise NodeError(f"{cfg.path}: node.data_dir: {self.data_dir}: {exc.strerror}") from None
        try:
            self._init(cfg, accept_damaged_store, tls_at_clock)
        except BaseException:
            self.data_lock.release()
            raise

    def _init(self, cfg: Config, accept_damaged_store: str | None, tls_at_clock: bool) -> None:
        lim = cfg.limits
        self.limits = Limits(max_envelope=lim.max_envelope, clock_skew=lim.clock_skew, max_ttl=lim.max_ttl)
        self.max_request = lim.max_request
        self._local_origins = listener_origins(cfg.listen.local, cfg.listen.local_origins)
        # trust: the anchor (or the authority set saved after a rotation), the newest manifest saved by
        # this node, then the configured one if it is newer
        anchor_path, anchor_key = self.data_dir / "trust-anchor.json", "the authority set saved after a rotation"
        if not anchor_path.exists():
            anchor_path, anchor_key = cfg.resolve(cfg.trust.anchor), "trust.anchor"
        try:
            anchor = TrustAnchor.from_json(anchor_path.read_bytes())
        except OSError as exc:
            raise NodeError(f"{anchor_path}: {anchor_key}: cannot read it ({exc.strerror})") from None
        except (ValueError, ManifestRejected) as exc:
            raise NodeError(f"{anchor_path}: {anchor_key}: {exc}") from None
        # the version this node trusted before (its saved manifest, expired or not) is the floor: a restart
        # must not fall back to an older manifest that happens to expire later (docs/trust.md)
        saved = self.data_dir / "manifest.json"
        try:
            floor = version_of(saved.read_bytes())
        except FileNotFoundError:
            floor = 0
        except OSError as exc:
            raise NodeError(f"{saved}: the manifest this node saved: cannot read it ({exc.strerror})") from None
        self.trust = TrustedManifest(anchor, floor=floor)
        self.manifest_path = cfg.resolve(cfg.trust.manifest)
        self._manifest_mtime: tuple[tuple[int, int], ...] = ()
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
        try:
            self._load_keys()  # signing, encryption and audit keys (gateway/node/keys.py)
        except KeyFileError as exc:
            raise NodeError(str(exc)) from None
        try:  # the node's TLS certificate: the configured one or a renewed one beside it (gateway/node/tls.py)
            self._init_tls(at_clock=tls_at_clock)
        except TlsFileError as exc:
            raise NodeError(str(exc)) from None
        _check_local_ca(cfg, fed)
        # the store checks itself before it is opened for writing (docs/reliability.md); it is the SQLite
        # file in data_dir, or the PostgreSQL database of [store] url (docs/ha.md)
        store = cfg.store.url or self.data_dir / selfcheck.DB_FILE
        if cfg.store.url is not None:  # started during a restart or a failover of the database: wait for it
            from gateway.store import pg

            try:
                pg.wait_writable(cfg.store.url, cfg.store.startup_wait,
                                 on_wait=lambda why, waited: self.log.warning(
                                     "store.waiting", detail=why[:300], waited=round(waited, 1),
                                     startup_wait=cfg.store.startup_wait))
            except StoreUrlError as exc:
                raise NodeError(f"{cfg.path}: store.url: {exc}") from None
        try:
            self.store_report = selfcheck.check_node_store(self.data_dir, fed, self.id, self.audit_key, db=store)
        except StoreUrlError as exc:
            raise NodeError(f"{cfg.path}: store.url: {exc}") from None
        if not self.store_report.ok:
            if accept_damaged_store is None:
                raise StoreDamaged(self.store_report.refusal())
            selfcheck.set_aside(self.data_dir / CHECKPOINT_FILE, self.clock())
        else:
            self.log.info("store.checked", entries=self.store_report.size,
                          signed_size=self.store_report.signed_size, seconds=round(self.store_report.seconds, 3))
        # store and audit share one database
        try:
            self.db = open_store(store, on_fatal=self._storage_fatal)
            self.audit = audit_facade.NodeAudit(self.db, node=self.id, federation=fed.name, key=[k for _, k in self.keyring.audit],
                                                checkpoint_file=self.data_dir / CHECKPOINT_FILE)
        except StoreUrlError as exc:
            raise NodeError(f"{cfg.path}: store.url: {exc}") from None
        except (sqlite3.DatabaseError, StoreVersionError) as exc:
            raise StoreDamaged(f"{redact(str(store))}: the database cannot be opened ({exc})") from None
        if not self.store_report.ok:
            incident = self.store_report.incident(accept_damaged_store or "")
            self.db.write_sync(lambda c: self.audit.stage(c, [incident], self.clock()))
            self.log.warning("store.check_failed", detail=incident.detail, reason=incident.reason)
        self.adapter = get_adapter(cfg.adapter.name)
        # blobs as they travel (ciphertext when encrypted) and plaintext blobs of the national system
        # max_blob limits the plaintext (SPEC §11): a blob travels as its TZB1 ciphertext, a little larger
        # (replicas of one node share them: [store] blob_dir, a folder every replica reaches; docs/ha.md)
        blob_root = cfg.resolve(cfg.store.blob_dir) if cfg.store.blob_dir else self.data_dir
        self.blobs = BlobStore(blob_root / "blobs", encrypted_size(lim.max_blob))
        self.plain_blobs = BlobStore(blob_root / "local-blobs", lim.max_blob)
        self.metrics = Metrics()
        self.stopping = asyncio.Event()
        self.counters: dict[str, int] = {}
        # the relay's rules (pure, gateway/core/relay.py) and the services that use them, each with the
        # dependencies it names (gateway/node/services.py); the applier of the rules' commands comes last
        # because replies are made by the origin service
        self.relay = Relay(RelayConfig(here=self.id, retry_min=lim.retry_min, retry_max=lim.retry_max))
        # the clock through the node: tests (and the 400-day run) move a node's time by replacing node.clock
        # this process as one replica of the node (a store on PostgreSQL may be shared; docs/ha.md)
        self.replica = Replica(cfg, clock=lambda: self.clock(), log=self.log, stopping=self.stopping,
                               rescan=self._rescan, on_elected=lambda: self.witnessing.elected())
        self.shared = Shared(cfg=cfg, here=self.id, clock=lambda: self.clock(), log=self.log, db=self.db, audit=self.audit,
                             trust=self.trust, metrics=self.metrics, rules=self.relay, stopping=self.stopping,
                             count=self.count, supervise=self._supervise,
                             replica=self.replica.id if self.replica.replicated else None, leads=self.replica.leads)
        self.outbound = Outbound(self.shared, blobs=self.blobs, client_tls=self.client_tls_context)
        self.inbound = Inbound(self.shared, limits=self.limits, blobs=self.blobs, plain_blobs=self.plain_blobs,
                               enc_keys=lambda: self.enc_keys)
        self.origin = Origin(self.shared, limits=self.limits, signer=lambda: self.signer, blobs=self.blobs,
                             plain_blobs=self.plain_blobs, wake=self.outbound.wake, queued=self._queued,
                             evidence_keys=self._signing_keys)
        self.retention = Retention(self.shared, blobs=self.blobs, plain_blobs=self.plain_blobs)
        self.witnessing = Witnessing(self.shared, client=self.outbound.client, audit_event=self.audit_event_bg)
        self.applier = self.shared.applier = Applier(
            here=self.id, db=self.db, audit=self.audit, fed=lambda: self.fed, signer=lambda: self.signer,
            blobs=self.blobs, reply=self.origin.reply_in_txn, evidence_keys=self._signing_keys,
            on_effects=self._run_effects)
        self.tasks: list[asyncio.Task[Any]] = []
        self.runners: list[web.AppRunner] = []
        self.listeners: dict[str, Listener] = {}  # peer, local, ops: connection guards (transport/listener.py)
        self.inbox_event = asyncio.Event()
        self.queue_depth = 0
        self.audit_backlog = collections.deque()
        self.exit_code = 0  # non-zero when the node stopped itself (a failed fsync)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._disk_checked = 0.0
        self._disk_ok = True
        self.fatal = asyncio.Event()  # set when the node must stop itself (run_node then exits non-zero)
        self.ready = False
        # routes added to the local listener by higher layers (the dashboard of gateway.ops)
        self.local_routes: list[Callable[[web.Application], None]] = []
        self.delivery: Delivery | None = None

    # --- the services, as the transports and the API backends see them ---------------------------------

    async def receive_batch(self, peer: str, raws: list[Any]) -> list[Result]:
        return await self.inbound.receive_batch(peer, raws)

    async def refuse_batch(self, peer: str, err: TrazaError, envelopes: int | None) -> None:
        await self.inbound.refuse_batch(peer, err, envelopes)

    @property
    def max_batch(self) -> int:
        return self.inbound.max_batch

    def peer_blobs(self) -> BlobStore:
        return self.blobs

    def local_blobs(self) -> BlobStore:
        return self.plain_blobs

    def blob_stored(self, sha: str, length: int, source: str) -> None:
        self.count("blobs_stored")
        self.log.info("blob.stored", sha256=sha, len=length, source=source)

    async def submit(self, *, mt: str, to: str, body: bytes, system: str, hc: str = "H0",
                     cls: str = DEFAULT_CLASSIFICATION, pur: str = DEFAULT_PURPOSE, irt: str | None = None,
                     ttl: int | None = None, cid: str | None = None,
                     attachments: list[dict[str, Any]] | None = None) -> str:
        return await self.origin.submit(mt=mt, to=to, body=body, system=system, hc=hc, cls=cls, pur=pur, irt=irt,
                                        ttl=ttl, cid=cid, attachments=attachments)

    async def resend(self, jti: str, operator: str) -> dict[str, Any]:
        return await self.origin.resend(jti, operator)

    async def check_receipts(self, now: float) -> list[str]:
        return await self.origin.check_receipts(now)

    def _reply_in_txn(self, conn: sqlite3.Connection, *, mt: str, to: str, body: dict[str, Any], irt: str,
                      cid: str, now: float, source: str) -> str | None:
        return self.origin.reply_in_txn(conn, mt=mt, to=to, body=body, irt=irt, cid=cid, now=now, source=source)

    def _wake(self, peer: str) -> None:
        self.outbound.wake(peer)

    def _client(self, peer: str) -> PeerClient:
        return self.outbound.client(peer)

    @property
    def clients(self) -> dict[str, PeerClient]:
        return self.outbound.clients

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
            self.audit_event_bg(ManifestApplied(version=self.trust.version, source=source))
            self.log.info("manifest.applied", version=self.trust.version, source=source)
            self.reload_keys(f"manifest v{self.trust.version}")  # new keys of this node, without a restart
            self.reload_tls(f"manifest v{self.trust.version}")  # its CAs, and a certificate it now accepts
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

    def manifest_etag(self) -> str:
        return self.trust.etag()

    # --- the manifest in force: a newer one from the configured file or a hub (SPEC §2, §4.4) ---------

    async def _manifest_loop(self) -> None:
        interval = self.cfg.trust.manifest_poll_seconds
        while not self.stopping.is_set():
            if await pause(self.stopping, interval):
                break
            await self.poll_manifest()

    async def poll_manifest(self) -> None:
        # a newer manifest dropped into the configured file by an operator
        with contextlib.suppress(OSError):
            # both files of the pair: an operator copies manifest.json, then manifest.sig, and a poll may fall
            # in between (the mismatched pair is refused; the signatures that arrive next are read then)
            sig = self.manifest_path.with_name("manifest.sig")
            mtime = tuple((st.st_mtime_ns, st.st_size) for st in (self.manifest_path.stat(), sig.stat()))
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
                if cl.manifest_etag is None:
                    # the manifest in force has the ETag the hub serves for it (a hash of both files): even
                    # the first poll after a start costs a few hundred bytes when nothing changed (issue #19)
                    cl.manifest_etag = self.manifest_etag()
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

    # --- witnessing (gateway/node/witness.py): what the peer and local APIs and the tests call ------------

    def checkpoint_text(self) -> str:
        return self.witnessing.checkpoint_text()

    async def consistency_proof(self, old: int, new: int) -> list[str]:
        return await self.witnessing.consistency_proof(old, new)

    async def witness_add_checkpoint(self, peer: str, body: bytes) -> tuple[int, str, bytes]:
        return await self.witnessing.witness_add_checkpoint(peer, body)

    async def checkpoint_tick(self) -> StoredCheckpoint | None:
        return await self.witnessing.checkpoint_tick()

    async def witness_tick(self) -> list[str]:
        return await self.witnessing.witness_tick()

    def witness_status(self) -> list[dict[str, Any]]:
        return self.witnessing.witness_status()

    def reload_files(self, reason: str) -> None:
        """SIGHUP: re-read the key files (gateway/node/keys.py) and the TLS certificate files
        (gateway/node/tls.py) against the manifest in force."""
        self.reload_keys(reason)
        self.reload_tls(reason)

    # --- peer identity and load shedding -------------------------------------------------------------

    def identify_peer(self, cert_der: bytes | None) -> str:
        """The node of a peer's client certificate, checked on every request against the manifest in force
        (SPEC §4: a node of the manifest, ECDSA P-256, not revoked); TrazaError otherwise."""
        refusal = node_cert_refusal(cert_der, self.fed)
        if refusal is not None:
            code = (Code.UNKNOWN_NODE if refusal.reason in ("unknown_node", "bad_certificate", "unknown_ca")
                    else Code.PEER_MISMATCH)
            raise TrazaError(code, refusal.detail)
        node = peer_node_id(cert_der) if cert_der is not None else None
        assert node is not None
        return node

    def local_origins(self) -> frozenset[WebOrigin]:
        return self._local_origins

    def shed_load(self) -> float | None:
        if self.queue_depth >= self.cfg.limits.max_queue:
            return 5.0
        now = self.clock()
        if now - self._disk_checked > 1.0:
            self._disk_checked = now
            self._disk_ok = shutil.disk_usage(self.data_dir).free >= self.cfg.limits.min_free_disk
        return None if self._disk_ok else 30.0

    # --- lifecycle -----------------------------------------------------------------------------------

    def _storage_fatal(self, err: StorageUnavailable) -> None:
        """On the writer thread: an fsync failed. The database takes no write any more; the node stops and
        its process exits non-zero so that its supervisor (systemd, the container runtime) restarts it and
        SQLite recovers from the WAL (issue #11)."""
        self.exit_code = 75
        self.log.critical("store.fsync_failed", detail=err.detail)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.fatal.set)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        fed = self.fed
        me = fed.nodes[self.id]
        peer_ctx = self.server_tls_context("peer", fed.manifest.tls_ca)
        app = peer_app(self, on_denied=self._denied, on_manifest=self.metrics.manifest_served)
        self._log_budget = LogBudget(lines=20, window=10.0)  # refusal and timeout lines, per listener
        try:
            # after each handshake on the peer listener: a node of the manifest in force, P-256, not revoked
            await self._serve("peer", app, self.cfg.listen.peer, peer_ctx,
                              check_peer=lambda der: node_cert_refusal(der, self.fed))
            # the local listener: clients of the local CAs in force, not revoked (gateway/node/tls.py)
            local_ctx = self.server_tls_context("local", [self.local_ca_pem])
            await self._serve("local", local_app(self, max_request=self.max_request, extra_routes=self._add_local_routes),
                              self.cfg.listen.local, local_ctx, check_peer=self.local_client_refusal)
            await self._serve("ops", ops_app(self), self.cfg.listen.ops, None)
        except NodeError:
            # a listener could not start: give back the ports already taken, the store and the data dir
            for r in self.runners:
                await r.cleanup()
            self.runners.clear()
            self.db.close()
            self.data_lock.release()
            raise
        self.queue_depth = await self.db.read(st.queue_total)
        self.audit_event_bg(NodeStarted(manifest_version=fed.version, endpoint=", ".join(me.urls)))
        await self.replica.probe()  # the first replica to start leads at once
        await self.outbound.wake_all()
        if self.replica.replicated:
            self.tasks.append(self._supervise("leader", self.replica.leader_loop))
            self.tasks.append(self._supervise("outbox-scan", self.replica.scan_loop))
        self.tasks.append(self._supervise("checkpoints", self.witnessing.checkpoint_loop))
        self.tasks.append(self._supervise("witnesses", self.witnessing.witness_loop))
        self.tasks.append(self._supervise("manifest", self._manifest_loop))
        self.tasks.append(self._supervise("blob-purge", self.outbound.purge_loop))
        self.tasks.append(self._supervise("retention", self.retention.loop))
        self.tasks.append(self._supervise("audit-backlog", self._audit_backlog_loop))
        self.tasks.append(self._supervise("receipt-watchdog", self.origin.watchdog_loop))
        self.delivery = make_delivery(self, self.cfg)
        if self.delivery is not None:
            self.tasks.append(self._supervise("delivery", self.delivery.run))
        self.ready = True
        self.log.info("node.started", peer=self.cfg.listen.peer, manifest_version=fed.version)

    async def _rescan(self) -> None:
        """Replicas (docs/ha.md): every peer's queue woken (rows other replicas left), and the outbox size
        read again (the other replicas enqueue and dequeue too: the count kept from this one's own changes
        would drift, and it decides when to shed load)."""
        self.queue_depth = await self.db.read(st.queue_total)
        await self.outbound.wake_all()

    def _add_local_routes(self, app: web.Application) -> None:
        for add in self.local_routes:
            add(app)

    def _denied(self, request: web.Request, err: TrazaError) -> None:
        self.audit_event_bg(AuthDenied(listener="peer", code=err.code.value, detail=err.detail,
                                       remote=request.remote or ""))
        self.metrics.auth_denied.labels("peer").inc()
        self.log.warning("auth.denied", listener="peer", code=err.code.value, detail=err.detail)

    async def _serve(self, name: str, app: web.Application, addr: str, ctx: Any,
                     check_peer: Callable[[bytes | None], Any] | None = None) -> None:
        """Listen on ``addr`` with the connection guards of gateway.transport.listener (cap, TLS handshake
        observed, header/body/keep-alive timeouts), refusals counted and logged by :meth:`_refused`."""
        lim = self.cfg.limits
        limits = ListenLimits(handshake_timeout=lim.handshake_timeout, header_timeout=lim.header_timeout,
                              body_timeout=lim.body_timeout, keepalive_timeout=lim.keepalive_timeout,
                              max_connections=lim.max_connections)
        listener = Listener(name, limits, on_refused=self._refused, on_timeout=self._timed_out, check_peer=check_peer)
        host, port = addr.rsplit(":", 1)
        try:
            self.runners.append(await serve(app, host.strip("[]"), int(port), ctx, listener))
        except OSError as exc:
            raise NodeError(f"{self.cfg.path}: listen.{name}: cannot listen on {addr}: {_listen_failure(exc, name)}") from None
        self.listeners[name] = listener
        self.metrics.connections_open.labels(name).set_function(lambda: listener.open)

    def _refused(self, listener: str, reason: str, remote: str, detail: str) -> None:
        """A connection refused before any request (cap, TLS handshake, certificate checked right after
        it): always counted; logged within a budget of 20 lines per 10 s per listener, each line carrying
        the number of lines left out before it (``suppressed``), so a flood cannot fill the disk."""
        self.metrics.tls_refused.labels(listener, reason).inc()
        now = time.monotonic()
        ok, suppressed = self._log_budget.allow(f"refused:{listener}", now)
        if ok:
            self.log.warning("tls.refused", listener=listener, reason=reason, remote=remote, detail=detail[:300],
                             suppressed=suppressed)
        # SPEC §6: every refused call to the local API is audited (auth.denied), also one refused in the TLS
        # handshake (a revoked, expired or foreign client certificate); within the same budget, each entry
        # saying how many were left out before it, so a flood cannot fill the signed log
        if listener == "local":
            ok, suppressed = self._log_budget.allow("audit:local", now)
            if ok:
                more = f"; {suppressed} more refused since the last entry" if suppressed else ""
                self.audit_event_bg(AuthDenied(listener="local", code=reason, remote=remote,
                                               detail=f"refused in the TLS handshake: {detail[:300]}{more}"))

    def _timed_out(self, listener: str, phase: str, remote: str) -> None:
        self.metrics.timed_out.labels(listener, phase).inc()
        ok, suppressed = self._log_budget.allow(f"timeout:{listener}", time.monotonic())
        if ok:
            self.log.warning("connection.timed_out", listener=listener, phase=phase, remote=remote,
                             suppressed=suppressed)

    async def stop(self) -> None:
        self.stopping.set()
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.outbound.stop()
        for r in self.runners:
            await r.cleanup()
        for listener in self.listeners.values():
            listener.abort_all()
        await self.outbound.close()
        pending: list[tuple[float, Event]] = [*self.audit_backlog, (self.clock(), NodeStopped())]
        try:
            await self.db.write(partial(self._stage_backlog, items=pending))
        except Exception as exc:
            self.log.error("audit.write_failed", audit_event="node.stopped", backlog=len(pending) - 1,
                           error=str(exc)[:300])
        await self.replica.release()
        self.db.close()
        self.data_lock.release()



async def run_node(cfg: Config, *, setup: Callable[[Node], None] | None = None,
                   accept_damaged_store: str | None = None) -> int:
    """Run one node until SIGINT/SIGTERM, or until it must stop itself (a failed fsync); ``setup`` lets
    higher layers (gateway.ops) add to it first; ``accept_damaged_store`` (the operator's reason) starts it
    even if its store check fails. Returns the process exit status (0, or 75 when the node stopped
    itself)."""
    node = Node(cfg, accept_damaged_store=accept_damaged_store)
    if setup is not None:
        setup(node)
    await node.start()
    # what start-up built (modules, manifest, keys, caches) lives as long as the process: moved out of the
    # cyclic collector's reach, a full collection no longer walks it (45-60 ms pauses of a relaying node
    # measured before, about 1 ms after; issue #17)
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    stop = node.fatal
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(NotImplementedError):  # SIGHUP: re-read the key and certificate files
        loop.add_signal_handler(signal.SIGHUP, node.reload_files, "sighup")
    await stop.wait()
    await node.stop()
    return node.exit_code
