"""An in-memory federation with real keys for tests that need no files: nodes, manifest, signers."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.core.canonical import canonical_bytes
from gateway.core.envelope import Envelope, append_hop, build_envelope
from gateway.core.ids import uuid7
from gateway.core.manifest import Federation, Manifest, decode_manifest
from gateway.core.timeutil import rfc3339_seconds
from gateway.crypto.hpke import EncKey, seal
from gateway.crypto.keys import Ed25519Key, SigningKey

NOW = 1_795_000_000.0  # 2026-11-17, a fixed "now" for pure tests

# id, kind, country, hub, sig alg, kem, max classification
NODES = [
    ("mx", "national", "MX", "latam-hub", "EdDSA", "MLKEM768_X25519", "RESTREINT_UE"),
    ("co", "national", "CO", "latam-hub", "EdDSA", "X25519", "BASIC_PROTECTION_LEVEL"),
    ("latam-hub", "hub", "BR", None, "EdDSA", "MLKEM768_X25519", "RESTREINT_UE"),
    ("eu-hub", "hub", "NL", None, "ES256", "MLKEM768_X25519", "RESTREINT_UE"),
    ("es", "national", "ES", "eu-hub", "ES256", "MLKEM768_X25519", "RESTREINT_UE"),
    ("it", "national", "IT", "eu-hub", "EdDSA", "MLKEM768_X25519", "BASIC_PROTECTION_LEVEL"),
    ("arms-registry", "service", "FR", "eu-hub", "EdDSA", "X25519", "RESTREINT_UE"),
]

ANY = ["national", "hub", "service"]
POLICY: dict[str, dict[str, Any]] = {
    "trace.request": {"senders": ["national"], "recipients": ["national", "service"], "encrypt_through_hubs": True},
    "trace.acknowledgement": {"senders": ANY, "recipients": ANY, "encrypt_through_hubs": True},
    "trace.response": {"senders": ANY, "recipients": ANY, "encrypt_through_hubs": True},
    "firearm.status.query": {"senders": ["national"], "recipients": ["service", "national"], "encrypt_through_hubs": True},
    "firearm.status.answer": {"senders": ANY, "recipients": ANY, "encrypt_through_hubs": True},
    "notice": {"senders": ANY, "recipients": ANY, "encrypt_through_hubs": False},
    "receipt": {"senders": ANY, "recipients": ANY},
    "error": {"senders": ANY, "recipients": ANY},
}
KNOWN_TYPES = frozenset(POLICY) | {"ballistic.submission", "ballistic.hit", "licence.verify.query", "licence.verify.answer"}


@dataclass
class TestFederation:
    manifest: dict[str, Any]
    signers: dict[str, SigningKey]
    enc: dict[str, EncKey]
    audit: dict[str, Ed25519Key]
    authorities: dict[str, Ed25519Key] = field(default_factory=dict)

    @property
    def fed(self) -> Federation:
        return Federation(decode_manifest(canonical_bytes(self.manifest)))

    def model(self) -> Manifest:
        return decode_manifest(canonical_bytes(self.manifest))

    def send(
        self,
        iss: str,
        aud: str,
        mt: str = "notice",
        body: bytes = b'{"title":"t","text":"x"}',
        *,
        now: float = NOW,
        ttl: int = 3600,
        encrypt: bool | None = None,
        cls: str = "BASIC_PROTECTION_LEVEL",
        jti: str | None = None,
        **kw: Any,
    ) -> Envelope:
        """Build an envelope from ``iss`` to ``aud``; encrypt when policy needs it unless told."""
        rule = self.manifest["policy"].get(mt, {})
        if encrypt is None:
            encrypt = bool(rule.get("encrypt_through_hubs"))
        jti = jti or uuid7(now, os.urandom(10))
        extra: dict[str, Any] = {}
        if encrypt:
            k = self.enc[aud]
            extra = {
                "seal": lambda pt, info: seal(k.kem, k.public_b64(), pt, info),
                "enc_kem": k.kem,
                "enc_kid": k.kid,
            }
        return build_envelope(
            signer=self.signers[iss], iss=iss, aud=aud, jti=jti, mt=mt, body=body, now=now, ttl=ttl,
            cls=cls, **extra, **kw,  # type: ignore[arg-type]
        )

    def relay(self, env: Envelope, path: list[str], *, now: float = NOW) -> Envelope:
        """Append hop records as each relaying node in ``path`` (origin first, recipient last) would."""
        from gateway.core.jws import parse_compact

        jti = parse_compact(env.token, typ="traza-envelope+jwt").claims["jti"]
        for i in range(1, len(path) - 1):
            env = append_hop(env, signer=self.signers[path[i]], here=path[i], jti=jti,
                             came_from=path[i - 1], to=path[i + 1], received_at=now)
        return env

    def opener(self, node: str):  # type: ignore[no-untyped-def]
        k = self.enc[node]

        def open_(ct: bytes, info: bytes, kid: str) -> bytes:
            assert kid == k.kid
            return k.open(ct, info)

        return open_


def make_federation(*, version: int = 1, now: float = NOW, nodes: list[tuple[Any, ...]] | None = None) -> TestFederation:
    signers: dict[str, SigningKey] = {}
    enc: dict[str, EncKey] = {}
    audit: dict[str, Ed25519Key] = {}
    out_nodes = []
    for nid, kind, country, hub, alg, kem, maxcls in nodes or NODES:
        sk = SigningKey.generate(f"{nid}/sig/1", alg)
        ek = EncKey.generate(f"{nid}/enc/1", kem)
        ak = Ed25519Key.generate()
        signers[nid], enc[nid], audit[nid] = sk, ek, ak
        node: dict[str, Any] = {
            "id": nid, "kind": kind, "country": country, "name": nid.upper(),
            "endpoint": "https://127.0.0.1:1", "max_classification": maxcls,
            "keys": [
                {"kid": sk.kid, "use": "sig", "alg": alg, "jwk": sk.public_jwk(),
                 "not_before": rfc3339_seconds(now - 86400), "not_after": rfc3339_seconds(now + 90 * 86400)},
                {"kid": ek.kid, "use": "enc", "kem": kem, "public_key": ek.public_b64()},
                {"kid": f"{nid}/audit/1", "use": "audit", "alg": "Ed25519", "public_key": ak.public_b64},
            ],
        }
        if hub:
            node["hub"] = hub
        out_nodes.append(node)
    auths = {name: Ed25519Key.generate() for name in ("eu", "mx", "ameripol")}
    manifest = {
        "federation": "traza-test", "version": version,
        "issued_at": rfc3339_seconds(now - 3600), "expires_at": rfc3339_seconds(now + 90 * 86400),
        "authorities": {"threshold": 2, "keys": [
            {"kid": f"auth/{n}/1", "alg": "Ed25519", "public_key": k.public_b64} for n, k in auths.items()]},
        "tls_ca": [], "revoked": {"cert_serials": [], "kids": []},
        "nodes": out_nodes, "policy": msgspec.to_builtins(POLICY),
    }
    return TestFederation(manifest=manifest, signers=signers, enc=enc, audit=audit, authorities=auths)


@dataclass
class BatchedTraffic:
    """``n`` messages mx → es as latam-hub hands them on in protocol 1.1 (docs/protocol.md): ``at_eu`` the
    envelopes with latam-hub's batched hop record (one batch signature), as eu-hub receives them;
    ``acks`` latam-hub's batched acks to mx for the same messages (one batch signature)."""

    tf: TestFederation
    fed: Federation  # latam-hub, eu-hub and es advertise batch signatures
    sent: list[Envelope]
    jtis: list[str]
    hop_items: list[tuple[Envelope, Any]]  # (envelope, latam-hub's hop claims), as append_hops_batched takes them
    at_eu: list[Envelope]
    ack_claims: list[Any]
    acks: list[str]


def batch_federation(*batch_nodes: str) -> tuple[TestFederation, Federation]:
    """The kit's federation with ``batch_nodes`` advertising batch signatures (protocol 1.1)."""
    tf = make_federation()
    for node in tf.manifest["nodes"]:
        if node["id"] in batch_nodes:
            node["batch"] = True
    return tf, Federation(decode_manifest(canonical_bytes(tf.manifest)))


def batched_traffic(n: int) -> BatchedTraffic:
    from gateway.core.envelope import ack_claims_for, append_hops_batched, hop_claims_for, make_acks_batched
    from gateway.core.jws import parse_compact

    tf, fed = batch_federation("latam-hub", "eu-hub", "es")
    sent = [tf.send("mx", "es") for _ in range(n)]
    jtis = [parse_compact(e.token, typ="traza-envelope+jwt").claims["jti"] for e in sent]
    hop_items = [(e, hop_claims_for(e, here="latam-hub", jti=j, came_from="mx", to="eu-hub", received_at=NOW))
                 for e, j in zip(sent, jtis, strict=True)]
    at_eu = append_hops_batched(hop_items, signer=tf.signers["latam-hub"], now=NOW)
    ack_claims = [ack_claims_for(here="latam-hub", peer="mx", jti=j, token=e.token, idx=i, now=NOW)
                  for i, (j, e) in enumerate(zip(jtis, sent, strict=True))]
    acks = make_acks_batched(ack_claims, signer=tf.signers["latam-hub"], now=NOW)
    return BatchedTraffic(tf, fed, sent, jtis, hop_items, at_eu, ack_claims, acks)
