"""HPKE (RFC 9180, base mode, single-shot) payload encryption to a node's ``enc`` key (SPEC §3.2).

Two suites, named by the KEM of the recipient's manifest key:

- ``MLKEM768_X25519/HKDF_SHA256/AES_256_GCM`` (default): the hybrid post-quantum KEM MLKEM768-X25519,
  HPKE KEM id 0x647A, which is X-Wing (draft-connolly-cfrg-xwing-kem, draft-ietf-hpke-pq).
- ``X25519/HKDF_SHA256/AES_256_GCM``: DHKEM(X25519, HKDF-SHA256), KEM id 0x0020.

Wire forms (all standard, so another HPKE implementation interoperates):

- public key (manifest ``public_key``, standard base64): X-Wing ``pk_M || pk_X`` = the 1184-byte ML-KEM-768
  encapsulation key followed by the 32-byte X25519 public key (1216 bytes); or the 32-byte X25519 key.
- ciphertext: ``enc || AEAD ciphertext`` (``enc`` is 1120 bytes for X-Wing, 32 for X25519; the AEAD tag
  adds 16 bytes).

Private key file format ``traza-hpke-private-key/v1`` (what :meth:`EncKey.private_bytes` returns): the
canonical JSON object ``{"format": "traza-hpke-private-key/v1", "kem": "<kem>", "secret": "<b64>"}``
where ``secret`` is 32 bytes of standard base64: for ``MLKEM768_X25519`` the X-Wing seed (the standard
X-Wing/HPKE private key, expanded with SHAKE256 to 96 bytes: 64-byte ML-KEM-768 seed ``d || z`` then the
32-byte X25519 scalar); for ``X25519`` the RFC 7748 scalar. Keys are generated exactly as X-Wing's
GenerateKeyPair does, so the 32-byte seed is the whole key.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Any, Literal, get_args

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from gateway.core.b64 import b64_decode, b64_encode
from gateway.core.envelope import SUITES as ENVELOPE_SUITES
from gateway.core.envelope import payload_info

Kem = Literal["MLKEM768_X25519", "X25519"]
KEMS: tuple[str, ...] = get_args(Kem)
DEFAULT_KEM: Kem = "MLKEM768_X25519"

SUITES: dict[str, str] = ENVELOPE_SUITES  # one table: the suite names of SPEC §3.2 live in the core

PRIVATE_FORMAT = "traza-hpke-private-key/v1"

_MLKEM_PK = 1184
_X25519_PK = 32
PUBLIC_KEY_SIZE: dict[str, int] = {"MLKEM768_X25519": _MLKEM_PK + _X25519_PK, "X25519": _X25519_PK}
ENC_SIZE: dict[str, int] = {
    "MLKEM768_X25519": hpke.KEM.MLKEM768_X25519.enc_length(),
    "X25519": hpke.KEM.X25519.enc_length(),
}
TAG_SIZE = 16

_SUITE_OBJ: dict[str, hpke.Suite] = {
    "MLKEM768_X25519": hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM),
    "X25519": hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM),
}

_PublicKey = hpke.MLKEM768X25519PublicKey | x25519.X25519PublicKey
_PrivateKey = hpke.MLKEM768X25519PrivateKey | x25519.X25519PrivateKey


class DecryptError(ValueError):
    """An HPKE ciphertext (or an encrypted blob) could not be opened: wrong key, wrong ``info``, or altered.

    Deliberately one error for every cause, so nothing learns which check failed."""


def _check_kem(kem: str) -> Kem:
    if kem not in SUITES:
        raise ValueError(f"unknown KEM {kem!r}: expected one of {', '.join(SUITES)}")
    return kem  # type: ignore[return-value]


def kem_for_suite(suite: str) -> Kem:
    """The KEM name of a suite string as written in ``pld.enc.suite``; ValueError if not a Traza suite."""
    for kem, name in SUITES.items():
        if name == suite:
            return kem  # type: ignore[return-value]
    raise ValueError(f"unknown HPKE suite {suite!r}: expected one of {', '.join(SUITES.values())}")


envelope_info = payload_info  # HPKE ``info`` of an envelope payload (SPEC §3.2)


def _xwing_expand(seed: bytes) -> tuple[mlkem.MLKEM768PrivateKey, x25519.X25519PrivateKey]:
    """X-Wing expandDecapsulationKey: SHAKE256(seed, 96) -> ML-KEM-768 seed (64) || X25519 scalar (32)."""
    expanded = hashlib.shake_256(seed).digest(96)
    return (
        mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64]),
        x25519.X25519PrivateKey.from_private_bytes(expanded[64:]),
    )


class EncKey:
    """A node's payload encryption private key (``<node>/enc/<n>``)."""

    def __init__(self, kid: str, kem: str, secret: bytes) -> None:
        self.kid = kid
        self.kem: Kem = _check_kem(kem)
        if len(secret) != 32:
            raise ValueError(f"{kid}: {kem} private key secret must be 32 bytes, got {len(secret)}")
        self._secret = bytes(secret)
        self._key: _PrivateKey
        if self.kem == "MLKEM768_X25519":
            m, x = _xwing_expand(self._secret)
            self._key = hpke.MLKEM768X25519PrivateKey(m, x)
            self._public = m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()
        else:
            xk = x25519.X25519PrivateKey.from_private_bytes(self._secret)
            self._key = xk
            self._public = xk.public_key().public_bytes_raw()
        self._suite = _SUITE_OBJ[self.kem]

    def __repr__(self) -> str:  # never show key material
        return f"EncKey(kid={self.kid!r}, kem={self.kem!r})"

    @classmethod
    def generate(cls, kid: str, kem: str = DEFAULT_KEM) -> EncKey:
        return cls(kid, kem, os.urandom(32))

    @property
    def suite(self) -> str:
        return SUITES[self.kem]

    def public_bytes(self) -> bytes:
        return self._public

    def public_b64(self) -> str:
        """Standard base64 of the public key, as published in the manifest ``public_key``."""
        return b64_encode(self._public)

    def manifest_entry(self) -> dict[str, Any]:
        """The manifest key object of SPEC §2: ``{"kid", "use": "enc", "kem", "public_key"}``."""
        return {"kid": self.kid, "use": "enc", "kem": self.kem, "public_key": self.public_b64()}

    def private_bytes(self) -> bytes:
        """The key in the ``traza-hpke-private-key/v1`` format (module docstring). Secret: write it 0600."""
        doc = {"format": PRIVATE_FORMAT, "kem": self.kem, "secret": b64_encode(self._secret)}
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_private_bytes(cls, kid: str, kem: str, data: bytes) -> EncKey:
        """Load a key written by :meth:`private_bytes`; ``kem`` must match the file's."""
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{kid}: encryption key is not {PRIVATE_FORMAT} JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != PRIVATE_FORMAT:
            got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise ValueError(f"{kid}: encryption key format is {got!r}, expected {PRIVATE_FORMAT!r}")
        if set(doc) != {"format", "kem", "secret"}:
            raise ValueError(f"{kid}: encryption key members {sorted(doc)} != ['format', 'kem', 'secret']")
        if doc["kem"] != kem:
            raise ValueError(f"{kid}: encryption key file is for KEM {doc['kem']!r}, manifest says {kem!r}")
        secret = doc["secret"]
        if not isinstance(secret, str):
            raise ValueError(f"{kid}: encryption key 'secret' must be a base64 string")
        try:
            raw = b64_decode(secret)
        except ValueError as exc:
            raise ValueError(f"{kid}: encryption key 'secret': {exc}") from None
        return cls(kid, kem, raw)

    def open(self, ciphertext: bytes, info: bytes) -> bytes:
        """Decrypt a :func:`seal` ciphertext made for this key with the same ``info``.

        Raises DecryptError for every failure (wrong key, wrong info, any altered byte, bad length)."""
        if len(ciphertext) < ENC_SIZE[self.kem] + TAG_SIZE:
            raise DecryptError(f"{self.kid}: HPKE ciphertext of {len(ciphertext)} bytes is too short")
        try:
            return self._suite.decrypt(ciphertext, self._key, info)
        except (InvalidTag, ValueError):
            raise DecryptError(
                f"{self.kid}: cannot open HPKE ciphertext (wrong key, wrong info or altered)"
            ) from None


@functools.lru_cache(maxsize=1024)
def _public_key(kem: str, public_b64: str) -> _PublicKey:
    try:
        raw = b64_decode(public_b64)
    except ValueError as exc:
        raise ValueError(f"{kem} public_key: {exc}") from None
    if len(raw) != PUBLIC_KEY_SIZE[kem]:
        raise ValueError(f"{kem} public_key must be {PUBLIC_KEY_SIZE[kem]} bytes, got {len(raw)}")
    try:
        if kem == "MLKEM768_X25519":
            return hpke.MLKEM768X25519PublicKey(
                mlkem.MLKEM768PublicKey.from_public_bytes(raw[:_MLKEM_PK]),
                x25519.X25519PublicKey.from_public_bytes(raw[_MLKEM_PK:]),
            )
        return x25519.X25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise ValueError(f"{kem} public_key is not a valid key: {exc}") from None


def check_public_key(kem: str, public_b64: str) -> None:
    """Raise ValueError naming the problem if ``public_b64`` is not a usable ``kem`` public key."""
    _public_key(_check_kem(kem), public_b64)


def seal(kem: str, public_b64: str, plaintext: bytes, info: bytes) -> bytes:
    """HPKE base-mode single-shot encryption to the manifest key (``kem``, ``public_key``).

    Returns ``enc || ciphertext``. ValueError if the KEM is unknown or the public key is invalid."""
    kem = _check_kem(kem)
    return _SUITE_OBJ[kem].encrypt(plaintext, _public_key(kem, public_b64), info)


def sealed_size(kem: str, plaintext_len: int) -> int:
    """Length of :func:`seal`'s output for a plaintext of ``plaintext_len`` bytes."""
    return ENC_SIZE[_check_kem(kem)] + plaintext_len + TAG_SIZE
