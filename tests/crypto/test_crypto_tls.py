"""mTLS contexts and certificate identity (SPEC §4): extractors on real certificates, real handshakes."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from kit.tlskit import CA, NOT_AFTER, ServerResult, der, make_ca, make_leaf, serve_once, talk, write_pair

from gateway.crypto.tls import (
    cert_not_after,
    cert_serial,
    cert_serial_hex,
    client_context,
    is_ecdsa_p256,
    peer_local_identity,
    peer_node_id,
    server_context,
    set_verify_time,
)


@pytest.fixture(scope="module")
def ca() -> CA:
    return make_ca("traza-demo federation TLS CA")


# --- extractors -------------------------------------------------------------------------------------


def test_node_identity(ca: CA) -> None:
    cert, _ = make_leaf(ca, ["urn:traza:node:latam-hub"], serial=0x00ABCDEF01)
    d = der(cert)
    assert peer_node_id(d) == "latam-hub"
    assert peer_local_identity(d) is None
    assert cert_serial(d) == 0xABCDEF01
    assert cert_serial_hex(d) == "abcdef01"
    assert is_ecdsa_p256(d)
    assert cert_not_after(d) == NOT_AFTER.timestamp()


def test_a_certificate_presented_on_every_request_is_parsed_once(ca: CA, monkeypatch: pytest.MonkeyPatch) -> None:
    """The peer server and client check a node certificate on every request (SPEC §4): its SAN, key and
    serial are pure functions of the DER bytes, so the certificate is parsed once, not per request; a
    certificate that does not parse is refused each time."""
    from cryptography import x509

    from gateway.crypto import tls

    getattr(tls._load, "cache_clear", lambda: None)()  # a test before may have parsed it
    parsed: list[bytes] = []
    real = x509.load_der_x509_certificate

    def counting(data: bytes) -> x509.Certificate:
        parsed.append(data)
        return real(data)

    monkeypatch.setattr(tls.x509, "load_der_x509_certificate", counting)
    cert, _ = make_leaf(ca, ["urn:traza:node:eu-hub"])
    d = der(cert)
    for _ in range(50):
        assert tls.node_cert_refusal(d, None) is None
        assert peer_node_id(d) == "eu-hub"
    assert parsed == [d]
    for _ in range(2):
        with pytest.raises(ValueError, match="not valid DER"):
            cert_serial(b"\x30\x03junk")
    assert len(parsed) == 3


def test_local_identity(ca: CA) -> None:
    for role in ("system", "operator", "auditor"):
        cert, _ = make_leaf(ca, [f"urn:traza:local:{role}:sinarm-01"])
        assert peer_local_identity(der(cert)) == (role, "sinarm-01")
        assert peer_node_id(der(cert)) is None


@pytest.mark.parametrize(
    "uris",
    [
        [],
        ["https://mx.example/"],
        ["urn:traza:node:mx", "urn:traza:node:es"],  # two identities: ambiguous
        ["urn:traza:node:MX"],  # not a node id
        ["urn:traza:node:m"],  # too short
        ["urn:traza:node:mx", "urn:traza:local:operator:ana"],  # a node and a local client at once
        ["urn:traza:node:"],
    ],
)
def test_no_node_identity(ca: CA, uris: list[str]) -> None:
    cert, _ = make_leaf(ca, uris)
    assert peer_node_id(der(cert)) is None


@pytest.mark.parametrize(
    "uris",
    [
        [],
        ["urn:traza:local:admin:ana"],  # unknown role
        ["urn:traza:local:operator"],  # no name
        ["urn:traza:local:operator:"],
        ["urn:traza:local:operator:ana:extra"],
        ["urn:traza:local:operator:ana", "urn:traza:local:auditor:ana"],
        ["urn:traza:local:operator:ana", "urn:traza:node:mx"],
    ],
)
def test_no_local_identity(ca: CA, uris: list[str]) -> None:
    cert, _ = make_leaf(ca, uris)
    assert peer_local_identity(der(cert)) is None


def test_key_type_check(ca: CA) -> None:
    p384, _ = make_leaf(ca, ["urn:traza:node:mx"], key=ec.generate_private_key(ec.SECP384R1()))
    ed, _ = make_leaf(ca, ["urn:traza:node:mx"], key=ed25519.Ed25519PrivateKey.generate())
    assert not is_ecdsa_p256(der(p384))
    assert not is_ecdsa_p256(der(ed))


def test_not_der_is_named() -> None:
    with pytest.raises(ValueError, match=r"not valid DER X\.509"):
        peer_node_id(b"\x30\x03\x02\x01\x00")


def test_context_errors_name_the_file(ca: CA, tmp_path: Path) -> None:
    cert, key = make_leaf(ca, ["urn:traza:node:mx"])
    c, k = write_pair(tmp_path, "mx", cert, key)
    with pytest.raises(ValueError, match="at least one CA"):
        server_context(c, k, [])
    with pytest.raises(ValueError, match=r"cannot load TLS certificate .*missing\.crt"):
        client_context(tmp_path / "missing.crt", k, [ca.pem])
    with pytest.raises(ValueError, match="tls_ca"):
        server_context(c, k, ["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])


def test_context_settings(ca: CA, tmp_path: Path) -> None:
    cert, key = make_leaf(ca, ["urn:traza:node:mx"])
    c, k = write_pair(tmp_path, "mx", cert, key)
    for ctx in (server_context(c, k, [ca.pem]), client_context(c, k, [ca.pem])):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
        assert ctx.verify_mode == ssl.CERT_REQUIRED
        assert ctx.check_hostname is False
    assert server_context(c, k, [ca.pem]).num_tickets == 0


# --- real handshakes on 127.0.0.1 ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(ca: CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    tmp = tmp_path_factory.mktemp("pki")
    foreign = make_ca("some other CA")
    out = {}
    for name, issuer, uri in (
        ("mx", ca, "urn:traza:node:mx"),
        ("es", ca, "urn:traza:node:es"),
        ("rogue", foreign, "urn:traza:node:es"),
        ("rogue-server", foreign, "urn:traza:node:mx"),
    ):
        cert, key = make_leaf(issuer, [uri])
        out[name] = write_pair(tmp, name, cert, key)
    return out


def test_mutual_tls13_handshake(ca: CA, pki: dict[str, tuple[Path, Path]]) -> None:
    port, res = serve_once(server_context(*pki["mx"], [ca.pem]))
    version, server, answer = talk(client_context(*pki["es"], [ca.pem]), port)
    assert res.done.wait(5)
    assert res.error is None, res.error
    assert version == "TLSv1.3" and res.version == "TLSv1.3"
    assert server == "mx" and res.peer == "es"
    assert answer == b"hello es"


def _refused(res: ServerResult, client_exc: BaseException | None, answer: bytes | None) -> None:
    assert res.done.wait(5)
    assert isinstance(res.error, ssl.SSLError), f"server accepted: {res.error!r}"
    # TLS 1.3: the client may finish its handshake before the server refuses; it must never get data.
    assert client_exc is not None or not answer


def test_client_without_certificate_is_refused(ca: CA, pki: dict[str, tuple[Path, Path]]) -> None:
    port, res = serve_once(server_context(*pki["mx"], [ca.pem]))
    anon = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anon.minimum_version = ssl.TLSVersion.TLSv1_3
    anon.check_hostname = False
    anon.load_verify_locations(cadata=ca.pem)
    exc: BaseException | None = None
    answer = None
    try:
        _, _, answer = talk(anon, port)
    except (ssl.SSLError, OSError) as e:
        exc = e
    _refused(res, exc, answer)
    assert "certificate" in str(res.error).lower()


def test_client_certificate_from_foreign_ca_is_refused(ca: CA, pki: dict[str, tuple[Path, Path]]) -> None:
    port, res = serve_once(server_context(*pki["mx"], [ca.pem]))
    exc: BaseException | None = None
    answer = None
    try:
        # The rogue client trusts our CA (so it accepts the server) but its own cert is foreign.
        _, _, answer = talk(client_context(*pki["rogue"], [ca.pem]), port)
    except (ssl.SSLError, OSError) as e:
        exc = e
    _refused(res, exc, answer)
    assert "certificate verify failed" in str(res.error)


def test_server_certificate_from_foreign_ca_is_refused(ca: CA, pki: dict[str, tuple[Path, Path]]) -> None:
    port, res = serve_once(server_context(*pki["rogue-server"], [ca.pem]))
    with pytest.raises(ssl.SSLCertVerificationError):
        talk(client_context(*pki["es"], [ca.pem]), port)
    assert res.done.wait(5)
    assert res.error is not None


def test_tls12_client_is_refused(ca: CA, pki: dict[str, tuple[Path, Path]]) -> None:
    port, res = serve_once(server_context(*pki["mx"], [ca.pem]))
    old = client_context(*pki["es"], [ca.pem])
    old.minimum_version = ssl.TLSVersion.TLSv1_2
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        talk(old, port)
    assert res.done.wait(5)
    assert isinstance(res.error, ssl.SSLError)


def test_verify_time_pinned_past_the_certificates_end_refuses_it_and_unpinning_restores(
        ca: CA, pki: dict[str, tuple[Path, Path]]) -> None:
    """``set_verify_time`` (nodes on an injected clock, issue #12): OpenSSL checks validity at the pinned
    time, not the system clock; None goes back to the system clock."""
    client = client_context(*pki["es"], [ca.pem])
    set_verify_time(client, NOT_AFTER.timestamp() + 86400)
    port, res = serve_once(server_context(*pki["mx"], [ca.pem]))
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        talk(client, port)
    assert res.done.wait(5)
    set_verify_time(client, None)
    port, res = serve_once(server_context(*pki["mx"], [ca.pem]))
    assert talk(client, port)[1] == "mx"
    assert res.done.wait(5) and res.error is None
