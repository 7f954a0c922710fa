"""Inbound: peers' batches in, the relay pipeline of SPEC §4.1–§4.2 (issue #11: a composed service).

:meth:`Inbound.receive_batch` runs the pure checks of ``gateway.core.envelope`` (steps 1–9) on each
envelope of a batch, checks (and at the recipient decrypts) the blobs they name, then hands the batch to
the relay's rules (gateway/core/relay.py) in one group-committed write: the replay check, the stored
message with its audit entry and evidence, the signed ack (steps 10–12), and either the outbox row to the
next hop or local delivery (inbox, or the state change a receipt or error message brings).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

import msgspec

from gateway.core import batchsig, strictjson
from gateway.core.b64 import b64url_decode
from gateway.core.envelope import SUITES, Limits, Verified, verify_envelope
from gateway.core.errors import Code, TrazaError
from gateway.core.events import EnvelopeRejected
from gateway.core.messages import MESSAGE_TYPES, admit_body
from gateway.core.policy import ANSWER_TYPES, Answer
from gateway.core.relay import Arrived, Received, Refused
from gateway.crypto.chunks import decrypt_file, encrypted_size, open_content_key
from gateway.crypto.hpke import EncKey
from gateway.crypto.keys import verifier_for
from gateway.node.relay import Applied
from gateway.node.services import Shared
from gateway.store.blobs import BadBlobName, BlobError, BlobStore
from gateway.store.crashpoints import crash_point
from gateway.transport.peer import ErrorBody as EB
from gateway.transport.peer import Result


class Inbound:
    """Receives batches from peers: verifies, checks blobs, and applies the relay's decision."""

    def __init__(self, shared: Shared, *, limits: Limits, blobs: BlobStore, plain_blobs: BlobStore,
                 enc_keys: Callable[[], dict[str, EncKey]]) -> None:
        self.s = shared
        self.limits = limits
        self.blobs = blobs  # as they travel
        self.plain_blobs = plain_blobs  # decrypted, for the national system
        self.enc_keys = enc_keys  # the private keys of the moment (they rotate)

    def _open_payload(self, ct: bytes, info: bytes, kid: str) -> bytes:
        key = self.enc_keys().get(kid)
        if key is None:
            raise TrazaError(Code.DECRYPT_FAILED, f"no private key for {kid}")
        return key.open(ct, info)

    def verify(self, raw: bytes, peer: str | None, now: float, seen: batchsig.Seen | None = None) -> Verified:
        return verify_envelope(
            raw,
            here=self.s.here,
            peer=peer,
            fed=self.s.fed,
            now=now,
            key_verifier=verifier_for,
            known_types=MESSAGE_TYPES,
            limits=self.limits,
            open_payload=self._open_payload,
            decode_body=admit_body,  # the recipient accepts: admission rules too (issue #15)
            seen=seen,
        )

    async def receive_batch(self, peer: str, raws: list[msgspec.Raw]) -> list[Result]:
        now = self.s.clock()
        checked: list[Verified | tuple[TrazaError, str | None]] = []
        seen = batchsig.Seen()  # a batch signature (protocol 1.1) is verified once per request
        for raw in raws:
            try:
                ver = self.verify(bytes(raw), peer, now, seen)
            except TrazaError as err:
                checked.append((err, _best_effort_jti(bytes(raw))))
                continue
            try:
                if ver.claims.blobs:
                    self.check_blobs(ver)
                checked.append(ver)
            except TrazaError as err:
                err.jti = ver.claims.jti  # the envelope itself verified
                checked.append((err, ver.claims.jti))
        for i, item in enumerate(checked):
            if isinstance(item, Verified) and item.claims.blobs and item.next_hop is None:
                try:  # recipient: decrypt the blobs for the national system (off the event loop)
                    await asyncio.to_thread(self.open_blobs, item)
                except TrazaError as err:
                    err.jti = item.claims.jti
                    checked[i] = (err, item.claims.jti)
                except BlobError as exc:  # e.g. a message id that cannot name an index file
                    checked[i] = (TrazaError(Code.MALFORMED, f"blobs of {item.claims.jti[:64]}: {exc}"), None)
                except OSError as exc:
                    checked[i] = (TrazaError(Code.INTERNAL, f"blobs of {item.claims.jti}: {exc}", jti=item.claims.jti),
                                  item.claims.jti)
        items: list[Arrived | Refused] = [
            _arrived(i, item) if isinstance(item, Verified) else Refused.of(i, *item) for i, item in enumerate(checked)]
        batch = [item if isinstance(item, Verified) else None for item in checked]

        def commit(conn: sqlite3.Connection) -> Applied:
            applied = self.s.applier_ready().decide(conn, lambda view: self.s.rules.received(Received(peer, items), view, now),
                                          now, batch=batch, peer=peer)
            crash_point("receive.before_commit")
            return applied

        answers = (await self.s.db.write(commit)).answers  # wake-ups run after the commit, from the commands
        crash_point("receive.after_commit")
        results = [Result(jti=a.jti, status=a.status, ack=a.ack,
                          error=EB(code=a.code, detail=a.detail or "") if a.code is not None else None) for a in answers]
        for item, r in zip(checked, results, strict=True):
            mt = item.claims.mt if isinstance(item, Verified) else "unknown"
            self.s.metrics.inc(self.s.metrics.received, mt, peer, r.status)
            self.s.count(f"envelopes_{r.status}")
            self.s.log.info("envelope", jti=r.jti, peer=peer, status=r.status,
                          code=r.error.code if r.error else None)
        return results

    @property
    def max_batch(self) -> int:
        return self.s.cfg.limits.max_batch

    async def refuse_batch(self, peer: str, err: TrazaError, envelopes: int | None) -> None:
        """A whole batch refused before any envelope was looked at: one audit entry, durable before the
        answer, and nothing else kept (SPEC §4.1, §11)."""
        now = self.s.clock()
        event = EnvelopeRejected(from_=peer, to=self.s.here, code=err.code.value, detail=err.detail, envelopes=envelopes)
        await self.s.db.write(lambda conn: self.s.audit.stage(conn, [event], now))
        self.s.metrics.received.labels("batch", peer, "rejected").inc()
        self.s.log.warning("batch.rejected", peer=peer, code=err.code.value, envelopes=envelopes)

    def check_blobs(self, v: Verified) -> None:
        """Every blob the token names is complete in this node's store, and encrypted when the payload is."""
        c = v.claims
        for i, b in enumerate(c.blobs or []):
            if b.enc is None and c.pld.enc is not None:
                raise TrazaError(Code.ENCRYPTION_REQUIRED, f"blobs[{i}] ({b.name}) is not encrypted but the payload is")
            if b.enc is not None:
                ref = self.s.fed.keys.get(b.enc.kid)
                if ref is None or ref.node != c.aud or ref.key.use != "enc" or b.enc.suite != SUITES.get(ref.key.kem or ""):
                    raise TrazaError(Code.ENCRYPTION_REQUIRED,
                                     f"blobs[{i}] ({b.name}) is not encrypted to an enc key of {c.aud!r}")
            limit = self.s.cfg.limits.max_blob if b.enc is None else encrypted_size(self.s.cfg.limits.max_blob)
            if b.len > limit:
                raise TrazaError(Code.TOO_LARGE, f"blobs[{i}] ({b.name}) of {b.len} bytes exceeds max_blob "
                                 f"({self.s.cfg.limits.max_blob} bytes of plaintext)")
            try:
                present = self.blobs.has(b.sha256, b.len)
            except BadBlobName as exc:
                raise TrazaError(Code.MALFORMED, f"blobs[{i}]: {exc}") from None
            if not present:
                raise TrazaError(Code.BLOB_MISSING, f"blobs[{i}] {b.sha256} ({b.name}, {b.len} bytes) is not complete "
                                                    f"on {self.s.here}: PUT /v1/blobs/{b.sha256} before the envelope")

    def open_blobs(self, v: Verified) -> None:
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
            key = self.enc_keys().get(b.enc.kid)
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

def _arrived(index: int, v: Verified) -> Arrived:
    """The relay's view of a verified envelope: its ids, and the signed facts of an answer addressed here."""
    c, body = v.claims, v.body
    arrived = Arrived(index=index, jti=c.jti, dig=v.dig, mt=c.mt, iss=c.iss, aud=c.aud, cid=c.cid,
                      next_hop=v.next_hop)
    if v.next_hop is not None or c.mt not in ANSWER_TYPES or body is None:
        return arrived
    answer = Answer(mt=c.mt, jti=c.jti, iss=c.iss, aud=c.aud, irt=c.irt, for_=body.for_,
                    dig=getattr(body, "dig", None), by=getattr(body, "by", None))
    return msgspec.structs.replace(arrived, answer=answer, status=getattr(body, "status", None),
                                   code=getattr(body, "code", None), detail=getattr(body, "detail", None))


def _best_effort_jti(raw: bytes) -> str | None:
    """The message id of an envelope we reject, if it can be read at all (for the result and the audit)."""
    try:
        doc = strictjson.loads(raw, "envelope")  # strict: a hostile token nests 100,000 deep
        token = doc.get("token") if isinstance(doc, dict) else None
        if not isinstance(token, str):
            return None
        claims = strictjson.loads(b64url_decode(token.split(".")[1]), "claims")
        jti = claims.get("jti") if isinstance(claims, dict) else None
        return jti if isinstance(jti, str) and len(jti) <= 64 else None
    except (TrazaError, ValueError, IndexError):
        return None
