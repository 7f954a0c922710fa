"""Public JOSE vectors through the project's own JWS code (gateway.core.jws + gateway.crypto.keys).

- RFC 8037 Ed25519 example: the signature verifies with the verifier built from the key (alg from the key,
  as the manifest would give it), and parse_compact refuses the token because it has no ``typ``.
- RFC 7520 cookbook signatures (RS256, PS384, ES512, HS256, ...): every one is refused, by parse_compact's
  algorithm allow-list and by verifier_for, whatever its key.
- RFC 7797 ``b64: false`` examples: refused (``crit``/``b64`` headers are not allowed).
Vectors are read from ../shared/vectors/jose (never modified).

The vectors' payloads are plain text, not JSON claims, and parse_compact decodes all three parts before it
looks at the header, so every token as published is refused as ``malformed``. To show that each header
check also refuses it on its own, the tests re-send the vector's header with a JSON claims set (and the
``typ`` where that is not the point); parse_compact never reaches a signature check for any of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.core.b64 import b64url_decode, b64url_encode
from gateway.core.errors import Code, TrazaError
from gateway.core.jws import ALLOWED_ALGS, parse_compact
from gateway.crypto.keys import verifier_for

JOSE = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "jose"
TYP = "traza-envelope+jwt"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def public_jwk(jwk: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in jwk.items() if k not in PRIVATE_MEMBERS}


def alg_from_key(jwk: dict[str, Any]) -> str | None:
    """What a Traza manifest would say for this key: the algorithm follows the key, never a header."""
    if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
        return "EdDSA"
    if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
        return "ES256"
    return None


def compact_forms(vector: dict[str, Any]) -> list[str]:
    """Every compact serialisation of a vector: its ``compact`` output, else one per JSON signature
    (a signature without a protected header gets an empty first part, as compact form requires)."""
    out = vector["output"]
    if "compact" in out:
        return [out["compact"]]
    general = out.get("json") or {}
    payload = general.get("payload", "")
    return [f"{s.get('protected', '')}.{payload}.{s['signature']}" for s in general.get("signatures", [])]


CLAIMS = b64url_encode(b'{"iss":"mx","jti":"x"}')


def header_of(token: str) -> dict[str, Any]:
    h = token.split(".")[0]
    header: dict[str, Any] = json.loads(b64url_decode(h)) if h else {}
    return header


def reheader(token: str, **members: Any) -> str:
    """The token's header (plus ``members``) over JSON claims, with the vector's signature."""
    header = {**header_of(token), **members}
    return ".".join((b64url_encode(json.dumps(header).encode()), CLAIMS, token.split(".")[2]))


# --- RFC 8037: Ed25519 ------------------------------------------------------------------------------


ED = load(JOSE / "curve25519" / "jws.json")


def test_rfc8037_ed25519_signature_verifies_with_project_verifier() -> None:
    key = public_jwk(ED["input"]["key"])
    alg = alg_from_key(key)
    assert alg == "EdDSA" == ED["input"]["alg"]
    verify = verifier_for(alg, key)
    h, p, s = ED["output"]["compact"].split(".")
    signing_input = f"{h}.{p}".encode()
    assert signing_input.decode() == ED["signing"]["sig-input"]
    assert b64url_decode(p) == ED["input"]["payload"].encode()
    assert verify(signing_input, b64url_decode(s))
    # ...and only that: another payload, a flipped signature bit, a short signature all fail.
    assert not verify(f"{h}.{b64url_encode(b'Example of Ed25519 signinG')}".encode(), b64url_decode(s))
    bad = bytearray(b64url_decode(s))
    bad[10] ^= 1
    assert not verify(signing_input, bytes(bad))
    assert not verify(signing_input, b64url_decode(s)[:63])


def test_rfc8037_compact_form_has_no_typ_and_is_refused() -> None:
    token = ED["output"]["compact"]
    assert "typ" not in header_of(token)
    with pytest.raises(TrazaError) as err:
        parse_compact(token, typ=TYP)
    assert err.value.code is Code.MALFORMED  # EdDSA is allowed, but the header names no typ
    assert "header typ is None" in err.value.detail
    with pytest.raises(TrazaError) as err:
        parse_compact(reheader(token), typ=TYP)  # JSON claims, the vector's header: no typ
    assert err.value.code is Code.MALFORMED
    assert "header typ is None" in err.value.detail
    # With typ and kid the header is acceptable, and the signature no longer covers what is sent.
    parsed = parse_compact(reheader(token, typ=TYP, kid="mx/sig/1"), typ=TYP)
    assert parsed.header["alg"] == "EdDSA"
    assert not verifier_for("EdDSA", public_jwk(ED["input"]["key"]))(parsed.signing_input, parsed.signature)


def test_rfc8037_key_cannot_be_used_under_another_algorithm() -> None:
    key = public_jwk(ED["input"]["key"])
    with pytest.raises(ValueError, match="cannot verify alg ES256"):
        verifier_for("ES256", key)
    with pytest.raises(ValueError, match="private material"):
        verifier_for("EdDSA", ED["input"]["key"])


# --- RFC 7520 cookbook: algorithms the federation does not allow --------------------------------------

COOKBOOK = sorted((JOSE / "jws").glob("*.json"))


def test_cookbook_vectors_are_present() -> None:
    assert len(COOKBOOK) >= 8, f"expected the RFC 7520 JWS examples in {JOSE / 'jws'}"


def _keys_and_algs(vector: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    keys = vector["input"]["key"]
    algs = vector["input"]["alg"]
    if isinstance(keys, list):
        return list(zip(keys, algs, strict=True))
    return [(keys, algs)]


@pytest.mark.parametrize("path", COOKBOOK, ids=lambda p: p.stem)
def test_cookbook_signature_is_refused(path: Path) -> None:
    vector = load(path)
    tokens = compact_forms(vector)
    assert tokens, f"{path.name}: no signature to test"
    for token in tokens:
        # As published: refused for its algorithm before anything else is looked at (a signature
        # whose algorithm sits in an unprotected header has no protected header: malformed).
        with pytest.raises(TrazaError) as err:
            parse_compact(token, typ=TYP)
        if token.split(".")[0]:
            assert err.value.code is Code.BAD_SIGNATURE
            assert "is not allowed in this federation" in err.value.detail
        else:
            assert err.value.code is Code.MALFORMED
        # With JSON claims, the typ we expect and a kid, the header's algorithm is still refused.
        header = header_of(token)
        assert header.get("alg") not in ALLOWED_ALGS
        with pytest.raises(TrazaError) as err:
            parse_compact(reheader(token, typ=TYP, kid="mx/sig/1"), typ=TYP)
        assert err.value.code is Code.BAD_SIGNATURE
        assert f"algorithm {header.get('alg')!r} is not allowed" in err.value.detail
        assert err.value.public_detail == "signature verification failed"
    for jwk, alg in _keys_and_algs(vector):
        assert alg not in ALLOWED_ALGS
        assert alg_from_key(jwk) is None, f"{path.name}: {alg} key would be usable"
        with pytest.raises(ValueError, match="not allowed in this federation"):
            verifier_for(alg, public_jwk(jwk))
        for allowed in sorted(ALLOWED_ALGS):  # a lying manifest cannot make the key usable either
            with pytest.raises(ValueError):
                verifier_for(allowed, public_jwk(jwk))


# --- RFC 7797: unencoded payload ---------------------------------------------------------------------

B64_FALSE = sorted((JOSE / "rfc7797").glob("*.json"))


@pytest.mark.parametrize("path", B64_FALSE, ids=lambda p: p.stem)
def test_rfc7797_b64_false_is_refused(path: Path) -> None:
    vector = load(path)
    protected = vector["signing"]["protected"]
    assert protected.get("b64") is False and protected.get("crit") == ["b64"]
    for token in compact_forms(vector):
        with pytest.raises(TrazaError) as err:
            parse_compact(token, typ=TYP)
        # HS256 is refused for its algorithm; where the unencoded payload holds a '.', the compact form
        # does not even split into three parts (malformed).
        if len(token.split(".")) == 3:
            assert err.value.code is Code.BAD_SIGNATURE
        else:
            assert err.value.code is Code.MALFORMED
    # The same header with typ, a permitted alg and JSON claims: crit / b64 alone cause the refusal.
    header = {**protected, "alg": "EdDSA", "kid": "mx/sig/1", "typ": TYP}
    sig = vector["signing"]["sig"]
    for drop in (None, "crit", "b64"):
        only = {k: v for k, v in header.items() if k != drop}
        token = f"{b64url_encode(json.dumps(only).encode())}.{CLAIMS}.{sig}"
        with pytest.raises(TrazaError) as err:
            parse_compact(token, typ=TYP)
        assert err.value.code is Code.BAD_SIGNATURE
        assert "is not allowed" in err.value.detail and (
            "'crit'" in err.value.detail or "'b64'" in err.value.detail
        )
