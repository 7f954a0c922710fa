"""X.509 for the federation (SPEC §4, §6): the federation TLS CA, node TLS certificates, per-node local
CAs and local client certificates. Every key is ECDSA P-256; every function takes ``now``.

- Federation CA: ``CA:true, pathlen:0``, keyCertSign+cRLSign, default validity 5 years.
- Leaf validity counts from ``now - 5 min`` (clock tolerance), so not_after - not_before <= 90 days.
- Node certificate: SAN ``URI:urn:traza:node:<id>`` (+ ``DNS:localhost``, ``IP:127.0.0.1`` and any extra
  DNS/IP names asked for), EKU serverAuth+clientAuth, digitalSignature, at most 90 days.
- Local CA (one per node): like the federation CA, it signs only that node's local client certificates.
- Local client certificate: SAN ``URI:urn:traza:local:<role>:<name>``, role system|operator|auditor,
  EKU clientAuth, at most 90 days.

Certificates and keys are handed out as PEM bytes so callers (``gateway.trust``) need not import
``cryptography``. Private keys are PKCS#8 PEM: write them with ``gateway.crypto.keys.write_private``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from gateway.core.codes import NODE_ID
from gateway.crypto.tls import (
    LOCAL_NAME,
    LOCAL_ROLES,
    LOCAL_URI_PREFIX,
    NODE_URI_PREFIX,
    is_ecdsa_p256,
    peer_node_id,
)

MAX_LEAF_DAYS = 90
CA_DAYS = 5 * 365
BACKDATE = dt.timedelta(minutes=5)  # tolerate small clock differences between machines


class PkiError(ValueError):
    """A certificate could not be made or read (names the certificate and the reason)."""


@dataclass(frozen=True, repr=False)
class Issued:
    """A certificate with its private key (both PEM)."""

    cert_pem: bytes
    key_pem: bytes  # secret

    def __repr__(self) -> str:  # never show key material
        info = cert_info(self.cert_pem)
        return f"Issued(subject={info.subject!r}, serial={info.serial_hex})"

    @property
    def serial_hex(self) -> str:
        return cert_info(self.cert_pem).serial_hex


@dataclass(frozen=True)
class CertInfo:
    subject: str
    issuer: str
    serial: int
    serial_hex: str  # lower-case hex, no leading zeros (the manifest revocation list form)
    not_before: dt.datetime
    not_after: dt.datetime
    is_ca: bool
    p256: bool
    san_uris: tuple[str, ...]
    san_dns: tuple[str, ...]
    san_ips: tuple[str, ...]
    eku: tuple[str, ...]  # "serverAuth", "clientAuth"


def _utc(now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None:
        raise PkiError("now must be timezone-aware (UTC)")
    return now.astimezone(dt.UTC).replace(microsecond=0)


def _name(cn: str, org: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _load_ca(ca: Issued) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"CA {cert.subject.rfc4514_string()}: key is not an EC key")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise PkiError(f"CA {cert.subject.rfc4514_string()}: key does not match the certificate")
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    if not bc.ca:
        raise PkiError(f"{cert.subject.rfc4514_string()} is not a CA certificate")
    return cert, key


def _make_ca(cn: str, org: str, now: dt.datetime, days: int) -> Issued:
    now = _utc(now)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(cn, org)
    pub = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _issue_leaf(
    ca: Issued,
    cn: str,
    sans: list[x509.GeneralName],
    ekus: list[x509.ObjectIdentifier],
    now: dt.datetime,
    days: int,
) -> Issued:
    if not 1 <= days <= MAX_LEAF_DAYS:
        raise PkiError(f"certificate for {cn}: validity {days} days is not within 1..{MAX_LEAF_DAYS}")
    now = _utc(now)
    ca_cert, ca_key = _load_ca(ca)
    not_after = min(now - BACKDATE + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    key = ec.generate_private_key(ec.SECP256R1())
    pub = key.public_key()
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    org = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, str(org[0].value) if org else "traza"))
        .issuer_name(ca_cert.subject)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def make_federation_ca(federation: str, *, now: dt.datetime, days: int = CA_DAYS, number: int = 1) -> Issued:
    """The federation TLS CA (its certificate goes into the manifest ``tls_ca``); ``number`` > 1 for the
    next CAs of a rollover, named apart (``... TLS CA 2``) so that both can be trusted side by side."""
    suffix = "" if number == 1 else f" {number}"
    return _make_ca(f"{federation} federation TLS CA{suffix}", federation, now, days)


def issue_node_cert(
    ca: Issued,
    node_id: str,
    *,
    now: dt.datetime,
    days: int = MAX_LEAF_DAYS,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
) -> Issued:
    """A node TLS certificate: SAN ``urn:traza:node:<id>``, localhost, 127.0.0.1 and any extra names."""
    if not NODE_ID.match(node_id):
        raise PkiError(f"node id {node_id!r} does not match {NODE_ID.pattern}")
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(f"{NODE_URI_PREFIX}{node_id}")]
    for d in ("localhost", *dns_names):
        if x509.DNSName(d) not in sans:
            sans.append(x509.DNSName(d))
    for ip in ("127.0.0.1", *ip_addresses):
        try:
            gn = x509.IPAddress(ipaddress.ip_address(ip))
        except ValueError:
            raise PkiError(f"node {node_id}: {ip!r} is not an IP address") from None
        if gn not in sans:
            sans.append(gn)
    ekus = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    return _issue_leaf(ca, f"{node_id}", sans, ekus, now, days)


def make_local_ca(federation: str, node_id: str, *, now: dt.datetime, days: int = CA_DAYS, number: int = 1) -> Issued:
    """A node's local CA: it signs the certificates national systems, operators and auditors log in with;
    ``number`` > 1 for the next CAs of a local CA rollover (``<node> local CA 2``)."""
    if not NODE_ID.match(node_id):
        raise PkiError(f"node id {node_id!r} does not match {NODE_ID.pattern}")
    return _make_ca(f"{node_id} local CA{'' if number == 1 else f' {number}'}", federation, now, days)


def issue_local_cert(ca: Issued, role: str, name: str, *, now: dt.datetime, days: int = MAX_LEAF_DAYS) -> Issued:
    """A local API client certificate: SAN ``urn:traza:local:<role>:<name>``, EKU clientAuth."""
    if role not in LOCAL_ROLES:
        raise PkiError(f"local role {role!r} is not one of {', '.join(LOCAL_ROLES)}")
    if not LOCAL_NAME.fullmatch(name):
        raise PkiError(f"local name {name!r} does not match {LOCAL_NAME.pattern}")
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(f"{LOCAL_URI_PREFIX}{role}:{name}")]
    return _issue_leaf(ca, f"{role}:{name}", sans, [ExtendedKeyUsageOID.CLIENT_AUTH], now, days)


def cert_info(cert_pem: bytes) -> CertInfo:
    """What a certificate says, for summaries and tests."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise PkiError(f"not a PEM X.509 certificate: {exc}") from None

    def ext(oid: x509.ObjectIdentifier) -> x509.ExtensionType | None:
        try:
            return cert.extensions.get_extension_for_oid(oid).value
        except x509.ExtensionNotFound:
            return None

    san = ext(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    bc = ext(ExtensionOID.BASIC_CONSTRAINTS)
    eku = ext(ExtensionOID.EXTENDED_KEY_USAGE)
    pub = cert.public_key()
    names = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth"}
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=cert.serial_number,
        serial_hex=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        is_ca=bool(isinstance(bc, x509.BasicConstraints) and bc.ca),
        p256=isinstance(pub, ec.EllipticCurvePublicKey) and isinstance(pub.curve, ec.SECP256R1),
        san_uris=tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
        if isinstance(san, x509.SubjectAlternativeName) else (),
        san_dns=tuple(san.get_values_for_type(x509.DNSName)) if isinstance(san, x509.SubjectAlternativeName) else (),
        san_ips=tuple(str(i) for i in san.get_values_for_type(x509.IPAddress))
        if isinstance(san, x509.SubjectAlternativeName) else (),
        eku=tuple(names.get(o, o.dotted_string) for o in eku) if isinstance(eku, x509.ExtendedKeyUsage) else (),
    )


def verify_issued_by(cert_pem: bytes, ca_cert_pem: bytes) -> bool:
    """True if ``cert_pem`` is signed by ``ca_cert_pem`` (signature and issuer name; no time check)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca = x509.load_pem_x509_certificate(ca_cert_pem)
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def load_issued(cert_pem: bytes, key_pem: bytes) -> Issued:
    """Rebuild an :class:`Issued` from files, checking that the key belongs to the certificate."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{cert.subject.rfc4514_string()}: key is not an EC key")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise PkiError(f"{cert.subject.rfc4514_string()}: key does not match the certificate")
    return Issued(cert_pem, key_pem)


def pkcs12_bundle(cert_pem: bytes, key_pem: bytes, password: str, *, ca_pem: bytes | None = None,
                  name: str = "traza") -> bytes:
    """A PKCS#12 file (PBKDF2 + AES-256) holding an EC client certificate, its key and, if given, the
    issuing CA — what a browser imports to log in to the dashboard. Raises ValueError naming which input
    is wrong: ``certificate``, ``private key``, ``CA certificate`` or ``password``."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise ValueError(f"certificate: not a readable PEM certificate ({exc})") from None
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"private key: not a readable unencrypted PEM private key ({exc})") from None
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise ValueError(f"private key: expected an EC private key, found {type(private).__name__}")
    if private.public_key().public_numbers() != certificate.public_key().public_numbers():  # type: ignore[union-attr]
        raise ValueError("private key: does not belong to the certificate")
    cas = None
    if ca_pem is not None:
        try:
            cas = [x509.load_pem_x509_certificate(ca_pem)]
        except ValueError as exc:
            raise ValueError(f"CA certificate: not a readable PEM certificate ({exc})") from None
    if not password:
        raise ValueError("password: a PKCS#12 bundle needs a non-empty password")
    return pkcs12.serialize_key_and_certificates(name.encode(), private, certificate, cas,
                                                 serialization.BestAvailableEncryption(password.encode()))


# --- start-up checks of a node's own TLS files (SPEC §4, §6) ---------------------------------------------


_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


def pem_mismatch(pem: bytes, wanted: str) -> str:
    """Why ``pem`` is not the ``wanted`` PEM object (``CERTIFICATE`` or ``PRIVATE KEY``), in plain words:
    the file holds the other kind, or no PEM block at all."""
    labels = [m.decode() for m in _PEM_LABEL.findall(pem)]
    if not labels:
        return "not a PEM file (no -----BEGIN ...----- line)"
    if wanted == "CERTIFICATE" and any(lb.endswith("PRIVATE KEY") for lb in labels):
        return "this file holds a private key, not a certificate"
    if wanted == "PRIVATE KEY" and "CERTIFICATE" in labels:
        return "this file holds a certificate, not a private key"
    return f"holds a PEM {labels[0]}, not a {wanted}"


def _pem_certs(pem: bytes) -> list[x509.Certificate]:
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise PkiError(pem_mismatch(pem, "CERTIFICATE"))
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise PkiError(f"not a readable PEM X.509 certificate ({str(exc).split('. See ')[0]})") from None


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_node_certificate(cert_pem: bytes, node_id: str, ca_pems: list[str]) -> str:
    """Check that ``cert_pem`` (the first certificate of the file) is a node certificate of ``node_id``: its
    SAN names exactly ``urn:traza:node:<node_id>``, its key is ECDSA P-256, and it is signed by one of
    ``ca_pems`` (the manifest ``tls_ca``). Returns its serial (revocation-list form); raises PkiError naming
    the fault."""
    cert = _pem_certs(cert_pem)[0]
    der = cert.public_bytes(serialization.Encoding.DER)
    if peer_node_id(der) != node_id:
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            uris = ", ".join(san.get_values_for_type(x509.UniformResourceIdentifier)) or "no SAN URI"
        except x509.ExtensionNotFound:
            uris = "no SAN URI"
        raise PkiError(f"the TLS certificate names {uris}, not this node {node_id!r} "
                       f"(expected exactly {NODE_URI_PREFIX}{node_id})")
    if not is_ecdsa_p256(der):
        raise PkiError(f"the TLS certificate's key is {type(cert.public_key()).__name__}, not ECDSA P-256")
    for pem in ca_pems:
        for ca in _pem_certs(pem.encode()):
            try:
                cert.verify_directly_issued_by(ca)
            except (InvalidSignature, ValueError, TypeError):
                continue
            return format(cert.serial_number, "x")
    raise PkiError(f"the TLS certificate (issuer {cert.issuer.rfc4514_string()}) does not chain to a manifest tls_ca")


def check_key_matches(cert_pem: bytes, key_pem: bytes) -> None:
    """Raise PkiError unless ``key_pem`` is the unencrypted private key of the certificate ``cert_pem``."""
    cert = _pem_certs(cert_pem)[0]
    if not re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----", key_pem):
        raise PkiError(pem_mismatch(key_pem, "PRIVATE KEY"))
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"not an unencrypted PEM private key ({str(exc).split('. See ')[0]})") from None
    pub = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if pub != _spki(cert):
        raise PkiError(f"this private key does not match the TLS certificate ({cert.subject.rfc4514_string()})")


def check_local_ca(ca_pem: bytes, federation_ca_pems: list[str]) -> None:
    """The local listener's client CA: every certificate of the file is a CA certificate, and none is (or
    shares its key with) a federation TLS CA, whose holders could then issue operator certificates for
    this node. Raises PkiError naming the fault."""
    fed = {_spki(c) for pem in federation_ca_pems for c in _pem_certs(pem.encode())}
    for cert in _pem_certs(ca_pem):
        name = cert.subject.rfc4514_string()
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if bc is None or not bc.ca:
            raise PkiError(f"{name} is not a CA certificate (basicConstraints CA:true): the local listener needs "
                           "this node's local CA")
        if _spki(cert) in fed:
            raise PkiError(f"{name} is a federation TLS CA of the manifest: the local listener must trust this "
                           "node's own local CA only")
