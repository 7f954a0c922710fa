"""One node: wires config, trust, keys, store, audit and transport together; owns startup and shutdown.

The relay pipeline (SPEC §4.2) runs here: the pure checks of ``gateway.core.envelope`` (steps 1–9),
then the replay check, the durable store with its audit entry and the ack (steps 10–12), all inside one
group-committed transaction of ``gateway.store.db.Database``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from adapters import get_adapter
from adapters.base import AdapterError, Attachment, media_type
from gateway import logging as tlog
from gateway.audit import facade as audit_facade
from gateway.audit.db import AuditError
from gateway.config import Config
from gateway.core.b64 import b64url_decode, b64url_encode
from gateway.core.envelope import (
    NO_REPLY_TYPES,
    SUITES,
    BlobEnc,
    BlobRef,
    Envelope,
    Limits,
    Verified,
    append_hop,
    build_envelope,
    decode_envelope,
    encode_envelope,
    make_ack,
    token_digest,
    verify_ack,
    verify_envelope,
)
from gateway.core.errors import Code, TrazaError
from gateway.core.ids import uuid7
from gateway.core.manifest import Federation
from gateway.core.messages import MESSAGE_TYPES, decode_body
from gateway.core.retry import CircuitBreaker, next_attempt_at
from gateway.crypto.chunks import (
    decrypt_file,
    encrypt_file,
    new_content_key,
    open_content_key,
    seal_content_key,
)
from gateway.crypto.hpke import EncKey, seal
from gateway.crypto.keys import Ed25519Key, SigningKey, verifier_for
from gateway.crypto.tls import cert_serial, client_context, peer_node_id, server_context
from gateway.metrics import Metrics
from gateway.store import relay as st
from gateway.store.blobs import BadBlobName, BlobError, BlobStore, BlobTooLarge
from gateway.store.db import Database
from gateway.transport.delivery import Delivery, make_delivery
from gateway.transport.local import STANDARD_CT, local_app, ops_app
from gateway.transport.peer import ErrorBody as EB
from gateway.transport.peer import PeerClient, PeerUnavailable, Result, peer_app
from gateway.trust.trusted import ManifestRejected, TrustAnchor, TrustedManifest, split_served


class _BlobLite(msgspec.Struct):
    sha256: str
    len: int


class _BlobClaims(msgspec.Struct):
    blobs: list[_BlobLite] | None = None


_blob_claims = msgspec.json.Decoder(_BlobClaims)


def _blob_refs(envelope_bytes: bytes) -> list[_BlobLite]:
    """The ``blobs`` claim of a stored envelope (read without verifying: it was verified on arrival)."""
    token = decode_envelope(envelope_bytes).token
    try:
        return _blob_claims.decode(b64url_decode(token.split(".")[1])).blobs or []
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, IndexError):
        return []


class NodeError(Exception):
    """Startup failure with a message naming the file and reason."""


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


class Node:
    """A running Traza node."""

    def __init__(self, cfg: Config, *, clock: Callable[[], float] = time.time) -> None:
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
        # store and audit share one database
        self.db = Database(self.data_dir / "node.db")
        self.db.migrate(st.SCHEMA)
        self.audit = audit_facade.NodeAudit(self.db, node=self.id, federation=fed.name, key=self.audit_key)
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

    @property
    def fed(self) -> Federation:
        return self.trust.federation

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

    def audit_event_bg(self, event: dict[str, Any]) -> None:
        """Append an audit entry from outside a write (fire and forget, still group-committed)."""
        self.db.submit(lambda conn: self.audit.stage(conn, [event], self.clock()))

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    # --- receiving (SPEC §4.1, §4.2) -----------------------------------------------------------------

    def _open_payload(self, ct: bytes, info: bytes, kid: str) -> bytes:
        key = self.enc_keys.get(kid)
        if key is None:
            raise TrazaError(Code.DECRYPT_FAILED, f"no private key for {kid}")
        return key.open(ct, info)

    def _verify(self, raw: bytes, peer: str | None, now: float) -> Verified:
        return verify_envelope(
            raw,
            here=self.id,
            peer=peer,
            fed=self.fed,
            now=now,
            key_verifier=verifier_for,
            known_types=MESSAGE_TYPES,
            limits=self.limits,
            open_payload=self._open_payload,
            decode_body=decode_body,
        )

    async def receive_batch(self, peer: str, raws: list[msgspec.Raw]) -> list[Result]:
        now = self.clock()
        checked: list[Verified | tuple[TrazaError, str | None]] = []
        for raw in raws:
            try:
                ver = self._verify(bytes(raw), peer, now)
                if ver.claims.blobs:
                    self._check_blobs(ver)
                checked.append(ver)
            except TrazaError as err:
                checked.append((err, _best_effort_jti(bytes(raw))))
        for i, item in enumerate(checked):
            if isinstance(item, Verified) and item.claims.blobs and item.next_hop is None:
                try:  # recipient: decrypt the blobs for the national system (off the event loop)
                    await asyncio.to_thread(self._open_blobs, item)
                except TrazaError as err:
                    checked[i] = (err, item.claims.jti)
                except BlobError as exc:  # e.g. a message id that cannot name an index file
                    checked[i] = (TrazaError(Code.MALFORMED, f"blobs of {item.claims.jti[:64]}: {exc}"), None)
                except OSError as exc:
                    checked[i] = (TrazaError(Code.INTERNAL, f"blobs of {item.claims.jti}: {exc}"), item.claims.jti)
        results = await self.db.write(lambda conn: self._commit_received(conn, peer, checked, now))
        for v in checked:
            if isinstance(v, Verified):
                if v.next_hop:
                    self._wake(v.next_hop)
                else:
                    self.inbox_event.set()
        for item, r in zip(checked, results, strict=True):
            mt = item.claims.mt if isinstance(item, Verified) else "unknown"
            self.metrics.received.labels(mt, peer, r.status).inc()
            self.count(f"envelopes_{r.status}")
            self.log.info("envelope", jti=r.jti, peer=peer, status=r.status,
                          code=r.error.code if r.error else None)
        return results

    # --- blobs (SPEC §4.3) -----------------------------------------------------------------------------

    def peer_blobs(self) -> BlobStore:
        return self.blobs

    def local_blobs(self) -> BlobStore:
        return self.plain_blobs

    def blob_stored(self, sha: str, length: int, source: str) -> None:
        self.count("blobs_stored")
        self.log.info("blob.stored", sha256=sha, len=length, source=source)

    def _check_blobs(self, v: Verified) -> None:
        """Every blob the token names is complete in this node's store, and encrypted when the payload is."""
        c = v.claims
        for i, b in enumerate(c.blobs or []):
            if b.enc is None and c.pld.enc is not None:
                raise TrazaError(Code.ENCRYPTION_REQUIRED, f"blobs[{i}] ({b.name}) is not encrypted but the payload is")
            if b.enc is not None:
                ref = self.fed.keys.get(b.enc.kid)
                if ref is None or ref.node != c.aud or ref.key.use != "enc" or b.enc.suite != SUITES.get(ref.key.kem or ""):
                    raise TrazaError(Code.ENCRYPTION_REQUIRED,
                                     f"blobs[{i}] ({b.name}) is not encrypted to an enc key of {c.aud!r}")
            if b.len > self.cfg.limits.max_blob:
                raise TrazaError(Code.TOO_LARGE, f"blobs[{i}] ({b.name}) of {b.len} bytes exceeds max_blob")
            try:
                present = self.blobs.has(b.sha256, b.len)
            except BadBlobName as exc:
                raise TrazaError(Code.MALFORMED, f"blobs[{i}]: {exc}") from None
            if not present:
                raise TrazaError(Code.BLOB_MISSING, f"blobs[{i}] {b.sha256} ({b.name}, {b.len} bytes) is not complete "
                                                    f"on {self.id}: PUT /v1/blobs/{b.sha256} before the envelope")

    def _open_blobs(self, v: Verified) -> None:
        """Recipient: decrypt (or link) each blob into the plaintext store and record what the message
        carries, for the inbox. Runs in a thread; raises TrazaError(decrypt_failed)."""
        c = v.claims
        if self.plain_blobs.read_index(c.jti) is not None:
            return
        entries: list[dict[str, Any]] = []
        for i, b in enumerate(c.blobs or []):
            if b.enc is None:
                self.plain_blobs.link_from(self.blobs, b.sha256)
                entries.append({"sha256": b.sha256, "len": b.len, "ct": b.ct, "name": b.name})
                continue
            key = self.enc_keys.get(b.enc.kid)
            if key is None:
                raise TrazaError(Code.DECRYPT_FAILED, f"blobs[{i}]: no private key for {b.enc.kid}")
            tmp = self.plain_blobs.temp_path()
            try:
                ck = open_content_key(key, b64url_decode(b.enc.key), b.sha256, c.jti)
                psha, plen = decrypt_file(self.blobs.path(b.sha256), tmp, ck)
                self.plain_blobs.adopt(tmp, psha)
            except (ValueError, OSError) as exc:  # DecryptError is a ValueError
                raise TrazaError(Code.DECRYPT_FAILED,
                                 f"blobs[{i}] {b.sha256} ({b.name}) of {c.jti} could not be decrypted: {exc}") from None
            finally:
                tmp.unlink(missing_ok=True)
            entries.append({"sha256": psha, "len": plen, "ct": b.ct, "name": b.name})
        self.plain_blobs.write_index(c.jti, entries)

    def _outgoing_blobs(self, attachments: list[dict[str, Any]], jti: str, enc_to: Any) -> list[BlobRef]:
        """Origin: the ``blobs`` claim for plaintext blobs of the local store; encrypts each one in chunks
        to a new blob (its content key sealed to ``enc_to``, the recipient's manifest enc key) when the
        payload is encrypted. Runs in a thread."""
        out: list[BlobRef] = []
        for a in attachments:
            sha = a["sha256"]
            if enc_to is None:
                self.blobs.link_from(self.plain_blobs, sha)
                out.append(BlobRef(sha256=sha, len=a["len"], ct=a["ct"], name=a["name"]))
                continue
            ck = new_content_key()
            tmp = self.blobs.temp_path()
            try:
                esha, elen = encrypt_file(self.plain_blobs.path(sha), tmp, ck)
                self.blobs.adopt(tmp, esha)
            finally:
                tmp.unlink(missing_ok=True)
            sealed = seal_content_key(enc_to.kem, enc_to.public_key, ck, esha, jti)
            out.append(BlobRef(sha256=esha, len=elen, ct=a["ct"], name=a["name"],
                               enc=BlobEnc(suite=SUITES[enc_to.kem], kid=enc_to.kid, key=b64url_encode(sealed))))
        return out

    def _check_attachments(self, items: Any) -> list[dict[str, Any]]:
        """The standard form's ``attachments`` (blobs uploaded with PUT /local/v1/blobs first)."""
        if not isinstance(items, list):
            raise TrazaError(Code.SCHEMA_INVALID, "expected a list - at `$.attachments`")
        out = []
        for i, a in enumerate(items):
            where = f"$.attachments[{i}]"
            if not isinstance(a, dict) or set(a) - {"sha256", "len", "ct", "name"}:
                raise TrazaError(Code.SCHEMA_INVALID, f"expected an object with sha256, len, ct, name - at `{where}`")
            sha, n, ct, name = a.get("sha256"), a.get("len"), a.get("ct"), a.get("name")
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise TrazaError(Code.SCHEMA_INVALID, f"len must be a non-negative integer - at `{where}.len`")
            if not isinstance(ct, str) or not ct or len(ct) > 255:
                raise TrazaError(Code.SCHEMA_INVALID, f"ct must be a media type - at `{where}.ct`")
            if not isinstance(name, str) or not name or len(name) > 255 or "/" in name or "\\" in name:
                raise TrazaError(Code.SCHEMA_INVALID, f"name must be a file name without folders - at `{where}.name`")
            try:
                present = isinstance(sha, str) and self.plain_blobs.has(sha, n)
            except BadBlobName:
                raise TrazaError(Code.SCHEMA_INVALID, f"sha256 is not a base64url SHA-256 - at `{where}.sha256`") from None
            if not present:
                raise TrazaError(Code.BLOB_MISSING, f"blob {sha} of {n} bytes has not been uploaded "
                                                    f"(PUT /local/v1/blobs/{sha} first) - at `{where}`")
            out.append({"sha256": sha, "len": n, "ct": ct, "name": name})
        return out

    def _import_attachment(self, att: Attachment) -> dict[str, Any]:
        """An adapter's attachment (bytes or a file) into the plaintext store."""
        try:
            if att.data is not None:
                sha, n = self.plain_blobs.put_bytes(att.data)
            elif att.path is not None:
                sha, n = self.plain_blobs.put_file(Path(att.path))
            else:
                raise TrazaError(Code.INTERNAL, f"attachment {att.name} has neither data nor path")
        except BlobTooLarge as exc:
            raise TrazaError(Code.TOO_LARGE, f"attachment {att.name}: {exc}") from None
        except (OSError, BlobError) as exc:
            raise TrazaError(Code.INTERNAL, f"attachment {att.name}: {exc}") from None
        if sha != att.sha256 or n != att.length:
            raise TrazaError(Code.SCHEMA_INVALID, f"attachment {att.name}: digest or length differs from the adapter's")
        return {"sha256": sha, "len": n, "ct": att.media_type, "name": att.name}

    def _commit_received(self, conn: sqlite3.Connection, peer: str,
                         checked: list[Verified | tuple[TrazaError, str | None]], now: float) -> list[Result]:
        out: list[Result] = []
        seen: dict[str, Result] = {}
        for item in checked:
            if not isinstance(item, Verified):
                err, jti = item
                ids = {"jti": jti} if jti is not None else {}  # an unreadable token names no message
                self.audit.stage(conn, [{"event": "envelope.rejected", **ids, "from": peer, "to": self.id,
                                         "code": err.code.value, "detail": err.detail}], now)
                out.append(Result(jti=jti, status="rejected", error=EB(code=err.code.value, detail=err.public_detail)))
                continue
            v = item
            c = v.claims
            if c.jti in seen:
                out.append(seen[c.jti])
                continue
            existing = st.get_message(conn, c.jti)
            if existing is not None:
                if existing.dig == v.dig and existing.ack is not None:
                    self.audit.stage(conn, [{"event": "envelope.duplicate", **self._msg_fields(v), "from": peer,
                                             "to": self.id}], now)
                    out.append(Result(jti=c.jti, status="duplicate", ack=existing.ack))
                else:
                    detail = "message id already used by a different envelope"
                    self.audit.stage(conn, [{"event": "envelope.rejected", **self._msg_fields(v), "from": peer,
                                             "to": self.id, "code": Code.MALFORMED.value, "detail": detail}], now)
                    out.append(Result(jti=c.jti, status="rejected", error=EB(code="malformed", detail=detail)))
                continue
            res = self._store_accepted(conn, v, peer, now)
            seen[c.jti] = res
            out.append(res)
        return out

    def _store_accepted(self, conn: sqlite3.Connection, v: Verified, peer: str, now: float) -> Result:
        c = v.claims
        env = v.envelope
        if v.next_hop is not None:
            env = append_hop(env, signer=self.signer, here=self.id, jti=c.jti, came_from=peer, to=v.next_hop,
                             received_at=now)
        (idx,) = self.audit.stage(conn, [{"event": "envelope.accepted", **self._msg_fields(v), "from": peer,
                                         "to": v.next_hop or self.id}], now)
        ack = make_ack(self.signer, here=self.id, peer=peer, jti=c.jti, token=env.token, idx=idx, now=now)
        self.audit.stage_evidence(conn, c.jti, envelope={"token": env.token, "hops": list(env.hops)}, ack=ack,
                                  keys=self._signing_keys(c.iss, *(h.iss for h in v.hops), self.id))
        for b in c.blobs or []:
            self.blobs.note_expiry(b.sha256, c.exp)
        local = v.next_hop is None
        state = "received" if local else "queued"
        data = encode_envelope(env)
        st.insert_message(conn, st.StoredMessage(
            jti=c.jti, dig=v.dig, mt=c.mt, iss=c.iss, aud=c.aud, cid=c.cid, irt=c.irt, cls=c.cls, exp=c.exp,
            envelope=data, size=len(data), received_from=peer, received_at=now, ack=ack, ack_idx=idx,
            state=state, next_hop=v.next_hop, updated_at=now))
        st.add_timeline(conn, c.jti, "accepted", now, node=self.id, detail=f"from {peer}")
        if local:
            self._deliver_locally(conn, v, now)
        else:
            assert v.next_hop is not None
            st.enqueue(conn, c.jti, v.next_hop, now)
            self.queue_depth += 1
        return Result(jti=c.jti, status="accepted", ack=ack)

    def _deliver_locally(self, conn: sqlite3.Connection, v: Verified, now: float) -> None:
        """Recipient side: receipts and errors update our own messages; the rest goes to the inbox."""
        c = v.claims
        body = v.body
        if c.mt == "receipt":
            target = body.for_
            # recorded under the message the receipt is for, so that message's evidence includes it
            self.audit.stage(conn, [{"event": "receipt.received", "jti": target, "mt": c.mt, "iss": c.iss,
                                     "aud": c.aud, "dig": v.dig, "receipt": c.jti, "status": body.status}], now)
            if st.get_message(conn, target) is not None:
                self.audit.stage_evidence(conn, target, receipt={"token": v.envelope.token,
                                                                 "payload": v.envelope.payload})
            if st.get_message(conn, target) is not None:
                st.set_state(conn, target, "delivered", now, node=c.iss, detail=f"receipt {body.status}")
            st.set_state(conn, c.jti, "consumed", now, node=self.id)
            return
        if c.mt == "error":
            target = body.for_
            if st.get_message(conn, target) is not None:
                st.set_state(conn, target, "failed", now, node=body.by, detail=f"{body.code}: {body.detail or ''}")
            st.set_state(conn, c.jti, "consumed", now, node=self.id)
            return
        assert v.plaintext is not None
        st.to_inbox(conn, c.jti, v.plaintext, now)

    # --- originating (local API) ---------------------------------------------------------------------

    async def submit(self, *, mt: str, to: str, body: bytes, system: str, hc: str = "H0",
                     cls: str = "BASIC_PROTECTION_LEVEL", pur: str = "INVESTIGATION", irt: str | None = None,
                     ttl: int | None = None, cid: str | None = None,
                     attachments: list[dict[str, Any]] | None = None) -> str:
        """Build, sign (and encrypt when the route crosses a hub) a message from this node. Raises
        TrazaError (schema_invalid, unknown_node, policy_denied, ...) for what cannot be sent.
        ``attachments`` name complete blobs of the plaintext store (``sha256``, ``len``, ``ct``, ``name``)."""
        now = self.clock()
        decode_body(mt, body)
        fed = self.fed
        if fed.node(to) is None:
            raise TrazaError(Code.UNKNOWN_NODE, f"recipient {to!r} is not a node of the manifest")
        if irt and cid is None:
            orig = await self.db.read(lambda c: st.get_message(c, irt))
            cid = orig.cid if orig else irt
        jti = uuid7(now, os.urandom(10))
        blobs = None
        if attachments:
            enc_to = fed.current_key(to, "enc", now) if self._seal_kw(mt, to, now) else None
            try:
                blobs = await asyncio.to_thread(self._outgoing_blobs, attachments, jti, enc_to)
            except (OSError, BlobError) as exc:  # e.g. the uploaded file went away meanwhile
                raise TrazaError(Code.BLOB_MISSING, f"attachments: {exc}") from None
        env = self._build(mt=mt, to=to, body=body, now=now, hc=hc, cls=cls, pur=pur, irt=irt, cid=cid,
                          ttl=ttl or self.cfg.limits.default_ttl, jti=jti, blobs=blobs)
        v = verify_envelope(encode_envelope(env), here=self.id, peer=None, fed=fed, now=now,
                            key_verifier=verifier_for, known_types=MESSAGE_TYPES, limits=self.limits)
        await self.db.write(lambda conn: self._store_origin(conn, v, now, f"local:system:{system}"))
        assert v.next_hop is not None
        self._wake(v.next_hop)
        self.count("messages_submitted")
        self.metrics.submitted.labels(mt).inc()
        self.log.info("envelope", jti=v.claims.jti, peer=v.next_hop, status="submitted", mt=mt)
        return v.claims.jti

    def _build(self, *, mt: str, to: str, body: bytes, now: float, ttl: int, hc: str = "H0",
               cls: str = "BASIC_PROTECTION_LEVEL", pur: str = "INVESTIGATION", irt: str | None = None,
               cid: str | None = None, jti: str | None = None, blobs: list[BlobRef] | None = None) -> Envelope:
        jti = jti or uuid7(now, os.urandom(10))
        kw = self._seal_kw(mt, to, now)
        return build_envelope(signer=self.signer, iss=self.id, aud=to, jti=jti, mt=mt, body=body, now=now,
                              ttl=ttl, hc=hc, cls=cls, pur=pur, cid=cid, irt=irt, blobs=blobs, **kw)  # type: ignore[arg-type]

    def _seal_kw(self, mt: str, to: str, now: float) -> dict[str, Any]:
        """build_envelope's sealing arguments when a message of type ``mt`` to ``to`` is encrypted, else {}."""
        fed = self.fed
        route = fed.route(self.id, to)
        through_hub = any(fed.nodes[n].kind == "hub" for n in route[1:-1])
        rule = fed.manifest.policy.get(mt)
        encrypt = through_hub or bool(rule and rule.encrypt_through_hubs and len(route) > 2)
        kw: dict[str, Any] = {}
        if encrypt:
            ek = fed.current_key(to, "enc", now)
            if ek is None or ek.kem is None or ek.public_key is None:
                raise TrazaError(Code.ENCRYPTION_REQUIRED, f"{to!r} has no valid encryption key")
            kem, pub = ek.kem, ek.public_key
            kw = {"seal": lambda pt, info: seal(kem, pub, pt, info), "enc_kem": kem, "enc_kid": ek.kid}
        return kw

    def _store_origin(self, conn: sqlite3.Connection, v: Verified, now: float, source: str) -> int:
        c = v.claims
        for b in c.blobs or []:
            self.blobs.note_expiry(b.sha256, c.exp)
        data = encode_envelope(v.envelope)
        (idx,) = self.audit.stage(conn, [{"event": "envelope.accepted", **self._msg_fields(v), "from": source,
                                         "to": v.next_hop}], now)
        self.audit.stage_evidence(conn, c.jti, envelope={"token": v.envelope.token, "hops": []},
                                  keys=self._signing_keys(self.id))
        st.insert_message(conn, st.StoredMessage(
            jti=c.jti, dig=v.dig, mt=c.mt, iss=c.iss, aud=c.aud, cid=c.cid, irt=c.irt, cls=c.cls, exp=c.exp,
            envelope=data, size=len(data), received_from=None, received_at=now, ack=None, ack_idx=idx,
            state="queued", next_hop=v.next_hop, updated_at=now))
        st.add_timeline(conn, c.jti, "queued", now, node=self.id, detail=source)
        assert v.next_hop is not None
        st.enqueue(conn, c.jti, v.next_hop, now)
        self.queue_depth += 1
        return idx

    def _reply_in_txn(self, conn: sqlite3.Connection, *, mt: str, to: str, body: dict[str, Any], irt: str,
                      cid: str, now: float, source: str) -> str | None:
        """Create a receipt or error message to ``to`` inside the caller's transaction."""
        if to == self.id:
            return None
        raw = msgspec.json.encode(body)
        env = self._build(mt=mt, to=to, body=raw, now=now, ttl=self.cfg.limits.default_ttl, irt=irt, cid=cid,
                          cls="UNCLASSIFIED")
        v = verify_envelope(encode_envelope(env), here=self.id, peer=None, fed=self.fed, now=now,
                            key_verifier=verifier_for, known_types=MESSAGE_TYPES, limits=self.limits)
        self._store_origin(conn, v, now, source)
        return v.claims.jti

    # --- forwarding ----------------------------------------------------------------------------------

    def _wake(self, peer: str) -> None:
        ev = self.wake.get(peer)
        if ev is None:
            ev = self.wake[peer] = asyncio.Event()
        ev.set()
        if peer not in self.forwarders and not self.stopping.is_set():
            self.forwarders[peer] = asyncio.create_task(self._forward_loop(peer), name=f"forward:{peer}")

    def _client(self, peer: str) -> PeerClient:
        cl = self.clients.get(peer)
        node = self.fed.node(peer)
        if node is None:
            raise PeerUnavailable(f"{peer} is no longer in the manifest")
        if cl is None or cl.endpoint != node.endpoint.rstrip("/"):
            ctx = client_context(self.tls_cert, self.tls_key, self.fed.manifest.tls_ca)
            cl = self.clients[peer] = PeerClient(peer, node.endpoint, ctx)
        return cl

    async def _forward_loop(self, peer: str) -> None:
        ev = self.wake[peer]
        breaker = self.breakers.setdefault(peer, CircuitBreaker(threshold=3, cooldown=self.cfg.limits.retry_min * 4))
        while not self.stopping.is_set():
            now = self.clock()
            # the queue to a peer is FIFO: when anything is due, send the oldest rows, so that after an
            # outage messages retried on jittered schedules still arrive in the order they were queued
            rows = await self.db.read(partial(st.due_fifo, peer=peer, now=now, limit=self.cfg.limits.max_batch))
            if not rows:
                nxt = await self.db.read(partial(st.next_due_at, peer=peer))
                ev.clear()
                timeout = None if nxt is None else max(0.01, nxt - self.clock())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ev.wait(), timeout=min(timeout, 5.0) if timeout else 5.0)
                continue
            if not breaker.allow(now):
                await asyncio.sleep(0.2)
                continue
            expired = [r for r in rows if r[4] <= now]
            live = [r for r in rows if r[4] > now]
            if expired:
                await self.db.write(partial(self._expire, rows=expired, peer=peer, now=now))
                await self._wake_all_outbox()  # the error messages it queued may go to a peer never woken
            if not live:
                continue
            live, blocked, pending, blob_err, blob_bytes = self._push_blobs(peer, live)
            if blocked:
                breaker.failure(self.clock())
                self.count("blob_upload_failures")
                self.log.warning("blob.upload_failed", peer=peer, detail=(blob_err or "")[:300], queued=len(blocked))
                await self.db.write(partial(self._retry_later, rows=blocked, peer=peer, error=blob_err or "blob upload failed",
                                            now=self.clock(), retry_after=None))
            if not live:
                if pending:  # only envelopes whose blobs are still uploading: wait for an upload or a wake-up
                    ev.clear()
                    waits = [asyncio.ensure_future(ev.wait()), *pending]
                    await asyncio.wait(waits, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                    waits[0].cancel()
                continue
            t0 = time.monotonic()
            try:
                # a recipient decrypts the blobs before it acks: allow for that (at 16 MiB/s, beyond the usual 30 s)
                results = await self._client(peer).send_batch(
                    [bytes(r[3]) for r in live], timeout=30.0 + blob_bytes / (16 * 1024 * 1024) if blob_bytes else None)
            except PeerUnavailable as exc:
                breaker.failure(self.clock())
                self.metrics.peer_up.labels(peer).set(0)
                self.count("forward_failures")
                self.log.warning("peer.unavailable", peer=peer, detail=str(exc)[:200], queued=len(live))
                await self.db.write(partial(self._retry_later, rows=live, peer=peer, error=str(exc), now=self.clock(),
                                            retry_after=exc.retry_after))
                continue
            breaker.success()
            self.metrics.hop_latency.labels(peer).observe(time.monotonic() - t0)
            self.metrics.peer_up.labels(peer).set(1)
            self.latency_samples.append(time.monotonic() - t0)
            if len(self.latency_samples) > 1000:
                del self.latency_samples[:500]
            await self.db.write(partial(self._settle, rows=live, results=results, peer=peer, now=self.clock()))
            if any(r.status == "rejected" for r in results):
                await self._wake_all_outbox()  # the error messages _give_up queued

    def _push_blobs(self, peer: str, rows: list[Any]) -> tuple[list[Any], list[Any], list[asyncio.Task[int]], str | None, int]:
        """Before envelopes go to ``peer``, it must hold every blob they name. Uploads run as their own
        tasks (one at a time per peer), so envelopes without blobs are not held up behind a large file.
        Returns (rows ready to send, rows whose upload failed, uploads in progress, last error, bytes of
        the blobs the ready rows name)."""
        ready: list[Any] = []
        blocked: list[Any] = []
        pending: dict[str, asyncio.Task[int]] = {}
        error: str | None = None
        outcome: dict[str, bool | None] = {}  # True complete at the peer, False failed, None uploading
        ready_bytes = 0
        for row in rows:
            refs = _blob_refs(bytes(row[3]))
            for ref in refs:
                if ref.sha256 in outcome:
                    continue
                if (peer, ref.sha256) in self._blobs_at:
                    outcome[ref.sha256] = True
                    done = self._uploads.get((peer, ref.sha256))
                    if done is not None and done.done():
                        del self._uploads[(peer, ref.sha256)]
                    continue
                task = self._uploads.get((peer, ref.sha256))
                if task is not None and task.done():
                    del self._uploads[(peer, ref.sha256)]
                    exc = None if task.cancelled() else task.exception()
                    if exc is None and not task.cancelled():
                        outcome[ref.sha256] = True
                        continue
                    outcome[ref.sha256] = False
                    error = str(exc) if exc is not None else "upload cancelled"
                    continue
                if task is None:
                    task = asyncio.create_task(self._upload_blob(peer, ref.sha256, ref.len),
                                               name=f"blob:{peer}:{ref.sha256[:8]}")
                    self._uploads[(peer, ref.sha256)] = task
                outcome[ref.sha256] = None
                pending[ref.sha256] = task
            states = [outcome[r.sha256] for r in refs]
            if all(states):
                ready.append(row)
                ready_bytes += sum(r.len for r in refs)
            elif False in states:
                blocked.append(row)
        return ready, blocked, list(pending.values()), error, ready_bytes

    async def _upload_blob(self, peer: str, sha: str, length: int) -> int:
        """One blob to ``peer`` (HEAD, then PUT of what it lacks); wakes the forwarder when done either way."""
        lock = self._upload_locks.setdefault(peer, asyncio.Lock())
        try:
            async with lock:
                t0 = time.monotonic()
                try:
                    sent = await self._client(peer).upload_blob(sha, self.blobs.path(sha), length)
                except (OSError, BlobError) as exc:
                    raise PeerUnavailable(f"blob {sha}: {exc}") from None
                if len(self._blobs_at) > 10_000:
                    self._blobs_at.clear()
                self._blobs_at.add((peer, sha))
                if sent:
                    self.count("blob_bytes_sent", sent)
                    self.log.info("blob.uploaded", peer=peer, sha256=sha, len=length, sent=sent,
                                  seconds=round(time.monotonic() - t0, 3))
                return sent
        finally:
            if not self.stopping.is_set():
                self._wake(peer)

    def _retry_later(self, conn: sqlite3.Connection, rows: list[Any], peer: str, error: str, now: float,
                     retry_after: float | None) -> None:
        lim = self.cfg.limits
        for _seq, jti, attempts, _env, exp in rows:
            at = next_attempt_at(now, attempts + 1, exp, rand=random.random(), base=lim.retry_min, cap=lim.retry_max)
            if at is not None and retry_after:
                at = max(at, now + retry_after)
            if at is None or at >= exp:
                at = float(exp)  # one last look at expiry time, then it expires
            st.reschedule(conn, jti, at, error[:500])

    def _expire(self, conn: sqlite3.Connection, rows: list[Any], peer: str, now: float) -> None:
        for _seq, jti, _attempts, _env_bytes, _exp in rows:
            m = st.get_message(conn, jti)
            if m is None:
                continue
            fields = {"jti": jti, "mt": m.mt, "iss": m.iss, "aud": m.aud, "dig": m.dig, "from": self.id, "to": peer}
            self.audit.stage(conn, [{"event": "envelope.expired", **fields}], now)
            self._give_up(conn, m, peer, Code.EXPIRED, f"expired in the queue for {peer}", now)

    def _give_up(self, conn: sqlite3.Connection, m: st.StoredMessage, peer: str | None, code: Code, detail: str,
                 now: float) -> None:
        st.dead_letter(conn, m.jti, peer, code.value, detail, now)
        self.queue_depth = max(0, self.queue_depth - 1)
        self.audit.stage(conn, [{"event": "envelope.dead_lettered", "jti": m.jti, "mt": m.mt, "iss": m.iss,
                                 "aud": m.aud, "dig": m.dig, "code": code.value, "to": peer}], now)
        st.set_state(conn, m.jti, "failed" if m.iss == self.id else "dead", now, node=self.id, detail=f"{code.value}: {detail}")
        if m.mt not in NO_REPLY_TYPES and m.iss != self.id:
            self._reply_in_txn(conn, mt="error", to=m.iss, irt=m.jti, cid=m.cid, now=now, source="node",
                               body={"for": m.jti, "code": code.value, "at": _rfc3339(now), "by": self.id,
                                     "detail": detail})

    def _settle(self, conn: sqlite3.Connection, rows: list[Any], results: list[Result], peer: str, now: float) -> None:
        by_jti = {r.jti: r for r in results}
        for _seq, jti, _attempts, env_bytes, _exp in rows:
            m = st.get_message(conn, jti)
            if m is None:
                continue
            res = by_jti.get(jti)
            token = decode_envelope(bytes(env_bytes)).token
            if res is None:
                st.reschedule(conn, jti, now + self.cfg.limits.retry_min, "no result for this envelope")
                continue
            if res.status in ("accepted", "duplicate") and res.ack:
                try:
                    ack = verify_ack(res.ack, fed=self.fed, expected_iss=peer, expected_aud=self.id, jti=jti,
                                     token=token, now=now, key_verifier=verifier_for)
                except TrazaError as err:
                    st.reschedule(conn, jti, now + self.cfg.limits.retry_min, f"invalid ack: {err.detail}")
                    continue
                st.dequeue(conn, jti)
                self.metrics.forwarded.labels(m.mt, peer, res.status).inc()
                self.audit.stage_evidence(conn, jti, ack=res.ack, keys=self._signing_keys(peer))
                self.queue_depth = max(0, self.queue_depth - 1)
                self.audit.stage(conn, [{"event": "envelope.forwarded", "jti": jti, "mt": m.mt, "iss": m.iss,
                                         "aud": m.aud, "dig": m.dig, "from": self.id, "to": peer,
                                         "ack_idx": ack.idx}], now)
                conn.execute("UPDATE messages SET state='forwarded', updated_at=? WHERE jti=? AND state='queued'",
                             (now, jti))
                st.add_timeline(conn, jti, "forwarded", now, node=peer, detail=res.ack)
            elif res.status == "rejected" and res.error is not None and res.error.code == Code.BLOB_MISSING.value:
                # we uploaded its blobs, yet the peer lacks one (it lost it, or our record is stale): upload again
                for ref in _blob_refs(bytes(env_bytes)):
                    self._blobs_at.discard((peer, ref.sha256))
                st.reschedule(conn, jti, now + self.cfg.limits.retry_min, f"{peer}: {res.error.detail}"[:500])
            elif res.status == "rejected":
                rej = res.error
                self.metrics.forwarded.labels(m.mt, peer, "rejected").inc()
                code = Code(rej.code) if rej and rej.code in Code._value2member_map_ else Code.INTERNAL
                self._give_up(conn, m, peer, code, f"rejected by {peer}: {rej.detail if rej else ''}", now)
            else:
                st.reschedule(conn, jti, now + self.cfg.limits.retry_min, f"unexpected result {res.status}")

    # --- local delivery ------------------------------------------------------------------------------

    async def inbox_page(self, after: int, limit: int) -> list[tuple[int, str, bytes, float, str, str, str]]:
        return await self.db.read(lambda c: st.inbox_page(c, after, limit))

    async def inbox_ack(self, jti: str, who: str, status: str = "DELIVERED", detail: str | None = None) -> bool:
        """The national system has taken ``jti``: audit the delivery and send the receipt (once)."""
        now = self.clock()

        def fn(conn: sqlite3.Connection) -> tuple[bool, str | None]:
            """(taken now, the peer the receipt was queued for)"""
            if not st.inbox_take(conn, jti, now):
                return False, None
            m = st.get_message(conn, jti)
            assert m is not None
            self.audit.stage(conn, [{"event": "envelope.delivered", "jti": jti, "mt": m.mt, "iss": m.iss,
                                     "aud": m.aud, "dig": m.dig, "from": self.id, "to": who}], now)
            st.set_state(conn, jti, "delivered", now, node=self.id, detail=who)
            if m.mt not in NO_REPLY_TYPES:
                token = decode_envelope(m.envelope).token
                body = {"for": jti, "dig": token_digest(token), "status": status, "at": _rfc3339(now)}
                if detail:
                    body["detail"] = detail
                rid = self._reply_in_txn(conn, mt="receipt", to=m.iss, irt=jti, cid=m.cid, now=now, source="node",
                                         body=body)
                return True, None if rid is None else st.outbox_peer(conn, rid)
            return True, None

        done, peer = await self.db.write(fn)
        if done:
            self.metrics.delivered.labels("message").inc()
            if peer is not None:  # only the receipt's next hop has something new (no outbox scan per ack)
                self._wake(peer)
        return done

    async def _wake_all_outbox(self) -> None:
        for p in await self.db.read(st.outbox_peers):
            self._wake(p)

    async def message_status(self, jti: str) -> dict[str, Any] | None:
        def fn(conn: sqlite3.Connection) -> dict[str, Any] | None:
            m = st.get_message(conn, jti)
            if m is None:
                return None
            return {"id": jti, "type": m.mt, "from": m.iss, "to": m.aud, "conversation": m.cid, "state": m.state,
                    "reply_to": m.irt, "timeline": st.timeline(conn, jti)}

        return await self.db.read(fn)

    # --- local API backend (SPEC §6) ----------------------------------------------------------------

    async def local_submit(self, content_type: str, data: bytes, system: str) -> str:
        attachments: list[dict[str, Any]] = []
        if media_type(content_type) == STANDARD_CT and b'"attachments"' in data:
            # the standard form may name blobs uploaded first with PUT /local/v1/blobs (docs/blobs.md)
            try:
                doc = msgspec.json.decode(data)
            except msgspec.DecodeError:
                doc = None  # the adapter names the fault
            if isinstance(doc, dict) and "attachments" in doc:
                attachments = self._check_attachments(doc.pop("attachments"))
                data = msgspec.json.encode(doc)
        try:
            tr = self.adapter.to_standard(data, content_type)
        except AdapterError as exc:
            raise TrazaError(Code.SCHEMA_INVALID, str(exc)) from None
        env = tr.envelope()
        to = env.get("to")
        if not to:
            raise TrazaError(Code.SCHEMA_INVALID, "no recipient - at `$.to`")
        for att in tr.attachments:
            attachments.append(await asyncio.to_thread(self._import_attachment, att))
        body = msgspec.json.encode(tr.body)
        return await self.submit(
            mt=tr.mt, to=to, body=body, system=system, hc=env.get("handling") or "H0",
            cls=env.get("classification") or "BASIC_PROTECTION_LEVEL", pur=env.get("purpose") or "INVESTIGATION",
            irt=env.get("reply_to"), ttl=env.get("ttl_seconds"), attachments=attachments or None)

    async def local_inbox(self, after: int, limit: int) -> dict[str, Any]:
        rows = await self.inbox_page(after, limit)
        out = []
        for seq, jti, body, delivered_at, mt, iss, cid in rows:
            meta = {"id": jti, "from": iss, "conversation": cid, "delivered_at": _rfc3339(delivered_at)}
            content = self.adapter.from_standard(mt, msgspec.json.decode(body), meta)
            item = {"id": jti, "type": mt, "from": iss, "conversation": cid,
                    "delivered_at": _rfc3339(delivered_at), "content_type": self.adapter.output_content_type,
                    "content": content.decode("utf-8"), "cursor": seq}
            files = self.plain_blobs.read_index(jti)
            if files:  # an extension of SPEC §6: the blobs the message carried, decrypted (docs/blobs.md)
                item["attachments"] = [{**f, "url": f"/local/v1/blobs/{f['sha256']}"} for f in files]
            out.append(item)
        nxt = out[-1]["cursor"] if out else after
        return {"messages": out, "next": str(nxt)}

    async def ops_view(self, what: str) -> Any:
        now = self.clock()
        if what == "queues":
            return {"queues": await self.db.read(partial(st.queue_depths, now=now))}
        if what == "dead-letters":
            return {"dead_letters": await self.db.read(st.dead_letters)}
        if what == "peers":
            peers = []
            for nid, node in sorted(self.fed.nodes.items()):
                if nid == self.id or not self.fed.linked(self.id, nid):
                    continue
                br = self.breakers.get(nid)
                peers.append({"id": nid, "kind": node.kind, "endpoint": node.endpoint,
                              "state": br.state(now) if br else "idle",
                              "failures": br.failures if br else 0})
            return {"peers": peers}
        counts = await self.db.read(st.counts_by_state)
        return {"node": self.id, "federation": self.fed.name, "manifest_version": self.fed.version,
                "manifest_expires_at": self.fed.manifest.expires_at, "queue_depth": self.queue_depth,
                "messages": counts, "counters": dict(self.counters)}

    async def ops_dead_letter(self, dl_id: int, action: str, operator: str) -> dict[str, Any]:
        now = self.clock()

        def fn(conn: sqlite3.Connection) -> dict[str, Any]:
            taken = st.take_dead_letter(conn, dl_id)
            if taken is None:
                raise KeyError(dl_id)
            jti, peer = taken
            m = st.get_message(conn, jti)
            assert m is not None
            self.audit.stage(conn, [{"event": "operator.action", "action": f"dead_letter.{action}", "jti": jti,
                                     "operator": operator}], now)
            if action == "retry" and peer:
                st.enqueue(conn, jti, peer, now)
                st.set_state(conn, jti, "queued", now, node=self.id, detail=f"retried by {operator}")
            else:
                st.set_state(conn, jti, "discarded", now, node=self.id, detail=f"discarded by {operator}")
            return {"id": dl_id, "jti": jti, "action": action, "peer": peer}

        res = await self.db.write(fn)
        if action == "retry" and res["peer"]:
            self.queue_depth += 1
            self._wake(res["peer"])
        return res

    async def audit_entries(self, query: dict[str, str]) -> dict[str, Any]:
        try:
            return await self.audit.entries(query)
        except ValueError as exc:
            raise TrazaError(Code.MALFORMED, str(exc)) from None

    async def audit_inclusion(self, index: int, size: int | None) -> dict[str, Any]:
        return await self.audit.inclusion(index, size)

    async def audit_bundle(self, jti: str) -> bytes | None:
        return await self.audit.bundle(jti)

    def local_denied(self, path: str, remote: str, reason: str) -> None:
        self.audit_event_bg({"event": "auth.denied", "listener": "local", "path": path, "remote": remote,
                             "detail": reason})
        self.metrics.auth_denied.labels("local").inc()
        self.log.warning("auth.denied", listener="local", path=path, detail=reason)

    # --- operations listener ---------------------------------------------------------------------------

    def healthy(self) -> bool:
        return not self.stopping.is_set()

    def is_ready(self) -> tuple[bool, str]:
        if not self.ready:
            return False, "starting"
        if self.trust.is_expired(self.clock()):
            return False, f"manifest version {self.fed.version} has expired"
        return True, "ok"

    def metrics_text(self) -> tuple[bytes, str]:
        m = self.metrics
        now = self.clock()
        for q in self.db.read_sync(partial(st.queue_depths, now=now)):
            m.queue_depth.labels(q["peer"]).set(q["depth"])
            m.queue_oldest.labels(q["peer"]).set(q["oldest_age_s"])
        m.dead_letters.set(len(self.db.read_sync(st.dead_letters)))
        m.manifest_version.set(self.fed.version)
        m.inbox_depth.set(self.db.read_sync(
            lambda c: c.execute("SELECT count(*) FROM inbox WHERE taken_at IS NULL").fetchone()[0]))
        m.audit_entries.set(self.db.read_sync(lambda c: c.execute("SELECT count(*) FROM audit_entries").fetchone()[0]))
        return m.render()

    # --- checkpoints and witnessing --------------------------------------------------------------------

    def checkpoint_text(self) -> str:
        try:
            return self.audit.served_checkpoint()
        except AuditError:
            raise TrazaError(Code.OVERLOADED, "no checkpoint signed yet; retry later") from None

    async def consistency_proof(self, old: int, new: int) -> list[str]:
        return await self.db.read(lambda c: self.audit.consistency(c, old, new))

    async def witness_add_checkpoint(self, peer: str, body: bytes) -> tuple[int, str, bytes]:
        before = self.audit.forks_detected
        out = await self.audit.witness_add(peer, body, self.fed, self.clock())
        if self.audit.forks_detected > before:
            self.metrics.witness_forks.labels(peer).inc(self.audit.forks_detected - before)
        return out

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

    async def _blob_purge_loop(self, interval: float = 600.0) -> None:
        """Delete blobs (as they travel) once every envelope naming them has expired, and uploads no
        envelope named after the longest TTL (docs/blobs.md)."""
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=interval)
            if self.stopping.is_set():
                break
            try:
                gone = await asyncio.to_thread(self.blobs.purge, self.clock() - self.cfg.limits.clock_skew,
                                               float(self.cfg.limits.max_ttl))
            except OSError as exc:
                self.log.warning("blob.purge_failed", detail=str(exc)[:200])
                continue
            if gone:
                self.count("blobs_purged", len(gone))
                self.log.info("blob.purged", count=len(gone))

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
                status, data, _ = await self._client(src).request("GET", "/v1/manifest")
                if status != 200:
                    continue
                mbytes, sbytes = split_served(data)
                self.apply_manifest(mbytes, sbytes, source=f"peer:{src}")
            except (PeerUnavailable, ValueError) as exc:
                self.log.debug("manifest.poll_failed", peer=src, detail=str(exc)[:200])
            except ManifestRejected as exc:
                self.log.warning("manifest.rejected", source=f"peer:{src}", reason=str(exc))

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


def _rfc3339(ts: float) -> str:
    from gateway.core.timeutil import rfc3339

    return rfc3339(ts)


def _best_effort_jti(raw: bytes) -> str | None:
    """The message id of an envelope we reject, if it can be read at all (for the result and the audit)."""
    try:
        doc = msgspec.json.decode(raw)
        token = doc.get("token") if isinstance(doc, dict) else None
        if not isinstance(token, str):
            return None
        claims = msgspec.json.decode(b64url_decode(token.split(".")[1]))
        jti = claims.get("jti") if isinstance(claims, dict) else None
        return jti if isinstance(jti, str) and len(jti) <= 64 else None
    except (msgspec.DecodeError, ValueError, IndexError):
        return None


async def run_node(cfg: Config, *, setup: Callable[[Node], None] | None = None) -> None:
    """Run one node until SIGINT/SIGTERM; ``setup`` lets higher layers (gateway.ops) add to it first."""
    node = Node(cfg)
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

