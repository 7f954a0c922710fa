"""Key rotation on a running federation (issue #12), in-process with real nodes (hub, mx, es) over real
mTLS, from the files `traza pki` makes:

- es's `sig` and `audit` keys are rotated (`FederationDir.rotate_key`) and the new manifest is published
  (signed by the authorities' threshold) while es runs: es applies it, loads `sig-2.key`/`audit-2.key`
  without a restart, audits `key.rotated`, and its next messages are signed with es/sig/2;
- a message es signed with es/sig/1 before the rotation, still queued (the hub was down), is accepted by
  the hub and mx during the overlap;
- checkpoints made during the overlap carry both es audit signatures: a verifier holding only the old key
  and one holding only the new key both accept them; a bundle made before the rotation still verifies;
- a node whose key was revoked and replaced sends again (es was mute after `es/sig/1` was revoked).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from typing import Any

import msgspec
from core.message_examples import example
from kit.nodes import started
from kit.waiting import eventually

from gateway.audit.bundle import NotCovered, verify_bundle
from gateway.audit.checkpoints import ed25519_note_verifier
from gateway.core.b64 import b64_decode
from gateway.core.envelope import TYP_ENVELOPE
from gateway.core.jws import parse_compact
from gateway.core.note import open_checkpoint, origin_for
from gateway.localfed import NodeSpec, build
from gateway.node import Node
from gateway.store import relay as st
from gateway.trust.pki import FederationDir

LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 0.2}
SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub", sig_alg="ES256")]
BODY = msgspec.json.encode(example("notice"))


async def kid_at(node: Node, jti: str) -> str | None:
    """The key id of the origin token of ``jti`` as ``node`` stored it (None before it arrived)."""
    m = await node.db.read(lambda c: st.get_message(c, jti))
    if m is None:
        return None
    return str(parse_compact(json.loads(m.envelope)["token"], typ=TYP_ENVELOPE).header["kid"])


async def bundle(node: Node, jti: str) -> bytes | None:
    try:
        return await node.audit.bundle(jti)
    except NotCovered:
        return None


async def events(node: Node, event: str) -> list[dict[str, Any]]:
    doc = await node.audit_entries({"event": event, "limit": "100"})
    return [json.loads(b64_decode(e["entry"])) for e in doc["entries"]]


def publish(fd: FederationDir) -> None:
    fd.sign("eu", now=time.time())
    assert fd.sign("ameripol", now=time.time()).published


async def test_rotated_keys_are_used_without_a_restart_and_old_signatures_stay_valid(tmp_path):
    # es/sig/2 is used once it has been known for 3 s (the others, polling every second, have it then)
    built = build(tmp_path / "fed", SPECS, limits=LIMITS, manifest_poll_seconds=1.0, key_settle_seconds=3.0)
    fd = FederationDir(tmp_path / "fed" / "pki")
    old_audit = b64_decode(_audit_pub(fd, "es/audit/1"))
    async with started(built["mx"].config) as mx, started(built["es"].config) as es:
        async with started(built["hub"].config):
            before = await es.submit(mt="notice", to="mx", body=BODY, system="test")
            assert await eventually(lambda: kid_at(mx, before), timeout=20.0) == "es/sig/1"
            old_bundle = await eventually(lambda: bundle(es, before), timeout=20.0)
        # the hub is down: this one, signed with es/sig/1, waits in es's outbox
        queued = await es.submit(mt="notice", to="mx", body=BODY, system="test")
        assert await kid_at(es, queued) == "es/sig/1"

        fd.rotate_key("es", "sig", now=time.time(), overlap_days=30)
        fd.rotate_key("es", "audit", now=time.time(), overlap_days=30)
        publish(fd)
        await eventually(lambda: es.fed.version >= 2 or None, timeout=20.0)
        assert es.signer.kid == "es/sig/1"  # just applied: not yet known for key_settle_seconds
        await eventually(lambda: es.signer.kid == "es/sig/2" or None, timeout=20.0)
        # one key.rotated entry per key, each its own write: wait for both, not for the first to commit
        rotated = await eventually(lambda: _at_least(2, events(es, "key.rotated")), timeout=20.0)
        assert {(e["use"], e["kid"], tuple(e["previous"])) for e in rotated} == {
            ("sig", "es/sig/2", ("es/sig/1",)), ("audit", "es/audit/2", ("es/audit/1",))}, rotated
        assert [k for k, _ in es.keyring.audit] == ["es/audit/2", "es/audit/1"]

        async with started(built["hub"].config):
            await eventually(lambda: mx.fed.version >= 2 or None, timeout=20.0)
            # signed with es/sig/1 before the rotation, accepted during the overlap
            assert await eventually(lambda: kid_at(mx, queued), timeout=20.0) == "es/sig/1"
            after = await es.submit(mt="notice", to="mx", body=BODY, system="test")
            assert await eventually(lambda: kid_at(mx, after), timeout=20.0) == "es/sig/2"
            new_bundle = await eventually(lambda: bundle(es, after), timeout=20.0)

    # a bundle from before the rotation still verifies (it carries the keys it was made with)
    assert verify_bundle(old_bundle).jti == before
    report = verify_bundle(new_bundle)
    assert report.jti == after
    # the overlap's checkpoints carry both audit signatures: either key alone accepts them
    doc = json.loads(new_bundle)
    origin = origin_for("traza-demo", "es")
    new_audit = b64_decode(_audit_pub(fd, "es/audit/2"))
    for key in (old_audit, new_audit):
        cp, note = open_checkpoint(doc["checkpoint"], ed25519_note_verifier(origin, key))
        assert cp.size == report.size
    assert sum(1 for s in note.signatures if s.name == origin and len(s.signature) == 64) == 2


def _audit_pub(fd: FederationDir, kid: str) -> str:
    doc = json.loads(fd.manifest_path.read_bytes())
    return next(k["public_key"] for n in doc["nodes"] for k in n["keys"] if k["kid"] == kid)


async def _at_least(n: int, aw: Any) -> Any:
    v = await aw
    return v if len(v) >= n else None


async def test_a_node_whose_signing_key_was_revoked_and_replaced_sends_again(tmp_path):
    built = build(tmp_path / "fed", SPECS, limits=LIMITS, manifest_poll_seconds=1.0)
    fd = FederationDir(tmp_path / "fed" / "pki")
    async with started(built["hub"].config), started(built["mx"].config) as mx, \
            started(built["es"].config) as es:
        fd.revoke(now=time.time(), kid="es/sig/1")
        fd.rotate_key("es", "sig", now=time.time())
        publish(fd)
        for n in (es, mx):
            await eventually(lambda n=n: n.fed.version >= 2 or None, timeout=20.0)
        assert es.signer.kid == "es/sig/2"
        jti = await es.submit(mt="notice", to="mx", body=BODY, system="test")
        assert await eventually(lambda: kid_at(mx, jti), timeout=20.0) == "es/sig/2"
        rotated = await events(es, "key.rotated")
        assert [(e["use"], e["kid"], e["previous"]) for e in rotated] == [("sig", "es/sig/2", ["es/sig/1"])]


async def test_sighup_path_reloads_a_key_file_put_in_place_after_the_manifest(tmp_path):
    """The manifest naming es/enc/2 arrives before the operator copies `enc-2.key` to es: es keeps
    decrypting with es/enc/1 (still listed) and loads es/enc/2 on the next reload (SIGHUP runs the same
    `reload_keys`), and then opens payloads sealed to either key."""
    built = build(tmp_path / "fed", SPECS, limits=LIMITS, manifest_poll_seconds=1.0, key_settle_seconds=0.0)
    fd = FederationDir(tmp_path / "fed" / "pki")
    async with started(built["hub"].config), started(built["mx"].config) as mx, \
            started(built["es"].config) as es:
        fd.rotate_key("es", "enc", now=time.time())
        new_file = fd.node_files("es").enc_key
        parked = new_file.with_name("parked")
        new_file.rename(parked)
        publish(fd)
        await eventually(lambda: es.fed.version >= 2 or None, timeout=20.0)
        await asyncio.sleep(2.5)  # two polls: nothing to load yet
        assert sorted(es.enc_keys) == ["es/enc/1"]
        parked.rename(new_file)
        changed = es.reload_keys("sighup")
        assert [(c["use"], c["keys"]) for c in changed] == [("enc", ["es/enc/2", "es/enc/1"])]
        await eventually(lambda: mx.fed.version >= 2 or None, timeout=20.0)
        jti = await mx.submit(mt="notice", to="es", body=BODY, system="test")
        page = await eventually(lambda: _inbox(es, jti), timeout=20.0)
        assert page
        m = await es.db.read(lambda c: st.get_message(c, jti))
        token = parse_compact(json.loads(m.envelope)["token"], typ=TYP_ENVELOPE)
        assert token.claims["pld"]["enc"]["kid"] == "es/enc/2"


async def _inbox(node: Node, jti: str) -> Any:
    rows = await node.inbox_page(0, 100)
    return [r for r in rows if r[1] == jti] or None


TWO_HUBS = [NodeSpec("latam-hub", "hub", "BR"), NodeSpec("eu-hub", "hub", "NL"),
            NodeSpec("mx", "national", "MX", hub="latam-hub"), NodeSpec("es", "national", "ES", hub="eu-hub")]


async def test_a_message_signed_right_after_a_rotation_reaches_a_hub_that_has_not_polled_yet(tmp_path):
    """mx's sig key is rotated and the manifest published at latam-hub; mx and latam-hub apply it, eu-hub has
    not polled yet. mx signed with mx/sig/2 at once: eu-hub refused the unknown kid (bad_signature) and
    latam-hub dead-lettered the message. mx now keeps mx/sig/1 (valid through the overlap) until the new
    key has been known for key_settle_seconds (by default three polls and the clock skew)."""
    built = build(tmp_path, TWO_HUBS, manifest_poll_seconds=3600, limits={"checkpoint_interval": 3600})
    pub = tmp_path / "pki" / "published"
    for n in ("eu-hub", "mx", "es"):  # only latam-hub reads the published file; the others poll for it
        own = tmp_path / f"{n}-manifest"
        own.mkdir()
        for f in ("manifest.json", "manifest.sig"):
            shutil.copy(pub / f, own / f)
        cfg = built[n].config
        cfg.write_text(cfg.read_text().replace(str(pub / "manifest.json"), str(own / "manifest.json")))
    fd = FederationDir(tmp_path / "pki")
    fd.rotate_key("mx", "sig", now=time.time())
    publish(fd)
    async with started(built["latam-hub"].config) as lh, started(built["eu-hub"].config) as eh, \
            started(built["mx"].config) as mx, started(built["es"].config) as es:
        await lh.poll_manifest()
        await mx.poll_manifest()
        assert (lh.fed.version, mx.fed.version, eh.fed.version) == (2, 2, 1)
        assert mx.signer.kid == "mx/sig/1"
        jti = await mx.submit(mt="notice", to="es", body=BODY, system="test")
        assert await eventually(lambda: _inbox(es, jti), timeout=20.0)
        assert await kid_at(es, jti) == "mx/sig/1"
        assert not await events(eh, "envelope.rejected")
