"""Attacks with hostile JSON on the pure decoders (SPEC §3.4): repeated member names, which another
decoder may read differently ("last wins" here, "first wins" there), deep nesting, integers no double
holds. Real keys and the project's own verifier; each text is signed correctly, so only strict decoding
can refuse it."""

from __future__ import annotations

import json

import msgspec
import pytest
from kit.federation import KNOWN_TYPES, NOW, make_federation

from gateway.core.b64 import b64url_decode, b64url_encode
from gateway.core.envelope import Envelope, encode_envelope, verify_envelope
from gateway.core.errors import Code, TrazaError
from gateway.core.jws import parse_compact
from gateway.core.manifest import ManifestError, decode_manifest
from gateway.core.messages import decode_body
from gateway.crypto.keys import verifier_for


@pytest.fixture(scope="module")
def tf():
    return make_federation()


def resign(signer, header_text: bytes, claims_text: bytes) -> str:
    """A compact JWS of exactly these header and claims bytes, correctly signed by ``signer``."""
    h, c = b64url_encode(header_text), b64url_encode(claims_text)
    return f"{h}.{c}.{b64url_encode(signer.sign(f'{h}.{c}'.encode('ascii')))}"


def parts(token: str) -> tuple[bytes, bytes]:
    h, c, _ = token.split(".")
    return b64url_decode(h), b64url_decode(c)


def verify(tf, env: Envelope | bytes):
    raw = env if isinstance(env, bytes) else encode_envelope(env)
    return verify_envelope(raw, here="latam-hub", peer="mx", fed=tf.fed, now=NOW,
                           key_verifier=verifier_for,
                           known_types=KNOWN_TYPES)


def refused_malformed(tf, env, *words: str) -> TrazaError:
    with pytest.raises(TrazaError) as e:
        verify(tf, env)
    assert e.value.code is Code.MALFORMED, e.value.detail
    for w in words:
        assert w in e.value.detail, e.value.detail
    return e.value


def test_duplicate_alg_in_jws_header_is_refused(tf):
    # {"alg":"none","alg":"EdDSA"}: a decoder that keeps the first member sees alg none
    env = tf.send("mx", "latam-hub")
    header, claims = parts(env.token)
    h = json.loads(header)
    forged = ('{"alg":"none",' + json.dumps(h, separators=(",", ":"))[1:]).encode()
    assert forged.count(b'"alg"') == 2
    token = resign(tf.signers["mx"], forged, claims)
    refused_malformed(tf, Envelope(token=token, payload=env.payload, hops=[]), "alg")


def test_duplicate_aud_in_token_claims_is_refused(tf):
    env = tf.send("mx", "latam-hub")
    header, claims = parts(env.token)
    forged = claims[:-1] + b',"aud":"es"}'
    token = resign(tf.signers["mx"], header, forged)
    refused_malformed(tf, Envelope(token=token, payload=env.payload, hops=[]), "aud")


def test_duplicate_token_member_in_envelope_is_refused(tf):
    a, b = tf.send("mx", "latam-hub"), tf.send("mx", "latam-hub")
    raw = encode_envelope(a)[:-1] + b',"token":' + json.dumps(b.token).encode() + b"}"
    refused_malformed(tf, raw, "token")


def test_deeply_nested_envelope_is_refused_as_malformed(tf):
    raw = b'{"token":"a.b.c","payload":"","hops":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    refused_malformed(tf, raw, "deeper than 32")


def test_huge_integer_in_token_claims_is_refused(tf):
    env = tf.send("mx", "latam-hub")
    header, claims = parts(env.token)
    c = json.loads(claims)
    c["exp"] = 2**64  # a double would round it, another decoder would wrap it
    token = resign(tf.signers["mx"], header, json.dumps(c).encode())
    refused_malformed(tf, Envelope(token=token, payload=env.payload, hops=[]), "2^53")


def test_duplicate_member_in_message_body_is_refused():
    with pytest.raises(TrazaError) as e:
        decode_body("notice", b'{"title":"t","text":"harmless","text":"other"}')
    assert e.value.code is Code.MALFORMED and "text" in e.value.detail


def test_deeply_nested_message_body_is_refused_as_malformed():
    with pytest.raises(TrazaError) as e:
        decode_body("notice", b'{"title":"t","text":' + b"[" * 50_000 + b"]" * 50_000 + b"}")
    assert e.value.code is Code.MALFORMED and "deeper than 32" in e.value.detail


def test_duplicate_version_in_manifest_is_refused(tf):
    raw = msgspec.json.encode(tf.manifest)
    forged = raw[:-1] + b',"version":999}'
    with pytest.raises(ManifestError, match="version"):
        decode_manifest(forged)


def test_jws_header_with_duplicate_kid_is_refused_by_parse_compact(tf):
    env = tf.send("mx", "latam-hub")
    header, claims = parts(env.token)
    forged = header[:-1] + b',"kid":"co/sig/1"}'
    with pytest.raises(TrazaError) as e:
        parse_compact(resign(tf.signers["mx"], forged, claims), typ="traza-envelope+jwt")
    assert e.value.code is Code.MALFORMED and "kid" in e.value.detail
