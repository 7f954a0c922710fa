"""Witnessing peers' logs (SPEC §7.3, C2SP tlog-witness v1 and tlog-cosignature v1).

:meth:`Witness.add_checkpoint` is the whole ``POST /v1/witness/add-checkpoint`` decision without HTTP:
it returns the cosignature line(s) or raises :class:`WitnessError` carrying the HTTP status the C2SP
spec prescribes (and, for 409, the body ``<size>\\n`` with content type ``text/x.tlog.size``).
:meth:`Witness.handle` wraps it as ``(status, content_type, body)`` for the HTTP server.

The check of ``old_size`` against the stored size and the update are one SQLite transaction
(``BEGIN IMMEDIATE``), so concurrent requests cannot roll the stored size back.

A fork (a signed checkpoint of the stored size with a different root, or a signed checkpoint whose
consistency proof from the stored checkpoint does not verify) is an alert: an ``error`` log line, a row
in ``audit_witness_alerts`` with both checkpoints and the proof, a ``witness.fork_detected`` entry in
this node's own audit log (same transaction), and :attr:`Witness.forks_detected` goes up.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import structlog

from gateway.audit.checkpoints import cosignature_verifier, ed25519_note_verifier
from gateway.audit.db import AuditError, connect, transaction
from gateway.audit.log import stage
from gateway.core.b64 import b64_decode, b64_encode
from gateway.core.merkle import ProofError, verify_consistency
from gateway.core.note import (
    Checkpoint,
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


class WitnessError(Exception):
    """An add-checkpoint request refused with the HTTP status of C2SP tlog-witness."""

    def __init__(self, status: int, detail: str, *, body: str | None = None, fork: bool = False) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.body = body if body is not None else detail + "\n"
        self.content_type = SIZE_CONTENT_TYPE if status == 409 and body is not None else "text/plain"
        self.fork = fork


class Witness:
    """This node as a witness of its peers' logs.

    ``logs`` maps each peer's origin (``traza/<federation>/<node>``) to its Ed25519 audit public key
    (raw bytes or base64), from the manifest; :meth:`set_logs` replaces it when a manifest is applied.
    ``name`` and ``key`` are this witness's cosigning identity (recommended: this node's origin and
    its audit key); cosignatures are tlog-cosignature v1 Ed25519 (key id type byte 0x04).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        name: str,
        key: Ed25519Key,
        node: str,
        logs: Mapping[str, bytes | str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.node = node
        self._key = key
        self._clock = clock
        self._conn = connect(path)
        self._logs: dict[str, NoteVerifier] = {}
        self.set_logs(logs)
        row = self._conn.execute("SELECT count(*) FROM audit_witness_alerts").fetchone()
        self.forks_detected = int(row[0])

    def close(self) -> None:
        self._conn.close()

    def set_logs(self, logs: Mapping[str, bytes | str]) -> None:
        self._logs = {
            origin: ed25519_note_verifier(origin, b64_decode(k) if isinstance(k, str) else k)
            for origin, k in logs.items()
        }

    def verifier(self) -> NoteVerifier:
        """How others check this witness's cosignatures."""
        return cosignature_verifier(self.name, self._key.public_raw)

    def latest(self, origin: str) -> tuple[int, bytes] | None:
        """The latest (size, root) cosigned for ``origin``, or None (pull mode asks for old=size)."""
        row = self._conn.execute(
            "SELECT size, root FROM audit_witness_state WHERE origin=?", (origin,)
        ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def alerts(self) -> list[dict[str, object]]:
        rows = self._conn.execute(
            "SELECT id, origin, kind, detected_at, old_size, audit_idx FROM audit_witness_alerts ORDER BY id"
        ).fetchall()
        keys = ("id", "origin", "kind", "detected_at", "old_size", "audit_idx")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # -- the protocol --------------------------------------------------------------------------------

    def handle(self, body: bytes, now: float | None = None) -> tuple[int, str, bytes]:
        """An HTTP ``POST add-checkpoint`` body in, ``(status, content type, response body)`` out."""
        try:
            req = parse_add_checkpoint(body)
            origin = parse_checkpoint_text(parse_note(req.checkpoint).text).origin
        except NoteError as exc:
            return 400, "text/plain", f"{exc}\n".encode()
        try:
            line = self.add_checkpoint(origin, req.old_size, list(req.proof), req.checkpoint, now)
        except WitnessError as exc:
            return exc.status, exc.content_type, exc.body.encode()
        return 200, "text/plain; charset=utf-8", line.encode()

    def add_checkpoint(
        self,
        origin: str,
        old_size: int,
        consistency_proof: Sequence[bytes],
        checkpoint_text: str,
        now: float | None = None,
    ) -> str:
        """Verify ``checkpoint_text`` (a signed note) from ``origin`` against the stored state, store it,
        and return this witness's cosignature line. Raises :class:`WitnessError` (404, 403, 400, 409,
        422 as in C2SP tlog-witness)."""
        at = self._clock() if now is None else now
        # 1. known log, valid signature by its key (signatures from unknown keys are ignored)
        verifier = self._logs.get(origin)
        if verifier is None:
            raise WitnessError(404, f"unknown log origin {origin!r}")
        try:
            note = parse_note(checkpoint_text)
            cp = parse_checkpoint_text(note.text)
        except NoteError as exc:
            raise WitnessError(400, f"checkpoint from {origin}: {exc}") from None
        if cp.origin != origin:
            raise WitnessError(400, f"checkpoint origin {cp.origin!r} is not {origin!r}")
        try:
            verify_note(note, [verifier])
        except NoteError as exc:
            raise WitnessError(403, f"checkpoint from {origin}: {exc}") from None
        # 2. request shape
        if old_size > cp.size:
            raise WitnessError(400, f"old size {old_size} is larger than the checkpoint size {cp.size}")
        if old_size == 0 and consistency_proof:
            raise WitnessError(400, "a consistency proof from size 0 must be empty")
        if old_size == cp.size and consistency_proof:
            raise WitnessError(400, "equal sizes need an empty consistency proof")
        error: WitnessError | None = None
        with transaction(self._conn) as conn:
            row = conn.execute(
                "SELECT size, root, checkpoint FROM audit_witness_state WHERE origin=?", (origin,)
            ).fetchone()
            known_size = 0 if row is None else int(row[0])
            known_root = None if row is None else bytes(row[1])
            known_text = None if row is None else str(row[2])
            if known_root is not None and cp.size == known_size and cp.root != known_root:
                # 3. a signed checkpoint of the cosigned size with another root: a fork, whatever the
                # old size the client believed
                self._fork(
                    conn,
                    origin,
                    "same_size_different_root",
                    known_text,
                    checkpoint_text,
                    old_size,
                    consistency_proof,
                    at,
                )
                error = WitnessError(
                    409,
                    f"fork: {origin} signed two roots for size {cp.size}",
                    body=f"{known_size}\n",
                    fork=True,
                )
            elif old_size != known_size:
                # 4. the client's idea of our state is wrong: tell it our size
                error = WitnessError(
                    409, f"old size {old_size} is not the cosigned size {known_size}", body=f"{known_size}\n"
                )
            elif known_root is not None and old_size < cp.size:
                # 5. the new checkpoint must extend the cosigned one
                try:
                    verify_consistency(old_size, cp.size, consistency_proof, known_root, cp.root)
                except ProofError as exc:
                    self._fork(
                        conn,
                        origin,
                        "inconsistent",
                        known_text,
                        checkpoint_text,
                        old_size,
                        consistency_proof,
                        at,
                    )
                    error = WitnessError(
                        422,
                        f"checkpoint of size {cp.size} from {origin} is not consistent "
                        f"with the cosigned size {old_size}: {exc}",
                        fork=True,
                    )
            if error is None:
                # 6. store atomically with the checks above
                conn.execute(
                    "INSERT INTO audit_witness_state (origin, size, root, checkpoint, updated_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT(origin) DO UPDATE SET size=excluded.size, "
                    "root=excluded.root, checkpoint=excluded.checkpoint, updated_at=excluded.updated_at",
                    (origin, cp.size, cp.root, checkpoint_text, at),
                )
        if error is not None:
            if error.fork:
                self.forks_detected += 1
            raise error
        # 7. cosign (tlog-cosignature v1: timestamped Ed25519)
        sig = cosign(note.text, self.name, self._key.public_raw, int(at), self._key.sign)
        return sig.line()

    def _fork(
        self,
        conn: sqlite3.Connection,
        origin: str,
        kind: str,
        known: str | None,
        presented: str,
        old_size: int,
        proof: Sequence[bytes],
        at: float,
    ) -> None:
        cp: Checkpoint = parse_checkpoint_text(parse_note(presented).text)
        fields = {
            "event": "witness.fork_detected",
            "origin": origin,
            "kind": kind,
            "size": cp.size,
            "root": b64_encode(cp.root),
            "old_size": old_size,
        }
        (idx,) = stage(conn, [fields], node=self.node, now=at)
        conn.execute(
            "INSERT INTO audit_witness_alerts (origin, kind, detected_at, known_checkpoint, presented_checkpoint, "
            "old_size, proof, audit_idx) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (origin, kind, at, known, presented, old_size, "\n".join(b64_encode(h) for h in proof), idx),
        )
        log.error(
            "audit.witness.fork_detected",
            origin=origin,
            kind=kind,
            size=cp.size,
            old_size=old_size,
            audit_idx=idx,
        )


def fork_evidence(conn: sqlite3.Connection) -> list[tuple[str, str | None, str]]:
    """(kind, known checkpoint, presented checkpoint) of every alert, for an operator or auditor."""
    try:
        rows = conn.execute(
            "SELECT kind, known_checkpoint, presented_checkpoint FROM audit_witness_alerts ORDER BY id"
        ).fetchall()
    except sqlite3.Error as exc:
        raise AuditError(f"cannot read witness alerts: {exc}") from None
    return [(str(k), None if a is None else str(a), str(b)) for k, a, b in rows]
