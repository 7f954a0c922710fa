"""Attacks around node key rotation (issue #12): a rotated-out key used after its ``not_after``, a
revoked key id, and the overlap in which the old key must still verify. Real federation folder
(``traza pki``), real keys, the project's own envelope verifier on the published manifest."""

from __future__ import annotations

import pytest
from kit.federation import KNOWN_TYPES, NOW

from gateway.core import events as ev
from gateway.core.envelope import Envelope, build_envelope, encode_envelope, verify_envelope
from gateway.core.errors import Code, TrazaError
from gateway.core.manifest import Federation, decode_manifest
from gateway.crypto.keys import SigningKey, verifier_for
from gateway.trust.pki import FederationDir

DAY = 86400.0
ROTATED = NOW + DAY  # when es/sig/1 was rotated (overlap 30 days: es/sig/1 ends at ROTATED + 30 days)


def publish(fd: FederationDir, now: float) -> Federation:
    fd.sign("eu", now=now)
    res = fd.sign("mx", now=now)
    assert res.published, res.status
    return Federation(decode_manifest((fd.published_dir / "manifest.json").read_bytes()))


@pytest.fixture(scope="module")
def rotated(tmp_path_factory) -> tuple[FederationDir, SigningKey, SigningKey, Federation]:
    fd = FederationDir.init(tmp_path_factory.mktemp("fed"), federation="traza-test", authorities=["eu", "mx"],
                            threshold=2, now=NOW)
    fd.add_node("eu-hub", kind="hub", country="BE", endpoint="https://127.0.0.1:7202", now=NOW)
    fd.add_node("es", kind="national", country="ES", hub="eu-hub", endpoint="https://127.0.0.1:7102", now=NOW,
                sig_alg="ES256")
    publish(fd, NOW)
    old_file = fd.node_files("es").sig_key
    old = SigningKey.from_pem("es/sig/1", "ES256", old_file.read_bytes())
    res = fd.rotate_key("es", "sig", now=ROTATED, overlap_days=30)
    assert res.kid == "es/sig/2" and res.retiring == ["es/sig/1"]
    new = SigningKey.from_pem("es/sig/2", "ES256", fd.node_files("es").sig_key.read_bytes())
    return fd, old, new, publish(fd, ROTATED)


def token(signer: SigningKey, now: float) -> Envelope:
    return build_envelope(signer=signer, iss="es", aud="eu-hub", jti=f"j-{signer.kid}-{int(now)}", mt="notice",
                          body=b'{"text": "x"}', now=now, ttl=3600)


def check(fed: Federation, env: Envelope, now: float) -> None:
    verify_envelope(encode_envelope(env), here="eu-hub", peer="es", fed=fed, now=now, key_verifier=verifier_for,
                    known_types=KNOWN_TYPES)


def test_token_signed_with_the_old_key_during_the_overlap_is_accepted(rotated):
    _, old, new, fed = rotated
    at = ROTATED + 29 * DAY
    check(fed, token(old, at), at)  # messages in flight, or a node that has not yet loaded es/sig/2
    check(fed, token(new, at), at)
    assert fed.current_key("es", "sig", at).kid == "es/sig/2"


def test_a_new_key_is_not_used_before_the_federation_can_know_it(rotated):
    """A node that applied the manifest with es/sig/2 did not wait for the others: the origin signed with
    it at once, a hub further on (still on the manifest before) refused the unknown kid as bad_signature,
    and the message was dead-lettered. Keys are used once they have been known here for ``settle``
    seconds (long enough for every node to have polled the new manifest); until then the newest key known
    that long, else the oldest valid one, which every node of the overlap still accepts."""
    _, _old, _new, fed = rotated
    at = ROTATED + 60
    seen_now = {"es/sig/1": NOW, "es/sig/2": at}  # es/sig/2 just arrived with the manifest
    assert fed.usable_key("es", "sig", at, seen_now, settle=300).kid == "es/sig/1"
    assert fed.usable_key("es", "sig", at + 299, seen_now, settle=300).kid == "es/sig/1"
    assert fed.usable_key("es", "sig", at + 300, seen_now, settle=300).kid == "es/sig/2"
    assert fed.usable_key("es", "sig", at, seen_now, settle=0).kid == "es/sig/2"
    # a key never seen counts as seen now; after a restart (both seen now) the oldest valid one is used
    assert fed.usable_key("es", "sig", at, {}, settle=300).kid == "es/sig/1"
    # once es/sig/1 is past its not_after, es/sig/2 is the only valid key: used, settled or not
    late = ROTATED + 31 * DAY
    assert fed.usable_key("es", "sig", late, {"es/sig/2": late}, settle=300).kid == "es/sig/2"
    assert fed.usable_key("nobody", "sig", at, {}, settle=300) is None


def test_token_signed_with_the_old_key_after_its_not_after_is_refused(rotated):
    _, old, new, fed = rotated
    at = ROTATED + 30 * DAY + 1
    with pytest.raises(TrazaError) as e:
        check(fed, token(old, at), at)
    assert e.value.code == Code.BAD_SIGNATURE and "es/sig/1" in e.value.detail and "expired" in e.value.detail
    check(fed, token(new, at), at)


def test_token_signed_with_a_revoked_key_is_refused_at_once(rotated, tmp_path):
    fd, old, new, _ = rotated
    at = ROTATED + DAY  # well inside the overlap
    assert fd.revoke(now=at, kid="es/sig/1") is not None
    fed = publish(fd, at)
    with pytest.raises(TrazaError) as e:
        check(fed, token(old, at), at)
    assert e.value.code == Code.BAD_SIGNATURE and "es/sig/1" in e.value.detail and "revoked" in e.value.detail
    check(fed, token(new, at), at)


async def _witnessed(tmp_path, keys, now):
    """es signs a checkpoint with ``keys`` at ``now``; mx, as its witness, answers (status, body)."""
    import copy

    from kit.federation import make_federation

    from gateway.audit.facade import NodeAudit
    from gateway.core.canonical import canonical_bytes
    from gateway.core.timeutil import rfc3339_seconds
    from gateway.crypto.keys import Ed25519Key
    from gateway.store.db import Database

    tf = make_federation()
    m = copy.deepcopy(tf.manifest)
    es = next(n for n in m["nodes"] if n["id"] == "es")
    new = Ed25519Key.generate()
    for k in es["keys"]:
        if k["kid"] == "es/audit/1":
            k["not_after"] = rfc3339_seconds(NOW + 30 * DAY)
    es["keys"].append({"kid": "es/audit/2", "use": "audit", "alg": "Ed25519", "public_key": new.public_b64,
                       "not_before": rfc3339_seconds(NOW)})
    fed = Federation(decode_manifest(canonical_bytes(m)))
    signing = [{"old": tf.audit["es"], "new": new}[k] for k in keys]
    dbs = {n: Database(tmp_path / n / "node.db") for n in ("es", "mx")}
    try:
        a_es = NodeAudit(dbs["es"], node="es", federation=fed.name, key=signing)
        a_mx = NodeAudit(dbs["mx"], node="mx", federation=fed.name, key=tf.audit["mx"])
        await dbs["es"].write(lambda c: a_es.stage(c, [ev.NodeStarted(manifest_version=1, endpoint="https://127.0.0.1:1")], now))
        assert await a_es.publish(now) is not None
        _, body = await a_es.witness_request("mx")
        status, _, answer = await a_mx.witness_add("es", body, fed, now)
        return status, answer.decode()
    finally:
        for d in dbs.values():
            d.close()


async def test_checkpoint_signed_only_with_an_audit_key_past_its_not_after_is_refused_by_a_witness(tmp_path):
    status, answer = await _witnessed(tmp_path, ["old"], NOW + 31 * DAY)
    assert status == 403, answer
    status, answer = await _witnessed(tmp_path / "later", ["new", "old"], NOW + 31 * DAY)
    assert status == 200, answer


async def test_checkpoint_signed_with_both_audit_keys_during_the_overlap_is_cosigned(tmp_path):
    for i, keys in enumerate((["new", "old"], ["old"], ["new"])):
        status, answer = await _witnessed(tmp_path / str(i), keys, NOW + DAY)
        assert status == 200, (keys, answer)
