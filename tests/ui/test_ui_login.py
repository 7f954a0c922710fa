"""Dashboard logins: PKCS#12 bundles of the local client certificates, and what `traza demo` prints."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
from rich.console import Console

from gateway.config import load_config
from gateway.crypto.pki import cert_info
from gateway.demo.run import Demo
from gateway.localfed import NodeSpec, build
from gateway.ops.login import LoginError, node_login_bundles, one_time_password, write_login_bundle


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("login")
    nodes = build(root, [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub")])
    return nodes["mx"].config


def test_bundles_hold_the_role_certificate_its_key_and_the_local_ca(node: Path) -> None:
    cfg = load_config(node)
    password = one_time_password()
    assert len(password) >= 16 and password != one_time_password()
    paths = node_login_bundles(cfg, password)
    assert sorted(paths) == ["auditor", "operator"]
    ca = cert_info(cfg.resolve(cfg.keys.local_ca).read_bytes())
    for role, path in paths.items():
        assert path.parent == cfg.resolve(cfg.keys.local_ca).parent and path.name == f"{role}.p12"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        loaded = pkcs12.load_pkcs12(path.read_bytes(), password.encode())
        assert loaded.cert is not None and loaded.key is not None
        info = cert_info(loaded.cert.certificate.public_bytes(Encoding.PEM))
        assert info.san_uris == (f"urn:traza:local:{role}:default",) and info.issuer == ca.subject
        assert [c.certificate.subject.rfc4514_string() for c in loaded.additional_certs] == [ca.subject]
        assert loaded.cert.friendly_name == f"traza mx {role}".encode()
        with pytest.raises(ValueError):
            pkcs12.load_pkcs12(path.read_bytes(), b"not the password")


def test_a_key_that_is_not_the_certificates_is_refused(node: Path, tmp_path: Path) -> None:
    cfg = load_config(node)
    op_cert = cfg.resolve(cfg.client.operator_cert or "")
    aud_key = cfg.resolve(cfg.client.auditor_key or "")
    with pytest.raises(LoginError, match="does not belong to the certificate"):
        write_login_bundle(op_cert, aud_key, tmp_path / "x.p12", "pw")
    with pytest.raises(LoginError, match="non-empty password"):
        write_login_bundle(op_cert, cfg.resolve(cfg.client.operator_key or ""), tmp_path / "x.p12", "")
    with pytest.raises(LoginError, match="not a readable PEM certificate"):
        write_login_bundle(tmp_path / "missing.pem", aud_key, tmp_path / "x.p12", "pw")
    assert not (tmp_path / "x.p12").exists()


def test_demo_prints_the_dashboard_address_and_ready_logins(tmp_path: Path) -> None:
    out = io.StringIO()
    demo = Demo(tmp_path, Console(file=out, width=300))
    d = demo.dashboard("mx")
    assert d["url"] == f"https://127.0.0.1:{demo.fed.nodes['mx'].local_port}/ui/"
    for role in ("operator", "auditor"):
        assert pkcs12.load_pkcs12(Path(d[f"{role}_p12"]).read_bytes(), d["password"].encode()).key is not None
    assert Path(d["server_ca"]).is_file() and Path(d["operator_cert"]).is_file()
    demo.print_dashboard(d, running=True)
    text = out.getvalue()
    for value in (d["url"], d["operator_p12"], d["auditor_p12"], d["password"]):
        assert value in text
