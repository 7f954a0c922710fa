"""Mutual-TLS contexts and certificate identity helpers (SPEC §4, §6).

Both sides: TLS 1.3 only, a certificate required and verified against the given CA certificates, no
hostname check. A peer's identity is the SAN URI of its certificate (``urn:traza:node:<id>`` for nodes,
``urn:traza:local:<role>:<name>`` for local clients), read with :func:`peer_node_id` /
:func:`peer_local_identity` after the handshake and compared with the manifest by the caller; the caller
also checks :func:`cert_serial_hex` against the manifest revocation list, and the issuer against the
manifest ``tls_ca``, on every request, since both change without a restart (the revocation list is not a
CA-signed CRL that OpenSSL could load, and OpenSSL cannot drop a CA from a context's store)
(:func:`node_cert_refusal` is that check, shared by the server and the client).

Certificate renewal and CA rollover without a restart (issue #12): :func:`reload_cert_chain` puts a renewed
certificate into the very contexts the listeners and clients use (new handshakes present it, open
connections continue) and :func:`add_trusted_cas` adds a CA the manifest now lists.

Key exchange groups (Mozilla "modern"): both contexts offer and accept only :data:`TLS_GROUPS` (the hybrid
post-quantum ``X25519MLKEM768`` first when the linked OpenSSL has it, 3.5 or later). Python 3.11's ``ssl``
has no API for a group list, so :func:`set_groups` calls OpenSSL's ``SSL_CTX_set1_groups_list`` on the
context's ``SSL_CTX`` through ctypes, in the very libssl the ``_ssl`` module is linked to, after checking
that the pointer it found is that context (see :func:`_ssl_ctx_pointer`). Anything unexpected raises
:class:`TLSSetupError`, so a node refuses to start rather than offer groups it should not.
"""

from __future__ import annotations

import ctypes
import functools
import re
import ssl
import sys
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID

from gateway.core.codes import NODE_ID
from gateway.core.manifest import Federation

NODE_URI_PREFIX = "urn:traza:node:"
LOCAL_URI_PREFIX = "urn:traza:local:"
LOCAL_ROLES = ("system", "operator", "auditor")
LOCAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


# OpenSSL 3.5 added the hybrid ML-KEM group; older versions refuse its name in a group list
PQ_GROUP = "X25519MLKEM768"
CLASSICAL_GROUPS = ("X25519", "P-256", "P-384")
HAS_PQ_GROUP = ssl.OPENSSL_VERSION_INFO >= (3, 5)
TLS_GROUPS: tuple[str, ...] = ((PQ_GROUP,) if HAS_PQ_GROUP else ()) + CLASSICAL_GROUPS

# from OpenSSL's ssl.h (stable ABI numbers: SSL_CTX_set1_groups_list and the proto-version getters are
# macros over SSL_CTX_ctrl)
_SSL_CTRL_SET_GROUPS_LIST = 92
_SSL_CTRL_GET_MIN_PROTO_VERSION = 130
_SSL_CTRL_GET_MAX_PROTO_VERSION = 131
_TLS1_3_VERSION = 0x0304


class TLSSetupError(RuntimeError):
    """The TLS configuration cannot be applied as required (e.g. the key exchange groups)."""


@functools.cache
def _libssl() -> ctypes.CDLL:
    """The libssl that Python's ``_ssl`` module uses: dlsym on the module's handle searches the libraries it
    is linked to, so these are the functions working on the contexts ``ssl`` creates."""
    import _ssl

    if sys.implementation.name != "cpython":
        raise TLSSetupError(f"setting TLS groups needs CPython's _ssl module, not {sys.implementation.name}")
    try:
        lib = ctypes.CDLL(_ssl.__file__)
        ctrl, version = lib.SSL_CTX_ctrl, lib.OpenSSL_version_num
        get_options, get_verify = lib.SSL_CTX_get_options, lib.SSL_CTX_get_verify_mode
        clear = lib.ERR_clear_error
    except (OSError, AttributeError) as exc:
        raise TLSSetupError(f"cannot reach OpenSSL's libssl through {_ssl.__file__}: {exc}") from None
    ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    ctrl.restype = ctypes.c_long
    version.argtypes, version.restype = [], ctypes.c_ulong
    get_options.argtypes, get_options.restype = [ctypes.c_void_p], ctypes.c_uint64
    get_verify.argtypes, get_verify.restype = [ctypes.c_void_p], ctypes.c_int
    clear.argtypes, clear.restype = [], None
    if version() != ssl.OPENSSL_VERSION_NUMBER:
        raise TLSSetupError(f"the libssl found ({version():#x}) is not the one ssl reports "
                            f"({ssl.OPENSSL_VERSION_NUMBER:#x}, {ssl.OPENSSL_VERSION})")
    return lib


def _ssl_ctx_pointer(ctx: ssl.SSLContext) -> int:
    """The ``SSL_CTX *`` of a context: CPython's ``PySSLContext`` starts with the object header followed by
    that pointer. Checked before use: the context found must report the same options, verify mode and
    TLS 1.3-only versions as ``ctx`` (set by :func:`_base_context`), else TLSSetupError."""
    lib = _libssl()
    ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not ptr:
        raise TLSSetupError("the SSLContext has no SSL_CTX pointer where CPython keeps it")
    verify = {0: ssl.CERT_NONE, 1: ssl.CERT_OPTIONAL, 3: ssl.CERT_REQUIRED}  # SSL_VERIFY_PEER | FAIL_IF_NO_PEER_CERT
    mode = lib.SSL_CTX_get_verify_mode(ptr) & 3  # without SSL_VERIFY_CLIENT_ONCE / POST_HANDSHAKE
    same = (lib.SSL_CTX_get_options(ptr) == int(ctx.options)
            and verify.get(mode) == ctx.verify_mode
            and lib.SSL_CTX_ctrl(ptr, _SSL_CTRL_GET_MIN_PROTO_VERSION, 0, None) == _TLS1_3_VERSION
            and lib.SSL_CTX_ctrl(ptr, _SSL_CTRL_GET_MAX_PROTO_VERSION, 0, None) == _TLS1_3_VERSION)
    if not same:
        raise TLSSetupError("the SSL_CTX found behind the SSLContext does not match it (options, verify mode, "
                            "TLS 1.3 only): refusing to change it")
    return int(ptr)


def set_groups(ctx: ssl.SSLContext, groups: tuple[str, ...] | list[str] = TLS_GROUPS) -> None:
    """Offer and accept only ``groups`` (OpenSSL names, most preferred first) for the key exchange on
    ``ctx``, a TLS 1.3-only context. Raises TLSSetupError if OpenSSL refuses the list."""
    lib = _libssl()
    ptr = _ssl_ctx_pointer(ctx)
    if lib.SSL_CTX_ctrl(ptr, _SSL_CTRL_SET_GROUPS_LIST, 0, ":".join(groups).encode()) != 1:
        lib.ERR_clear_error()
        raise TLSSetupError(f"OpenSSL ({ssl.OPENSSL_VERSION}) refused the TLS groups {':'.join(groups)}")


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
    set_groups(ctx)
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


def reload_cert_chain(ctx: ssl.SSLContext, cert_pem_path: str | Path, key_path: str | Path) -> None:
    """Put a new certificate and key into an existing context: handshakes from now on present it, while
    connections already open keep the certificate they were made with (OpenSSL copies the context's
    certificate into each connection when it is created). Raises ValueError naming the files."""
    try:
        ctx.load_cert_chain(str(cert_pem_path), str(key_path))
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"cannot load TLS certificate {cert_pem_path} with key {key_path}: {exc}") from None


def add_trusted_cas(ctx: ssl.SSLContext, ca_pems: list[str]) -> None:
    """Add CA certificates to a context's trust store (a CA added to the manifest ``tls_ca``, e.g. the
    new CA of a rollover). OpenSSL can add, not remove: a CA removed from the manifest stays in the store
    until the next start, and :func:`node_cert_refusal` refuses its certificates on every request."""
    try:
        ctx.load_verify_locations(cadata="\n".join(ca_pems))
    except ssl.SSLError as exc:
        raise ValueError(f"tls_ca: cannot load CA certificates: {exc}") from None


_X509_V_FLAG_USE_CHECK_TIME = 0x2


def set_verify_time(ctx: ssl.SSLContext, when: float | None) -> None:
    """Make OpenSSL check certificate validity on ``ctx`` at ``when`` (POSIX seconds) instead of the system
    clock, for connections made from now on; None returns to the system clock. Only for nodes running on
    an injected clock (a simulation of months in seconds): in production the system clock is used."""
    lib = _libssl()
    try:
        get_param, set_time, clear = lib.SSL_CTX_get0_param, lib.X509_VERIFY_PARAM_set_time, \
            lib.X509_VERIFY_PARAM_clear_flags
    except AttributeError as exc:
        raise TLSSetupError(f"OpenSSL has no verify-time API: {exc}") from None
    get_param.argtypes, get_param.restype = [ctypes.c_void_p], ctypes.c_void_p
    set_time.argtypes, set_time.restype = [ctypes.c_void_p, ctypes.c_int64], None
    clear.argtypes, clear.restype = [ctypes.c_void_p, ctypes.c_ulong], ctypes.c_int
    param = get_param(_ssl_ctx_pointer(ctx))
    if not param:
        raise TLSSetupError("SSL_CTX_get0_param returned no verify parameters")
    if when is None:
        clear(param, _X509_V_FLAG_USE_CHECK_TIME)
    else:
        set_time(param, int(when))


def peer_cert_der(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> bytes | None:
    """The DER certificate the peer presented on a TLS connection, or None."""
    return ssl_object.getpeercert(binary_form=True)


@functools.lru_cache(maxsize=256)
def _load(cert_der: bytes) -> x509.Certificate:
    """The parsed certificate. A node's certificate is checked on every peer request (its SAN, key and
    serial, :func:`node_cert_refusal`): parsed once and kept, by its DER bytes (256 certificates; one that
    does not parse raises each time and is not kept)."""
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


def cert_serials_of(pem: str) -> list[str]:
    """The serials (hex) of every certificate of a PEM text, in file order. ValueError if there is none."""
    try:
        certs = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except ValueError as exc:
        raise ValueError(f"no readable PEM certificate ({exc})") from None
    return [serial_hex(c.serial_number) for c in certs]


def serial_hex(serial: int) -> str:
    """Canonical text of a serial in the manifest revocation list: lower-case hex, no leading zeros."""
    return format(serial, "x")


def cert_serial_hex(cert_der: bytes) -> str:
    return serial_hex(cert_serial(cert_der))


def is_ecdsa_p256(cert_der: bytes) -> bool:
    """True if the certificate's subject key is an ECDSA key on P-256 (SPEC §4)."""
    key = _load(cert_der).public_key()
    return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)


class CertRefusal(NamedTuple):
    """Why a node certificate is not acceptable now: ``reason`` is a short class for logs and metrics
    (``no_certificate``, ``bad_certificate``, ``unknown_node``, ``wrong_node``, ``bad_key``, ``revoked``,
    ``unknown_ca``),
    ``detail`` says which certificate and why."""

    reason: str
    detail: str


def node_cert_refusal(cert_der: bytes | None, fed: Federation | None, expected: str | None = None) -> CertRefusal | None:
    """The SPEC §4 checks of a node certificate that the TLS handshake cannot make, against the manifest
    in force: the SAN names exactly one node of ``fed`` (``expected`` when given: the server a client meant
    to reach), the key is ECDSA P-256, the serial is not revoked, and it is issued by a ``tls_ca`` of
    ``fed`` (:func:`issued_by_any`). None when acceptable. Called by the
    peer server after each handshake and on every request, and by the peer client on every request (new
    and kept-alive connections alike), so a manifest applied at run time takes effect at once.
    Without ``fed`` (a client with no manifest, e.g. in tests) only the SAN and the key are checked."""
    if cert_der is None:
        return CertRefusal("no_certificate", "no certificate")
    try:
        node = peer_node_id(cert_der)
        p256 = is_ecdsa_p256(cert_der)
        serial = cert_serial(cert_der)
    except ValueError as exc:
        return CertRefusal("bad_certificate", str(exc))
    if node is None or (fed is not None and fed.node(node) is None):
        return CertRefusal("unknown_node", "certificate names no node of the manifest")
    if expected is not None and node != expected:
        return CertRefusal("wrong_node", f"certificate names {node!r}, not {expected!r}")
    if not p256:
        return CertRefusal("bad_key", f"certificate of {node} is not an ECDSA P-256 key")
    if fed is not None and fed.is_serial_revoked(serial):
        return CertRefusal("revoked", f"certificate of {node} is revoked (serial {serial_hex(serial)})")
    if fed is not None and not issued_by_any(cert_der, tuple(fed.manifest.tls_ca)):
        return CertRefusal("unknown_ca", f"certificate of {node} (serial {serial_hex(serial)}) is not issued by a "
                                         f"tls_ca of manifest version {fed.version}")
    return None



def local_cert_refusal(cert_der: bytes | None, local_cas: tuple[str, ...], fed: Federation | None) -> CertRefusal | None:
    """The checks of a local API client certificate the handshake cannot make, against what is in force
    now: issued by one of ``local_cas`` (the CAs of ``keys.local_ca`` the node last read: a CA retired by
    ``traza pki retire-local-ca`` stops being trusted at once, on open connections too), and its serial
    not revoked in the manifest ``fed``. The role is read separately (:func:`peer_local_identity`). None
    when acceptable. Asked after each handshake on the local listener and on every request."""
    if cert_der is None:
        return CertRefusal("no_certificate", "no local client certificate")
    try:
        serial = cert_serial(cert_der)
    except ValueError as exc:
        return CertRefusal("bad_certificate", str(exc))
    if not issued_by_any(cert_der, local_cas):
        return CertRefusal("unknown_ca", f"local client certificate (serial {serial_hex(serial)}) is not issued by a "
                                         "local CA this node trusts now (keys.local_ca)")
    if fed is not None and fed.is_serial_revoked(serial):
        return CertRefusal("revoked", f"local client certificate (serial {serial_hex(serial)}) is revoked in "
                                      f"manifest version {fed.version}")
    return None


@functools.lru_cache(maxsize=256)
def issued_by_any(cert_der: bytes, ca_pems: tuple[str, ...]) -> bool:
    """True if the certificate is signed by one of ``ca_pems`` (the manifest ``tls_ca`` in force). OpenSSL
    checked the chain at the handshake against the CAs the context held then; this is asked again on
    every request because a CA removed from the manifest (the end of a CA rollover) must stop being
    trusted at once, on connections already open too. Cached: a pure function of its arguments."""
    cert = _load(cert_der)
    for pem in ca_pems:
        try:
            cas = x509.load_pem_x509_certificates(pem.encode())
        except ValueError:
            continue
        for ca in cas:
            try:
                cert.verify_directly_issued_by(ca)
            except (InvalidSignature, ValueError, TypeError):
                continue
            return True
    return False


def cert_not_after(cert_der: bytes) -> float:
    """End of validity as a POSIX timestamp."""
    return _load(cert_der).not_valid_after_utc.timestamp()
