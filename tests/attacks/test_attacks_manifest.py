"""Attacks on the federation manifest (SPEC §2), each test named after what it stops.

Real Ed25519 authority keys, real canonical bytes, the project's own TrustedManifest."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kit.federation import NOW, make_federation

from gateway.core.canonical import canonical_bytes
from gateway.core.timeutil import rfc3339_seconds
from gateway.crypto.keys import Ed25519Key
from gateway.trust.trusted import (
    AuthorityKeyInfo,
    ManifestRejected,
    TrustAnchor,
    TrustedManifest,
    encode_signatures,
    sign_manifest,
)

DAY = 86400


@pytest.fixture(scope="module")
def tf():
    return make_federation()


def anchor_of(tf) -> TrustAnchor:
    m = tf.manifest
    return TrustAnchor.from_dict({"federation": m["federation"], **m["authorities"]})


def signed(m: dict[str, Any], *signers: tuple[str, Ed25519Key]) -> tuple[bytes, bytes]:
    raw = canonical_bytes(m)
    return raw, encode_signatures([sign_manifest(raw, kid, key) for kid, key in signers])


def auth(tf, name: str) -> tuple[str, Ed25519Key]:
    return f"auth/{name}/1", tf.authorities[name]


def version(tf, v: int, **changes: Any) -> dict[str, Any]:
    m = copy.deepcopy(tf.manifest)
    m["version"] = v
    m.update(changes)
    return m


def trusted_at(tf, v: int) -> TrustedManifest:
    tm = TrustedManifest(anchor_of(tf))
    tm.update(*signed(version(tf, v), auth(tf, "eu"), auth(tf, "mx")), NOW)
    assert tm.version == v
    return tm


def refused(tm: TrustedManifest, raw: bytes, sig: bytes, now: float = NOW) -> str:
    before = (tm.version, tm.raw if tm.has_manifest else b"")
    with pytest.raises(ManifestRejected) as e:
        tm.update(raw, sig, now)
    assert (tm.version, tm.raw if tm.has_manifest else b"") == before, "a refused manifest changed the state"
    return e.value.reason


def test_manifest_rollback_refused(tf):
    tm = trusted_at(tf, 7)
    reason = refused(tm, *signed(version(tf, 6), auth(tf, "eu"), auth(tf, "mx")))
    assert reason == "version 6 is not greater than trusted version 7 (rollback)"


def test_restart_cannot_roll_back_below_the_version_trusted_before_it(tf):
    """A node restarted after its saved manifest (v7) expired must not fall back to an older one (v6) that
    expires later: revocations made in v7 would be undone (a freeze or rollback attack through the
    configured file). The version trusted before the restart is the floor of the new trust state."""
    tm = TrustedManifest(anchor_of(tf), floor=7)
    reason = refused(tm, *signed(version(tf, 6), auth(tf, "eu"), auth(tf, "mx")))
    assert reason == ("version 6 is older than version 7, which this node trusted before it restarted "
                      "(rollback); install a manifest of version 7 or newer")
    assert not tm.has_manifest
    tm.update(*signed(version(tf, 7), auth(tf, "eu"), auth(tf, "mx")), NOW)  # the same version is fine
    assert tm.version == 7 and tm.floor == 7
    tm.update(*signed(version(tf, 9), auth(tf, "eu"), auth(tf, "mx")), NOW)
    assert tm.floor == 9  # the floor follows what is trusted


def test_manifest_same_version_other_content_refused(tf):
    tm = trusted_at(tf, 7)
    other = version(tf, 7, revoked={"cert_serials": [], "kids": ["mx/sig/1"]})
    reason = refused(tm, *signed(other, auth(tf, "eu"), auth(tf, "mx")))
    assert "version 7 is not greater than trusted version 7" in reason and "different content" in reason


def test_manifest_same_version_same_bytes_is_a_no_op(tf):
    tm = trusted_at(tf, 7)
    fed = tm.federation
    raw, sig = signed(version(tf, 7), auth(tf, "mx"), auth(tf, "ameripol"))
    assert tm.update(raw, sig, NOW + 60) is fed


def test_manifest_signed_by_fewer_than_threshold_refused(tf):
    tm = TrustedManifest(anchor_of(tf))
    reason = refused(tm, *signed(version(tf, 1), auth(tf, "eu")))
    assert reason.startswith("manifest.sig: 1 valid signature(s) from the trusted authorities, threshold is 2")


def test_unsigned_manifest_refused(tf):
    tm = TrustedManifest(anchor_of(tf))
    reason = refused(tm, canonical_bytes(version(tf, 1)), encode_signatures([]))
    assert "0 valid signature(s)" in reason and "no signatures" in reason


def test_duplicate_signature_counts_once(tf):
    tm = TrustedManifest(anchor_of(tf))
    raw, _ = signed(version(tf, 1))
    s = sign_manifest(raw, *auth(tf, "eu"))
    reason = refused(tm, raw, encode_signatures([s, s, dict(s)]))
    assert reason.startswith("manifest.sig: 1 valid signature(s)")


def test_same_public_key_under_two_authority_kids_counts_once(tf):
    """An anchor listing one key twice is refused, and a manifest that tries it is refused."""
    eu = tf.authorities["eu"]
    with pytest.raises(ManifestRejected, match="same public key"):
        TrustAnchor("traza-test", 2, [
            AuthorityKeyInfo("auth/a/1", eu.public_b64),
            AuthorityKeyInfo("auth/b/1", eu.public_b64),
        ])
    tm = TrustedManifest(anchor_of(tf))
    m = version(tf, 1, authorities={"threshold": 2, "keys": [
        {"kid": "auth/eu/1", "alg": "Ed25519", "public_key": eu.public_b64},
        {"kid": "auth/eu2/1", "alg": "Ed25519", "public_key": eu.public_b64}]})
    raw = canonical_bytes(m)
    sig = encode_signatures([sign_manifest(raw, "auth/eu/1", eu), sign_manifest(raw, "auth/eu2/1", eu),
                             sign_manifest(raw, *auth(tf, "mx"))])
    assert "same public key" in refused(tm, raw, sig)


def test_unknown_authority_signature_ignored(tf):
    tm = TrustedManifest(anchor_of(tf))
    rogue = Ed25519Key.generate()
    raw, _ = signed(version(tf, 1))
    sig = encode_signatures([sign_manifest(raw, *auth(tf, "eu")), sign_manifest(raw, "auth/rogue/1", rogue)])
    reason = refused(tm, raw, sig)
    assert reason.startswith("manifest.sig: 1 valid signature(s)") and "auth/rogue/1: not an authority" in reason
    # ... and ignored, not fatal: with a second real signature the manifest is accepted.
    sig = encode_signatures([sign_manifest(raw, "auth/rogue/1", rogue), sign_manifest(raw, *auth(tf, "eu")),
                             sign_manifest(raw, *auth(tf, "ameripol"))])
    assert tm.update(raw, sig, NOW).version == 1


def test_signature_under_wrong_kid_does_not_count(tf):
    """mx's key signing under eu's kid: the kid names which key must verify."""
    tm = TrustedManifest(anchor_of(tf))
    raw, _ = signed(version(tf, 1))
    s = sign_manifest(raw, "auth/eu/1", tf.authorities["mx"])
    reason = refused(tm, raw, encode_signatures([s, sign_manifest(raw, *auth(tf, "ameripol"))]))
    assert reason.startswith("manifest.sig: 1 valid") and "auth/eu/1: does not verify" in reason


def test_signature_over_other_version_refused(tf):
    tm = TrustedManifest(anchor_of(tf))
    _, old_sig = signed(version(tf, 1), auth(tf, "eu"), auth(tf, "mx"))
    raw2, _ = signed(version(tf, 2))
    assert refused(tm, raw2, old_sig).startswith("manifest.sig: 0 valid signature(s)")


def _rotated(tf, new_keys: dict[str, Ed25519Key], threshold: int = 2) -> dict[str, Any]:
    return version(tf, 2, authorities={"threshold": threshold, "keys": [
        {"kid": f"auth/{n}/2", "alg": "Ed25519", "public_key": k.public_b64} for n, k in new_keys.items()]})


def test_authority_change_signed_only_by_old_set_refused(tf):
    tm = trusted_at(tf, 1)
    new = {n: Ed25519Key.generate() for n in ("eu", "co", "br")}
    reason = refused(tm, *signed(_rotated(tf, new), auth(tf, "eu"), auth(tf, "mx"), auth(tf, "ameripol")))
    assert reason.startswith("manifest.sig: the manifest changes the authorities and has 0 valid signature(s) "
                             "from the NEW authorities, threshold is 2")


def test_authority_change_signed_only_by_new_set_refused(tf):
    """A stolen-anchor attempt: whoever makes up new authorities cannot sign them in."""
    tm = trusted_at(tf, 1)
    new = {n: Ed25519Key.generate() for n in ("eu", "co", "br")}
    reason = refused(tm, *signed(_rotated(tf, new), *((f"auth/{n}/2", k) for n, k in new.items())))
    assert reason.startswith("manifest.sig: 0 valid signature(s) from the trusted authorities, threshold is 2")


def test_authority_threshold_change_without_new_threshold_refused(tf):
    """Changing only the threshold is a change of the authorities too (2 -> 3: three signatures needed)."""
    tm = trusted_at(tf, 1)
    m = version(tf, 2)
    m["authorities"] = {**m["authorities"], "threshold": 3}
    reason = refused(tm, *signed(m, auth(tf, "eu"), auth(tf, "mx")))
    assert "from the NEW authorities, threshold is 3" in reason


def test_authority_change_signed_by_old_and_new_accepted(tf):
    tm = trusted_at(tf, 1)
    new = {n: Ed25519Key.generate() for n in ("eu", "co", "br")}
    raw, sig = signed(_rotated(tf, new), auth(tf, "eu"), auth(tf, "mx"), ("auth/co/2", new["co"]),
                      ("auth/br/2", new["br"]))
    fed = tm.update(raw, sig, NOW)
    assert fed.version == 2 and tm.anchor.threshold == 2
    assert {k.kid for k in tm.anchor.keys} == {"auth/eu/2", "auth/co/2", "auth/br/2"}
    # From now on only the new set counts: the old authorities alone cannot publish version 3.
    m3 = _rotated(tf, new)
    m3["version"] = 3
    reason = refused(tm, *signed(m3, auth(tf, "eu"), auth(tf, "mx"), auth(tf, "ameripol")))
    assert reason.startswith("manifest.sig: 0 valid signature(s) from the trusted authorities")
    assert tm.update(*signed(m3, ("auth/co/2", new["co"]), ("auth/eu/2", new["eu"])), NOW).version == 3


def test_expired_manifest_refused(tf):
    tm = TrustedManifest(anchor_of(tf))
    m = version(tf, 1, issued_at=rfc3339_seconds(NOW - 100 * DAY), expires_at=rfc3339_seconds(NOW - 10 * DAY))
    reason = refused(tm, *signed(m, auth(tf, "eu"), auth(tf, "mx")))
    assert reason.startswith("manifest version 1 expired at ")


def test_expiry_is_checked_against_the_reference_time(tf):
    m = version(tf, 1)  # expires NOW + 90 days
    raw, sig = signed(m, auth(tf, "eu"), auth(tf, "mx"))
    assert "expired at" in refused(TrustedManifest(anchor_of(tf)), raw, sig, now=NOW + 91 * DAY)
    tm = TrustedManifest(anchor_of(tf))
    tm.update(raw, sig, NOW + 89 * DAY)
    assert not tm.is_expired(NOW + 89 * DAY) and tm.is_expired(NOW + 91 * DAY)


def test_manifest_issued_in_the_future_refused(tf):
    m = version(tf, 1, issued_at=rfc3339_seconds(NOW + 3600))
    reason = refused(TrustedManifest(anchor_of(tf)), *signed(m, auth(tf, "eu"), auth(tf, "mx")))
    assert "is in the future" in reason
    m = version(tf, 1, issued_at=rfc3339_seconds(NOW + 60))  # within the 120 s skew
    assert TrustedManifest(anchor_of(tf)).update(*signed(m, auth(tf, "eu"), auth(tf, "mx")), NOW).version == 1


def test_federation_name_change_refused(tf):
    tm = TrustedManifest(anchor_of(tf))
    reason = refused(tm, *signed(version(tf, 1, federation="other"), auth(tf, "eu"), auth(tf, "mx")))
    assert reason == "federation 'other' is not the trusted federation 'traza-test'"
    tm = trusted_at(tf, 1)
    reason = refused(tm, *signed(version(tf, 2, federation="other"), auth(tf, "eu"), auth(tf, "mx")))
    assert "is not the trusted federation 'traza-test'" in reason


def test_revoked_kid_and_serial_visible_via_federation(tf):
    tm = trusted_at(tf, 1)
    m = version(tf, 2, revoked={"cert_serials": ["0a1b2c"], "kids": ["es/sig/1"]})
    fed = tm.update(*signed(m, auth(tf, "eu"), auth(tf, "mx")), NOW)
    assert "es/sig/1" in fed.revoked_kids
    assert fed.is_serial_revoked(0x0A1B2C) and not fed.is_serial_revoked(0x0A1B2D)
    assert fed.current_key("es", "sig", NOW) is None  # its only signing key is revoked
    assert fed.current_key("mx", "sig", NOW) is not None


def test_non_canonical_manifest_bytes_refused(tf):
    """Whitespace or key order outside the canonical form would let bytes change under a valid signature."""
    import json

    m = version(tf, 1)
    raw, sig = signed(m, auth(tf, "eu"), auth(tf, "mx"))
    pretty = json.dumps(m, indent=1, sort_keys=True).encode()
    assert "not in canonical form" in refused(TrustedManifest(anchor_of(tf)), pretty, sig)
    assert "not in canonical form" in refused(TrustedManifest(anchor_of(tf)), raw + b"\n", sig)


def test_duplicate_json_member_refused(tf):
    raw, sig = signed(version(tf, 1), auth(tf, "eu"), auth(tf, "mx"))
    dup = b'{"version":99,' + raw[1:]
    reason = refused(TrustedManifest(anchor_of(tf)), dup, sig)
    assert 'repeats the member name "version"' in reason  # strict JSON (SPEC §3.4), before the canonical check


def test_float_in_manifest_refused(tf):
    raw, sig = signed(version(tf, 1), auth(tf, "eu"), auth(tf, "mx"))
    bad = raw.replace(b'"version":1', b'"version":1.0')
    assert "floats are not allowed" in refused(TrustedManifest(anchor_of(tf)), bad, sig)


def test_manifest_not_json_names_the_byte(tf):
    raw, sig = signed(version(tf, 1), auth(tf, "eu"), auth(tf, "mx"))
    bad = raw[:40] + b"\x00" + raw[41:]
    assert refused(TrustedManifest(anchor_of(tf)), bad, sig).startswith("manifest.json: not JSON at byte 40")
    assert refused(TrustedManifest(anchor_of(tf)), raw[:-1], sig).startswith(
        f"manifest.json: not JSON at byte {len(raw) - 1}")


def test_malformed_signature_file_refused(tf):
    raw, _ = signed(version(tf, 1))
    for bad, what in [(b"[]", "expected exactly"), (b'{"signatures": {}}', "must be a list"),
                      (b'{"signatures": [{"kid": "auth/eu/1"}]}', "signatures[0]"), (b"{", "not JSON")]:
        assert what in refused(TrustedManifest(anchor_of(tf)), raw, bad)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_byte_change_of_a_trusted_manifest_refused(tf, data):
    raw, sig = signed(version(tf, 1), auth(tf, "eu"), auth(tf, "mx"))
    i = data.draw(st.integers(0, len(raw) - 1))
    b = data.draw(st.integers(0, 255).filter(lambda v: v != raw[i]))
    bad = raw[:i] + bytes([b]) + raw[i + 1:]
    reason = refused(TrustedManifest(anchor_of(tf)), bad, sig)
    assert reason.startswith(("manifest.json: not JSON", "manifest.json: not in canonical form",
                              "manifest.sig: 0 valid", "manifest.sig: 1 valid", "manifest.json: $"))
