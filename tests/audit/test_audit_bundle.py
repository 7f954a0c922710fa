"""Evidence bundles (SPEC §7.4): a realistic message on node es (signed by mx, relayed by eu-hub, acked,
delivered, receipted), exported from es's log, verified offline from the file alone; any flipped byte
makes verification fail."""

from __future__ import annotations

import json
import os

import msgspec
import pytest
from audit.audit_kit import T0

from gateway.audit.bundle import BundleError, build_bundle, encode_bundle, verify_bundle
from gateway.audit.db import AuditError, transaction
from gateway.audit.log import stage_evidence
from gateway.audit.reader import AuditReader
from gateway.cli.main import main
from gateway.core.envelope import append_hop, build_envelope, make_ack, token_digest
from gateway.core.ids import uuid7
from gateway.core.timeutil import rfc3339_seconds
from gateway.crypto.keys import Ed25519Key, SigningKey

BODY = json.dumps({"request_kind": "TRACE", "firearm": {"serial_number": "AB1234"}}).encode()


def _key_entry(k: SigningKey) -> dict:
    return {"kid": k.kid, "alg": k.alg, "jwk": k.public_jwk()}


@pytest.fixture
def scenario(make_node, tmp_path):
    return _scenario(make_node)


def _scenario(make_node, hc: str = "H0", *, signers: dict[str, SigningKey] | None = None,
              audit: dict[str, Ed25519Key] | None = None, witnesses: tuple[str, str] = ("it", "de")):
    """The message on es; ``signers`` and ``audit`` (node -> key) put the keys of a manifest's nodes in."""
    audit = audit or {}
    es, it, de = (make_node(n, key=audit.get(n)) for n in ("es", *witnesses))
    signers = signers or {"mx": SigningKey.generate("mx/sig/1", "EdDSA"),
                          "eu-hub": SigningKey.generate("eu-hub/sig/1", "ES256"),
                          "es": SigningKey.generate("es/sig/1", "EdDSA")}
    mx_k, hub_k, es_k = signers["mx"], signers["eu-hub"], signers["es"]
    jti = uuid7(T0, os.urandom(10))
    env = build_envelope(
        signer=mx_k, iss="mx", aud="es", jti=jti, mt="trace.request", body=BODY, now=T0, ttl=86400, hc=hc
    )
    env = append_hop(env, signer=hub_k, here="eu-hub", jti=jti, came_from="mx", to="es", received_at=T0 + 1)
    dig = token_digest(env.token)
    fields = {
        "jti": jti,
        "mt": "trace.request",
        "iss": "mx",
        "aud": "es",
        "from": "eu-hub",
        "to": "es",
        "dig": dig,
    }
    es.append(3)  # unrelated traffic before
    # the relay stores the envelope, its audit entry and the evidence in one transaction
    conn = es.appender._conn
    with es.appender._lock, transaction(conn):
        (idx,) = es.appender.stage(conn, [{"event": "envelope.accepted", **fields}])
        ack = make_ack(es_k, here="es", peer="eu-hub", jti=jti, token=env.token, idx=idx, now=T0 + 2)
        stage_evidence(
            conn,
            jti,
            envelope={"token": env.token, "hops": env.hops},
            ack=ack,
            keys=[_key_entry(mx_k), _key_entry(hub_k), _key_entry(es_k)],
        )
    es.append(2)
    es.appender.append_sync([{"event": "envelope.delivered", **fields}])
    rid = uuid7(T0 + 3, os.urandom(10))
    rbody = json.dumps({"for": jti, "dig": dig, "status": "DELIVERED", "at": "2026-11-17T00:00:03Z"}).encode()
    receipt = build_envelope(
        signer=es_k,
        iss="es",
        aud="mx",
        jti=rid,
        mt="receipt",
        body=rbody,
        now=T0 + 3,
        ttl=86400,
        irt=jti,
        cid=jti,
    )
    with es.appender._lock, transaction(conn):
        stage_evidence(conn, jti, receipt={"token": receipt.token, "payload": receipt.payload})
    es.publish()
    for w in (it, de):
        wit = w.witness({es.origin: es.key.public_raw})
        status, _, body = wit.handle(es.publisher.witness_request(w.origin))
        assert status == 200
        es.publisher.add_cosignatures(
            es.publisher.reader.checkpoint().size, body, {w.origin: w.key.public_raw}
        )
    es.append(1)  # after the checkpoint: not needed by the bundle
    return es, jti, idx


def test_exported_bundle_verifies_offline(scenario, tmp_path, capsys):
    es, jti, idx = scenario
    out = tmp_path / "evidence" / f"{jti}.json"
    assert main(["audit", "export", "--db", str(es.db), "--jti", jti, "-o", str(out)]) == 0
    capsys.readouterr()
    data = json.loads(out.read_text())
    assert data["format"] == "traza-evidence/v1" and data["node"] == "es" and data["jti"] == jti
    assert [e["index"] for e in data["entries"]] == [idx, idx + 3]
    assert data["keys"]["log"] == {"name": "traza/traza-test/es", "public_key": es.key.public_b64}
    assert sorted(w["name"] for w in data["keys"]["witnesses"]) == [
        "traza/traza-test/de",
        "traza/traza-test/it",
    ]
    assert {k["kid"] for k in data["keys"]["signing"]} == {"mx/sig/1", "eu-hub/sig/1", "es/sig/1"}
    es.close()
    if not isinstance(es.db, str):  # a file (a PostgreSQL database is dropped after the test)
        os.remove(es.db)  # the bundle alone
    assert main(["audit", "verify-bundle", str(out)]) == 0
    text = capsys.readouterr().out
    for fact in [
        "is signed by the log key of es",
        "witness traza/traza-test/it cosigned this checkpoint",
        "witness traza/traza-test/de cosigned this checkpoint",
        f"message {jti} (trace.request) was signed by mx for es",
        f"log entry {idx}: envelope.accepted",
        f"log entry {idx + 3}: envelope.delivered",
        "hop 1: eu-hub received it from mx and sent it to es",
        f"ack 1: es acknowledged this token to eu-hub, recorded as log entry {idx} (envelope.accepted)",
        "receipt from es to mx: DELIVERED",
        # how fresh the witnessing is (SPEC §7.2, 1.1): the witnesses' clocks stand at T0
        f"the newest witness cosignature is from {rfc3339_seconds(T0)}, ",
    ]:
        assert fact in text, fact
    assert main(["audit", "verify-bundle", "--json", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["ok"], doc["jti"], doc["node"], doc["file"]) == (True, jti, "es", str(out)), doc
    assert any("receipt from es to mx: DELIVERED" in line for line in doc["proven"]) and isinstance(doc["notes"], list)
    assert verify_bundle(out.read_bytes()).newest_cosignature == int(T0)


def test_any_flipped_byte_fails(scenario, tmp_path, capsys):
    es, jti, _ = scenario
    raw = encode_bundle(build_bundle(AuditReader(es.db), jti))
    verify_bundle(raw)
    positions = sorted(set(range(0, len(raw), max(1, len(raw) // 300))) | {len(raw) - 2})
    undetected = []
    for pos in positions:
        flipped = bytearray(raw)
        flipped[pos] ^= 0x01
        try:
            verify_bundle(bytes(flipped))
        except BundleError:
            continue
        undetected.append((pos, raw[max(0, pos - 40) : pos + 10]))
    assert not undetected, undetected
    bad = tmp_path / "bad.json"
    bad.write_bytes(raw.replace(b'"es"', b'"it"', 1))
    assert main(["audit", "verify-bundle", str(bad)]) == 1
    assert "does not verify" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d.update(extra=1), "unknown field"),
        (lambda d: d.pop("receipt"), "missing required field"),
        (lambda d: d.update(format="traza-evidence/v2"), "format is"),
        (lambda d: d.update(jti="0197a6f0-0000-7000-8000-000000000000"), "entry jti is"),
        (lambda d: d["entries"][1].update(index=d["entries"][0]["index"]), "index appears twice"),
        (lambda d: d["entries"][0]["proof"].pop(), "inclusion proof has"),
        (
            lambda d: d["entries"][0].update(entry=d["entries"][1]["entry"]),
            r"entries\[0\] \(index \d+\): inclusion",
        ),
        (lambda d: d["envelope"]["hops"].clear(), "keys.signing lists keys no token uses"),
        (lambda d: d["acks"].__setitem__(0, d["envelope"]["hops"][0]), "header typ"),
        (lambda d: d["keys"]["witnesses"][0].update(name="traza/traza-test/fr"), "no cosignature by witness"),
        (
            lambda d: d["keys"].update(log={**d["keys"]["log"], "name": "traza/traza-test/it"}),
            "not the log of node",
        ),
    ],
)
def test_structural_changes_are_refused(scenario, change, match):
    es, jti, _ = scenario
    d = msgspec.to_builtins(build_bundle(AuditReader(es.db), jti))
    change(d)
    with pytest.raises(BundleError, match=match):
        verify_bundle(json.dumps(d).encode())


def test_fewer_witnesses_or_acks_still_prove_the_rest(scenario):
    es, jti, _ = scenario
    d = msgspec.to_builtins(build_bundle(AuditReader(es.db), jti))
    d["keys"]["witnesses"].pop()
    d["acks"] = []
    report = verify_bundle(json.dumps(d).encode())
    assert sum("cosigned" in line for line in report.proven) == 1
    assert not any(line.startswith("ack") for line in report.proven)


def test_alg_confusion_is_refused(scenario):
    es, jti, _ = scenario
    b = build_bundle(AuditReader(es.db), jti)
    d = msgspec.to_builtins(b)
    for k in d["keys"]["signing"]:
        if k["kid"] == "mx/sig/1":  # the key entry says ES256 (a real P-256 key), the header EdDSA
            k["alg"], k["jwk"] = "ES256", SigningKey.generate("mx/sig/1", "ES256").public_jwk()
    with pytest.raises(BundleError, match="header alg 'EdDSA' is not 'ES256'"):
        verify_bundle(json.dumps(d).encode())


def test_export_needs_a_checkpoint_covering_the_entries(make_node, tmp_path):
    es = make_node("es")
    es.append(1, jti="J1")
    with pytest.raises(AuditError, match="no signed checkpoint"):
        build_bundle(AuditReader(es.db), "J1")
    es.publish()
    es.append(1, jti="J1")
    with pytest.raises(AuditError, match="not covered by the checkpoint of size 1"):
        build_bundle(AuditReader(es.db), "J1")
    with pytest.raises(AuditError, match="no audit entry"):
        build_bundle(AuditReader(es.db), "J2")


def test_jwk_with_flipped_padding_bits_is_refused(scenario):
    """pyjwt decodes base64url leniently: a JWK coordinate whose unused low bits differ names the same
    key. The bundle verifier insists on canonical coordinates, so no byte of the file is inert."""
    es, jti, _ = scenario
    d = msgspec.to_builtins(build_bundle(AuditReader(es.db), jti))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    key = next(k for k in d["keys"]["signing"] if k["alg"] == "ES256")
    y = key["jwk"]["y"]
    key["jwk"]["y"] = y[:-1] + alphabet[alphabet.index(y[-1]) ^ 1]  # a padding bit: same 32 bytes, leniently
    with pytest.raises(BundleError, match="JWK y is not canonical base64url"):
        verify_bundle(json.dumps(d).encode())


H1_TEXT = "H1: not for judicial proceedings without the provider's permission"


def test_h1_evidence_is_marked_on_export_and_on_every_verification(make_node, tmp_path, capsys):
    es, jti, _idx = _scenario(make_node, hc="H1")
    out = tmp_path / f"{jti}.json"
    assert main(["audit", "export", "--db", str(es.db), "--jti", jti, "-o", str(out)]) == 0
    assert H1_TEXT in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["handling_notice"] == H1_TEXT  # the file itself carries the mark
    assert main(["audit", "verify-bundle", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[1] == f" ! {H1_TEXT}", text
    assert "marked H1 by its provider mx" in text
    assert main(["audit", "verify-bundle", "--json", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["handling"], doc["handling_notice"]) == ("H1", H1_TEXT)
    # the mark comes from the signed token: stripping it from the file does not remove it from the view
    del data["handling_notice"]
    stripped = tmp_path / "stripped.json"
    stripped.write_text(json.dumps(data))
    assert verify_bundle(stripped.read_bytes()).handling_notice == H1_TEXT


def test_forged_handling_notice_in_a_bundle_is_refused(scenario, tmp_path):
    es, jti, _idx = scenario
    data = json.loads(encode_bundle(build_bundle(AuditReader(es.db), jti)))
    assert "handling_notice" not in data and verify_bundle(json.dumps(data).encode()).handling_notice is None
    data["handling_notice"] = H1_TEXT  # an H0 message passed off as H1 (or any other text)
    with pytest.raises(BundleError, match="handling_notice"):
        verify_bundle(json.dumps(data).encode())


def test_peer_evidence_is_never_proven_against_a_checkpoint_no_witness_cosigned(scenario):
    """SPEC §4.4: ``GET /v1/evidence/<jti>`` proves the entries against the latest COSIGNED checkpoint. A
    node that signs a checkpoint its witnesses never saw (a split view shown to one peer) must not get it
    into a peer's evidence: the bundle keeps the older cosigned checkpoint while it covers the entries."""
    es, jti, _ = scenario
    cosigned = es.publisher.reader.checkpoint().size
    es.append(2)
    assert es.publish() > cosigned  # a newer checkpoint, cosigned by no witness
    for kw in ({}, {"witnessed": "preferred"}, {"witnessed": "required"}):
        b = build_bundle(AuditReader(es.db), jti, **kw)
        assert int(b.checkpoint.split("\n")[1]) == cosigned, kw
        assert len(b.keys.witnesses) == 2
        report = verify_bundle(encode_bundle(b))
        assert report.size == cosigned and sum("cosigned" in line for line in report.proven) == 2


def test_peer_evidence_of_entries_no_cosigned_checkpoint_covers_is_not_checkpointed_yet(make_node):
    from gateway.audit.bundle import NotCovered

    es, it = make_node("es"), make_node("it")
    es.append(1, jti="J1")
    es.publish()  # covers J1, but no witness cosigned it
    with pytest.raises(NotCovered, match=r"^no cosigned checkpoint covers entry 0 about J1 yet; "):
        build_bundle(AuditReader(es.db), "J1", witnessed="required")
    _, _, body = it.witness({es.origin: es.key.public_raw}).handle(es.publisher.witness_request(it.origin))
    es.publisher.add_cosignatures(1, body, {it.origin: it.key.public_raw})
    es.append(1, jti="J2")
    es.publish()
    with pytest.raises(NotCovered, match=r"covers entry 1 about J2 yet \(the latest cosigned checkpoint has size 1\)"):
        build_bundle(AuditReader(es.db), "J2", witnessed="required")
