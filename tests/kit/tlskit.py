"""Certificates made on the spot and one-shot TLS servers/clients on 127.0.0.1, for the TLS tests
(tests/crypto, tests/attacks): any key type, any SAN, signed by a test CA or by a federation's CA."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.crypto.tls import peer_cert_der, peer_node_id

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
NOT_AFTER = NOW + dt.timedelta(days=30)

Key = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


@dataclass
class CA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @classmethod
    def from_files(cls, cert_pem: Path, key_pem: Path) -> CA:
        """A CA whose files exist, e.g. a federation's ``pki/ca/ca.pem`` and ``ca.key``."""
        key = serialization.load_pem_private_key(key_pem.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cls(key, x509.load_pem_x509_certificate(cert_pem.read_bytes()))


def make_ca(name: str) -> CA:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=5))
        .not_valid_after(NOT_AFTER + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CA(key, cert)


def make_leaf(
    ca: CA, uris: list[str], *, key: Key | None = None, serial: int | None = None,
    not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
) -> tuple[x509.Certificate, Key]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, uris[0] if uris else "none")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(minutes=5))
        .not_valid_after(not_after or NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if uris:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]), critical=False
        )
    return b.sign(ca.key, hashes.SHA256()), key


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def write_pair(tmp: Path, name: str, cert: x509.Certificate, key: Key) -> tuple[Path, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    c, k = tmp / f"{name}.crt", tmp / f"{name}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    k.chmod(0o600)
    return c, k


# --- one-shot TLS server and client on 127.0.0.1 (threads and blocking sockets) ----------------------------


@dataclass
class ServerResult:
    version: str | None = None
    peer: str | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def serve_once(ctx: ssl.SSLContext) -> tuple[int, ServerResult]:
    """Accept one connection with ``ctx``, read one byte, answer ``hello <client node id>``."""
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(5)
    port = lsock.getsockname()[1]
    result = ServerResult()

    def run() -> None:
        try:
            conn, _ = lsock.accept()
            conn.settimeout(5)
            with ctx.wrap_socket(conn, server_side=True) as tls:
                result.version = tls.version()
                d = peer_cert_der(tls)
                result.peer = peer_node_id(d) if d else None
                tls.recv(1)
                tls.sendall(f"hello {result.peer}".encode())
        except BaseException as exc:
            result.error = exc
        finally:
            lsock.close()
            result.done.set()

    threading.Thread(target=run, daemon=True).start()
    return port, result


def talk(ctx: ssl.SSLContext, port: int) -> tuple[str | None, str | None, bytes]:
    """Handshake, send one byte, read the answer: (version, server node id, answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        version = tls.version()
        d = peer_cert_der(tls)
        server = peer_node_id(d) if d else None
        tls.sendall(b"x")
        return version, server, tls.recv(100)
