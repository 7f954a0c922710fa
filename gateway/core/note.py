"""C2SP signed notes, tlog-checkpoints, tlog-cosignature v1 and the tlog-witness request body. Pure.

- c2sp.org/signed-note: text ending in a newline, a blank line, then signature lines
  ``— <key name> base64(key id[4] || signature)``. Key id = SHA-256(name || 0x0A || type || public
  key)[:4]; type 0x01 is Ed25519 over the note text, 0x04 a timestamped Ed25519 witness cosignature.
- c2sp.org/tlog-checkpoint: the note text is ``origin\\nsize\\nbase64(root)\\n`` (+ optional extension
  lines). Traza's origin is ``traza/<federation>/<node>`` and the log key's name is the origin (SPEC §7.2).
- c2sp.org/tlog-cosignature v1 (Ed25519): the signature is ``u64 timestamp || ed25519 signature`` over
  ``"cosignature/v1\\ntime <timestamp>\\n" || note text``.
- c2sp.org/tlog-witness add-checkpoint: ``old <size>\\n``, up to 63 base64 proof lines, a blank line,
  then the checkpoint.

Signing and verifying are callables (``gateway.crypto`` provides Ed25519), so this module stays pure.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.core.b64 import b64_decode, b64_encode
from gateway.core.jws import VerifyFn
from gateway.core.merkle import HASH_SIZE

SIG_ED25519 = 0x01
SIG_COSIGNATURE_V1 = 0x04
MAX_SIGNATURES = 64  # signed-note: verifiers MUST accept at least 16
MAX_NOTE_BYTES = 64 * 1024
MAX_PROOF_LINES = 63
MAX_TIMESTAMP = (1 << 63) - 1
EM_DASH = "\u2014"

# sign(message) -> raw 64-byte Ed25519 signature
SignFn = Callable[[bytes], bytes]

_DECIMAL = re.compile(r"^(?:0|[1-9][0-9]*)\Z")
_FEDERATION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
_NODE = re.compile(r"^[a-z][a-z0-9-]{1,31}\Z")


class NoteError(ValueError):
    """A note, checkpoint, cosignature or witness request is malformed or does not verify."""


def _decimal(text: str, what: str) -> int:
    if not _DECIMAL.match(text) or len(text) > 20:
        raise NoteError(f"{what}: {text[:40]!r} is not a decimal without leading zeroes")
    value = int(text)
    if value > (1 << 64) - 1:
        raise NoteError(f"{what}: {value} does not fit in 64 bits")
    return value


def check_key_name(name: str) -> None:
    if not name:
        raise NoteError("key name is empty")
    if "+" in name or any(unicodedata.category(c) == "Zs" or c.isspace() for c in name):
        raise NoteError(f"key name {name!r} contains a space or a plus sign")
    if any(ord(c) < 0x20 for c in name):
        raise NoteError(f"key name {name!r} contains a control character")


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || type || public key)[:4] (signed-note, tlog-cosignature)."""
    check_key_name(name)
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def origin_for(federation: str, node: str) -> str:
    """The checkpoint origin (and log key name) of a node: ``traza/<federation>/<node>``."""
    if not _FEDERATION.match(federation):
        raise NoteError(f"federation name {federation!r} cannot be part of an origin line")
    if not _NODE.match(node):
        raise NoteError(f"node id {node!r} is not a Traza node id")
    return f"traza/{federation}/{node}"


def node_of_origin(origin: str) -> str:
    parts = origin.split("/")
    if len(parts) != 3 or parts[0] != "traza" or not _NODE.match(parts[2]) or not _FEDERATION.match(parts[1]):
        raise NoteError(f"origin {origin!r} is not traza/<federation>/<node>")
    return parts[2]


# ---------------------------------------------------------------------------------------------------
# Signed notes


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes  # 4 bytes
    signature: bytes  # the bytes after the key id

    def line(self) -> str:
        return f"{EM_DASH} {self.name} {b64_encode(self.key_id + self.signature)}\n"


@dataclass(frozen=True)
class Note:
    text: str  # ends with a newline; no separating blank line
    signatures: tuple[NoteSignature, ...]

    def encode(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


def _check_text_chars(data: str, what: str) -> None:
    for c in data:
        if ord(c) < 0x20 and c != "\n":
            raise NoteError(f"{what}: contains control character U+{ord(c):04X}")


def parse_signature_line(line: str) -> NoteSignature:
    """One ``— name base64`` line without its newline."""
    if not line.startswith(EM_DASH + " "):
        raise NoteError(f"signature line {line[:60]!r} does not start with an em dash and a space")
    rest = line[2:]
    parts = rest.split(" ")
    if len(parts) != 2:
        raise NoteError(f"signature line {line[:60]!r} is not '— <name> <base64>'")
    name, b64 = parts
    check_key_name(name)
    try:
        raw = b64_decode(b64)
    except ValueError as exc:
        raise NoteError(f"signature of {name!r}: {exc}") from None
    if len(raw) < 5:
        raise NoteError(f"signature of {name!r} is shorter than a key id and one byte")
    return NoteSignature(name, raw[:4], raw[4:])


def parse_note(data: str | bytes) -> Note:
    """Parse a signed note strictly (signed-note §Format). Does not verify anything."""
    if isinstance(data, bytes):
        if len(data) > MAX_NOTE_BYTES:
            raise NoteError(f"note is larger than {MAX_NOTE_BYTES} bytes")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError(f"note is not valid UTF-8 ({exc})") from None
    if len(data.encode()) > MAX_NOTE_BYTES:
        raise NoteError(f"note is larger than {MAX_NOTE_BYTES} bytes")
    _check_text_chars(data, "note")
    if not data.endswith("\n"):
        raise NoteError("note does not end with a newline")
    split = data.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, sig_block = data[: split + 1], data[split + 2 :]
    lines = sig_block.split("\n")[:-1]
    if not lines:
        raise NoteError("note has no signature lines")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has {len(lines)} signatures, more than {MAX_SIGNATURES}")
    return Note(text, tuple(parse_signature_line(line) for line in lines))


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted key: its name, id, type (0x01 note signature, 0x04 cosignature) and raw verifier."""

    name: str
    key_id: bytes
    sig_type: int
    verify: VerifyFn  # verify(message, 64-byte Ed25519 signature) -> bool

    @classmethod
    def ed25519(cls, name: str, public_key: bytes, verify: VerifyFn) -> NoteVerifier:
        return cls(name, key_id(name, SIG_ED25519, public_key), SIG_ED25519, verify)

    @classmethod
    def cosignature(cls, name: str, public_key: bytes, verify: VerifyFn) -> NoteVerifier:
        return cls(name, key_id(name, SIG_COSIGNATURE_V1, public_key), SIG_COSIGNATURE_V1, verify)

    def matches(self, sig: NoteSignature) -> bool:
        return sig.name == self.name and sig.key_id == self.key_id

    def check(self, text: str, sig: NoteSignature) -> bool:
        if self.sig_type == SIG_ED25519:
            return len(sig.signature) == 64 and self.verify(text.encode(), sig.signature)
        if len(sig.signature) != 72:
            return False
        ts = int.from_bytes(sig.signature[:8], "big")
        if ts > MAX_TIMESTAMP:
            return False
        return self.verify(cosignature_message(text, ts), sig.signature[8:])


def verify_note(note: Note, verifiers: Sequence[NoteVerifier]) -> list[NoteSignature]:
    """Verify a note per signed-note §Signatures: signatures of unknown keys are ignored, a known key's
    bad signature rejects the note, and at least one known key must verify. Returns the verified ones."""
    verified: list[NoteSignature] = []
    for sig in note.signatures:
        for v in verifiers:
            if v.matches(sig):
                if not v.check(note.text, sig):
                    raise NoteError(f"signature of {sig.name!r} (key id {sig.key_id.hex()}) does not verify")
                verified.append(sig)
    if not verified:
        names = ", ".join(sorted({v.name for v in verifiers})) or "none"
        raise NoteError(f"no signature from a trusted key (trusted: {names})")
    return verified


def sign_ed25519(text: str, name: str, public_key: bytes, sign: SignFn) -> NoteSignature:
    """A type 0x01 note signature of ``text`` by the key ``name``."""
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    return NoteSignature(name, key_id(name, SIG_ED25519, public_key), sign(text.encode()))


# ---------------------------------------------------------------------------------------------------
# Checkpoints


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        return checkpoint_text(self.origin, self.size, self.root, self.extensions)


def checkpoint_text(origin: str, size: int, root: bytes, extensions: Sequence[str] = ()) -> str:
    check_key_name(origin)
    if len(root) != HASH_SIZE:
        raise NoteError(f"checkpoint root must be {HASH_SIZE} bytes")
    if not 0 <= size < 1 << 64:
        raise NoteError(f"checkpoint size {size} is out of range")
    for ext in extensions:
        if not ext or "\n" in ext:
            raise NoteError("checkpoint extension lines must be non-empty single lines")
    return "".join(f"{line}\n" for line in (origin, str(size), b64_encode(root), *extensions))


def parse_checkpoint_text(text: str) -> Checkpoint:
    """Parse checkpoint note text (tlog-checkpoint §Note text), strictly."""
    _check_text_chars(text, "checkpoint")
    if not text.endswith("\n"):
        raise NoteError("checkpoint text does not end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError(f"checkpoint has {len(lines)} lines, needs origin, size and root hash")
    if any(not line for line in lines):
        raise NoteError("checkpoint has an empty line")
    origin, size_s, root_s = lines[0], lines[1], lines[2]
    size = _decimal(size_s, "checkpoint size")
    try:
        root = b64_decode(root_s)
    except ValueError as exc:
        raise NoteError(f"checkpoint root hash: {exc}") from None
    if len(root) != HASH_SIZE:
        raise NoteError(f"checkpoint root hash is {len(root)} bytes, not {HASH_SIZE}")
    return Checkpoint(origin, size, root, tuple(lines[3:]))


def open_checkpoint(data: str | bytes, log: NoteVerifier) -> tuple[Checkpoint, Note]:
    """Parse a signed checkpoint and verify the log's signature. The origin must be the key's name."""
    note = parse_note(data)
    cp = parse_checkpoint_text(note.text)
    if cp.origin != log.name:
        raise NoteError(f"checkpoint origin {cp.origin!r} is not the log key name {log.name!r}")
    verify_note(note, [log])
    return cp, note


# ---------------------------------------------------------------------------------------------------
# Cosignatures (tlog-cosignature v1, Ed25519)


def cosignature_message(text: str, timestamp: int) -> bytes:
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise NoteError(f"cosignature timestamp {timestamp} is out of range")
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()


def cosign(text: str, name: str, public_key: bytes, timestamp: int, sign: SignFn) -> NoteSignature:
    """A type 0x04 cosignature of checkpoint ``text`` at ``timestamp`` (POSIX seconds)."""
    sig = sign(cosignature_message(text, timestamp))
    return NoteSignature(
        name, key_id(name, SIG_COSIGNATURE_V1, public_key), timestamp.to_bytes(8, "big") + sig
    )


def cosignature_timestamp(sig: NoteSignature) -> int:
    if len(sig.signature) != 72:
        raise NoteError(f"cosignature of {sig.name!r} is not 8 + 64 bytes")
    return int.from_bytes(sig.signature[:8], "big")


def parse_signature_lines(body: str | bytes) -> list[NoteSignature]:
    """Parse a block of signature lines (the tlog-witness add-checkpoint response body)."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError(f"signature lines are not valid UTF-8 ({exc})") from None
    _check_text_chars(body, "signature lines")
    if not body.endswith("\n"):
        raise NoteError("signature lines do not end with a newline")
    lines = body[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"{len(lines)} signature lines, more than {MAX_SIGNATURES}")
    return [parse_signature_line(line) for line in lines]


# ---------------------------------------------------------------------------------------------------
# tlog-witness add-checkpoint request body


@dataclass(frozen=True)
class AddCheckpoint:
    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: str  # the signed note, as submitted


def encode_add_checkpoint(old_size: int, proof: Sequence[bytes], checkpoint: str) -> bytes:
    if len(proof) > MAX_PROOF_LINES:
        raise NoteError(f"a consistency proof of {len(proof)} hashes is longer than {MAX_PROOF_LINES}")
    lines = [f"old {old_size}\n", *(b64_encode(h) + "\n" for h in proof), "\n"]
    return ("".join(lines) + checkpoint).encode()


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Parse an add-checkpoint request body (tlog-witness §add-checkpoint). Raises ``NoteError``."""
    if len(body) > MAX_NOTE_BYTES + 8 * 1024:
        raise NoteError("add-checkpoint body is too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteError(f"add-checkpoint body is not valid UTF-8 ({exc})") from None
    head, sep, checkpoint = text.partition("\n\n")
    if not sep:
        raise NoteError("add-checkpoint body has no blank line before the checkpoint")
    lines = head.split("\n")
    if not lines[0].startswith("old "):
        raise NoteError("add-checkpoint body does not start with 'old <size>'")
    old_size = _decimal(lines[0][4:], "add-checkpoint old size")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise NoteError(f"add-checkpoint has {len(lines) - 1} proof lines, more than {MAX_PROOF_LINES}")
    proof: list[bytes] = []
    for i, line in enumerate(lines[1:]):
        try:
            h = b64_decode(line)
        except ValueError as exc:
            raise NoteError(f"add-checkpoint proof line {i}: {exc}") from None
        if len(h) != HASH_SIZE:
            raise NoteError(f"add-checkpoint proof line {i} is {len(h)} bytes, not {HASH_SIZE}")
        proof.append(h)
    return AddCheckpoint(old_size, tuple(proof), checkpoint)
