"""Evidence pollution (issue #10 item 9): an envelope that does not verify may claim any message id, so
that id never indexes the refusal in the audit log, and never enters the evidence of that message. It is
kept as a claim (``claimed_jti``) in the rejection entry. An authentic envelope (every signature and the
chain to the TLS peer verified) refused later (route, policy, payload) does name its message."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import msgspec
import pytest
from kit.federation import KNOWN_TYPES, NOW, make_federation
from kit.nodes import bundle_of, entries, started
from kit.waiting import eventually

from gateway.config import load_config
from gateway.core.envelope import build_envelope, encode_envelope, verify_envelope
from gateway.core.errors import Code, TrazaError
from gateway.crypto.keys import verifier_for
from gateway.crypto.tls import client_context
from gateway.localfed import NodeSpec, build
from gateway.node import Node
from gateway.transport.peer import PeerClient

LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 0.2}
SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub"), NodeSpec("co", "national", "CO", hub="hub")]





async def test_badly_signed_envelope_carrying_a_victims_id_does_not_enter_its_evidence(tmp_path: Path) -> None:
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    body = msgspec.json.encode({"title": "t", "text": "x"})
    async with started(built["hub"].config) as hub, started(built["mx"].config) as mx:
        victim = await mx.submit(mt="notice", to="es", body=body, system="test")  # waits at the hub: es is down
        await eventually(lambda: entries(hub, jti=victim, event="envelope.accepted"))
        # co, a member of the federation, sends the hub an envelope claiming the victim's id, signed with
        # its own key but claiming to come from mx
        co = Node(load_config(built["co"].config))
        try:
            forged = build_envelope(signer=co.signer, iss="mx", aud="es", jti=victim, mt="notice", body=body,
                                    now=hub.clock(), ttl=3600)
            client = PeerClient("hub", hub.fed.nodes["hub"].endpoint,
                                client_context(co.tls_cert, co.tls_key, co.fed.manifest.tls_ca))
            try:
                (result,) = await client.send_batch([encode_envelope(forged)])
            finally:
                await client.close()
        finally:
            co.db.close()
        assert result.status == "rejected" and result.error is not None and result.error.code == "bad_signature"
        claims = [e for e in await entries(hub, event="envelope.rejected") if e.get("claimed_jti") == victim]
        assert len(claims) == 1 and "jti" not in claims[0] and claims[0]["from"] == "co", claims
        # the victim's entries and evidence bundle know nothing of it
        assert [e["event"] for e in await entries(hub, jti=victim)] == ["envelope.accepted"]
        raw = await eventually(lambda: bundle_of(hub, victim), timeout=20.0)
        bundle = json.loads(raw)
        events = [json.loads(base64.b64decode(e["entry"]))["event"] for e in bundle["entries"]]
        assert events == ["envelope.accepted"], events


@pytest.fixture(scope="module")
def tf():  # type: ignore[no-untyped-def]
    return make_federation()


def _refusal(tf, env, here: str, peer: str) -> TrazaError:  # type: ignore[no-untyped-def]
    with pytest.raises(TrazaError) as e:
        verify_envelope(encode_envelope(env), here=here, peer=peer, fed=tf.fed, now=NOW, key_verifier=verifier_for,
                        known_types=KNOWN_TYPES)
    return e.value


def test_refusal_before_the_signatures_verify_names_no_message(tf) -> None:  # type: ignore[no-untyped-def]
    env = tf.send("mx", "es")
    forged = build_envelope(signer=tf.signers["co"], iss="mx", aud="es", jti="victim-id", mt="notice",
                            body=b'{"title":"t","text":"x"}', now=NOW, ttl=3600)
    err = _refusal(tf, forged, "latam-hub", "mx")
    assert err.code is Code.BAD_SIGNATURE and err.jti is None
    # an authentic token handed over by the wrong TLS peer: the chain does not reach the peer
    err = _refusal(tf, env, "latam-hub", "co")
    assert err.code is Code.PEER_MISMATCH and err.jti is None


def test_refusal_of_an_authentic_envelope_names_its_message(tf) -> None:  # type: ignore[no-untyped-def]
    env = tf.send("mx", "es")
    from gateway.core.jws import parse_compact
    jti = parse_compact(env.token, typ="traza-envelope+jwt").claims["jti"]
    err = _refusal(tf, env, "eu-hub", "mx")  # authentic, but mx → eu-hub is not on its route
    assert err.code is Code.ROUTE_VIOLATION and err.jti == jti
