"""Verifying a whole audit log (``traza audit verify``): recompute the tree from the entries, check every
checkpoint's log signature, its cosignatures, its root, and consistency between successive checkpoints.

The first problem in log order stops verification with :class:`VerifyFailed`, whose message names the
index or the checkpoint at fault.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from gateway.audit.checkpoints import cosignature_verifier, ed25519_note_verifier
from gateway.audit.db import AuditError
from gateway.core.b64 import b64_decode, b64_encode
from gateway.core.canonical import CanonicalError, canonical_bytes
from gateway.core.merkle import CompactRange, ProofError, leaf_hash, verify_consistency
from gateway.core.note import (
    NoteError,
    cosignature_timestamp,
    node_of_origin,
    parse_checkpoint_text,
    parse_note,
    verify_note,
)

_decoder = msgspec.json.Decoder()


class VerifyFailed(Exception):
    """Verification failed at ``where`` (``index 17`` or ``checkpoint size 40``)."""

    def __init__(self, where: str, detail: str, *, index: int | None = None, size: int | None = None) -> None:
        super().__init__(f"{where}: {detail}")
        self.where = where
        self.detail = detail
        self.index = index
        self.checkpoint_size = size


@dataclass(frozen=True)
class CheckpointRecord:
    """A checkpoint to check: its note as served (log signature + cosignature lines), the log key it was
    recorded with (base64, may be None) and the witness keys recorded for its cosignatures."""

    served: str
    log_key: str | None = None
    witness_keys: Mapping[str, str] = field(default_factory=dict)
    recorded: tuple[int, bytes] | None = None  # (size, root) as the database's columns record them


@dataclass
class VerifyReport:
    size: int = 0
    node: str | None = None
    origin: str | None = None
    checkpoints: int = 0
    cosignatures: int = 0
    latest_size: int = 0
    latest_root: bytes = b""
    root: bytes = b""  # the root recomputed from every entry (size ``size``)
    witnesses: set[str] = field(default_factory=set)
    # per witness, the timestamp (POSIX seconds) of its newest valid cosignature: how fresh the
    # witnessing is (SPEC §7.2, 1.1)
    newest_cosignatures: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # cosignature lines that could not be verified, per key name: why (no key for that name)
    unverified: dict[str, str] = field(default_factory=dict)


NO_WITNESS_KEY = "no key for this witness (give --manifest or --witness)"
PINNED_ELSEWHERE = "not a witness whose key was pinned (not an audit key of the manifest's nodes, or no --witness for it)"


def _entry_check(index: int, raw: bytes, node: str | None) -> str | None:
    """Return the problem with an entry's content, or None."""
    try:
        value = _decoder.decode(raw)
    except msgspec.DecodeError:
        return "entry is not JSON"
    if not isinstance(value, dict):
        return "entry is not a JSON object"
    try:
        if canonical_bytes(value) != raw:
            return "entry is not canonical JSON (keys sorted, no whitespace)"
    except CanonicalError as exc:
        return f"entry is not canonical JSON ({exc})"
    if value.get("idx") != index:
        return f"entry records idx {value.get('idx')!r} at position {index} (entries reordered or moved)"
    if node is not None and value.get("node") != node:
        return f"entry records node {value.get('node')!r}, the log belongs to {node!r}"
    if not isinstance(value.get("event"), str) or not isinstance(value.get("ts"), str):
        return "entry has no event or ts"
    return None


class _CheckpointChecker:
    def __init__(
        self,
        *,
        origin: str | None,
        node: str | None,
        log_keys: Sequence[bytes] | None,
        witness_keys: Mapping[str, bytes | Sequence[bytes]] | None,
        min_cosignatures: int,
        consistency: Callable[[int, int], list[bytes]] | None,
        report: VerifyReport,
        strict_witnesses: bool = False,
    ) -> None:
        self.strict_witnesses = strict_witnesses
        self.origin = origin
        self.node = node
        self.log_keys = log_keys
        self.witness_keys = witness_keys
        self.min_cosignatures = min_cosignatures
        self.consistency = consistency
        self.report = report
        self.prev: tuple[int, bytes] | None = None

    def check(self, rec: CheckpointRecord, ordinal: int, size: int, root: bytes, *, latest: bool) -> None:
        """Check one checkpoint, reached when the recomputed tree has ``size`` leaves and ``root``. Only the
        ``latest`` (largest) one must carry ``min_cosignatures``: older ones keep one cosignature a day per
        witness (SPEC §7.2, 1.1), and the consistency proofs tie each of them to the latest."""
        where = f"checkpoint #{ordinal} (size {size})"

        def fail(detail: str) -> VerifyFailed:
            return VerifyFailed(where, detail, size=size)

        try:
            note = parse_note(rec.served)
            cp = parse_checkpoint_text(note.text)
        except NoteError as exc:
            raise fail(f"malformed signed note: {exc}") from None
        if self.origin is None:
            self.origin = cp.origin
        if cp.origin != self.origin:
            raise fail(f"origin {cp.origin!r} is not the log's origin {self.origin!r}")
        try:
            origin_node = node_of_origin(cp.origin)
        except NoteError as exc:
            raise fail(str(exc)) from None
        if self.node is not None and origin_node != self.node:
            raise fail(f"origin {cp.origin!r} names node {origin_node!r}, the log belongs to {self.node!r}")
        if cp.extensions:
            raise fail("Traza checkpoints carry no extension lines")
        # log signature: pinned keys if given, else the key recorded with the checkpoint
        if self.log_keys is not None:
            keys = list(self.log_keys)
        elif rec.log_key is not None:
            keys = [b64_decode(rec.log_key)]
        else:
            raise fail("no log key to verify it with (give --log-key)")
        try:
            verify_note(note, [ed25519_note_verifier(cp.origin, k) for k in keys])
        except NoteError as exc:
            raise fail(f"log signature: {exc}") from None
        # cosignatures: with pinned witness keys (--manifest, --witness) a line under a pinned witness's
        # name must verify with one of its keys; a line under another name cannot be verified (reported)
        pinned = self.witness_keys is not None
        if self.witness_keys is not None:
            wkeys = [(n, k) for n, ks in self.witness_keys.items() for k in ([ks] if isinstance(ks, bytes) else ks)]
        else:
            wkeys = [(n, b64_decode(k)) for n, k in rec.witness_keys.items()]
        verifiers = [cosignature_verifier(n, k) for n, k in wkeys]
        names = {n for n, _ in wkeys}
        good = 0
        for sig in note.signatures:
            if sig.name == cp.origin and len(sig.signature) == 64:
                continue  # the log's own signature line
            matching = [v for v in verifiers if v.matches(sig)]
            if not matching:
                if self.strict_witnesses and pinned and sig.name in names:
                    raise fail(f"cosignature of witness {sig.name!r} is by key id {sig.key_id.hex()}, "
                               "not a key of that witness: it does not verify")
                if self.strict_witnesses:
                    self.report.unverified.setdefault(sig.name, PINNED_ELSEWHERE if pinned else NO_WITNESS_KEY)
                else:
                    self.report.warnings.append(f"{where}: signature line of unknown key {sig.name!r} ignored")
                continue
            for v in matching:
                if not v.check(note.text, sig):
                    raise fail(f"cosignature of witness {sig.name!r} does not verify")
            good += 1
            self.report.witnesses.add(sig.name)
            with contextlib.suppress(NoteError):
                ts = cosignature_timestamp(sig)
                self.report.newest_cosignatures[sig.name] = max(ts, self.report.newest_cosignatures.get(sig.name, ts))
        if latest and good < self.min_cosignatures:
            raise fail(f"{good} valid cosignatures, at least {self.min_cosignatures} required")
        self.report.cosignatures += good
        # root against the recomputed tree
        if rec.recorded is not None and rec.recorded != (cp.size, cp.root):
            raise fail(f"the database records size {rec.recorded[0]} and another root than its signed note")
        if cp.root != root:
            raise fail(
                f"root {b64_encode(cp.root)} does not match the root recomputed from entries 0..{cp.size - 1} "
                f"({b64_encode(root)}): an entry below index {cp.size} was changed"
            )
        # consistency with the previous checkpoint
        if self.prev is not None:
            psize, proot = self.prev
            if cp.size == psize:
                if cp.root != proot:
                    raise fail(f"fork: two checkpoints of size {cp.size} with different roots")
            elif cp.size < psize:
                raise fail(f"size {cp.size} is smaller than the previous checkpoint's {psize}")
            elif self.consistency is not None:
                try:
                    verify_consistency(psize, cp.size, self.consistency(psize, cp.size), proot, cp.root)
                except (ProofError, AuditError) as exc:
                    raise fail(
                        f"not provably consistent with the checkpoint of size {psize}: {exc}"
                    ) from None
        self.prev = (cp.size, cp.root)
        self.report.checkpoints += 1
        self.report.latest_size, self.report.latest_root = cp.size, cp.root


def checkpoint_size(rec: CheckpointRecord) -> int:
    try:
        return parse_checkpoint_text(parse_note(rec.served).text).size
    except NoteError as exc:
        raise VerifyFailed("checkpoint", f"malformed signed note: {exc}") from None


def verify_log(
    entries: Iterable[tuple[int, bytes, bytes | None]],
    checkpoints: Sequence[CheckpointRecord],
    *,
    node: str | None = None,
    origin: str | None = None,
    log_keys: Sequence[bytes] | None = None,
    witness_keys: Mapping[str, bytes | Sequence[bytes]] | None = None,
    min_cosignatures: int = 0,
    consistency: Callable[[int, int], list[bytes]] | None = None,
    progress: Callable[[int], None] | None = None,
    check_content: bool = True,
    strict_witnesses: bool = False,
) -> VerifyReport:
    """Verify a log from its entries ``(index, entry bytes, stored leaf hash or None)`` in index order
    and its checkpoints. ``log_keys``/``witness_keys`` pin trusted keys (else the keys recorded with
    each checkpoint are used; a name may have several keys, e.g. before and after a rotation);
    ``consistency(old, new)`` returns a stored consistency proof.

    ``strict_witnesses`` (``traza audit verify``, SPEC §10 "check every cosignature"): with pinned
    ``witness_keys``, a line under a pinned witness's name whose key id is none of its keys fails like a
    bad signature; every line that cannot be checked (no key for its name) is listed in
    ``report.unverified`` with the reason. Without it (the node's own start-up check), such lines are
    warnings.

    ``check_content=False`` skips the per-entry JSON checks (canonical form, ``idx``, ``node``) and keeps
    the hashes, the tree and the checkpoints: about four times faster, for the node's start-up check
    (``gateway.audit.selfcheck``), where every entry was written by the node itself."""
    report = VerifyReport(node=node, origin=origin)
    sized = sorted(
        ((checkpoint_size(rec), i, rec) for i, rec in enumerate(checkpoints)), key=lambda t: (t[0], t[1])
    )
    checker = _CheckpointChecker(
        origin=origin,
        node=node,
        log_keys=log_keys,
        witness_keys=witness_keys,
        min_cosignatures=min_cosignatures,
        consistency=consistency,
        report=report,
        strict_witnesses=strict_witnesses,
    )
    pos = 0  # next checkpoint to check
    ordinal = 0
    if sized and sized[0][0] == 0:
        raise VerifyFailed("checkpoint #1 (size 0)", "a checkpoint of the empty log is never signed", size=0)
    cr = CompactRange()
    expected = 0
    for idx, raw, stored in entries:
        if idx != expected:
            raise VerifyFailed(
                f"index {expected}", f"entry is missing (the next stored index is {idx})", index=expected
            )
        h = leaf_hash(raw)
        if stored is not None and stored != h:
            raise VerifyFailed(
                f"index {idx}", "entry bytes do not match the stored leaf hash (entry edited)", index=idx
            )
        if check_content:
            problem = _entry_check(idx, raw, node)
            if problem is not None:
                raise VerifyFailed(f"index {idx}", problem, index=idx)
        cr.append(h)
        expected += 1
        if progress is not None and expected % 10000 == 0:
            progress(expected)
        while pos < len(sized) and sized[pos][0] == expected:
            ordinal += 1
            checker.check(sized[pos][2], ordinal, expected, cr.root(), latest=sized[pos][0] == sized[-1][0])
            pos += 1
    if progress is not None:
        progress(expected)
    report.size = expected
    report.root = cr.root()
    if pos < len(sized):
        size, _, _ = sized[pos]
        raise VerifyFailed(
            f"checkpoint #{ordinal + 1} (size {size})",
            f"the log holds only {expected} entries: truncated, the first missing index is {expected}",
            index=expected,
            size=size,
        )
    report.origin = checker.origin
    if not checkpoints:
        report.warnings.append("no checkpoint: nothing signed anchors this log")
    elif report.latest_size < report.size:
        report.warnings.append(
            f"entries {report.latest_size}..{report.size - 1} are not covered by a checkpoint yet"
        )
    return report
