"""Write Traza-made tokens and their public JWKs to a JSON file for an independent JOSE verifier.

Usage: .venv/bin/python bench/interop/make_tokens.py OUT.json

For each signing algorithm of the federation (EdDSA, ES256) this builds a real origin envelope with the
project's own code (gateway.core.envelope.build_envelope -> gateway.core.jws.encode_compact, signed by a
gateway.crypto.keys.SigningKey; the payload HPKE-sealed with gateway.crypto.hpke) plus one hop record,
and a copy of the origin token with one flipped signature bit that a correct verifier must refuse.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from gateway.core import batchsig
from gateway.core.b64 import b64url_decode, b64url_encode
from gateway.core.envelope import (
    TYP_ENVELOPE,
    TYP_HOP,
    append_hop,
    append_hops_batched,
    build_envelope,
    hop_claims_for,
)
from gateway.core.ids import uuid7
from gateway.crypto import hpke
from gateway.crypto.keys import SigningKey


def tamper(token: str) -> str:
    h, c, s = token.split(".")
    sig = bytearray(b64url_decode(s))
    sig[5] ^= 0x01
    return f"{h}.{c}.{b64url_encode(bytes(sig))}"


def main(out: Path) -> None:
    now = time.time()
    recipient = hpke.EncKey.generate("es/enc/1")
    body = json.dumps({"serial_number": "ABC123", "make_name": "Example"}).encode()
    cases = []
    for alg in ("EdDSA", "ES256"):
        origin = SigningKey.generate("mx/sig/1", alg)  # type: ignore[arg-type]
        hub = SigningKey.generate("latam-hub/sig/1", alg)  # type: ignore[arg-type]
        jti = uuid7(now, os.urandom(10))
        env = build_envelope(
            signer=origin,
            iss="mx",
            aud="es",
            jti=jti,
            mt="trace.request",
            body=body,
            now=now,
            ttl=3600,
            seal=lambda pt, info: hpke.seal(recipient.kem, recipient.public_b64(), pt, info),
            enc_kem=recipient.kem,
            enc_kid=recipient.kid,
        )
        env = append_hop(
            env, signer=hub, here="latam-hub", jti=jti, came_from="mx", to="eu-hub", received_at=now
        )
        cases.append(
            {
                "name": f"origin-{alg}",
                "alg": alg,
                "typ": TYP_ENVELOPE,
                "jwk": origin.public_jwk(),
                "token": env.token,
                "valid": True,
            }
        )
        cases.append(
            {
                "name": f"hop-{alg}",
                "alg": alg,
                "typ": TYP_HOP,
                "jwk": hub.public_jwk(),
                "token": env.hops[0],
                "valid": True,
            }
        )
        # protocol 1.1 (docs/protocol.md): three hop records under one batch signature; the batch JWS is
        # what a JOSE library verifies (the inclusion path is plain SHA-256, checked by Traza's verifier)
        batch_signer = SigningKey.generate("eu-hub/sig/1", alg)  # type: ignore[arg-type]
        batched = append_hops_batched(
            [(env, hop_claims_for(env, here="eu-hub", jti=jti, came_from="latam-hub", to="es", received_at=now))
             for _ in range(3)], signer=batch_signer, now=now)
        batch_jws = batchsig.parse_element(batched[1].hops[-1], "hop").batch.token
        assert batch_jws == batchsig.parse_element(batched[0].hops[-1], "hop").batch.token  # one per batch
        cases.append({"name": f"batch-{alg}", "alg": alg, "typ": batchsig.TYP_BATCH, "jwk": batch_signer.public_jwk(),
                      "token": batch_jws, "valid": True})
        cases.append({"name": f"batch-{alg}-tampered", "alg": alg, "typ": batchsig.TYP_BATCH,
                      "jwk": batch_signer.public_jwk(), "token": tamper(batch_jws), "valid": False})
        cases.append(
            {
                "name": f"origin-{alg}-tampered",
                "alg": alg,
                "typ": TYP_ENVELOPE,
                "jwk": origin.public_jwk(),
                "token": tamper(env.token),
                "valid": False,
            }
        )
        cases.append(
            {
                "name": f"origin-{alg}-wrong-key",
                "alg": alg,
                "typ": TYP_ENVELOPE,
                "jwk": hub.public_jwk(),
                "token": env.token,
                "valid": False,
            }
        )
    out.write_text(json.dumps({"generated_at": int(now), "cases": cases}, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_tokens.py OUT.json")
    main(Path(sys.argv[1]))
