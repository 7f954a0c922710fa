"""Checkpoint publishing (SPEC §7.2) and the log's side of witnessing (collecting cosignatures).

A checkpoint is a C2SP tlog-checkpoint signed with the node's Ed25519 audit key. Every signed
checkpoint is kept in ``audit_checkpoints`` (size is the primary key). :func:`sign_checkpoint` refuses,
with :class:`ForkRefused`:

- a size that already has a signed checkpoint with a different root,
- a size below the latest signed checkpoint (a truncated or restored log),
- a root the stored tree cannot prove consistent with the latest signed checkpoint.

The functions here run inside a transaction the caller owns (``BEGIN IMMEDIATE``); :class:`Publisher`
wraps them with its own connection and transactions, and signs at most every ``interval`` seconds.

:class:`CheckpointFile` keeps the node's latest checkpoint (as served, with its cosignatures) in a file
outside the database too, written atomically and never moved back, for the start-up check
(``gateway.audit.selfcheck``) and ``traza audit verify --db``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
    parse_checkpoint_text,
    parse_note,
    parse_signature_lines,
    sign_ed25519,
)
from gateway.crypto.keys import Ed25519Key, ed25519_verify
from gateway.store.dialect import Dialect, dialect_of

log = structlog.get_logger("traza.audit")

# The node's copy of its latest signed checkpoint, outside its database (beside it in data_dir), read by
# the start-up check (gateway.audit.selfcheck).
CHECKPOINT_FILE = "last-checkpoint"


class ForkRefused(AuditError):
    """The publisher refused to sign a checkpoint that would contradict one it already signed."""


def ed25519_note_verifier(name: str, public_key: bytes) -> NoteVerifier:
    return NoteVerifier.ed25519(name, public_key, functools.partial(ed25519_verify, public_key))


def cosignature_verifier(name: str, public_key: bytes) -> NoteVerifier:
    return NoteVerifier.cosignature(name, public_key, functools.partial(ed25519_verify, public_key))


# -- inside the caller's transaction -------------------------------------------------------------------


def _keys(key: Ed25519Key | Sequence[Ed25519Key]) -> list[Ed25519Key]:
    keys = [key] if isinstance(key, Ed25519Key) else list(key)
    if not keys:
        raise AuditError("no audit key to sign checkpoints with")
    return keys


def sign_checkpoint(
    conn: sqlite3.Connection, *, origin: str, key: Ed25519Key | Sequence[Ed25519Key], size: int, now: float
) -> int:
    """Sign and store the checkpoint of ``size`` (or keep the existing identical one); return ``size``.
    Raises :class:`ForkRefused` for the refusals of the module docstring.

    ``key`` may be several audit keys (newest first) during a key rotation: the note then carries one
    signature line per key (C2SP signed-note), so verifiers holding either key accept it; the first is
    the one recorded with the checkpoint (and put in evidence bundles)."""
    keys = _keys(key)
    if size < 1:
        raise AuditError("refusing to sign a checkpoint of the empty log")
    have = log_size(conn)
    if size > have:
        raise ForkRefused(f"refusing to sign size {size}: the log holds only {have} entries")
    root = root_at(conn, size)
    row = conn.execute("SELECT root FROM audit_checkpoints WHERE size=?", (size,)).fetchone()
    if row is not None:
        signed = bytes(row[0])
        if signed != root:
            log.error("audit.fork_refused", size=size, signed_root=b64_encode(signed), root=b64_encode(root))
            raise ForkRefused(
                f"refusing to sign size {size} with root {b64_encode(root)}: a checkpoint of that size "
                f"was signed with root {b64_encode(signed)}"
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
    text = checkpoint_text(origin, size, root)
    note = Note(text, tuple(sign_ed25519(text, origin, k.public_raw, k.sign) for k in keys)).encode()
    conn.execute(
        "INSERT INTO audit_checkpoints (size, root, note, public_key, signed_at) VALUES (?, ?, ?, ?, ?)",
        (size, root, note, keys[0].public_b64, now),
    )
    log.info("audit.checkpoint_signed", origin=origin, size=size, root=b64_encode(root))
    return size


def publish_checkpoint(
    conn: sqlite3.Connection, *, origin: str, key: Ed25519Key | Sequence[Ed25519Key], now: float
) -> int | None:
    """Sign a checkpoint of the current log size if the log grew since the latest one; its size or None."""
    size = log_size(conn)
    row = conn.execute("SELECT max(size) FROM audit_checkpoints").fetchone()
    latest = 0 if row[0] is None else int(row[0])
    return sign_checkpoint(conn, origin=origin, key=key, size=size, now=now) if size > latest else None


def last_cosigned_size(conn: sqlite3.Connection, witness: str) -> int:
    row = conn.execute("SELECT max(size) FROM audit_cosignatures WHERE name=?", (witness,)).fetchone()
    return 0 if row[0] is None else int(row[0])


def witness_request(
    conn: sqlite3.Connection, witness: str, *, old_size: int | None = None, size: int | None = None
) -> bytes:
    """The tlog-witness add-checkpoint body for ``witness``: from ``old_size`` (default: the last size
    that witness cosigned, or 0) to the checkpoint of ``size`` (default: the latest). On a 409 answer,
    ask again with the size in its body."""
    cp = AuditReader(conn).checkpoint(size)
    if cp is None:
        raise AuditError(f"no signed checkpoint of size {size if size is not None else '(latest)'}")
    old = last_cosigned_size(conn, witness) if old_size is None else old_size
    if old > cp.size:
        raise AuditError(f"witness {witness} cosigned size {old}, beyond checkpoint size {cp.size}")
    proof = [] if old in (0, cp.size) else consistency_proof(conn, old, cp.size)
    return encode_add_checkpoint(old, proof, cp.note)


def store_cosignatures(
    conn: sqlite3.Connection, size: int, body: str | bytes, witnesses: Mapping[str, bytes], now: float
) -> list[str]:
    """Verify and keep the cosignature lines a witness returned for the checkpoint of ``size``.

    ``witnesses`` maps witness key names to raw Ed25519 keys. Lines from unknown keys are ignored; a
    known key's bad cosignature raises AuditError. Returns the names stored."""
    cp = AuditReader(conn).checkpoint(size)
    if cp is None:
        raise AuditError(f"no signed checkpoint of size {size} to attach cosignatures to")
    try:
        sigs = parse_signature_lines(body)
    except NoteError as exc:
        raise AuditError(f"cosignatures for size {size}: {exc}") from None
    text = cp.note[: cp.note.rindex("\n\n") + 1]
    verifiers = [cosignature_verifier(n, k) for n, k in witnesses.items()]
    stored: list[str] = []
    for sig in sigs:
        for v in verifiers:
            if not v.matches(sig):
                continue
            if not v.check(text, sig):
                raise AuditError(f"cosignature of {sig.name} on checkpoint size {size} does not verify")
            conn.execute(
                "INSERT OR IGNORE INTO audit_cosignatures (size, name, public_key, line, received_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (size, sig.name, b64_encode(witnesses[sig.name]), sig.line(), now),
            )
            compact_cosignatures(conn, since=now, name=sig.name)
            stored.append(sig.name)
    return stored


DAY = 86400
# per witness, the newest cosignature received before a time (for one witness, or for every one: then the
# earliest of those)
_PREVIOUS_NEWEST = {
    True: "SELECT max(received_at) FROM audit_cosignatures WHERE name = ? AND received_at < ?",
    False: "SELECT min(m) FROM (SELECT max(received_at) AS m FROM audit_cosignatures WHERE received_at < ? "
           "GROUP BY name) AS newest",
}
_KEEP = (
    "DELETE FROM audit_cosignatures WHERE id IN (SELECT id FROM ("
    " SELECT id,"
    "  row_number() OVER (PARTITION BY name, {day} ORDER BY received_at, id)"
    "   AS nth_of_day,"
    "  row_number() OVER (PARTITION BY name ORDER BY received_at DESC, id DESC) AS nth_newest"
    "  FROM audit_cosignatures WHERE {where}) AS ranked WHERE nth_of_day > 1 AND nth_newest > 1)"
)


@functools.lru_cache(maxsize=8)
def _compact_sql(dialect: Dialect, one: bool) -> str:
    """Delete every cosignature that is neither its witness's newest nor the first of its UTC day (of one
    witness, or of every one); the day is the integer part of ``received_at / 86400``."""
    where = "name = ? AND received_at >= ?" if one else "received_at >= ?"
    return _KEEP.format(day=dialect.trunc("received_at / 86400"), where=where)


def compact_cosignatures(conn: sqlite3.Connection, *, since: float | None = None, name: str | None = None) -> int:
    """Per witness (``name``, or every one), keep the newest cosignature and the first of each UTC day
    (SPEC §7.2, 1.1); delete the others received from ``since`` on (every one if None), and from the day
    of each witness's newest cosignature before ``since`` (which stopped being the newest). Run after each
    stored cosignature (with ``since`` = now) it keeps at most one a day plus the newest, whatever the
    refresh period, touching a few rows. Returns the number of rows deleted."""
    one = name is not None  # one witness: both statements use the index (name, received_at)
    start = -1.0
    if since is not None:
        row = conn.execute(_PREVIOUS_NEWEST[one], (name, since) if one else (since,)).fetchone()
        earliest = since if row[0] is None else min(since, float(row[0]))
        start = float(int(earliest // DAY) * DAY)
    cur = conn.execute(_compact_sql(dialect_of(conn), one), (name, start) if one else (start,))
    return int(cur.rowcount)


def newest_cosignatures(conn: sqlite3.Connection) -> dict[str, float]:
    """When the newest cosignature of each witness (key name) was received."""
    rows = conn.execute("SELECT name, max(received_at) FROM audit_cosignatures GROUP BY name").fetchall()
    return {str(n): float(t) for n, t in rows}


# -- with its own connection -----------------------------------------------------------------------------


class Publisher:
    """Signs checkpoints of the log in ``path`` with its own connection (see the module functions)."""

    def __init__(
        self,
        path: str | Path,
        *,
        origin: str,
        key: Ed25519Key | Sequence[Ed25519Key],
        interval: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.origin = origin
        self.interval = interval
        self._key = _keys(key)
        self._clock = clock
        self._conn = connect(path, check_same_thread=False)  # run() signs in a worker thread
        self._lock = threading.RLock()
        set_meta(self._conn, "origin", origin)
        self.reader = AuditReader(self._conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def publish(self, now: float | None = None) -> StoredCheckpoint | None:
        """Sign a checkpoint of the current log size if the log grew since the latest one."""
        at = self._clock() if now is None else now
        with self._lock:
            with transaction(self._conn) as conn:
                size = publish_checkpoint(conn, origin=self.origin, key=self._key, now=at)
            return None if size is None else self.reader.checkpoint(size)

    def sign(self, size: int, now: float | None = None) -> StoredCheckpoint:
        """Sign (or return the existing) checkpoint of ``size``, under the same refusals as publish."""
        at = self._clock() if now is None else now
        with self._lock:
            with transaction(self._conn) as conn:
                sign_checkpoint(conn, origin=self.origin, key=self._key, size=size, now=at)
            cp = self.reader.checkpoint(size)
        assert cp is not None
        return cp

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

    def witness_request(self, witness: str, *, old_size: int | None = None, size: int | None = None) -> bytes:
        with self._lock:
            return witness_request(self._conn, witness, old_size=old_size, size=size)

    def last_cosigned_size(self, witness: str) -> int:
        with self._lock:
            return last_cosigned_size(self._conn, witness)

    def add_cosignatures(
        self, size: int, body: str | bytes, witnesses: Mapping[str, bytes], now: float | None = None
    ) -> list[str]:
        """:func:`store_cosignatures` in its own transaction."""
        at = self._clock() if now is None else now
        with self._lock, transaction(self._conn) as conn:
            return store_cosignatures(conn, size, body, witnesses, at)


# -- the copy of the latest checkpoint kept outside the database ------------------------------------


def read_checkpoint_file(path: Path) -> tuple[str, int, bytes] | None:
    """``(served note, size, root)`` from the file, or None if there is none. Raises AuditError naming the
    file if it cannot be read or is not a checkpoint (its signatures are checked by :func:`check_store`)."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"{path}: cannot be read ({exc})") from None
    try:
        cp = parse_checkpoint_text(parse_note(text).text)
    except NoteError as exc:
        raise AuditError(f"{path}: not a signed checkpoint ({exc})") from None
    return text, cp.size, cp.root


def write_checkpoint_file(path: Path, served: str) -> None:
    """Replace the file with ``served`` atomically and durably: temporary file, fsync, rename, fsync of the
    folder (so that after a crash the file holds the old or the new checkpoint, whole)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, served.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class CheckpointFile:
    """The node's copy of its latest checkpoint as served; never moves back to a smaller size."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._size = 0

    def save(self, served: str, size: int) -> bool:
        """Write ``served`` (the checkpoint of ``size`` with its cosignatures) unless a larger one is kept;
        True if written. Blocking (fsync): call it from a worker thread on the event loop."""
        with self._lock:
            if size < self._size:
                return False
            if self._size == 0:  # first use: what is on disk
                with contextlib.suppress(AuditError):
                    have = read_checkpoint_file(self.path)
                    if have is not None and have[1] > size:
                        self._size = have[1]
                        return False
            write_checkpoint_file(self.path, served)
            self._size = size
            return True
