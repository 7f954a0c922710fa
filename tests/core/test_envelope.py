"""Envelope building and the SPEC §4.2 verification pipeline, with real keys and no I/O."""

from __future__ import annotations

import json

import pytest
from kit.federation import KNOWN_TYPES, NOW, make_federation

from gateway.core.b64 import b64url_decode
from gateway.core.envelope import (
    decode_envelope,
    encode_envelope,
    make_ack,
    payload_info,
    token_digest,
    verify_ack,
    verify_envelope,
)
from gateway.core.errors import Code, TrazaError
from gateway.core.jws import parse_compact
from gateway.crypto.hpke import DecryptError
from gateway.crypto.keys import verifier_for


@pytest.fixture(scope="module")
def tf():
    return make_federation()


def verify(tf, env, here, peer, now=NOW, **kw):
    return verify_envelope(
        encode_envelope(env), here=here, peer=peer, fed=tf.fed, now=now, key_verifier=verifier_for,
        known_types=KNOWN_TYPES, **kw,
    )


def test_route_derivation(tf):
    fed = tf.fed
    assert fed.route("mx", "es") == ["mx", "latam-hub", "eu-hub", "es"]
    assert fed.route("mx", "co") == ["mx", "latam-hub", "co"]
    assert fed.route("mx", "latam-hub") == ["mx", "latam-hub"]
    assert fed.route("mx", "eu-hub") == ["mx", "latam-hub", "eu-hub"]
    assert fed.route("latam-hub", "es") == ["latam-hub", "eu-hub", "es"]
    assert fed.route("es", "arms-registry") == ["es", "eu-hub", "arms-registry"]


def test_encrypted_trace_request_through_two_hubs_verifies_at_every_node(tf):
    body = b'{"request_kind":"TRACE"}'
    origin = tf.send("mx", "es", "trace.request", body)
    # the origin checks its own envelope before it leaves
    v0 = verify(tf, origin, "mx", None)
    assert v0.next_hop == "latam-hub"
    v1 = verify(tf, origin, "latam-hub", "mx")
    assert v1.next_hop == "eu-hub" and v1.plaintext is None
    v2 = verify(tf, tf.relay(origin, ["mx", "latam-hub", "eu-hub"]), "eu-hub", "latam-hub")
    assert v2.next_hop == "es" and v2.plaintext is None
    env = tf.relay(origin, ["mx", "latam-hub", "eu-hub", "es"])
    v3 = verify(tf, env, "es", "eu-hub", open_payload=tf.opener("es"))
    assert v3.next_hop is None
    assert v3.plaintext == body
    assert v3.claims.pld.enc is not None and v3.claims.pld.enc.kid == "es/enc/1"
    assert [h.iss for h in v3.hops] == ["latam-hub", "eu-hub"]


def test_hubs_cannot_read_encrypted_payload(tf):
    body = b'{"serial_number":"ABC123"}'
    env = tf.send("mx", "es", "trace.request", body)
    assert b"ABC123" not in b64url_decode(env.payload)
    jti = parse_compact(env.token, typ="traza-envelope+jwt").claims["jti"]
    with pytest.raises(DecryptError):
        tf.enc["eu-hub"].open(b64url_decode(env.payload), payload_info(jti, "mx", "es"))
    assert tf.enc["es"].open(b64url_decode(env.payload), payload_info(jti, "mx", "es")) == body


def test_direct_unencrypted_notice_between_hub_neighbours(tf):
    env = tf.send("mx", "latam-hub", "notice")
    v = verify(tf, env, "latam-hub", "mx")
    assert v.next_hop is None and v.plaintext == b'{"title":"t","text":"x"}'


def test_body_is_decoded_at_recipient(tf):
    env = tf.send("mx", "latam-hub", "notice")
    seen = []
    verify(tf, env, "latam-hub", "mx", decode_body=lambda mt, b: seen.append((mt, json.loads(b))) or "ok")
    assert seen == [("notice", {"title": "t", "text": "x"})]


def test_ack_round_trip_and_binding(tf):
    env = tf.send("mx", "latam-hub", "notice")
    v = verify(tf, env, "latam-hub", "mx")
    ack = make_ack(tf.signers["latam-hub"], here="latam-hub", peer="mx", jti=v.claims.jti, token=env.token,
                   idx=41, now=NOW)
    claims = verify_ack(ack, fed=tf.fed, expected_iss="latam-hub", expected_aud="mx", jti=v.claims.jti,
                        token=env.token, now=NOW, key_verifier=verifier_for)
    assert claims.idx == 41 and claims.dig == token_digest(env.token)
    other = tf.send("mx", "latam-hub", "notice")
    with pytest.raises(TrazaError) as e:
        verify_ack(ack, fed=tf.fed, expected_iss="latam-hub", expected_aud="mx", jti=v.claims.jti,
                   token=other.token, now=NOW, key_verifier=verifier_for)
    assert e.value.code is Code.BAD_SIGNATURE
    with pytest.raises(TrazaError):  # an ack signed by someone else than the expected peer
        verify_ack(ack, fed=tf.fed, expected_iss="eu-hub", expected_aud="mx", jti=v.claims.jti,
                   token=env.token, now=NOW, key_verifier=verifier_for)


def test_ack_checked_by_the_stored_digest_refuses_an_ack_of_another_message(tf):
    """The forward loop checks an ack against the digest it stored with the message (``messages.dig``)
    instead of re-reading the token: the same binding, by digest."""
    env, other = tf.send("mx", "latam-hub", "notice"), tf.send("mx", "latam-hub", "notice")
    v = verify(tf, env, "latam-hub", "mx")
    ack = make_ack(tf.signers["latam-hub"], here="latam-hub", peer="mx", jti=v.claims.jti, token=env.token,
                   idx=7, now=NOW)
    kw = dict(fed=tf.fed, expected_iss="latam-hub", expected_aud="mx", jti=v.claims.jti, now=NOW,
              key_verifier=verifier_for)
    assert verify_ack(ack, dig=v.dig, **kw).idx == 7
    with pytest.raises(TrazaError, match="does not acknowledge") as e:
        verify_ack(ack, dig=token_digest(other.token), **kw)
    assert e.value.code is Code.BAD_SIGNATURE
    with pytest.raises(ValueError, match="token acknowledged or its digest"):
        verify_ack(ack, **kw)


def test_unknown_envelope_member_is_malformed(tf):
    env = tf.send("mx", "latam-hub", "notice")
    raw = json.loads(encode_envelope(env))
    raw["extra"] = 1
    with pytest.raises(TrazaError) as e:
        verify_envelope(json.dumps(raw).encode(), here="latam-hub", peer="mx", fed=tf.fed, now=NOW,
                        key_verifier=verifier_for, known_types=KNOWN_TYPES)
    assert e.value.code is Code.MALFORMED


def test_decode_envelope_round_trip(tf):
    env = tf.send("mx", "es", "trace.request", b"{}")
    assert decode_envelope(encode_envelope(env)) == env


def test_unknown_type(tf):
    env = tf.send("mx", "latam-hub", "firearm.teleport", encrypt=False)
    with pytest.raises(TrazaError) as e:
        verify(tf, env, "latam-hub", "mx")
    assert e.value.code is Code.UNKNOWN_TYPE


def test_policy_denied_for_sender_kind(tf):
    # trace.request may only be sent by national nodes
    env = tf.send("arms-registry", "es", "trace.request")
    with pytest.raises(TrazaError) as e:
        verify(tf, env, "eu-hub", "arms-registry")
    assert e.value.code is Code.POLICY_DENIED


def test_payload_swapped_is_payload_mismatch(tf):
    a = tf.send("mx", "latam-hub", "notice", b'{"title":"a","text":"a"}')
    b = tf.send("mx", "latam-hub", "notice", b'{"title":"b","text":"b"}')
    swapped = type(a)(token=a.token, payload=b.payload, hops=[])
    with pytest.raises(TrazaError) as e:
        verify(tf, swapped, "latam-hub", "mx")
    assert e.value.code is Code.PAYLOAD_MISMATCH


def test_decrypt_failed_with_wrong_key(tf):
    env = tf.relay(tf.send("mx", "es", "trace.request", b"{}"), ["mx", "latam-hub", "eu-hub", "es"])
    with pytest.raises(TrazaError) as e:
        verify(tf, env, "es", "eu-hub", open_payload=lambda ct, info, kid: tf.enc["it"].open(ct, info))
    assert e.value.code is Code.DECRYPT_FAILED


def test_too_large(tf):
    env = tf.send("mx", "latam-hub", "notice", b'{"title":"t","text":"' + b"x" * 2_000_000 + b'"}')
    with pytest.raises(TrazaError) as e:
        verify(tf, env, "latam-hub", "mx")
    assert e.value.code is Code.TOO_LARGE


def test_a_message_addressed_to_its_own_sender_says_so_in_plain_words(tf):
    env = tf.send("mx", "mx", "notice", encrypt=False)
    with pytest.raises(TrazaError) as e:
        verify(tf, env, "mx", "mx")
    assert e.value.code is Code.ROUTE_VIOLATION
    assert "iss" not in e.value.detail and "aud" not in e.value.detail, e.value.detail
    assert "mx" in e.value.detail and "sender" in e.value.detail and "recipient" in e.value.detail, e.value.detail
