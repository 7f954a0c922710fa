"""Faults with real node processes (mx → latam-hub → eu-hub → es): replay and lost acks, a hub down for
a while, a message expiring in a queue, envelopes sent to the wrong node or above a node's ceiling, and
checkpoints cosigned by peers."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from typing import Any

import pytest
from fedproc import FOUR, Federation, submit  # tests/e2e helper

from gateway.core.envelope import build_envelope, encode_envelope
from gateway.core.ids import uuid7
from gateway.core.manifest import Federation as Manifest
from gateway.crypto.hpke import seal
from gateway.crypto.keys import SigningKey
from gateway.crypto.tls import client_context
from gateway.localfed import NodeSpec
from gateway.transport.peer import PeerClient
from gateway.trust.pki import FederationDir
from gateway.trust.trusted import TrustAnchor, TrustedManifest

sys.path.insert(0, "tests")
from core.message_examples import example

# eu-hub may carry nothing above BASIC_PROTECTION_LEVEL (for the ceiling test)
SPECS = [NodeSpec("eu-hub", "hub", "NL", max_classification="BASIC_PROTECTION_LEVEL") if s.id == "eu-hub" else s
         for s in FOUR]


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    f = Federation(tmp_path_factory.mktemp("faults"), SPECS,
                   limits={"checkpoint_interval": 1.0, "retry_min": 0.2, "retry_max": 1.0})
    f.start_all()
    yield f
    f.stop_all()


# --- helpers ------------------------------------------------------------------------------------------




def inbox_ids(fed, node):
    status, doc = fed.call(node, "system", "GET", "/local/v1/inbox?after=0&limit=100")
    assert status == 200, doc
    return [m["id"] for m in doc["messages"]]


def message(fed, node, jti):
    status, doc = fed.call(node, "system", "GET", f"/local/v1/messages/{jti}")
    return doc if status == 200 else None


def manifest(fed) -> Manifest:
    pub = fed.root / "pki" / "published"
    tm = TrustedManifest(TrustAnchor.from_json((fed.root / "pki" / "trust-anchor.json").read_bytes()))
    return tm.update((pub / "manifest.json").read_bytes(), (pub / "manifest.sig").read_bytes(), time.time())


def peer_call(fed, as_node: str, to_node: str, method: str, path: str, body: bytes | None = None,
              content_type: str = "application/json") -> tuple[int, bytes]:
    """A request on the peer API of ``to_node`` with ``as_node``'s own TLS certificate."""
    f = FederationDir(fed.root / "pki").node_files(as_node)
    ca = [(fed.root / "pki" / "ca" / "ca.pem").read_text()]

    async def go() -> tuple[int, bytes]:
        cl = PeerClient(to_node, f"https://127.0.0.1:{fed.nodes[to_node].peer_port}",
                        client_context(f.tls_cert, f.tls_key, ca), timeout=10)
        try:
            status, data, _ = await cl.request(method, path, body=body, content_type=content_type)
            return status, data
        finally:
            await cl.close()

    return asyncio.run(go())


def crafted(fed, *, cls: str = "BASIC_PROTECTION_LEVEL", iss: str = "mx", aud: str = "es") -> tuple[str, bytes]:
    """A fresh trace.request from ``iss`` to ``aud``, signed with ``iss``'s key from the PKI folder and
    encrypted to ``aud`` (it passes hubs): (message id, envelope JSON)."""
    f = FederationDir(fed.root / "pki").node_files(iss)
    signer = SigningKey.from_pem(f.sig_kid, f.sig_alg, f.sig_key.read_bytes())  # type: ignore[arg-type]
    now = time.time()
    ek = manifest(fed).current_key(aud, "enc", now)
    assert ek is not None and ek.kem and ek.public_key
    kem, pub = ek.kem, ek.public_key
    jti = uuid7(now, os.urandom(10))
    env = build_envelope(signer=signer, iss=iss, aud=aud, jti=jti, mt="trace.request",
                         body=json.dumps(example("trace.request")).encode(), now=now, ttl=600, hc="H1",
                         cls=cls, seal=lambda pt, info: seal(kem, pub, pt, info), enc_kem=kem, enc_kid=ek.kid)
    return jti, encode_envelope(env)


def post_batch(fed, as_node: str, to_node: str, envelopes: list[bytes]) -> list[dict[str, Any]]:
    status, data = peer_call(fed, as_node, to_node, "POST", "/v1/envelopes",
                             b'{"envelopes":[' + b",".join(envelopes) + b"]}")
    assert status == 200, data
    return json.loads(data)["results"]


# --- tests --------------------------------------------------------------------------------------------


def test_replay_and_lost_ack_give_duplicate_with_the_original_ack_and_one_delivery(fed):
    jti, env = crafted(fed)
    (first,) = post_batch(fed, "mx", "latam-hub", [env])
    assert first["status"] == "accepted" and first["ack"], first
    # the ack was "lost": mx sends the same batch again, and later a replay of it
    for _ in range(2):
        (again,) = post_batch(fed, "mx", "latam-hub", [env])
        assert again == {**first, "status": "duplicate"}, again
    fed.wait_for(lambda: jti in inbox_ids(fed, "es"))
    time.sleep(1.0)  # give any second copy time to arrive
    assert inbox_ids(fed, "es").count(jti) == 1


def test_hub_down_queues_then_delivers_all_oldest_first_and_expired_message_fails_at_origin(fed):
    fed.stop("eu-hub")
    try:
        ids = [submit(fed, "mx", "es", "trace.request", example("trace.request")) for _ in range(3)]
        short = submit(fed, "mx", "es", "trace.request", example("trace.request"), ttl_seconds=3)

        def queued_at_latam():
            st, doc = fed.call("latam-hub", "operator", "GET", "/ops/v1/queues")
            assert st == 200, doc
            q = [x for x in doc["queues"] if x["peer"] == "eu-hub"]
            return q and q[0]["depth"] >= 3 and q[0]

        q = fed.wait_for(queued_at_latam)
        assert q["depth"] in (3, 4), q
        # the short-lived one expires in latam-hub's queue; the error goes back to mx
        try:
            failed = fed.wait_for(lambda: (m := message(fed, "mx", short)) and m["state"] == "failed" and m,
                                  timeout=20)
        except TimeoutError:
            print("MX", message(fed, "mx", short))
            print("LATAM", message(fed, "latam-hub", short))
            print("DL", fed.call("latam-hub", "operator", "GET", "/ops/v1/dead-letters"))
            print("Q", fed.call("latam-hub", "operator", "GET", "/ops/v1/queues"))
            print("MXQ", fed.call("mx", "operator", "GET", "/ops/v1/queues"))
            print((fed.root / "latam-hub.log").read_text()[-4000:])
            raise
        assert "expired" in json.dumps(failed["timeline"]), failed
        for jti in ids:
            assert message(fed, "mx", jti)["state"] == "forwarded"
    finally:
        fed.start("eu-hub")
    got = fed.wait_for(lambda: (lambda ib: all(j in ib for j in ids) and ib)(inbox_ids(fed, "es")), timeout=30)
    order = [j for j in got if j in ids]
    assert order == ids  # all arrived, none twice, oldest first
    assert short not in got


def test_envelope_posted_to_a_node_off_its_route_is_rejected_route_violation(fed):
    jti, env = crafted(fed)  # mx → latam-hub → eu-hub → es; mx posts straight to eu-hub
    (res,) = post_batch(fed, "mx", "eu-hub", [env])
    assert res["status"] == "rejected" and res["jti"] == jti, res
    assert res["error"]["code"] == "route_violation", res


def test_classification_above_the_next_hops_ceiling_is_rejected(fed):
    jti, env = crafted(fed, cls="RESTREINT_UE")  # latam-hub's next hop, eu-hub, carries BASIC at most
    (res,) = post_batch(fed, "mx", "latam-hub", [env])
    assert res["status"] == "rejected" and res["jti"] == jti, res
    assert res["error"]["code"] == "classification_exceeded", res
    # refused before storage: audited as rejected with the code, never accepted
    status, doc = fed.call("latam-hub", "auditor", "GET", f"/audit/v1/entries?jti={jti}&limit=100")
    assert status == 200, doc
    events = [json.loads(base64.b64decode(e["entry"])) for e in doc["entries"]]
    assert [(e["event"], e.get("code")) for e in events] == [("envelope.rejected", "classification_exceeded")]


def test_hub_checkpoint_carries_a_peer_cosignature(fed):
    origin = f"traza/{manifest(fed).name}/latam-hub"

    def cosigned():
        status, data = peer_call(fed, "mx", "latam-hub", "GET", "/v1/audit/checkpoint")
        if status != 200:
            return None
        sigs = [ln for ln in data.decode().splitlines() if ln.startswith("— ")]
        others = [ln for ln in sigs if not ln.startswith(f"— {origin} ")]
        return others

    lines = fed.wait_for(cosigned, timeout=20, interval=0.5)
    names = {ln.split(" ")[1] for ln in lines}
    assert names & {f"traza/{manifest(fed).name}/{p}" for p in ("mx", "eu-hub")}, names
