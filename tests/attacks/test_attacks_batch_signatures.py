"""Attacks on batch signatures (protocol 1.1, docs/protocol.md), each test named after what it stops.
Real keys, the project's own verifier."""

from __future__ import annotations

import pytest
from kit.federation import KNOWN_TYPES, NOW, make_federation

from gateway.core import batchsig
from gateway.core.canonical import canonical_bytes
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
from gateway.core.errors import Code, TrazaError
from gateway.core.jws import parse_compact
from gateway.core.manifest import Federation, decode_manifest
from gateway.crypto.keys import verifier_for

HUB = "latam-hub"


@pytest.fixture(scope="module")
def tf():
    return make_federation()


def fed_with_batch(tf, *nodes):
    m = {**tf.manifest, "nodes": [{**n, "batch": True} if n["id"] in nodes else n for n in tf.manifest["nodes"]]}
    return Federation(decode_manifest(canonical_bytes(m)))


def jti_of(env):
    return parse_compact(env.token, typ="traza-envelope+jwt").claims["jti"]


def batched_at_hub(tf, n, signer=None, here=HUB):
    envs = [tf.send("mx", "es") for _ in range(n)]
    items = [(e, hop_claims_for(e, here=here, jti=jti_of(e), came_from="mx", to="eu-hub", received_at=NOW))
             for e in envs]
    return append_hops_batched(items, signer=signer or tf.signers[HUB], now=NOW)


def at_eu(tf, env, fed):
    return verify_envelope(encode_envelope(env), here="eu-hub", peer=HUB, fed=fed, now=NOW, key_verifier=verifier_for,
                           known_types=KNOWN_TYPES)


def refused(tf, env, fed, code=Code.BAD_SIGNATURE):
    with pytest.raises(TrazaError) as e:
        at_eu(tf, env, fed)
    assert e.value.code == code, e.value.detail
    return e.value


def with_hop(env: Envelope, hop: str) -> Envelope:
    return Envelope(token=env.token, payload=env.payload, hops=[*env.hops[:-1], hop])


def test_a_path_from_another_batch_is_refused(tf):
    fed = fed_with_batch(tf, "eu-hub")
    a = batched_at_hub(tf, 4)
    b = batched_at_hub(tf, 4)
    at_eu(tf, a[1], fed)  # as signed: accepted
    # a's leaf and path under b's batch signature (same signer, same size): the path leads to a's root
    leaf_part, jws_b = a[1].hops[-1].rsplit(".", 3)[0], ".".join(b[1].hops[-1].rsplit(".", 3)[1:])
    err = refused(tf, with_hop(a[1], f"{leaf_part}.{jws_b}"), fed)
    assert "not in the signed batch" in err.detail


def test_a_root_signed_by_someone_else_is_refused(tf):
    fed = fed_with_batch(tf, "eu-hub")
    # co signs a batch of leaves that claim latam-hub as their signer
    forged = batched_at_hub(tf, 3, signer=tf.signers["co"])
    err = refused(tf, forged[0], fed)
    assert "belongs to 'co'" in err.detail or "signed by" in err.detail
    # co signs the batch naming itself: the leaf's iss (latam-hub) is not the batch's signer
    envs = [tf.send("mx", "es") for _ in range(3)]
    items = [(e, hop_claims_for(e, here=HUB, jti=jti_of(e), came_from="mx", to="eu-hub", received_at=NOW)) for e in envs]
    leaves = [__import__("msgspec").json.encode(__import__("msgspec").to_builtins(c)) for _e, c in items]
    els = batchsig.sign_batch(leaves, kind="hop", iss="co", kid="co/sig/1", alg="EdDSA", sign=tf.signers["co"].sign,
                              now=NOW)
    env = Envelope(token=envs[0].token, payload=envs[0].payload, hops=[els[0]])
    err = refused(tf, env, fed)
    assert "the batch is signed by 'co'" in err.detail


def test_a_reordered_batch_is_refused(tf):
    fed = fed_with_batch(tf, "eu-hub")
    envs = batched_at_hub(tf, 5)
    # element 2 claims to be leaf 3 (its own leaf and path, another index), and 2's leaf with 3's path
    pre, leaf, _idx, path, jws = envs[2].hops[-1].split(".", 4)
    refused(tf, with_hop(envs[2], f"{pre}.{leaf}.3.{path}.{jws}"), fed)
    path3 = envs[3].hops[-1].split(".", 4)[3]
    refused(tf, with_hop(envs[2], f"{pre}.{leaf}.3.{path3}.{jws}"), fed)
    # the same leaves signed in another order: a leaf with its first-order index and path under the
    # second order's signature does not verify (the root binds the order)
    pre_hops = [Envelope(token=e.token, payload=e.payload, hops=e.hops[:-1]) for e in envs]
    items = [(e, hop_claims_for(e, here=HUB, jti=jti_of(e), came_from="mx", to="eu-hub", received_at=NOW))
             for e in reversed(pre_hops)]
    other = append_hops_batched(items, signer=tf.signers[HUB], now=NOW)
    jws_other = other[0].hops[-1].split(".", 4)[4]
    first = envs[0].hops[-1].split(".", 4)
    at_eu(tf, other[-1], fed)  # the re-signed batch is fine on its own
    refused(tf, with_hop(envs[0], ".".join([*first[:4], jws_other])), fed)


def test_a_batched_hop_to_a_node_that_did_not_negotiate_it_is_refused(tf):
    # eu-hub does not advertise batch signatures in the manifest (a version-1 peer): never fed one
    fed = fed_with_batch(tf, HUB)
    err = refused(tf, batched_at_hub(tf, 2)[0], fed, code=Code.MALFORMED)
    assert "does not take batch signatures" in err.detail


def test_version_1_hop_records_still_verify_at_a_batch_node(tf):
    # downgrade is not a way round anything: a v1 hop record is fully signed and still accepted
    fed = fed_with_batch(tf, HUB, "eu-hub", "es")
    env = tf.relay(tf.send("mx", "es"), ["mx", HUB, "eu-hub"])
    assert at_eu(tf, env, fed).hops[0].iss == HUB


def test_an_ack_batch_cannot_stand_for_a_hop_and_a_hop_batch_not_for_an_ack(tf):
    fed = fed_with_batch(tf, "eu-hub")
    envs = [tf.send("mx", "es") for _ in range(2)]
    hop = batched_at_hub(tf, 2)[0].hops[-1]
    claims = [ack_claims_for(here=HUB, peer="mx", jti=jti_of(e), token=e.token, idx=i, now=NOW) for i, e in enumerate(envs)]
    acks = make_acks_batched(claims, signer=tf.signers[HUB], now=NOW)
    err = refused(tf, Envelope(token=envs[0].token, payload=envs[0].payload, hops=[acks[0]]), fed)
    assert "not of hop records" in err.detail
    with pytest.raises(TrazaError) as e:
        verify_ack(hop, fed=fed, expected_iss=HUB, expected_aud="mx", jti=jti_of(envs[0]), token=envs[0].token,
                   now=NOW, key_verifier=verifier_for)
    assert e.value.code == Code.BAD_SIGNATURE


def test_a_batched_ack_signed_by_another_peer_is_refused(tf):
    fed = fed_with_batch(tf, "eu-hub")
    e = tf.send("mx", "es")
    claims = [ack_claims_for(here="co", peer="mx", jti=jti_of(e), token=e.token, idx=1, now=NOW)]
    ack = make_acks_batched(claims, signer=tf.signers["co"], now=NOW)[0]
    with pytest.raises(TrazaError, match="expected 'latam-hub'"):
        verify_ack(ack, fed=fed, expected_iss=HUB, expected_aud="mx", jti=jti_of(e), token=e.token, now=NOW,
                   key_verifier=verifier_for)
