"""Witnessing peers' logs (SPEC §7.3, C2SP tlog-witness v1 and tlog-cosignature v1).

:class:`WitnessCore` is the whole ``POST /v1/witness/add-checkpoint`` decision without HTTP:

1. :meth:`WitnessCore.check` (no I/O): the origin is a known log (404), the body and checkpoint are well
   formed (400), the log's key signed it (403), ``old_size <= size`` (400), no proof from size 0 and none
   between equal sizes (422);
2. :meth:`WitnessCore.apply` (inside the caller's ``BEGIN IMMEDIATE`` transaction): a checkpoint of the
   stored size has the stored root (422, a fork), ``old_size`` equals the stored size (409, body
   ``<size>\\n``, ``text/x.tlog.size``), the consistency proof from the stored checkpoint verifies (422);
   then the new size and root are stored.
   Check and update are one transaction, so concurrent requests cannot roll the stored size back;
3. :meth:`WitnessCore.cosign`: the tlog-cosignature v1 line (timestamped Ed25519, key id type 0x04).

A fork (a signed checkpoint of the stored size with another root, or a signed checkpoint whose
consistency proof from the stored one does not verify) is an alert: an ``error`` log line, a row in
``audit_witness_alerts`` with both checkpoints and the proof, and a ``witness.fork_detected`` entry in
this node's own audit log, in the same transaction. ``apply`` *returns* its refusal instead of raising
it, so that a caller whose transaction machinery rolls back on exceptions still keeps the alert.

:class:`Witness` runs the same with its own connection.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from gateway.audit.checkpoints import cosignature_verifier, ed25519_note_verifier
from gateway.audit.db import connect, transaction
from gateway.audit.log import stage
from gateway.core.b64 import b64_decode, b64_encode
from gateway.core.events import Event, WitnessForkDetected, as_entry
from gateway.core.merkle import ProofError, verify_consistency
from gateway.core.note import (
    AddCheckpoint,
    Checkpoint,
    Note,
    NoteError,
    NoteVerifier,
    cosign,
    parse_add_checkpoint,
    parse_checkpoint_text,
    parse_note,
    verify_note,
)
from gateway.crypto.keys import Ed25519Key

log = structlog.get_logger("traza.audit.witness")

SIZE_CONTENT_TYPE = "text/x.tlog.size"
LogKeys = Mapping[str, bytes | str | Sequence[bytes | str]]


class WitnessError(Exception):
    """An add-checkpoint request refused with the HTTP status of C2SP tlog-witness."""

    def __init__(self, status: int, detail: str, *, body: str | None = None, fork: bool = False) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.body = body if body is not None else detail + "\n"
        self.content_type = SIZE_CONTENT_TYPE if status == 409 and body is not None else "text/plain"
        self.fork = fork

    def response(self) -> tuple[int, str, bytes]:
        return self.status, self.content_type, self.body.encode()


@dataclass(frozen=True)
class Checked:
    """A request that passed the checks needing no state."""

    origin: str
    old_size: int
    proof: tuple[bytes, ...]
    text: str  # the signed note as submitted
    note: Note
    checkpoint: Checkpoint


def _raw(k: bytes | str) -> bytes:
    return b64_decode(k) if isinstance(k, str) else k


class WitnessCore:
    """A witness identity (``name``, ``key``: recommended, this node's origin and audit key) and the logs
    it knows: origin (``traza/<federation>/<node>``) to the peer's Ed25519 audit key(s), raw or base64,
    from the manifest. ``node`` is this node's id, for its own audit entries."""

    def __init__(self, *, name: str, key: Ed25519Key, node: str, logs: LogKeys,
                 append: Callable[[sqlite3.Connection, Event, float], int] | None = None) -> None:
        self.name = name
        # how a fork alert enters this node's audit log (the node's facade, which keeps the log's frontier)
        self._append = append or (lambda conn, event, now: stage(conn, [as_entry(event)], node=node, now=now)[0])
        self.node = node
        self._key = key
        self._logs: dict[str, list[NoteVerifier]] = {}
        self.set_logs(logs)

    def set_key(self, key: Ed25519Key) -> None:
        """The key this witness cosigns with from now on (after an audit key rotation)."""
        self._key = key

    def set_logs(self, logs: LogKeys) -> None:
        """Replace the known logs (e.g. when a new manifest is applied)."""
        table: dict[str, list[NoteVerifier]] = {}
        for origin, keys in logs.items():
            ks = [keys] if isinstance(keys, bytes | str) else list(keys)
            table[origin] = [ed25519_note_verifier(origin, _raw(k)) for k in ks]
        self._logs = table

    def verifier(self) -> NoteVerifier:
        """How others check this witness's cosignatures."""
        return cosignature_verifier(self.name, self._key.public_raw)

    def parse(self, body: bytes) -> AddCheckpoint:
        try:
            return parse_add_checkpoint(body)
        except NoteError as exc:
            raise WitnessError(400, str(exc)) from None

    def check(self, origin: str | None, old_size: int, proof: Sequence[bytes], text: str) -> Checked:
        """Steps that need no state; ``origin`` None means "the checkpoint's own origin line"."""
        try:
            note = parse_note(text)
            cp = parse_checkpoint_text(note.text)
        except NoteError as exc:
            raise WitnessError(400, f"checkpoint: {exc}") from None
        origin = cp.origin if origin is None else origin
        verifiers = self._logs.get(origin)
        if verifiers is None:
            raise WitnessError(404, f"unknown log origin {origin!r}")
        if cp.origin != origin:
            raise WitnessError(400, f"checkpoint origin {cp.origin!r} is not {origin!r}")
        try:
            verify_note(note, verifiers)
        except NoteError as exc:
            raise WitnessError(403, f"checkpoint from {origin}: {exc}") from None
        if old_size > cp.size:
            raise WitnessError(400, f"old size {old_size} is larger than the checkpoint size {cp.size}")
        # C2SP tlog-witness as amended in July 2026 (SPEC §7.3, 1.1): a proof that cannot verify is a 422
        if old_size == 0 and proof:
            raise WitnessError(422, "a consistency proof from size 0 must be empty")
        if old_size == cp.size and proof:
            raise WitnessError(422, "equal sizes need an empty consistency proof")
        return Checked(origin, old_size, tuple(proof), text, note, cp)

    def apply(self, conn: sqlite3.Connection, req: Checked, now: float) -> WitnessError | None:
        """Compare with and update the stored state inside the caller's transaction. Returns the
        refusal (with any fork alert already written) or None when the checkpoint was stored."""
        cp = req.checkpoint
        row = conn.execute(
            "SELECT size, root, checkpoint FROM audit_witness_state WHERE origin=?", (req.origin,)
        ).fetchone()
        known_size = 0 if row is None else int(row[0])
        known_root = None if row is None else bytes(row[1])
        known_text = None if row is None else str(row[2])
        if known_root is not None and cp.size == known_size and cp.root != known_root:
            # a signed checkpoint of the cosigned size with another root: a fork, whatever old size
            # the client believed
            self._fork(conn, req, "same_size_different_root", known_text, now)
            return WitnessError(422, f"fork: {req.origin} signed two roots for size {cp.size}", fork=True)
        if req.old_size != known_size:
            return WitnessError(
                409, f"old size {req.old_size} is not the cosigned size {known_size}", body=f"{known_size}\n"
            )
        if known_root is not None and req.old_size < cp.size:
            try:
                verify_consistency(req.old_size, cp.size, req.proof, known_root, cp.root)
            except ProofError as exc:
                self._fork(conn, req, "inconsistent", known_text, now)
                return WitnessError(
                    422,
                    f"checkpoint of size {cp.size} from {req.origin} is not consistent with the cosigned "
                    f"size {req.old_size}: {exc}",
                    fork=True,
                )
        conn.execute(
            "INSERT INTO audit_witness_state (origin, size, root, checkpoint, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(origin) DO UPDATE SET size=excluded.size, root=excluded.root, "
            "checkpoint=excluded.checkpoint, updated_at=excluded.updated_at",
            (req.origin, cp.size, cp.root, req.text, now),
        )
        return None

    def cosign(self, req: Checked, now: float) -> str:
        """This witness's cosignature line over the checkpoint, timestamped ``now``."""
        return cosign(req.note.text, self.name, self._key.public_raw, int(now), self._key.sign).line()

    def _fork(self, conn: sqlite3.Connection, req: Checked, kind: str, known: str | None, now: float) -> None:
        cp = req.checkpoint
        event = WitnessForkDetected(origin=req.origin, kind=kind, size=cp.size, root=b64_encode(cp.root),
                                    old_size=req.old_size)
        idx = self._append(conn, event, now)
        conn.execute(
            "INSERT INTO audit_witness_alerts (origin, kind, detected_at, known_checkpoint, presented_checkpoint, "
            "old_size, proof, audit_idx) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                req.origin,
                kind,
                now,
                known,
                req.text,
                req.old_size,
                "\n".join(b64_encode(h) for h in req.proof),
                idx,
            ),
        )
        log.error(
            "audit.witness.fork_detected",
            origin=req.origin,
            kind=kind,
            size=cp.size,
            old_size=req.old_size,
            audit_idx=idx,
        )


def latest(conn: sqlite3.Connection, origin: str) -> tuple[int, bytes] | None:
    """The latest (size, root) cosigned for ``origin``, or None (pull mode asks for old=size)."""
    row = conn.execute("SELECT size, root FROM audit_witness_state WHERE origin=?", (origin,)).fetchone()
    return None if row is None else (int(row[0]), bytes(row[1]))


def alerts(conn: sqlite3.Connection) -> list[dict[str, object]]:
    """Every fork seen as a witness (without the stored checkpoints and proof)."""
    rows = conn.execute(
        "SELECT id, origin, kind, detected_at, old_size, audit_idx FROM audit_witness_alerts ORDER BY id"
    ).fetchall()
    keys = ("id", "origin", "kind", "detected_at", "old_size", "audit_idx")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def alert_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM audit_witness_alerts").fetchone()[0])


class Witness(WitnessCore):
    """A :class:`WitnessCore` with its own connection to the node's database (``path``)."""

    def __init__(
        self,
        path: str | Path,
        *,
        name: str,
        key: Ed25519Key,
        node: str,
        logs: LogKeys,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name=name, key=key, node=node, logs=logs)
        self._clock = clock
        self._conn = connect(path)
        self.forks_detected = alert_count(self._conn)

    def close(self) -> None:
        self._conn.close()

    def latest(self, origin: str) -> tuple[int, bytes] | None:
        return latest(self._conn, origin)

    def alerts(self) -> list[dict[str, object]]:
        return alerts(self._conn)

    def handle(self, body: bytes, now: float | None = None) -> tuple[int, str, bytes]:
        """An HTTP ``POST add-checkpoint`` body in, ``(status, content type, response body)`` out."""
        try:
            req = self.parse(body)
            line = self.add_checkpoint(None, req.old_size, req.proof, req.checkpoint, now)
        except WitnessError as exc:
            return exc.response()
        return 200, "text/plain; charset=utf-8", line.encode()

    def add_checkpoint(
        self,
        origin: str | None,
        old_size: int,
        consistency_proof: Sequence[bytes],
        checkpoint_text: str,
        now: float | None = None,
    ) -> str:
        """Verify ``checkpoint_text`` (a signed note) from ``origin`` against the stored state, store it,
        and return this witness's cosignature line. Raises :class:`WitnessError` (404, 403, 400, 409,
        422 as in C2SP tlog-witness as amended in July 2026)."""
        at = self._clock() if now is None else now
        req = self.check(origin, old_size, consistency_proof, checkpoint_text)
        with transaction(self._conn) as conn:
            error = self.apply(conn, req, at)
        if error is not None:
            if error.fork:
                self.forks_detected += 1
            raise error
        return self.cosign(req, at)
