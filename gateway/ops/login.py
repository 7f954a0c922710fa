"""Browser logins for the dashboard: a PKCS#12 bundle of a local client certificate (operator, auditor).

The local listener admits only client certificates of the node's local CA (SAN
``urn:traza:local:<role>:<name>``). Browsers import such a certificate with its key as one PKCS#12
file protected by a password; :func:`write_login_bundle` makes it from the PEM files that
``traza pki add-node`` / ``issue-local`` wrote.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

# NOTE: the only module outside gateway.crypto that touches `cryptography` (PKCS#12 has no helper there yet)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from gateway.config import Config


class LoginError(ValueError):
    """A login bundle could not be made; the message names the file and the reason."""


def one_time_password() -> str:
    """A fresh random password for the bundles of one demo run (printed once, never stored)."""
    return secrets.token_urlsafe(12)


def write_login_bundle(cert: Path, key: Path, out: Path, password: str, *, ca: Path | None = None,
                       name: str | None = None) -> Path:
    """Write ``out`` (PKCS#12, AES-256 / PBKDF2, mode 0600): the certificate ``cert`` with its private key
    ``key`` (PEM files) and, if given, the issuing CA certificate ``ca``. Returns ``out``."""
    try:
        certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    except (OSError, ValueError) as exc:
        raise LoginError(f"{cert}: not a readable PEM certificate ({exc})") from None
    try:
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise LoginError(f"{key}: not a readable unencrypted PEM private key ({exc})") from None
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise LoginError(f"{key}: expected an EC private key, found {type(private).__name__}")
    if private.public_key().public_numbers() != certificate.public_key().public_numbers():  # type: ignore[union-attr]
        raise LoginError(f"{key}: this key does not belong to the certificate {cert}")
    cas = None
    if ca is not None:
        try:
            cas = [x509.load_pem_x509_certificate(ca.read_bytes())]
        except (OSError, ValueError) as exc:
            raise LoginError(f"{ca}: not a readable PEM certificate ({exc})") from None
    if not password:
        raise LoginError(f"{out}: a PKCS#12 bundle needs a non-empty password")
    data = pkcs12.serialize_key_and_certificates(
        (name or cert.stem).encode(), private, certificate, cas,
        serialization.BestAvailableEncryption(password.encode()))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, out)
    return out


def node_login_bundles(cfg: Config, password: str, roles: tuple[str, ...] = ("operator", "auditor"),
                       out_dir: Path | None = None) -> dict[str, Path]:
    """One bundle per role from the client certificates named in a node's config (``[client]``), written
    beside its local CA as ``<role>.p12`` (or into ``out_dir``). Returns the paths by role."""
    local_ca = cfg.resolve(cfg.keys.local_ca)
    where = out_dir or local_ca.parent
    out: dict[str, Path] = {}
    for role in roles:
        cert, key = getattr(cfg.client, f"{role}_cert", None), getattr(cfg.client, f"{role}_key", None)
        if not cert or not key:
            raise LoginError(f"{cfg.path}: client.{role}_cert and client.{role}_key are needed for a {role} login")
        out[role] = write_login_bundle(cfg.resolve(cert), cfg.resolve(key), where / f"{role}.p12", password,
                                       ca=local_ca, name=f"traza {cfg.node.id} {role}")
    return out
