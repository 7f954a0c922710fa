"""Handling codes and purpose limitation as rules (issue #15, ``gateway.core.handling``), each test named
after what it stops or allows: H3 without its restrictions, an H2 message linked on to a third node
without the provider's permission, a purpose the manifest policy does not allow for the message type.
Refused at the origin's submission (audited ``policy.denied``) and, for what the token carries, by every
node that verifies the envelope (the receiver audits ``envelope.rejected``). Real keys and the project's
own verifier; real nodes in-process over real mTLS on 127.0.0.1 for the submission and receiver paths."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
from core.message_examples import example
from kit.federation import KNOWN_TYPES, NOW, make_federation
from kit.nodes import entries, started
from kit.waiting import eventually

from gateway.core.canonical import canonical_bytes
from gateway.core.envelope import encode_envelope, verify_envelope
from gateway.core.errors import Code, TrazaError
from gateway.core.handling import (
    H1_NOTICE,
    Linked,
    check_onward,
    check_onward_marking,
    check_purpose,
    check_restrictions,
    notice,
    onward,
)
from gateway.crypto.keys import verifier_for
from gateway.localfed import NodeSpec, build
from gateway.node import Node
from gateway.trust.pki import FederationDir

STANDARD = "application/vnd.traza.message+json"
LIMITS = {"retry_min": 0.05, "retry_max": 0.4, "checkpoint_interval": 60.0}
# it and es under eu-hub; de a third national node; it also linked directly to es (for the receiver test)
SPECS = [NodeSpec("eu-hub", "hub", "NL"), NodeSpec("es", "national", "ES", hub="eu-hub"),
         NodeSpec("it", "national", "IT", hub="eu-hub", peers=("es",)), NodeSpec("de", "national", "DE", hub="eu-hub")]


# --- the rules, pure ------------------------------------------------------------------------------------


def test_h3_without_restrictions_is_refused_naming_the_field():
    with pytest.raises(TrazaError) as e:
        check_restrictions("H3", None)
    assert e.value.code is Code.SCHEMA_INVALID and "handling_restrictions: required when handling is H3" in e.value.detail
    assert getattr(e.value, "path", None) == "$.handling_restrictions"
    check_restrictions("H3", "do not contact the owner before 2027-01-31")  # allowed
    check_restrictions("H0", None)
    for bad in ("", "   ", "two\nlines", "x" * 501):
        with pytest.raises(TrazaError, match="handling_restrictions"):
            check_restrictions("H3", bad)


def test_h2_linked_to_a_third_node_is_refused_but_to_its_provider_or_by_it_allowed():
    m = Linked(jti="0197a6f0-0000-7000-8000-0000000000aa", iss="it", hc="H2")
    with pytest.raises(TrazaError) as e:
        check_onward([m], here="es", to="de")
    assert e.value.code is Code.POLICY_DENIED and "H2" in e.value.detail and m.jti in e.value.detail
    check_onward([m], here="es", to="it")  # back to the provider
    check_onward([m], here="it", to="de")  # the provider itself
    check_onward([Linked(jti=m.jti, iss="it", hc=hc) for hc in ("H0", "H1", "H3")], here="es", to="de")


def test_onward_transfer_marked_allowed_cannot_loosen_h2_and_names_the_field():
    with pytest.raises(TrazaError) as e:
        check_onward_marking("H2", "ALLOWED")
    assert e.value.code is Code.SCHEMA_INVALID and "ALLOWED contradicts H2" in e.value.detail
    assert getattr(e.value, "path", None) == "$.onward_transfer"
    with pytest.raises(TrazaError, match="not an onward-transfer marking"):
        check_onward_marking("H0", "MAYBE")
    for hc, ot in (("H2", "PROVIDER_CONSENT_REQUIRED"), ("H2", "PROHIBITED"), ("H0", "ALLOWED"), ("H3", "PROHIBITED"),
                   ("H2", None)):
        check_onward_marking(hc, ot)
    # absent, the handling code implies it
    assert [onward(hc, None) for hc in ("H0", "H1", "H2", "H3")] == ["ALLOWED", "ALLOWED", "PROVIDER_CONSENT_REQUIRED",
                                                                       "ALLOWED"]
    assert onward("H0", "PROHIBITED") == "PROHIBITED"


def test_message_marked_prohibited_or_consent_required_is_not_forwarded_to_a_third_node():
    for ot in ("PROHIBITED", "PROVIDER_CONSENT_REQUIRED"):
        m = Linked(jti="0197a6f0-0000-7000-8000-0000000000ab", iss="it", hc="H0", ot=ot)
        with pytest.raises(TrazaError) as e:
            check_onward([m], here="es", to="de")
        assert e.value.code is Code.POLICY_DENIED and f"onward_transfer {ot}" in e.value.detail
        assert getattr(e.value, "rule", None) == "onward_transfer"
        check_onward([m], here="es", to="it")  # back to the provider
        check_onward([m], here="it", to="de")  # the provider itself
    check_onward([Linked(jti="0197a6f0-0000-7000-8000-0000000000ab", iss="it", hc="H0", ot="ALLOWED")],
                 here="es", to="de")


def test_purpose_outside_the_manifest_list_is_refused_and_no_list_allows_all():
    with pytest.raises(TrazaError) as e:
        check_purpose("trace.request", "PREVENTION", ["INVESTIGATION", "PROSECUTION"])
    assert e.value.code is Code.POLICY_DENIED and "INVESTIGATION, PROSECUTION" in e.value.detail
    check_purpose("trace.request", "PROSECUTION", ["INVESTIGATION", "PROSECUTION"])
    check_purpose("trace.request", "PREVENTION", None)


def test_h1_is_marked_other_codes_are_not():
    assert notice("H1") == H1_NOTICE == "H1: not for judicial proceedings without the provider's permission"
    assert notice("H0") is None and notice("H2") is None and notice(None) is None


# --- at every node that verifies the envelope (the receiver included) ---------------------------------


@pytest.fixture(scope="module")
def tf():
    return make_federation()


def verify_at_recipient(tf, env, fed=None):
    return verify_envelope(encode_envelope(env), here="latam-hub", peer="mx", fed=fed or tf.fed, now=NOW,
                           key_verifier=verifier_for, known_types=KNOWN_TYPES)


def test_forged_h3_token_without_restrictions_is_refused_by_the_receiver(tf):
    # a dishonest (or outdated) origin signs H3 without restrictions; the next node refuses it
    env = tf.send("mx", "latam-hub", hc="H3")
    with pytest.raises(TrazaError) as e:
        verify_at_recipient(tf, env)
    assert e.value.code is Code.SCHEMA_INVALID and "handling_restrictions" in e.value.detail
    ok = verify_at_recipient(tf, tf.send("mx", "latam-hub", hc="H3", hr="not before the hearing"))
    assert ok.claims.hr == "not before the hearing"


def test_forged_h2_token_marked_onward_allowed_is_refused_by_the_receiver(tf):
    env = tf.send("mx", "latam-hub", hc="H2", ot="ALLOWED")
    with pytest.raises(TrazaError) as e:
        verify_at_recipient(tf, env)
    assert e.value.code is Code.SCHEMA_INVALID and "onward_transfer" in e.value.detail
    ok = verify_at_recipient(tf, tf.send("mx", "latam-hub", hc="H2", ot="PROHIBITED"))
    assert ok.claims.ot == "PROHIBITED"


def test_envelope_with_a_purpose_the_manifest_forbids_is_refused_by_the_receiver(tf):
    strict = copy.deepcopy(tf.manifest)
    strict["policy"]["notice"]["purposes"] = ["INVESTIGATION"]
    from gateway.core.manifest import Federation, decode_manifest

    fed = Federation(decode_manifest(canonical_bytes(strict)))
    with pytest.raises(TrazaError) as e:
        verify_at_recipient(tf, tf.send("mx", "latam-hub", pur="PREVENTION"), fed=fed)
    assert e.value.code is Code.POLICY_DENIED and "purpose: PREVENTION" in e.value.detail
    verify_at_recipient(tf, tf.send("mx", "latam-hub", pur="INVESTIGATION"), fed=fed)
    # a manifest without the list (every manifest before issue #15) allows every purpose
    verify_at_recipient(tf, tf.send("mx", "latam-hub", pur="PREVENTION"))


def test_manifest_with_an_empty_purpose_list_is_refused_naming_the_field(tf):
    from gateway.core.manifest import ManifestError, decode_manifest

    bad = copy.deepcopy(tf.manifest)
    bad["policy"]["notice"]["purposes"] = []
    with pytest.raises(ManifestError, match=r"policy.notice.purposes: empty"):
        decode_manifest(canonical_bytes(bad))
    bad["policy"]["notice"]["purposes"] = ["FISHING"]
    with pytest.raises(ManifestError, match="purposes"):
        decode_manifest(canonical_bytes(bad))


# --- at a running node's submission: refused, audited, nothing queued ----------------------------------


def standard(to: str, mt: str = "notice", body: dict[str, Any] | None = None, **env: Any) -> bytes:
    msg = {"type": mt, "to": to, "handling": "H0", "classification": "BASIC_PROTECTION_LEVEL",
           "purpose": "INVESTIGATION", "body": body or example(mt), **env}
    return json.dumps(msg).encode()


async def refused_at_submission(node: Node, data: bytes) -> TrazaError:
    before = await node.ops_view("status")
    with pytest.raises(TrazaError) as e:
        await node.local_submit(STANDARD, data, "default")
    after = await node.ops_view("status")
    assert after["messages"] == before["messages"], "a refused submission must leave no message behind"
    return e.value


async def test_h3_submission_without_restrictions_is_refused_and_audited(tmp_path: Path) -> None:
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    async with started(built["it"].config) as it:
        err = await refused_at_submission(it, standard("es", handling="H3"))
        assert err.code is Code.SCHEMA_INVALID and "handling_restrictions: required when handling is H3" in err.detail
        (entry,) = await entries(it, event="policy.denied")
        assert (entry["rule"], entry["code"], entry["handling"], entry["to"]) == ("h3_restrictions", "schema_invalid",
                                                                                 "H3", "es")
        assert entry["from"] == "local:system:default" and "handling_restrictions" in entry["detail"]
        # allowed with its restrictions
        jti = await it.local_submit(STANDARD, standard("es", handling="H3", handling_restrictions="only for case 7"),
                                    "default")
        assert (await it.message_status(jti) or {}).get("type") == "notice"


async def test_submission_above_a_classification_ceiling_is_refused_and_audited(tmp_path: Path) -> None:
    """SPEC §4.2: every rejection is audited with its code. A submission the envelope checks refuse at the
    origin (above its own ceiling, or the next hop's) was answered 422 and left nothing in the log; the
    handling and purpose refusals were audited (policy.denied), these were not."""
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    async with started(built["it"].config) as it:
        err = await refused_at_submission(it, standard("es", classification="CONFIDENTIEL_UE"))
        assert err.code is Code.CLASSIFICATION_EXCEEDED
        (entry,) = await entries(it, event="policy.denied")
        assert (entry["rule"], entry["code"], entry["to"], entry["mt"]) == (
            "classification_exceeded", "classification_exceeded", "es", "notice")
        assert entry["from"] == "local:system:default" and "CONFIDENTIEL_UE" in entry["detail"]


async def test_notice_linking_an_h2_message_to_a_third_node_is_refused(tmp_path: Path) -> None:
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    async with started(built["eu-hub"].config), started(built["es"].config) as es, started(built["it"].config) as it:
        # it (the provider) sends es an H2 trace request and an H0 notice
        h2 = await it.local_submit(STANDARD, standard("es", "trace.request", handling="H2"), "default")
        h0 = await it.local_submit(STANDARD, standard("es"), "default")
        for m in (h2, h0):
            await eventually(lambda m=m: _in_inbox(es, m))

        def notice_linking(to: str, *links: str, **env: Any) -> bytes:
            return standard(to, body={"title": "see also", "text": "linked", "links": list(links)}, **env)

        # es may not pass the H2 message on to de, by links[] or as a reply
        err = await refused_at_submission(es, notice_linking("de", h0, h2))
        assert err.code is Code.POLICY_DENIED and h2 in err.detail and "H2" in err.detail
        err = await refused_at_submission(es, standard("de", reply_to=h2))
        assert err.code is Code.POLICY_DENIED
        denied = await entries(es, event="policy.denied")
        assert [(e["rule"], e["linked"], e["to"]) for e in denied] == [("h2_onward", h2, "de")] * 2
        # allowed: back to the provider; an H0 message to anyone; the provider itself to anyone
        await es.local_submit(STANDARD, notice_linking("it", h2), "default")
        await es.local_submit(STANDARD, notice_linking("de", h0), "default")
        await it.local_submit(STANDARD, notice_linking("de", h2), "default")
        assert len(await entries(es, event="policy.denied")) == 2 and not await entries(it, event="policy.denied")


async def test_message_marked_onward_prohibited_is_not_passed_on_and_arrives_marked(tmp_path: Path) -> None:
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    async with started(built["eu-hub"].config), started(built["es"].config) as es, started(built["it"].config) as it:
        # an H2 message marked ALLOWED is refused at the origin, audited
        err = await refused_at_submission(it, standard("es", handling="H2", onward_transfer="ALLOWED"))
        assert err.code is Code.SCHEMA_INVALID and "ALLOWED contradicts H2" in err.detail
        (entry,) = await entries(it, event="policy.denied")
        assert entry["rule"] == "onward_transfer"
        # it sends es an H0 trace request it marks PROHIBITED: es receives the marking
        jti = await it.local_submit(STANDARD, standard("es", "trace.request", onward_transfer="PROHIBITED"), "default")
        await eventually(lambda: _in_inbox(es, jti))
        (item,) = [m for m in (await es.local_inbox(0, 100))["messages"] if m["id"] == jti]
        assert item["onward_transfer"] == "PROHIBITED" and item["handling"] == "H0"
        # es may not link it in a notice to de; back to it is allowed
        note = {"title": "see also", "text": "linked", "links": [jti]}
        err = await refused_at_submission(es, standard("de", body=note))
        assert err.code is Code.POLICY_DENIED and "onward_transfer PROHIBITED" in err.detail
        denied = await entries(es, event="policy.denied")
        assert [(e["rule"], e["linked"], e["to"]) for e in denied] == [("onward_transfer", jti, "de")]
        await es.local_submit(STANDARD, standard("it", body=note), "default")


async def test_purpose_the_manifest_forbids_is_refused_at_the_origin_and_at_the_receiver(tmp_path: Path) -> None:
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    # it starts with the manifest every node has (no purpose list) and keeps it (manifest rollout lag);
    # then the authorities publish a version that allows only INVESTIGATION and PROSECUTION for notices
    async with started(built["it"].config) as it:
        fd = FederationDir(tmp_path / "fed" / "pki")
        _, draft = fd.read_draft()
        draft["policy"]["notice"]["purposes"] = ["INVESTIGATION", "PROSECUTION"]
        fd.manifest_path.write_bytes(canonical_bytes(draft))
        now = time.time()
        fd.bump(now=now)
        fd.sign("eu", now=now)
        fd.sign("ameripol", now=now)
        async with started(built["es"].config) as es:
            assert es.fed.manifest.policy["notice"].purposes == ["INVESTIGATION", "PROSECUTION"]
            assert it.fed.manifest.policy["notice"].purposes is None
            # at the origin (es has the new manifest): refused before anything is signed, audited
            err = await refused_at_submission(es, standard("it", purpose="PREVENTION"))
            assert err.code is Code.POLICY_DENIED and "purpose: PREVENTION" in err.detail
            (entry,) = await entries(es, event="policy.denied")
            assert (entry["rule"], entry["purpose"]) == ("purpose", "PREVENTION")
            await es.local_submit(STANDARD, standard("it", purpose="PROSECUTION"), "default")  # allowed
            # at the receiver: it (old manifest) sends straight to es (a direct peer link); es refuses it
            jti = await it.local_submit(STANDARD, standard("es", purpose="PREVENTION"), "default")
            rejected = await eventually(lambda: entries(es, jti=jti, event="envelope.rejected"), timeout=20.0)
            assert rejected[0]["code"] == "policy_denied" and "purpose: PREVENTION" in rejected[0]["detail"]
            assert not await _in_inbox(es, jti)
            ok = await it.local_submit(STANDARD, standard("es", purpose="INVESTIGATION"), "default")
            await eventually(lambda: _in_inbox(es, ok), timeout=20.0)


async def _in_inbox(node: Node, jti: str) -> bool:
    return any(m["id"] == jti for m in (await node.local_inbox(0, 100))["messages"])
