"""Attacks on envelopes, each test named after what it stops. Real keys, the project's own verifier."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kit.federation import KNOWN_TYPES, NOW, make_federation

from gateway.core.b64 import b64url_encode
from gateway.core.envelope import Envelope, encode_envelope, verify_envelope
from gateway.core.errors import Code, TrazaError
from gateway.core.jws import encode_compact, parse_compact
from gateway.crypto.keys import SigningKey, verifier_for


@pytest.fixture(scope="module")
def tf():
    return make_federation()


def check(tf, env, here="latam-hub", peer="mx", now=NOW, fed=None, **kw):
    return verify_envelope(
        encode_envelope(env), here=here, peer=peer, fed=fed or tf.fed, now=now, key_verifier=verifier_for,
        known_types=KNOWN_TYPES, **kw,
    )


def refused(tf, env, code, **kw):
    with pytest.raises(TrazaError) as e:
        check(tf, env, **kw)
    codes = code if isinstance(code, tuple) else (code,)
    assert e.value.code in codes, e.value.detail
    return e.value


def reforge(env: Envelope, signer, header_update=None, claims_update=None, raw_sig=None) -> Envelope:
    """Re-sign the token with changed header/claims (an attacker holding ``signer``)."""
    c = parse_compact(env.token, typ="traza-envelope+jwt")
    header = {**c.header, **(header_update or {})}
    claims = {**c.claims, **(claims_update or {})}
    sign = (lambda data: raw_sig) if raw_sig is not None else signer.sign
    return Envelope(token=encode_compact(header, claims, sign), payload=env.payload, hops=list(env.hops))


def test_alg_none_refused(tf):
    env = reforge(tf.send("mx", "latam-hub"), tf.signers["mx"], {"alg": "none"}, raw_sig=b"")
    err = refused(tf, env, Code.BAD_SIGNATURE)
    assert err.public_detail == "signature verification failed"


def test_hs256_with_public_key_as_secret_refused(tf):
    import hashlib
    import hmac
    import json

    secret = json.dumps(tf.signers["mx"].public_jwk()).encode()
    env = reforge(tf.send("mx", "latam-hub"), None, {"alg": "HS256"},
                  raw_sig=hmac.new(secret, b"x", hashlib.sha256).digest())
    refused(tf, env, Code.BAD_SIGNATURE)


def test_algorithm_confusion_es256_header_on_eddsa_kid_refused(tf):
    # mx's key is EdDSA in the manifest; an attacker with some P-256 key signs ES256 naming mx/sig/1.
    attacker = SigningKey.generate("mx/sig/1", "ES256")
    env = reforge(tf.send("mx", "latam-hub"), attacker, {"alg": "ES256"})
    err = refused(tf, env, Code.BAD_SIGNATURE)
    assert "differs from the manifest" in err.detail


def test_key_id_of_another_node_refused(tf):
    # co signs a token that claims to come from mx, naming co's own (valid) key id.
    env = reforge(tf.send("mx", "latam-hub"), tf.signers["co"], {"kid": "co/sig/1"})
    err = refused(tf, env, Code.BAD_SIGNATURE)
    assert "belongs to 'co'" in err.detail


def test_enc_key_id_used_as_signing_key_refused(tf):
    env = reforge(tf.send("mx", "latam-hub"), tf.signers["mx"], {"kid": "mx/enc/1"})
    refused(tf, env, Code.BAD_SIGNATURE)


def test_revoked_key_id_refused(tf):
    m = copy.deepcopy(tf.manifest)
    m["revoked"]["kids"] = ["mx/sig/1"]
    from gateway.core.canonical import canonical_bytes
    from gateway.core.manifest import Federation, decode_manifest

    fed = Federation(decode_manifest(canonical_bytes(m)))
    err = refused(tf, tf.send("mx", "latam-hub"), Code.BAD_SIGNATURE, fed=fed)
    assert "revoked" in err.detail


def test_key_outside_its_validity_refused(tf):
    err = refused(tf, tf.send("mx", "latam-hub", now=NOW + 91 * 86400), Code.BAD_SIGNATURE, now=NOW + 91 * 86400)
    assert "expired" in err.detail


def test_expired_envelope_refused(tf):
    env = tf.send("mx", "latam-hub", ttl=60)
    refused(tf, env, Code.EXPIRED, now=NOW + 61)


def test_iat_in_the_future_refused(tf):
    env = tf.send("mx", "latam-hub", now=NOW + 600)
    refused(tf, env, Code.NOT_YET_VALID)
    check(tf, tf.send("mx", "latam-hub", now=NOW + 100))  # within the 120 s skew


def test_ttl_too_long_refused(tf):
    refused(tf, tf.send("mx", "latam-hub", ttl=31 * 86400), Code.TTL_TOO_LONG)


def test_payload_swapped_between_two_valid_envelopes_refused(tf):
    a = tf.send("mx", "latam-hub", body=b'{"title":"a","text":"1"}')
    b = tf.send("mx", "latam-hub", body=b'{"title":"b","text":"2"}')
    refused(tf, Envelope(token=a.token, payload=b.payload), Code.PAYLOAD_MISMATCH)


def _three_hop(tf):
    """mx → latam-hub → eu-hub → es with two hop records, as es receives it."""
    return tf.relay(tf.send("mx", "es", "trace.request", b"{}"), ["mx", "latam-hub", "eu-hub", "es"])


def test_full_chain_accepted(tf):
    check(tf, _three_hop(tf), here="es", peer="eu-hub", open_payload=tf.opener("es"))


def test_hop_removed_refused(tf):
    env = _three_hop(tf)
    cut = Envelope(token=env.token, payload=env.payload, hops=[env.hops[1]])
    refused(tf, cut, Code.BAD_SIGNATURE, here="es", peer="eu-hub")


def test_hop_reordered_refused(tf):
    env = _three_hop(tf)
    swapped = Envelope(token=env.token, payload=env.payload, hops=[env.hops[1], env.hops[0]])
    refused(tf, swapped, Code.BAD_SIGNATURE, here="es", peer="eu-hub")


def test_hop_inserted_refused(tf):
    env = _three_hop(tf)
    # a validly signed hop by co, spliced in between the two real hops
    jti = parse_compact(env.token, typ="traza-envelope+jwt").claims["jti"]
    from gateway.core.envelope import append_hop

    with_co = append_hop(Envelope(token=env.token, payload=env.payload, hops=[env.hops[0]]),
                         signer=tf.signers["co"], here="co", jti=jti, came_from="latam-hub", to="eu-hub",
                         received_at=NOW)
    forged = Envelope(token=env.token, payload=env.payload, hops=[env.hops[0], with_co.hops[1], env.hops[1]])
    # co's own record is consistent with its predecessor, so the splice shows either as a broken `to`
    # link (route) or as the next record's `prev` no longer binding (signature chain): both refuse it.
    refused(tf, forged, (Code.ROUTE_VIOLATION, Code.BAD_SIGNATURE), here="es", peer="eu-hub")


def test_hop_from_a_node_off_the_route_refused(tf):
    # co relays a message mx→es and signs a correct chain for itself: the route still forbids it.
    env = tf.relay(tf.send("mx", "es", "trace.request", b"{}"), ["mx", "co", "eu-hub"])
    refused(tf, env, Code.ROUTE_VIOLATION, here="eu-hub", peer="co")


def test_envelope_for_a_node_the_sender_may_not_reach_directly_refused(tf):
    # mx → es must go through the hubs: es refuses it straight from mx.
    env = tf.send("mx", "es", "trace.request", b"{}")
    refused(tf, env, Code.ROUTE_VIOLATION, here="es", peer="mx")


def test_tls_peer_other_than_last_sender_refused(tf):
    env = tf.send("mx", "latam-hub")
    refused(tf, env, Code.PEER_MISMATCH, here="latam-hub", peer="co")


def test_unknown_tls_peer_refused(tf):
    refused(tf, tf.send("mx", "latam-hub"), Code.UNKNOWN_NODE, peer="nowhere")


def test_classification_above_next_hops_ceiling_refused(tf):
    # it accepts at most BASIC_PROTECTION_LEVEL; eu-hub must not hand it RESTREINT_UE.
    env = tf.relay(tf.send("mx", "it", "trace.request", b"{}", cls="RESTREINT_UE"), ["mx", "latam-hub", "eu-hub"])
    err = refused(tf, env, Code.CLASSIFICATION_EXCEEDED, here="eu-hub", peer="latam-hub")
    assert "it's ceiling" in err.detail


def test_classification_above_this_nodes_ceiling_refused(tf):
    env = tf.send("co", "latam-hub", cls="CONFIDENTIEL_UE")
    refused(tf, env, Code.CLASSIFICATION_EXCEEDED, peer="co")


def test_unencrypted_through_a_hub_refused(tf):
    env = tf.send("mx", "es", "trace.request", b"{}", encrypt=False)
    refused(tf, env, Code.ENCRYPTION_REQUIRED)


def test_encrypted_to_someone_else_refused(tf):
    k = tf.enc["latam-hub"]
    from gateway.crypto.hpke import seal

    env = tf.send("mx", "es", "trace.request", b"{}", encrypt=False,
                  seal=lambda pt, info: seal(k.kem, k.public_b64(), pt, info), enc_kem=k.kem, enc_kid=k.kid)
    refused(tf, env, Code.ENCRYPTION_REQUIRED)


# --- any change to any byte is rejected (Hypothesis) ----------------------------------------------------

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _mutate(s: str, pos: int, new: str) -> str:
    pos %= len(s)
    if s[pos] == new:
        new = "B" if new != "B" else "C"
    return s[:pos] + new + s[pos + 1 :]


ALPHABET = st.sampled_from(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \x00é"))


@pytest.fixture(scope="module")
def chain(tf):
    return _three_hop(tf)


@PROPS
@given(pos=st.integers(min_value=0), ch=ALPHABET)
def test_any_changed_byte_of_the_token_is_rejected(tf, chain, pos, ch):
    env = Envelope(token=_mutate(chain.token, pos, ch), payload=chain.payload, hops=chain.hops)
    with pytest.raises(TrazaError):
        check(tf, env, here="es", peer="eu-hub", open_payload=tf.opener("es"))


@PROPS
@given(pos=st.integers(min_value=0), ch=ALPHABET)
def test_any_changed_byte_of_the_payload_is_rejected(tf, chain, pos, ch):
    env = Envelope(token=chain.token, payload=_mutate(chain.payload, pos, ch), hops=chain.hops)
    with pytest.raises(TrazaError):
        check(tf, env, here="es", peer="eu-hub", open_payload=tf.opener("es"))


@PROPS
@given(which=st.integers(min_value=0, max_value=1), pos=st.integers(min_value=0), ch=ALPHABET)
def test_any_changed_byte_of_a_hop_record_is_rejected(tf, chain, which, pos, ch):
    hops = list(chain.hops)
    hops[which] = _mutate(hops[which], pos, ch)
    with pytest.raises(TrazaError):
        check(tf, Envelope(token=chain.token, payload=chain.payload, hops=hops), here="es", peer="eu-hub",
              open_payload=tf.opener("es"))


@PROPS
@given(data=st.binary(min_size=1, max_size=64))
def test_payload_of_other_bytes_is_rejected(tf, chain, data):
    env = Envelope(token=chain.token, payload=b64url_encode(data), hops=chain.hops)
    with pytest.raises(TrazaError):
        check(tf, env, here="es", peer="eu-hub", open_payload=tf.opener("es"))
