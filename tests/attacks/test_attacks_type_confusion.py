"""Type confusion in signed structures (SPEC §3.4: no exception raised by hostile input reaches the client
as a ``500``; §4.2: every rejection is audited with its code).

A JWS header or claim may hold any JSON value: a list or an object where a string is expected is still
strict JSON. Such a value once reached a set lookup (``alg not in ALLOWED_ALGS``: a list is unhashable),
raised ``TypeError`` instead of a refusal, and turned a whole ``POST /v1/envelopes`` into a ``500``: every
valid envelope of the batch was lost with it and nothing was audited. The sender's check of an ack had the
same fault.

The class of test: every member of every signed structure a node parses from a peer (the origin token,
a version-1 hop record, a batched hop element and its batch signature, a version-1 and a batched ack),
header and claims, replaced by values of every JSON type (Hypothesis draws them, nested included). Only a
``TrazaError`` (a refusal with its code) may come out. Then the attack itself on a real node."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kit.federation import KNOWN_TYPES, NOW, make_federation
from kit.nodes import entries, started

from gateway.config import load_config
from gateway.core import batchsig
from gateway.core.b64 import b64url_decode, b64url_encode
from gateway.core.envelope import (
    Envelope,
    ack_claims_for,
    append_hops_batched,
    build_envelope,
    encode_envelope,
    hop_claims_for,
    make_ack,
    make_acks_batched,
    verify_ack,
    verify_envelope,
)
from gateway.core.errors import TrazaError
from gateway.core.ids import uuid7
from gateway.crypto.hpke import seal
from gateway.crypto.keys import verifier_for
from gateway.crypto.tls import client_context
from gateway.localfed import NodeSpec, build
from gateway.node import Node
from gateway.transport.peer import PeerClient

SWEEP = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                 suppress_health_check=list(HealthCheck))
# any JSON value, nested a little: what a hostile peer can put in a member and still pass strict JSON
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


def _with_member(jws: str, part: int, key: str, value: object) -> str:
    """``jws`` (compact, signature kept) with member ``key`` of its header (0) or claims (1) set to ``value``."""
    pieces = jws.split(".")
    doc = json.loads(b64url_decode(pieces[part]))
    doc[key] = value
    pieces[part] = b64url_encode(json.dumps(doc).encode())
    return ".".join(pieces)


def _members(jws: str, part: int) -> list[str]:
    return [*sorted(json.loads(b64url_decode(jws.split(".")[part]))), "extra"]


@pytest.fixture(scope="module")
def traffic():
    """An envelope it -> es through eu-hub: as sent, with a version-1 hop, with a batched hop; acks."""
    tf = make_federation()
    base = tf.send("it", "es")
    hopped = tf.relay(base, ["it", "eu-hub", "es"])
    jti = json.loads(b64url_decode(base.token.split(".")[1]))["jti"]
    claims = hop_claims_for(base, here="eu-hub", jti=jti, came_from="it", to="es", received_at=NOW)
    [batched] = append_hops_batched([(base, claims)], signer=tf.signers["eu-hub"], now=NOW)
    ack = make_ack(tf.signers["eu-hub"], here="eu-hub", peer="it", jti=jti, token=base.token, idx=1, now=NOW)
    [back] = make_acks_batched([ack_claims_for(here="eu-hub", peer="it", jti=jti, token=base.token, idx=1, now=NOW)],
                               signer=tf.signers["eu-hub"], now=NOW)
    return tf, jti, base, hopped, batched, ack, back


def _refused_or_fine(call) -> None:
    try:
        call()
    except TrazaError:
        pass  # a refusal with its code: what a hostile value must give


def _verify(tf, env: Envelope, here: str, peer: str) -> None:
    verify_envelope(encode_envelope(env), here=here, peer=peer, fed=tf.fed, now=NOW, key_verifier=verifier_for,
                    known_types=KNOWN_TYPES)


@SWEEP
@given(value=json_values, data=st.data())
def test_any_json_value_in_an_origin_token_member_is_refused_not_raised(traffic, value, data):
    tf, _jti, base, *_ = traffic
    part = data.draw(st.sampled_from([0, 1]))
    key = data.draw(st.sampled_from(_members(base.token, part)))
    env = Envelope(token=_with_member(base.token, part, key, value), payload=base.payload)
    _refused_or_fine(lambda: _verify(tf, env, "eu-hub", "it"))


@SWEEP
@given(value=json_values, data=st.data())
def test_any_json_value_in_a_hop_record_member_is_refused_not_raised(traffic, value, data):
    tf, _jti, _base, hopped, *_ = traffic
    part = data.draw(st.sampled_from([0, 1]))
    key = data.draw(st.sampled_from(_members(hopped.hops[0], part)))
    env = Envelope(token=hopped.token, payload=hopped.payload, hops=[_with_member(hopped.hops[0], part, key, value)])
    _refused_or_fine(lambda: _verify(tf, env, "es", "eu-hub"))


@SWEEP
@given(value=json_values, data=st.data())
def test_any_json_value_in_a_batched_hop_or_its_batch_signature_is_refused_not_raised(traffic, value, data):
    tf, _jti, _base, _hopped, batched, *_ = traffic
    head, leaf, idx, path, jws = batched.hops[0].split(".", 4)
    where = data.draw(st.sampled_from(["leaf", "batch header", "batch claims"]))
    if where == "leaf":
        doc = json.loads(b64url_decode(leaf))
        doc[data.draw(st.sampled_from([*sorted(doc), "extra"]))] = value
        element = ".".join([head, b64url_encode(json.dumps(doc).encode()), idx, path, jws])
    else:
        part = 0 if where == "batch header" else 1
        element = ".".join([head, leaf, idx, path,
                            _with_member(jws, part, data.draw(st.sampled_from(_members(jws, part))), value)])
    env = Envelope(token=batched.token, payload=batched.payload, hops=[element])
    _refused_or_fine(lambda: _verify(tf, env, "es", "eu-hub"))


@SWEEP
@given(value=json_values, data=st.data())
def test_any_json_value_in_an_ack_member_is_refused_not_raised(traffic, value, data):
    tf, jti, base, _hopped, _batched, ack, back = traffic
    if data.draw(st.booleans()):
        part = data.draw(st.sampled_from([0, 1]))
        bad = _with_member(ack, part, data.draw(st.sampled_from(_members(ack, part))), value)
    else:
        head, leaf, idx, path, jws = back.split(".", 4)
        part = data.draw(st.sampled_from([0, 1]))
        bad = ".".join([head, leaf, idx, path, _with_member(jws, part, data.draw(st.sampled_from(_members(jws, part))),
                                                            value)])
    _refused_or_fine(lambda: verify_ack(bad, fed=tf.fed, expected_iss="eu-hub", expected_aud="it", jti=jti,
                                        token=base.token, now=NOW, key_verifier=verifier_for,
                                        seen=batchsig.Seen()))


@pytest.mark.parametrize("alg", [["EdDSA"], {"alg": "EdDSA"}], ids=["list", "object"])
def test_an_unhashable_alg_is_refused_as_a_bad_signature(traffic, alg):
    tf, _jti, base, *_ = traffic
    env = Envelope(token=_with_member(base.token, 0, "alg", alg), payload=base.payload)
    with pytest.raises(TrazaError) as e:
        _verify(tf, env, "eu-hub", "it")
    assert e.value.code.value == "bad_signature"


SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]


async def test_a_list_alg_in_one_envelope_does_not_fail_the_batch_and_is_audited(tmp_path: Path):
    """The attack on a real node: mx posts a batch of an envelope whose token header has ``"alg": [...]``
    and a valid one. The request is answered (no 500), the hostile one rejected with its code and audited,
    the valid one accepted."""
    built = build(tmp_path / "fed", SPECS, limits={"checkpoint_interval": 3600})
    async with started(built["hub"].config) as hub:
        mx = Node(load_config(built["mx"].config))
        client = PeerClient("hub", hub.fed.nodes["hub"].urls, client_context(mx.tls_cert, mx.tls_key,
                                                                             mx.fed.manifest.tls_ca))
        try:
            def notice() -> Envelope:  # sealed to es: a notice through a hub is encrypted
                now = time.time()
                ek = mx.fed.current_key("es", "enc", now)
                return build_envelope(signer=mx.signer, iss="mx", aud="es", jti=uuid7(now, os.urandom(10)), mt="notice",
                                      body=b'{"title":"t","text":"x"}', now=now, ttl=3600,
                                      seal=lambda pt, info: seal(ek.kem, ek.public_key, pt, info), enc_kem=ek.kem,
                                      enc_kid=ek.kid)
            hostile, good = notice(), notice()
            hostile = Envelope(token=_with_member(hostile.token, 0, "alg", ["EdDSA"]), payload=hostile.payload)
            body = b'{"envelopes":[' + encode_envelope(hostile) + b"," + encode_envelope(good) + b"]}"
            status, data, _ = await client.request("POST", "/v1/envelopes", body=body)
        finally:
            await client.close()
            mx.db.close()
        assert status == 200, data
        results = json.loads(data)["results"]
        assert [r["status"] for r in results] == ["rejected", "accepted"], results
        assert results[0]["error"]["code"] == "bad_signature"
        rejected = await entries(hub, event="envelope.rejected")
    assert len(rejected) == 1 and rejected[0]["code"] == "bad_signature", rejected
