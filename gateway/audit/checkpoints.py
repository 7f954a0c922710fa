"""Checkpoint publishing (SPEC §7.2) and the log's side of witnessing (collecting cosignatures).

The :class:`Publisher` signs a C2SP tlog-checkpoint with the node's Ed25519 audit key at most every
``interval`` seconds while the log has grown. Every signed checkpoint is kept in ``audit_checkpoints``
(size is the primary key). Before signing it refuses, with :class:`ForkRefused`:

- a size that already has a signed checkpoint with a different root,
- a size below the latest signed checkpoint (a truncated or restored log),
- a root the stored tree cannot prove consistent with the latest signed checkpoint.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import structlog

from gateway.audit.db import AuditError, connect, set_meta, transaction
from gateway.audit.reader import AuditReader, StoredCheckpoint
from gateway.audit.tree import consistency_proof, log_size, root_at
from gateway.core.b64 import b64_encode
from gateway.core.merkle import ProofError, verify_consistency
from gateway.core.note import (
    Note,
    NoteError,
    NoteVerifier,
    checkpoint_text,
    encode_add_checkpoint,
    parse_signature_lines,
    sign_ed25519,
)
from gateway.crypto.keys import Ed25519Key, ed25519_verify

log = structlog.get_logger("traza.audit")


class ForkRefused(AuditError):
    """The publisher refused to sign a checkpoint that would contradict one it already signed."""


def ed25519_note_verifier(name: str, public_key: bytes) -> NoteVerifier:
    return NoteVerifier.ed25519(name, public_key, functools.partial(ed25519_verify, public_key))


def cosignature_verifier(name: str, public_key: bytes) -> NoteVerifier:
    return NoteVerifier.cosignature(name, public_key, functools.partial(ed25519_verify, public_key))


class Publisher:
    def __init__(
        self,
        path: str | Path,
        *,
        origin: str,
        key: Ed25519Key,
        interval: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.origin = origin
        self.interval = interval
        self._key = key
        self._clock = clock
        self._conn = connect(path, check_same_thread=False)  # run() signs in a worker thread
        self._lock = threading.RLock()
        set_meta(self._conn, "origin", origin)
        self.reader = AuditReader(self._conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- signing -------------------------------------------------------------------------------------

    def publish(self, now: float | None = None) -> StoredCheckpoint | None:
        """Sign a checkpoint of the current log size if the log grew since the latest one."""
        with self._lock:
            with transaction(self._conn) as conn:
                size = log_size(conn)
                row = conn.execute("SELECT max(size) FROM audit_checkpoints").fetchone()
                latest = 0 if row[0] is None else int(row[0])
                signed = self._sign_locked(conn, size, now) if size > latest else None
            return self.reader.checkpoint(signed) if signed is not None else None

    def sign(self, size: int, now: float | None = None) -> StoredCheckpoint:
        """Sign (or return the existing) checkpoint of ``size``, under the same refusals as publish."""
        with self._lock:
            with transaction(self._conn) as conn:
                self._sign_locked(conn, size, now)
            cp = self.reader.checkpoint(size)
        assert cp is not None
        return cp

    def _sign_locked(self, conn: sqlite3.Connection, size: int, now: float | None) -> int:
        if size < 1:
            raise AuditError("refusing to sign a checkpoint of the empty log")
        have = log_size(conn)
        if size > have:
            raise ForkRefused(f"refusing to sign size {size}: the log holds only {have} entries")
        root = root_at(conn, size)
        row = conn.execute("SELECT root FROM audit_checkpoints WHERE size=?", (size,)).fetchone()
        if row is not None:
            if bytes(row[0]) != root:
                log.error(
                    "audit.fork_refused",
                    size=size,
                    signed_root=b64_encode(bytes(row[0])),
                    root=b64_encode(root),
                )
                raise ForkRefused(
                    f"refusing to sign size {size} with root {b64_encode(root)}: a checkpoint of that size "
                    f"was signed with root {b64_encode(bytes(row[0]))}"
                )
            return size
        prev = conn.execute("SELECT size, root FROM audit_checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        if prev is not None:
            psize, proot = int(prev[0]), bytes(prev[1])
            if psize > size:
                raise ForkRefused(
                    f"refusing to sign size {size}: a checkpoint of size {psize} was already signed"
                )
            try:
                verify_consistency(psize, size, consistency_proof(conn, psize, size), proot, root)
            except (ProofError, AuditError) as exc:
                log.error("audit.fork_refused", size=size, previous_size=psize, reason=str(exc))
                raise ForkRefused(
                    f"refusing to sign size {size}: the stored tree is not consistent with the signed "
                    f"checkpoint of size {psize} ({exc})"
                ) from None
        text = checkpoint_text(self.origin, size, root)
        sig = sign_ed25519(text, self.origin, self._key.public_raw, self._key.sign)
        note = Note(text, (sig,)).encode()
        at = self._clock() if now is None else now
        conn.execute(
            "INSERT INTO audit_checkpoints (size, root, note, public_key, signed_at) VALUES (?, ?, ?, ?, ?)",
            (size, root, note, self._key.public_b64, at),
        )
        log.info("audit.checkpoint_signed", origin=self.origin, size=size, root=b64_encode(root))
        return size

    async def run(
        self,
        stop: asyncio.Event,
        on_checkpoint: Callable[[StoredCheckpoint], Awaitable[None]] | None = None,
    ) -> None:
        """Publish every ``interval`` seconds while entries arrive, until ``stop`` is set.
        ``on_checkpoint`` (e.g. "ask the witnesses to cosign") runs after each new checkpoint."""
        while not stop.is_set():
            cp = await asyncio.to_thread(self.publish)
            if cp is not None and on_checkpoint is not None:
                try:
                    await on_checkpoint(cp)
                except Exception as exc:  # a witness being down must not stop publishing
                    log.warning("audit.on_checkpoint_failed", size=cp.size, error=str(exc))
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
            except TimeoutError:
                pass

    # -- cosignatures --------------------------------------------------------------------------------

    def witness_request(self, witness: str, *, old_size: int | None = None, size: int | None = None) -> bytes:
        """The tlog-witness add-checkpoint body for ``witness``: from ``old_size`` (default: the last
        size that witness cosigned, or 0) to the checkpoint of ``size`` (default: the latest)."""
        with self._lock:
            cp = self.reader.checkpoint(size)
            if cp is None:
                raise AuditError(f"no signed checkpoint of size {size if size is not None else '(latest)'}")
            old = self.last_cosigned_size(witness) if old_size is None else old_size
            if old > cp.size:
                raise AuditError(f"witness {witness} cosigned size {old}, beyond checkpoint size {cp.size}")
            proof = [] if old in (0, cp.size) else consistency_proof(self._conn, old, cp.size)
            return encode_add_checkpoint(old, proof, cp.note)

    def last_cosigned_size(self, witness: str) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT max(size) FROM audit_cosignatures WHERE name=?", (witness,)
            ).fetchone()
        return 0 if row[0] is None else int(row[0])

    def add_cosignatures(
        self, size: int, body: str | bytes, witnesses: Mapping[str, bytes], now: float | None = None
    ) -> list[str]:
        """Verify and keep the cosignature lines a witness returned for the checkpoint of ``size``.

        ``witnesses`` maps witness key names to their raw Ed25519 keys. Lines from unknown keys are
        ignored; a known key's bad cosignature raises. Returns the names stored."""
        with self._lock:
            return self._add_cosignatures(size, body, witnesses, now)

    def _add_cosignatures(
        self, size: int, body: str | bytes, witnesses: Mapping[str, bytes], now: float | None
    ) -> list[str]:
        cp = self.reader.checkpoint(size)
        if cp is None:
            raise AuditError(f"no signed checkpoint of size {size} to attach cosignatures to")
        verifiers = [cosignature_verifier(n, k) for n, k in witnesses.items()]
        text = cp.note[: cp.note.rindex("\n\n") + 1]
        stored: list[str] = []
        at = self._clock() if now is None else now
        try:
            sigs = parse_signature_lines(body)
        except NoteError as exc:
            raise AuditError(f"cosignatures for size {size}: {exc}") from None
        with transaction(self._conn):
            for sig in sigs:
                for v in verifiers:
                    if not v.matches(sig):
                        continue
                    if not v.check(text, sig):
                        raise AuditError(
                            f"cosignature of {sig.name} on checkpoint size {size} does not verify"
                        )
                    self._conn.execute(
                        "INSERT OR REPLACE INTO audit_cosignatures (size, name, public_key, line, received_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (size, sig.name, b64_encode(witnesses[sig.name]), sig.line(), at),
                    )
                    stored.append(sig.name)
        return stored
