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

from gateway.config import Config
from gateway.crypto.pki import pkcs12_bundle


class LoginError(ValueError):
    """A login bundle could not be made; the message names the file and the reason."""


def one_time_password() -> str:
    """A fresh random password for the bundles of one demo run (printed once, never stored)."""
    return secrets.token_urlsafe(12)


def write_login_bundle(cert: Path, key: Path, out: Path, password: str, *, ca: Path | None = None,
                       name: str | None = None) -> Path:
    """Write ``out`` (PKCS#12, AES-256 / PBKDF2, mode 0600): the certificate ``cert`` with its private key
    ``key`` (PEM files) and, if given, the issuing CA certificate ``ca``. Returns ``out``."""
    def read(path: Path, what: str) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise LoginError(f"{path}: not a readable {what} ({exc.strerror})") from None

    cert_pem = read(cert, "PEM certificate")
    key_pem = read(key, "unencrypted PEM private key")
    ca_pem = read(ca, "PEM certificate") if ca is not None else None
    try:
        data = pkcs12_bundle(cert_pem, key_pem, password, ca_pem=ca_pem, name=name or cert.stem)
    except ValueError as exc:
        where = {"certificate": cert, "private key": key, "CA certificate": ca}.get(str(exc).split(":")[0], out)
        raise LoginError(f"{where}: {exc}") from None
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
