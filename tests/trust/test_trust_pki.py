"""Federation PKI: certificates (SAN URI, P-256, validity), real mTLS handshakes with them, and the
federation folder (draft editing, signing, rotation, revocation)."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import threading
from pathlib import Path

import pytest

from gateway.core.manifest import decode_manifest
from gateway.crypto import pki
from gateway.crypto.hpke import EncKey, envelope_info, seal
from gateway.crypto.keys import Ed25519Key, SigningKey, verifier_for
from gateway.crypto.tls import client_context, peer_local_identity, peer_node_id, server_context
from gateway.trust.pki import DEFAULT_POLICY, FederationDir, FederationDirError, FederationUsageError
from gateway.trust.trusted import ManifestRejected, TrustAnchor, parse_signatures

# The real clock: the handshake test lets OpenSSL check certificate validity against it.
NOW_DT = dt.datetime.now(dt.UTC).replace(microsecond=0)
NOW = NOW_DT.timestamp()
DAY = 86400


# --- certificates -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> pki.Issued:
    return pki.make_federation_ca("traza-test", now=NOW_DT)


def test_federation_ca(ca):
    info = pki.cert_info(ca.cert_pem)
    assert info.is_ca and info.p256 and info.subject == info.issuer
    assert info.not_after - info.not_before > dt.timedelta(days=4 * 365)
    assert b"PRIVATE KEY" not in repr(ca).encode()


def test_node_certificate(ca):
    cert = pki.issue_node_cert(ca, "latam-hub", now=NOW_DT)
    info = pki.cert_info(cert.cert_pem)
    assert info.san_uris == ("urn:traza:node:latam-hub",)
    assert "127.0.0.1" in info.san_ips and "localhost" in info.san_dns
    assert info.p256 and not info.is_ca
    assert info.not_after - info.not_before <= dt.timedelta(days=90)
    assert info.not_before <= NOW_DT < info.not_after
    assert set(info.eku) == {"serverAuth", "clientAuth"}
    assert pki.verify_issued_by(cert.cert_pem, ca.cert_pem)
    assert not pki.verify_issued_by(cert.cert_pem, pki.make_federation_ca("x", now=NOW_DT).cert_pem)


def test_local_certificates(ca):
    local = pki.make_local_ca("traza-test", "mx", now=NOW_DT)
    c = pki.issue_local_cert(local, "auditor", "ana.lopez", now=NOW_DT)
    info = pki.cert_info(c.cert_pem)
    assert info.san_uris == ("urn:traza:local:auditor:ana.lopez",)
    assert info.p256 and info.eku == ("clientAuth",)
    assert info.not_after - info.not_before <= dt.timedelta(days=90)
    assert pki.verify_issued_by(c.cert_pem, local.cert_pem)
    assert not pki.verify_issued_by(c.cert_pem, ca.cert_pem)


def test_certificate_limits_refused(ca):
    with pytest.raises(pki.PkiError, match=r"not within 1\.\.90"):
        pki.issue_node_cert(ca, "mx", now=NOW_DT, days=91)
    with pytest.raises(pki.PkiError, match="does not match"):
        pki.issue_node_cert(ca, "MX", now=NOW_DT)
    local = pki.make_local_ca("traza-test", "mx", now=NOW_DT)
    with pytest.raises(pki.PkiError, match="local role 'admin'"):
        pki.issue_local_cert(local, "admin", "x", now=NOW_DT)
    with pytest.raises(pki.PkiError, match="local name"):
        pki.issue_local_cert(local, "operator", "a:b", now=NOW_DT)
    with pytest.raises(pki.PkiError, match="timezone-aware"):
        pki.make_federation_ca("x", now=dt.datetime(2026, 1, 1))
    leaf = pki.issue_node_cert(ca, "mx", now=NOW_DT)
    with pytest.raises(pki.PkiError, match="not a CA"):
        pki.issue_node_cert(leaf, "es", now=NOW_DT)
    with pytest.raises(pki.PkiError, match="does not match the certificate"):
        pki.load_issued(ca.cert_pem, leaf.key_pem)


# --- the federation folder ----------------------------------------------------------------------------


def build(root: Path) -> FederationDir:
    fd = FederationDir.init(root, federation="traza-test", authorities=["eu", "mx", "ameripol"], threshold=2, now=NOW)
    fd.add_node("latam-hub", kind="hub", country="MX", endpoint="https://127.0.0.1:7201", now=NOW)
    fd.add_node("eu-hub", kind="hub", country="BE", endpoint="https://127.0.0.1:7202", now=NOW, sig_alg="ES256")
    fd.add_node("mx", kind="national", country="mx", hub="latam-hub", endpoint="https://127.0.0.1:7101", now=NOW)
    fd.add_node("es", kind="national", country="ES", hub="eu-hub", endpoint="https://127.0.0.1:7102", now=NOW,
                kem="X25519", max_classification="RESTREINT_UE", peers=["mx"])
    return fd


@pytest.fixture(scope="module")
def fed(tmp_path_factory) -> FederationDir:
    fd = build(tmp_path_factory.mktemp("fed"))
    fd.sign("eu", now=NOW)
    assert fd.sign("mx", now=NOW).published
    return fd


def test_node_files_hold_the_keys_the_manifest_publishes(fed):
    raw, _ = fed.read_draft()
    m = decode_manifest(raw)
    assert m.version == 1 and [n.id for n in m.nodes] == ["latam-hub", "eu-hub", "mx", "es"]
    for node in m.nodes:
        f = fed.node_files(node.id)
        pub = {k.use: k for k in node.keys}
        sk = SigningKey.from_pem(f.sig_kid, f.sig_alg, f.sig_key.read_bytes())  # type: ignore[arg-type]
        assert sk.public_jwk() == pub["sig"].jwk and pub["sig"].alg == f.sig_alg
        assert verifier_for(f.sig_alg, pub["sig"].jwk)(b"x", sk.sign(b"x"))
        ek = EncKey.from_private_bytes(f.enc_kid, f.kem, f.enc_key.read_bytes())
        assert ek.public_b64() == pub["enc"].public_key and pub["enc"].kem == f.kem
        info = envelope_info("j", "a", node.id)
        assert ek.open(seal(f.kem, pub["enc"].public_key, b"hello", info), info) == b"hello"
        ak = Ed25519Key.from_pem(f.audit_key.read_bytes())
        assert ak.public_b64 == pub["audit"].public_key
        tls = pki.cert_info(f.tls_cert.read_bytes())
        assert tls.san_uris == (f"urn:traza:node:{node.id}",)
        assert pki.verify_issued_by(f.tls_cert.read_bytes(), m.tls_ca[0].encode())
        # the three default clients (a later test of this module issues mx one more)
        assert {"auditor:default", "operator:default", "system:default"} <= set(f.clients), f.clients
        for cert, key in f.clients.values():
            assert pki.verify_issued_by(cert.read_bytes(), f.local_ca.read_bytes())
            assert key.stat().st_mode & 0o777 == 0o600
    es = next(n for n in m.nodes if n.id == "es")
    assert es.peers == ["mx"] and es.max_classification == "RESTREINT_UE" and es.hub == "eu-hub"
    assert next(n for n in m.nodes if n.id == "mx").country == "MX"


def test_default_policy_covers_every_v1_message_type(fed):
    raw, _ = fed.read_draft()
    m = decode_manifest(raw)
    assert set(m.policy) == set(DEFAULT_POLICY)
    messages = pytest.importorskip("gateway.core.messages")
    assert set(m.policy) == set(messages.MESSAGE_TYPES)
    assert m.policy["trace.request"].senders == ["national"]
    assert set(m.policy["trace.request"].recipients) == {"national", "service"}
    assert set(m.policy["ballistic.submission"].recipients) == {"national", "hub"}
    assert not m.policy["receipt"].encrypt_through_hubs and m.policy["notice"].encrypt_through_hubs


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> tuple[bytes | None, bytes | None]:
    a, b = socket.socketpair()
    out: dict[str, bytes | None] = {}

    def serve() -> None:
        with server_ctx.wrap_socket(a, server_side=True) as s:
            out["client"] = s.getpeercert(binary_form=True)
            s.sendall(b"ok")

    t = threading.Thread(target=serve)
    t.start()
    with client_ctx.wrap_socket(b) as c:
        out["server"] = c.getpeercert(binary_form=True)
        assert c.recv(2) == b"ok"
    t.join(5)
    return out.get("server"), out.get("client")


def test_node_certificates_make_a_mutual_tls_1_3_connection(fed):
    raw, _ = fed.read_draft()
    ca = decode_manifest(raw).tls_ca
    hub, mx = fed.node_files("latam-hub"), fed.node_files("mx")
    server_cert, client_cert = _handshake(
        server_context(hub.tls_cert, hub.tls_key, ca), client_context(mx.tls_cert, mx.tls_key, ca)
    )
    assert server_cert and peer_node_id(server_cert) == "latam-hub"
    assert client_cert and peer_node_id(client_cert) == "mx"
    # A local client certificate logs in to its own node's local listener.
    cert, key = mx.clients["operator:default"]
    server_cert, client_cert = _handshake(
        server_context(mx.tls_cert, mx.tls_key, [mx.local_ca.read_text()]), client_context(cert, key, ca)
    )
    assert client_cert and peer_local_identity(client_cert) == ("operator", "default")


def test_add_node_checks(tmp_path):
    fd = FederationDir.init(tmp_path / "f", federation="t", authorities=["a"], threshold=1, now=NOW)
    fd.add_node("eu-hub", kind="hub", country="BE", endpoint="https://h:1", now=NOW)
    fd.add_node("es", kind="national", country="ES", hub="eu-hub", endpoint="https://h:2", now=NOW)
    cases = [
        (dict(node_id="es", kind="national", hub="eu-hub"), FederationDirError, "already in the manifest"),
        (dict(node_id="it", kind="national", hub="latam-hub"), FederationDirError, "no such node"),
        (dict(node_id="it", kind="national", hub="es"), FederationDirError, "not a hub"),
        (dict(node_id="it", kind="national"), FederationUsageError, "needs its hub"),
        (dict(node_id="x-hub", kind="hub", hub="eu-hub"), FederationUsageError, "has no hub"),
        (dict(node_id="It", kind="national", hub="eu-hub"), FederationUsageError, "does not match"),
        (dict(node_id="it", kind="national", hub="eu-hub", peers=["fr"]), FederationDirError, "'fr' is not a node"),
        (dict(node_id="it", kind="national", hub="eu-hub", endpoint="http://x"), FederationUsageError, "https"),
        # a port out of range, not a number, or no host at all were written into the draft (exit 0)
        (dict(node_id="it", kind="national", hub="eu-hub", endpoint="https://127.0.0.1:99999"), FederationUsageError,
         "port is not a number from 1 to 65535"),
        (dict(node_id="it", kind="national", hub="eu-hub", endpoint="https://127.0.0.1:abc"), FederationUsageError,
         "port is not a number"),
        (dict(node_id="it", kind="national", hub="eu-hub", endpoint="https://:80"), FederationUsageError, "no host"),
        (dict(node_id="it", kind="national", hub="eu-hub", country="ITA"), FederationUsageError, "ISO 3166"),
    ]
    for kw, exc, msg in cases:
        args = dict(country="IT", endpoint="https://h:3", now=NOW) | kw
        with pytest.raises(exc, match=msg):
            fd.add_node(**args)
        assert not (fd.root / "nodes" / "it").exists()
    assert len(decode_manifest(fd.read_draft()[0]).nodes) == 2


def test_init_refuses_to_overwrite(tmp_path):
    FederationDir.init(tmp_path, federation="t", authorities=["a", "b"], threshold=2, now=NOW)
    before = (tmp_path / "manifest.json").read_bytes()
    with pytest.raises(FederationDirError, match="already holds a federation"):
        FederationDir.init(tmp_path, federation="t", authorities=["a", "b"], threshold=2, now=NOW)
    assert (tmp_path / "manifest.json").read_bytes() == before
    with pytest.raises(FederationUsageError, match="threshold 3"):
        FederationDir.init(tmp_path / "x", federation="t", authorities=["a", "b"], threshold=3, now=NOW)


def test_editing_a_signed_draft_starts_a_new_version(tmp_path):
    fd = build(tmp_path)
    fd.sign("eu", now=NOW)
    fd.sign("ameripol", now=NOW)
    assert fd.verify(now=NOW).federation.version == 1
    # add-node after signing: version 2, signatures cleared, so verify names the missing signatures.
    _, version, started = fd.add_node("it", kind="national", country="IT", hub="eu-hub",
                                      endpoint="https://127.0.0.1:7103", now=NOW + 10)
    assert (version, started) == (2, True)
    assert parse_signatures(fd.sig_path.read_bytes()) == []
    with pytest.raises(ManifestRejected, match="0 valid signature"):
        fd.verify(now=NOW + 10)
    # an unsigned draft is edited in place
    assert fd.revoke(now=NOW + 20, kid="es/sig/1") == (2, False)
    assert fd.revoke(now=NOW + 20, kid="es/sig/1") is None  # idempotent
    fd.sign("eu", now=NOW + 30)
    assert fd.sign("mx", now=NOW + 30).published
    res = fd.verify(now=NOW + 30)
    assert res.federation.version == 2 and "es/sig/1" in res.federation.revoked_kids
    # revoking after publication starts version 3
    assert fd.revoke(now=NOW + 40, cert_serial="00AB:CD") == (3, True)
    assert "abcd" in json.loads(fd.manifest_path.read_bytes())["revoked"]["cert_serials"]
    with pytest.raises(FederationUsageError, match="rotate-authorities"):
        fd.revoke(now=NOW, kid="auth/eu/1")
    # a key id no node of the draft has (a typo: the compromised key would stay trusted) is refused, and
    # nothing is written
    before = fd.manifest_path.read_bytes()
    for typo in ("es/sig/9", "ex/sig/1"):
        with pytest.raises(FederationUsageError, match=f"--kid {typo}: no node of the manifest has this key"):
            fd.revoke(now=NOW + 50, kid=typo)
    assert fd.manifest_path.read_bytes() == before


def test_hand_edited_signed_manifest_names_the_stale_signatures(tmp_path):
    fd = build(tmp_path)
    fd.sign("eu", now=NOW)
    fd.sign("mx", now=NOW)
    obj = json.loads(fd.manifest_path.read_bytes())
    obj["nodes"][0]["endpoint"] = "https://10.0.0.1:1"
    from gateway.core.canonical import canonical_bytes

    fd.manifest_path.write_bytes(canonical_bytes(obj))
    with pytest.raises(ManifestRejected) as e:
        fd.verify(now=NOW)
    assert "0 valid signature(s)" in e.value.reason
    assert "auth/eu/1: does not verify over these bytes (altered, or signed before a change)" in e.value.reason


def test_rollback_below_the_published_version_refused(tmp_path):
    fd = build(tmp_path)
    fd.sign("eu", now=NOW)
    fd.sign("mx", now=NOW)
    v1 = (fd.manifest_path.read_bytes(), fd.sig_path.read_bytes())
    fd.bump(now=NOW + 5)
    fd.sign("eu", now=NOW + 5)
    assert fd.sign("mx", now=NOW + 5).published
    fd.manifest_path.write_bytes(v1[0])
    fd.sig_path.write_bytes(v1[1])
    with pytest.raises(ManifestRejected, match=r"version 1 is not greater than trusted version 2 \(rollback\)"):
        fd.verify(now=NOW + 6)


def test_authority_rotation_through_the_folder(tmp_path):
    fd = build(tmp_path)
    fd.sign("eu", now=NOW)
    fd.sign("mx", now=NOW)
    old_anchor = fd.read_anchor()
    # Replace mx by co, give eu a new key, threshold 2.
    version, started, kids = fd.rotate_authorities(["eu", "co", "ameripol"], 2, now=NOW + 1, rekey=["eu"])
    assert (version, started) == (2, True)
    assert kids == ["auth/eu/2", "auth/co/1", "auth/ameripol/1"]
    # `sign eu` signs with both eu keys (eu/1 is in the trusted set, eu/2 in the new one): with co that
    # makes 2 of the new set but only 1 of the old set.
    fd.sign("co", now=NOW + 1)
    res = fd.sign("eu", now=NOW + 1)
    assert set(res.signed) == {"auth/eu/1", "auth/eu/2"}
    assert not res.published and "1 valid signature(s) from the trusted authorities" in res.status
    # mx (old set only) completes the old threshold: published, anchor moves to the new set.
    res = fd.sign("mx", now=NOW + 1)
    assert res.published, res.status
    new_anchor = fd.read_anchor()
    assert new_anchor != old_anchor and {k.kid for k in new_anchor.keys} == set(kids)
    assert TrustAnchor.from_json((fd.root / "history" / "trust-anchor-before-v2.json").read_bytes()) == old_anchor
    # A node installed with the OLD anchor accepts version 2 (old and new sets signed it).
    old_path = fd.root / "history" / "trust-anchor-before-v2.json"
    assert fd.verify(now=NOW + 2, anchor=old_path).new is not None
    # Version 3 needs only the new set; mx can no longer sign.
    fd.bump(now=NOW + 3)
    with pytest.raises(FederationDirError, match="none of its keys"):
        fd.sign("mx", now=NOW + 3)
    fd.sign("co", now=NOW + 3)
    assert fd.sign("ameripol", now=NOW + 3).published
    assert fd.verify(now=NOW + 3).federation.version == 3


def test_issue_local_client_certificate(fed):
    cert, key, serial = fed.issue_local("mx", "operator", "alice", now=NOW)
    info = pki.cert_info(cert.read_bytes())
    assert info.san_uris == ("urn:traza:local:operator:alice",) and info.serial_hex == serial
    assert key.stat().st_mode & 0o777 == 0o600
    assert "operator:alice" in fed.node_files("mx").clients
    with pytest.raises(FederationDirError, match="already exists"):
        fed.issue_local("mx", "operator", "alice", now=NOW)
    with pytest.raises(FederationUsageError, match="local name"):
        fed.issue_local("mx", "operator", "bad name", now=NOW)
