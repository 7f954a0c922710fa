"""Compact JWS parsing and assembly, with no cryptography (SPEC §3).

Signing and verifying are callables passed in by the caller (``gateway.crypto`` provides them), so this
module stays pure and the algorithm is always chosen by the caller from the manifest, never by a header.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from gateway.core import strictjson
from gateway.core.b64 import b64url_decode, b64url_encode
from gateway.core.errors import Code, TrazaError

# sign(signing_input) -> raw JWS signature bytes
SignFn = Callable[[bytes], bytes]
# verify(signing_input, signature) -> bool
VerifyFn = Callable[[bytes, bytes], bool]

ALLOWED_ALGS = frozenset({"EdDSA", "ES256"})
MAX_TOKEN = 64 * 1024

_json_encoder = msgspec.json.Encoder()


class Compact(msgspec.Struct, frozen=True):
    """A parsed compact JWS: decoded header and claims, plus the bytes that were signed."""

    token: str
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def encode_compact(header: dict[str, Any], claims: dict[str, Any], sign: SignFn) -> str:
    h = b64url_encode(_json_encoder.encode(header))
    c = b64url_encode(_json_encoder.encode(claims))
    signing_input = f"{h}.{c}".encode("ascii")
    return f"{h}.{c}.{b64url_encode(sign(signing_input))}"


def parse_compact(token: str, *, typ: str) -> Compact:
    """Split and decode a compact JWS. Every structural fault is ``malformed``; the header must carry
    ``typ`` exactly, an ``alg`` in the federation's allow-list and a ``kid``, and nothing that changes how
    the signature is read (``crit``, ``b64``, ``jwk``, ``jku``, ``x5u``, ``x5c``)."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN:
        raise TrazaError(Code.MALFORMED, f"{typ}: not a string of at most {MAX_TOKEN} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise TrazaError(Code.MALFORMED, f"{typ}: compact JWS needs 3 parts, got {len(parts)}")
    # The header is judged before anything else is decoded: the algorithm allow-list first, so a token
    # of a foreign algorithm is refused as such whatever it carries.
    # Strict JSON (SPEC §3.4): a repeated member (``{"alg":"none","alg":"EdDSA"}``) is refused, never
    # resolved one way here and another way by some other decoder of the same token.
    try:
        header_text = b64url_decode(parts[0])
    except ValueError as exc:
        raise TrazaError(Code.MALFORMED, f"{typ}: undecodable JWS header ({exc})") from None
    header = strictjson.object_of(header_text, f"{typ}: JWS header")
    alg = header.get("alg")
    # a string first: a list or an object is strict JSON too, and unhashable in the set lookup
    if not isinstance(alg, str) or alg not in ALLOWED_ALGS:
        raise TrazaError(Code.BAD_SIGNATURE, f"{typ}: algorithm {alg!r} is not allowed in this federation")
    for bad in ("crit", "b64", "jwk", "jku", "x5u", "x5c"):
        if bad in header:
            raise TrazaError(Code.BAD_SIGNATURE, f"{typ}: header member {bad!r} is not allowed")
    if header.get("typ") != typ:
        raise TrazaError(Code.MALFORMED, f"header typ is {header.get('typ')!r}, expected {typ!r}")
    if not isinstance(header.get("kid"), str):
        raise TrazaError(Code.BAD_SIGNATURE, f"{typ}: header has no kid")
    try:
        claims_text = b64url_decode(parts[1])
        signature = b64url_decode(parts[2])
    except ValueError as exc:
        raise TrazaError(Code.MALFORMED, f"{typ}: undecodable JWS part ({exc})") from None
    claims = strictjson.object_of(claims_text, f"{typ}: JWS claims")
    return Compact(
        token=token,
        header=header,
        claims=claims,
        signing_input=f"{parts[0]}.{parts[1]}".encode("ascii"),
        signature=signature,
    )
