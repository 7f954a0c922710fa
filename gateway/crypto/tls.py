"""Mutual-TLS contexts and certificate identity helpers (SPEC §4, §6).

Both sides: TLS 1.3 only, a certificate required and verified against the given CA certificates, no
hostname check. A peer's identity is the SAN URI of its certificate (``urn:traza:node:<id>`` for nodes,
``urn:traza:local:<role>:<name>`` for local clients), read with :func:`peer_node_id` /
:func:`peer_local_identity` after the handshake and compared with the manifest by the caller; the caller
also checks :func:`cert_serial_hex` against the manifest revocation list on every request, since the
revocation list changes without a restart and is not a CA-signed CRL that OpenSSL could load.
"""

from __future__ import annotations

import functools
import re
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID

from gateway.core.manifest import NODE_ID

NODE_URI_PREFIX = "urn:traza:node:"
LOCAL_URI_PREFIX = "urn:traza:local:"
LOCAL_ROLES = ("system", "operator", "auditor")
LOCAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _base_context(
    server: bool, cert_pem_path: str | Path, key_path: str | Path, ca_pems: list[str]
) -> ssl.SSLContext:
    protocol = ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # identity is the SAN URI, checked by the caller against the manifest
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.options |= ssl.OP_NO_COMPRESSION
    if not ca_pems:
        raise ValueError("mTLS context needs at least one CA certificate (manifest tls_ca)")
    try:
        ctx.load_verify_locations(cadata="\n".join(ca_pems))
    except ssl.SSLError as exc:
        raise ValueError(f"tls_ca: cannot load CA certificates: {exc}") from None
    try:
        ctx.load_cert_chain(str(cert_pem_path), str(key_path))
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"cannot load TLS certificate {cert_pem_path} with key {key_path}: {exc}") from None
    return ctx


def server_context(cert_pem_path: str | Path, key_path: str | Path, ca_pems: list[str]) -> ssl.SSLContext:
    """Server side: TLS 1.3 only, client certificate required and chained to ``ca_pems``.

    Session tickets are off, so every connection presents a full certificate (no resumption carries an
    identity past a revocation)."""
    ctx = _base_context(True, cert_pem_path, key_path, ca_pems)
    ctx.num_tickets = 0
    return ctx


def client_context(cert_pem_path: str | Path, key_path: str | Path, ca_pems: list[str]) -> ssl.SSLContext:
    """Client side: TLS 1.3 only, presents our certificate, requires a server certificate chained to
    ``ca_pems``; no hostname check (call :func:`peer_node_id` on the server certificate instead)."""
    return _base_context(False, cert_pem_path, key_path, ca_pems)


def peer_cert_der(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> bytes | None:
    """The DER certificate the peer presented on a TLS connection, or None."""
    return ssl_object.getpeercert(binary_form=True)


def _load(cert_der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(cert_der)
    except ValueError as exc:
        raise ValueError(f"peer certificate is not valid DER X.509: {exc}") from None


def _san_uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return []
    assert isinstance(san, x509.SubjectAlternativeName)
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def peer_node_id(cert_der: bytes) -> str | None:
    """The node id of SAN URI ``urn:traza:node:<id>``; None if there is none, more than one, the id is not
    a valid node id, or the certificate also names a local identity."""
    uris = _san_uris(_load(cert_der))
    nodes = [u[len(NODE_URI_PREFIX) :] for u in uris if u.startswith(NODE_URI_PREFIX)]
    if len(nodes) != 1 or any(u.startswith(LOCAL_URI_PREFIX) for u in uris):
        return None
    return nodes[0] if NODE_ID.fullmatch(nodes[0]) else None


@functools.lru_cache(maxsize=256)
def peer_local_identity(cert_der: bytes) -> tuple[str, str] | None:
    """``(role, name)`` of SAN URI ``urn:traza:local:<role>:<name>`` (role system|operator|auditor);
    None if there is none, more than one, it is malformed, or the certificate also names a node.

    Asked on every local API request: the answer is a pure function of the DER bytes, so it is cached
    by them (256 certificates; a certificate that does not parse raises each time and is not cached).
    Nothing that changes at run time (manifest, revocations) enters the answer."""
    uris = _san_uris(_load(cert_der))
    locals_ = [u[len(LOCAL_URI_PREFIX) :] for u in uris if u.startswith(LOCAL_URI_PREFIX)]
    if len(locals_) != 1 or any(u.startswith(NODE_URI_PREFIX) for u in uris):
        return None
    role, sep, name = locals_[0].partition(":")
    if not sep or role not in LOCAL_ROLES or not LOCAL_NAME.fullmatch(name):
        return None
    return role, name


def cert_serial(cert_der: bytes) -> int:
    return _load(cert_der).serial_number


def serial_hex(serial: int) -> str:
    """Canonical text of a serial in the manifest revocation list: lower-case hex, no leading zeros."""
    return format(serial, "x")


def cert_serial_hex(cert_der: bytes) -> str:
    return serial_hex(cert_serial(cert_der))


def is_ecdsa_p256(cert_der: bytes) -> bool:
    """True if the certificate's subject key is an ECDSA key on P-256 (SPEC §4)."""
    key = _load(cert_der).public_key()
    return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)


def cert_not_after(cert_der: bytes) -> float:
    """End of validity as a POSIX timestamp."""
    return _load(cert_der).not_valid_after_utc.timestamp()
