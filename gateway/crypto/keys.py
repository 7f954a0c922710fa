"""Signing keys (EdDSA, ES256, raw Ed25519) and verifiers built from manifest keys.

This is one of the only places that imports ``cryptography`` and ``jwt``. Verifiers are built from a
manifest key's JWK *and the manifest's algorithm*; a JWK that does not fit the algorithm is refused, so
a header can never choose how a signature is checked.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from gateway.core.b64 import b64_decode, b64_encode
from gateway.core.jws import VerifyFn

SigAlg = Literal["EdDSA", "ES256"]


def write_private(path: Path, data: bytes) -> None:
    """Write secret bytes atomically with mode 0600 (never readable by others, even briefly)."""
    atomic_write(path, data, 0o600)


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename) with file ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SigningKey:
    """A node's envelope signing key (``<node>/sig/<n>``)."""

    def __init__(self, kid: str, alg: SigAlg, private: Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        if alg == "EdDSA" and not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"{kid}: EdDSA needs an Ed25519 key")
        if alg == "ES256" and not (
            isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP256R1)
        ):
            raise ValueError(f"{kid}: ES256 needs a P-256 key")
        self.kid = kid
        self.alg: SigAlg = alg
        self._key = private

    def __repr__(self) -> str:  # never show key material
        return f"SigningKey(kid={self.kid!r}, alg={self.alg!r})"

    @classmethod
    def generate(cls, kid: str, alg: SigAlg = "EdDSA") -> SigningKey:
        key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey = (
            Ed25519PrivateKey.generate() if alg == "EdDSA" else ec.generate_private_key(ec.SECP256R1())
        )
        return cls(kid, alg, key)

    @classmethod
    def from_pem(cls, kid: str, alg: SigAlg, pem: bytes) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, (Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
            raise ValueError(f"{kid}: unsupported private key type {type(key).__name__}")
        return cls(kid, alg, key)

    def private_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def sign(self, data: bytes) -> bytes:
        """Raw JWS signature: 64 bytes Ed25519, or r||s (32+32) for ES256."""
        if isinstance(self._key, Ed25519PrivateKey):
            return self._key.sign(data)
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def public_jwk(self) -> dict[str, Any]:
        pub = self._key.public_key()
        if isinstance(pub, Ed25519PublicKey):
            jwk: dict[str, Any] = json.loads(OKPAlgorithm.to_jwk(pub))
        else:
            jwk = json.loads(ECAlgorithm.to_jwk(pub))
        return {k: v for k, v in jwk.items() if k in ("kty", "crv", "x", "y")}

    def verifier(self) -> VerifyFn:
        return verifier_for(self.alg, self.public_jwk())


def _jwk_key(jwk_json: str) -> tuple[str, Any]:
    jwk = json.loads(jwk_json)
    kty = jwk.get("kty")
    if "d" in jwk:
        raise ValueError("a manifest JWK must not contain private material")
    if kty == "OKP" and jwk.get("crv") == "Ed25519":
        return "EdDSA", OKPAlgorithm.from_jwk(jwk_json)
    if kty == "EC" and jwk.get("crv") == "P-256":
        return "ES256", ECAlgorithm.from_jwk(jwk_json)
    raise ValueError(f"unsupported JWK kty={kty!r} crv={jwk.get('crv')!r}")


@functools.lru_cache(maxsize=4096)
def _cached_verifier(alg: str, jwk_json: str) -> VerifyFn:
    kind, key = _jwk_key(jwk_json)
    if kind != alg:
        raise ValueError(f"JWK of type {kind} cannot verify alg {alg}")
    if alg == "EdDSA":
        pub: Ed25519PublicKey = key

        def verify_ed(data: bytes, sig: bytes) -> bool:
            if len(sig) != 64:
                return False
            try:
                pub.verify(sig, data)
            except InvalidSignature:
                return False
            return True

        return verify_ed

    ecpub: ec.EllipticCurvePublicKey = key

    def verify_es(data: bytes, sig: bytes) -> bool:
        if len(sig) != 64:
            return False
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
            ecpub.verify(der, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    return verify_es


def verifier_for(alg: str, jwk: dict[str, Any]) -> VerifyFn:
    """A verify function for ``alg`` (from the manifest) over the public ``jwk``.

    Raises ValueError if the algorithm is not EdDSA/ES256 or the JWK is not a key of that algorithm.
    """
    if alg not in ("EdDSA", "ES256"):
        raise ValueError(f"algorithm {alg!r} is not allowed in this federation")
    # Fast path: a JWK of string members (every manifest JWK) is looked up by its items, without
    # serialising it on every verification; anything else goes through the canonical JSON text.
    try:
        key = (alg, tuple(sorted(jwk.items())))
        fn = _by_items.get(key)
    except TypeError:  # unhashable or unorderable members
        return _cached_verifier(alg, json.dumps(jwk, sort_keys=True))
    if fn is None:
        if not all(type(v) is str for _k, v in key[1]):
            return _cached_verifier(alg, json.dumps(jwk, sort_keys=True))
        fn = _cached_verifier(alg, json.dumps(jwk, sort_keys=True))
        if len(_by_items) >= 4096:
            _by_items.clear()
        _by_items[key] = fn
    return fn


# (alg, sorted JWK items) -> verify function, for JWKs whose members are all strings
_by_items: dict[tuple[str, tuple[tuple[str, Any], ...]], VerifyFn] = {}


class Ed25519Key:
    """Raw Ed25519 key for authority (manifest) and audit (checkpoint) signatures."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._key = private
        self.public_raw = private.public_key().public_bytes_raw()

    def __repr__(self) -> str:
        return f"Ed25519Key(public={b64_encode(self.public_raw)!r})"

    @classmethod
    def generate(cls) -> Ed25519Key:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes) -> Ed25519Key:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("not an Ed25519 private key")
        return cls(key)

    @property
    def public_b64(self) -> str:
        return b64_encode(self.public_raw)

    def private_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


@functools.lru_cache(maxsize=1024)
def _ed_pub(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def ed25519_verify(public: bytes | str, data: bytes, sig: bytes) -> bool:
    """Verify a raw Ed25519 signature; ``public`` is 32 raw bytes or their standard base64."""
    try:
        raw = b64_decode(public) if isinstance(public, str) else public
        if len(raw) != 32 or len(sig) != 64:
            return False
        _ed_pub(raw).verify(sig, data)
    except (InvalidSignature, ValueError):
        return False
    return True
