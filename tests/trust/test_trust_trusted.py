"""TrustedManifest and TrustAnchor: the happy paths, persistence across restarts, serving."""

from __future__ import annotations

import copy
import re

import pytest
from kit.federation import NOW, make_federation

from gateway.core.b64 import b64_decode
from gateway.core.canonical import canonical_bytes
from gateway.crypto.keys import Ed25519Key, ed25519_verify
from gateway.trust.trusted import (
    ManifestRejected,
    NoTrustedManifest,
    TrustAnchor,
    TrustedManifest,
    encode_signatures,
    manifest_signing_bytes,
    parse_signatures,
    sign_manifest,
    split_served,
)


@pytest.fixture(scope="module")
def tf():
    return make_federation()


def anchor(tf) -> TrustAnchor:
    return TrustAnchor.from_dict({"federation": tf.manifest["federation"], **tf.manifest["authorities"]})


def sign(tf, m, *names):
    raw = canonical_bytes(m)
    return raw, encode_signatures([sign_manifest(raw, f"auth/{n}/1", tf.authorities[n]) for n in names])


def test_first_manifest_accepted_through_the_anchor(tf):
    tm = TrustedManifest(anchor(tf))
    assert not tm.has_manifest and tm.version == 0
    with pytest.raises(NoTrustedManifest):
        _ = tm.federation
    raw, sig = sign(tf, tf.manifest, "eu", "ameripol")
    fed = tm.update(raw, sig, NOW)
    assert tm.has_manifest and tm.federation is fed and tm.version == 1
    assert tm.raw == raw and tm.sig_raw == sig
    assert fed.route("mx", "es") == ["mx", "latam-hub", "eu-hub", "es"]
    assert tm.last_report["trusted"].valid == 2 and "new" not in tm.last_report


def test_newer_version_accepted_and_state_advances(tf):
    tm = TrustedManifest(anchor(tf))
    tm.update(*sign(tf, tf.manifest, "eu", "mx"), NOW)
    m2 = copy.deepcopy(tf.manifest)
    m2["version"] = 5  # gaps are allowed: only "greater" matters
    assert tm.update(*sign(tf, m2, "mx", "ameripol"), NOW).version == 5


def test_sign_manifest_signs_the_canonical_bytes_of_the_parsed_object(tf):
    key = tf.authorities["eu"]
    pretty = b'{ "b": 1,\n "a": [1, 2] }'
    s1 = sign_manifest(pretty, "auth/eu/1", key)
    s2 = sign_manifest({"a": [1, 2], "b": 1}, "auth/eu/1", key)
    assert s1 == s2 and s1["kid"] == "auth/eu/1"
    assert manifest_signing_bytes(pretty) == b'{"a":[1,2],"b":1}'
    assert ed25519_verify(key.public_raw, b'{"a":[1,2],"b":1}', b64_decode(s1["sig"]))
    with pytest.raises(ValueError, match="auth/<name>/<n>"):
        sign_manifest({}, "eu", key)


def test_anchor_json_round_trip_and_checks(tf):
    a = anchor(tf)
    assert TrustAnchor.from_json(a.to_json()) == a
    doc = a.to_dict()
    for bad, msg in [
        ({**doc, "threshold": 4}, "threshold 4 is not within 1..3"),
        ({**doc, "threshold": 0}, "threshold 0"),
        ({**doc, "extra": 1}, "expected exactly"),
        ({**doc, "keys": [{**doc["keys"][0], "alg": "EdDSA"}]}, "alg must be Ed25519"),
        ({**doc, "keys": [{**doc["keys"][0], "public_key": "AAAA"}]}, "32 bytes"),
        ({**doc, "keys": [doc["keys"][0], doc["keys"][0]]}, "duplicate kid"),
        ({**doc, "keys": [{**doc["keys"][0], "kid": "eu"}]}, "auth/<name>/<n>"),
    ]:
        with pytest.raises(ManifestRejected, match=msg):
            TrustAnchor.from_dict(bad)
    with pytest.raises(ManifestRejected, match="trust anchor: not JSON at byte"):
        TrustAnchor.from_json(b"{nope")


def test_anchor_of_other_federation_refuses_the_manifest(tf):
    a = anchor(tf).to_dict()
    a["federation"] = "elsewhere"
    with pytest.raises(ManifestRejected, match="is not the trusted federation 'elsewhere'"):
        TrustedManifest(TrustAnchor.from_dict(a)).update(*sign(tf, tf.manifest, "eu", "mx"), NOW)


def test_restart_after_rotation_starts_from_the_persisted_anchor(tf):
    """After a rotation the installed anchor alone no longer verifies the current manifest; the node
    persists ``tm.anchor`` beside the manifest and starts from it."""
    tm = TrustedManifest(anchor(tf))
    tm.update(*sign(tf, tf.manifest, "eu", "mx"), NOW)
    new = {n: Ed25519Key.generate() for n in ("x", "y")}
    m2 = copy.deepcopy(tf.manifest)
    m2["version"] = 2
    m2["authorities"] = {"threshold": 2, "keys": [
        {"kid": f"auth/{n}/1", "alg": "Ed25519", "public_key": k.public_b64} for n, k in new.items()]}
    raw = canonical_bytes(m2)
    sigs = [sign_manifest(raw, f"auth/{n}/1", tf.authorities[n]) for n in ("eu", "mx")]
    sigs += [sign_manifest(raw, f"auth/{n}/1", k) for n, k in new.items()]
    tm.update(raw, encode_signatures(sigs), NOW)
    persisted = tm.anchor.to_json()
    # A restarted node: from the installed anchor the stored manifest still verifies (old+new signed it)...
    assert TrustedManifest(anchor(tf)).update(tm.raw, tm.sig_raw, NOW).version == 2
    # ...but version 3, signed by the new set only, needs the persisted anchor.
    m3 = {**m2, "version": 3}
    raw3 = canonical_bytes(m3)
    sig3 = encode_signatures([sign_manifest(raw3, f"auth/{n}/1", k) for n, k in new.items()])
    with pytest.raises(ManifestRejected):
        TrustedManifest(anchor(tf)).update(raw3, sig3, NOW)
    again = TrustedManifest(TrustAnchor.from_json(persisted))
    again.update(tm.raw, tm.sig_raw, NOW)
    assert again.update(raw3, sig3, NOW).version == 3


def test_served_document_round_trips(tf):
    tm = TrustedManifest(anchor(tf))
    raw, sig = sign(tf, tf.manifest, "eu", "mx")
    tm.update(raw, sig, NOW)
    body = tm.served()
    m_raw, s_raw = split_served(body)
    assert m_raw == raw
    assert parse_signatures(s_raw) == parse_signatures(sig)
    other = TrustedManifest(anchor(tf))
    assert other.update(m_raw, s_raw, NOW).version == 1
    with pytest.raises(ManifestRejected, match=re.escape('expected exactly {"manifest", "signatures"}')):
        split_served(b'{"manifest": {}}')


def test_sig_file_with_undecodable_signature_is_counted_invalid(tf):
    raw, _ = sign(tf, tf.manifest)
    good = [sign_manifest(raw, f"auth/{n}/1", tf.authorities[n]) for n in ("eu", "mx")]
    sig = encode_signatures([{"kid": "auth/ameripol/1", "sig": "***"}, *good])
    tm = TrustedManifest(anchor(tf))
    assert tm.update(raw, sig, NOW).version == 1
    assert "auth/ameripol/1: sig is not standard base64" in tm.last_report["trusted"].notes
