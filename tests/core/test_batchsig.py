"""Batch signatures (protocol 1.1, docs/protocol.md): one signature per batch, every element verifiable alone."""

from __future__ import annotations

import json

import pytest
from kit.federation import KNOWN_TYPES, NOW, batch_federation, batched_traffic, make_federation

from gateway.core import batchsig, merkle, strictjson
from gateway.core.b64 import b64url_decode
from gateway.core.envelope import (
    Envelope,
    ack_claims_for,
    append_hops_batched,
    encode_envelope,
    hop_claims_for,
    make_acks_batched,
    verify_ack,
    verify_envelope,
)
from gateway.core.errors import TrazaError
from gateway.core.jws import parse_compact
from gateway.crypto.keys import verifier_for


class Counting:
    """A signer that counts its signatures (the real key underneath)."""

    def __init__(self, key):
        self.key, self.calls = key, 0
        self.kid, self.alg = key.kid, key.alg

    def sign(self, data: bytes) -> bytes:
        self.calls += 1
        return self.key.sign(data)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 64, 100])
def test_every_leaf_of_a_batch_verifies_alone_under_one_signature(n):
    tf = make_federation()
    signer = Counting(tf.signers["latam-hub"])
    leaves = [json.dumps({"iss": "latam-hub", "i": i}).encode() for i in range(n)]
    elements = batchsig.sign_batch(leaves, kind="hop", iss="latam-hub", kid=signer.kid, alg=signer.alg,
                                   sign=signer.sign, now=NOW)
    assert signer.calls == 1 and len(elements) == n
    fed = tf.fed
    checked = []

    def check_sig(compact, node):
        checked.append(node)
        key = fed.keys[compact.header["kid"]]
        assert key.node == node
        assert verifier_for(key.key.alg, key.key.jwk)(compact.signing_input, compact.signature)

    seen = batchsig.Seen()
    for i, text in enumerate(elements):
        el = batchsig.parse_element(text, "e")
        assert el.index == i
        assert batchsig.check_element(el, kind="hop", what="e", check_sig=check_sig, seen=seen) == json.loads(leaves[i])
        # alone (no memo), offline: the same result
        assert batchsig.check_element(el, kind="hop", what="e", check_sig=check_sig) == json.loads(leaves[i])
    assert checked.count("latam-hub") == 1 + n  # once for the whole batch with the memo, once each without
    root = merkle.root_of([merkle.leaf_hash(x) for x in leaves])
    claims = batchsig.parse_element(elements[0], "e").batch.claims
    assert b64url_decode(claims["root"]) == root and claims["n"] == n and claims["kind"] == "hop"


def test_an_envelope_with_batched_hops_verifies_at_every_node_and_each_root_once_per_request():
    tf, fed = batch_federation("latam-hub", "eu-hub", "es")
    sent = [tf.send("mx", "es") for _ in range(5)]
    # latam-hub receives the five from mx and signs one root for their hop records
    signer = Counting(tf.signers["latam-hub"])
    items = [(e, hop_claims_for(e, here="latam-hub", jti=parse_compact(e.token, typ="traza-envelope+jwt").claims["jti"],
                                 came_from="mx", to="eu-hub", received_at=NOW)) for e in sent]
    at_eu = append_hops_batched(items, signer=signer, now=NOW)
    assert signer.calls == 1
    calls = []

    def kv(alg, jwk):
        f = verifier_for(alg, jwk)

        def counted(data, sig):
            calls.append(alg)
            return f(data, sig)
        return counted
    seen = batchsig.Seen()
    for env in at_eu:
        v = verify_envelope(encode_envelope(env), here="eu-hub", peer="latam-hub", fed=fed, now=NOW,
                            key_verifier=kv, known_types=KNOWN_TYPES, seen=seen)
        assert v.hops[0].iss == "latam-hub" and v.next_hop == "es"
    assert len(calls) == 5 + 1  # five origin tokens, one batch root
    # eu-hub batches its own hop on top: es verifies both batch roots, the chain and the payload
    items = [(e, hop_claims_for(e, here="eu-hub", jti=parse_compact(e.token, typ="traza-envelope+jwt").claims["jti"],
                                 came_from="latam-hub", to="es", received_at=NOW)) for e in at_eu]
    at_es = append_hops_batched(items, signer=tf.signers["eu-hub"], now=NOW)
    for env in at_es:
        v = verify_envelope(encode_envelope(env), here="es", peer="eu-hub", fed=fed, now=NOW,
                            key_verifier=verifier_for, known_types=KNOWN_TYPES, open_payload=tf.opener("es"))
        assert [h.iss for h in v.hops] == ["latam-hub", "eu-hub"] and v.next_hop is None


def test_batched_acks_verify_each_for_its_own_message_only():
    tf, fed = batch_federation("latam-hub")
    sent = [tf.send("mx", "es") for _ in range(3)]
    jtis = [parse_compact(e.token, typ="traza-envelope+jwt").claims["jti"] for e in sent]
    claims = [ack_claims_for(here="latam-hub", peer="mx", jti=j, token=e.token, idx=10 + i, now=NOW)
              for i, (j, e) in enumerate(zip(jtis, sent, strict=True))]
    acks = make_acks_batched(claims, signer=tf.signers["latam-hub"], now=NOW)
    seen = batchsig.Seen()
    for i, (ack, j, e) in enumerate(zip(acks, jtis, sent, strict=True)):
        got = verify_ack(ack, fed=fed, expected_iss="latam-hub", expected_aud="mx", jti=j, token=e.token, now=NOW,
                         key_verifier=verifier_for, seen=seen)
        assert got.idx == 10 + i
    with pytest.raises(TrazaError, match="does not acknowledge"):
        verify_ack(acks[0], fed=fed, expected_iss="latam-hub", expected_aud="mx", jti=jtis[1], token=sent[1].token,
                   now=NOW, key_verifier=verifier_for)


@pytest.mark.parametrize("bad", ["tzb1.x", "tzb1.eyJ9.01..a.b.c", "tzb1.eyJ9.1.%%.a.b.c", "tzb1.eyJ9.9999999..a.b.c"])
def test_a_malformed_batched_element_is_refused_naming_it(bad):
    with pytest.raises(TrazaError) as e:
        batchsig.parse_element(bad, "hops[0]")
    assert e.value.code == "malformed" and "hops[0]" in e.value.detail


def test_a_version_1_envelope_is_not_mistaken_for_a_batched_one():
    tf = make_federation()
    env = tf.relay(tf.send("mx", "es"), ["mx", "latam-hub", "eu-hub", "es"])
    assert not any(batchsig.is_batched(h) for h in env.hops)
    assert isinstance(env, Envelope)


def _counting_parse(monkeypatch):
    """Count the compact JWS parses made through batchsig (each decodes three parts, two strict JSON)."""
    calls = []
    real = batchsig.parse_compact

    def counted(token, *, typ):
        calls.append(typ)
        return real(token, typ=typ)
    monkeypatch.setattr(batchsig, "parse_compact", counted)
    return calls


def test_a_batch_jws_named_by_every_element_of_a_request_is_parsed_once(monkeypatch):
    """A batch of n acks or hop records names the same batch JWS n times: a receiver with a Seen memo
    decodes it once per request (it verified its signature once already), not once per element."""
    t = batched_traffic(8)
    fed, at_eu, acks, jtis, sent = t.fed, t.at_eu, t.acks, t.jtis, t.sent
    calls = _counting_parse(monkeypatch)
    seen = batchsig.Seen()
    for env in at_eu:
        verify_envelope(encode_envelope(env), here="eu-hub", peer="latam-hub", fed=fed, now=NOW,
                        key_verifier=verifier_for, known_types=KNOWN_TYPES, seen=seen)
    assert calls == ["traza-batch+jwt"]
    calls.clear()
    seen = batchsig.Seen()
    for ack, j, e in zip(acks, jtis, sent, strict=True):
        verify_ack(ack, fed=fed, expected_iss="latam-hub", expected_aud="mx", jti=j, token=e.token, now=NOW,
                   key_verifier=verifier_for, seen=seen)
    assert calls == ["traza-batch+jwt"]
    # without a memo (an element alone, offline) each is parsed, with the same result
    calls.clear()
    seen = batchsig.Seen()
    for ack in acks:
        assert batchsig.parse_element(ack, "ack", seen) == batchsig.parse_element(ack, "ack")
    assert len(calls) == 1 + len(acks)


def test_a_malformed_batch_jws_is_refused_for_every_element_naming_it():
    """The memo keeps only what parsed: a bad batch JWS is refused each time it is met, never remembered."""
    tf = make_federation()
    leaves = [json.dumps({"iss": "latam-hub", "i": i}).encode() for i in range(3)]
    elements = batchsig.sign_batch(leaves, kind="ack", iss="latam-hub", kid="k", alg="EdDSA",
                                   sign=tf.signers["latam-hub"].sign, now=NOW)
    broken = [e.rsplit(".", 3)[0] + ".e30.e30.AA" for e in elements]  # header {} : no alg
    seen = batchsig.Seen()
    for b in broken:
        with pytest.raises(TrazaError):
            batchsig.parse_element(b, "ack", seen)


def test_each_leaf_of_a_batched_ack_or_hop_record_is_decoded_once(monkeypatch):
    """The leaf (the claims of the ack or hop record) is read once per check: it was decoded twice, once
    for the signer check and once for the caller."""
    t = batched_traffic(4)
    fed, at_eu, acks, jtis, sent = t.fed, t.at_eu, t.acks, t.jtis, t.sent
    leaves: list[str] = []
    real = strictjson.object_of

    def counted(data, what="JSON text"):
        if what.endswith("leaf"):
            leaves.append(what)
        return real(data, what)
    monkeypatch.setattr(strictjson, "object_of", counted)
    seen = batchsig.Seen()
    for ack, j, e in zip(acks, jtis, sent, strict=True):
        verify_ack(ack, fed=fed, expected_iss="latam-hub", expected_aud="mx", jti=j, token=e.token, now=NOW,
                   key_verifier=verifier_for, seen=seen)
    assert len(leaves) == len(acks)
    leaves.clear()
    for env in at_eu:
        verify_envelope(encode_envelope(env), here="eu-hub", peer="latam-hub", fed=fed, now=NOW,
                        key_verifier=verifier_for, known_types=KNOWN_TYPES, seen=seen)
    assert len(leaves) == len(at_eu)
