"""Blobs (SPEC §4.3, docs/blobs.md): large files that travel beside the envelopes naming them.

On arrival, a token's ``blobs`` claim must name complete blobs of this node's store, encrypted when
the payload is; the recipient decrypts them into the plaintext store for the national system. On
origin, attachments (uploaded on the local API or produced by an adapter) are encrypted in chunks
to new blobs. Before envelopes go to a peer, ``_push_blobs`` makes sure the peer holds every blob
they name, uploading in tasks of their own; a purge loop deletes blobs no live envelope names.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import msgspec

from adapters.base import Attachment
from gateway.core.b64 import b64url_decode, b64url_encode
from gateway.core.envelope import (
    SUITES,
    BlobEnc,
    BlobRef,
    Verified,
    decode_envelope,
)
from gateway.core.errors import Code, TrazaError
from gateway.crypto.chunks import (
    decrypt_file,
    encrypt_file,
    encrypted_size,
    new_content_key,
    open_content_key,
    seal_content_key,
)
from gateway.node.state import _NodeState
from gateway.store import relay as st
from gateway.store.blobs import BadBlobName, BlobError, BlobStore, BlobTooLarge
from gateway.transport.peer import BlobRefused, PeerUnavailable


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



class BlobsMixin(_NodeState):
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
            limit = self.cfg.limits.max_blob if b.enc is None else encrypted_size(self.cfg.limits.max_blob)
            if b.len > limit:
                raise TrazaError(Code.TOO_LARGE, f"blobs[{i}] ({b.name}) of {b.len} bytes exceeds max_blob "
                                 f"({self.cfg.limits.max_blob} bytes of plaintext)")
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

    def _push_blobs(self, peer: str, rows: list[st.OutboxRow]) -> tuple[
            list[st.OutboxRow], list[st.OutboxRow], list[asyncio.Task[int]], str | None, int,
            list[tuple[st.OutboxRow, str]]]:
        """Before envelopes go to ``peer``, it must hold every blob they name. Uploads run as their own
        tasks (one at a time per peer), so envelopes without blobs are not held up behind a large file.
        Returns (rows ready to send, rows whose upload failed, uploads in progress, last error, bytes of
        the blobs the ready rows name, rows with a blob the peer refuses for good and why)."""
        ready: list[st.OutboxRow] = []
        blocked: list[st.OutboxRow] = []
        refused: list[tuple[st.OutboxRow, str]] = []
        refusals: dict[str, str] = {}  # sha -> why the peer refuses it for good
        pending: dict[str, asyncio.Task[int]] = {}
        error: str | None = None
        outcome: dict[str, bool | None] = {}  # True complete at the peer, False failed, None uploading
        ready_bytes = 0
        for row in rows:
            refs = _blob_refs(row.envelope)
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
                    if isinstance(exc, BlobRefused):
                        refusals[ref.sha256] = str(exc)
                    continue
                if task is None:
                    task = asyncio.create_task(self._upload_blob(peer, ref.sha256, ref.len),
                                               name=f"blob:{peer}:{ref.sha256[:8]}")
                    self._uploads[(peer, ref.sha256)] = task
                outcome[ref.sha256] = None
                pending[ref.sha256] = task
            states = [outcome[r.sha256] for r in refs]
            why = next((refusals[r.sha256] for r in refs if r.sha256 in refusals), None)
            if why is not None:
                refused.append((row, why))
            elif all(states):
                ready.append(row)
                ready_bytes += sum(r.len for r in refs)
            elif False in states:
                blocked.append(row)
        return ready, blocked, list(pending.values()), error, ready_bytes, refused

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
