"""TLS certificate renewal and the federation CA rollover in the federation folder (issue #12):
`traza pki renew-tls` (node and local client certificates), `pki new-ca`, `pki retire-ca`, through the CLI
as an operator runs them, checked on the files they write."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gateway.cli.main import main as traza
from gateway.core.manifest import decode_manifest
from gateway.crypto import pki
from gateway.trust.pki import FederationDir, FederationDirError

NOW = time.time()


@pytest.fixture
def fd(tmp_path: Path) -> FederationDir:
    fd = FederationDir.init(tmp_path / "fed", federation="traza-test", authorities=["eu", "mx"], threshold=2,
                            now=NOW)
    fd.add_node("eu-hub", kind="hub", country="NL", endpoint="https://127.0.0.1:7202", now=NOW)
    fd.add_node("es", kind="national", country="ES", hub="eu-hub", endpoint="https://127.0.0.1:7102", now=NOW)
    for a in ("eu", "mx"):
        fd.sign(a, now=NOW)
    return fd


def draft_cas(fd: FederationDir) -> list[str]:
    return list(decode_manifest(fd.manifest_path.read_bytes()).tls_ca)


def test_renew_tls_writes_a_new_certificate_with_a_new_key_beside_the_old(fd, capsys):
    old = fd.node_files("es")
    old_info = pki.cert_info(old.tls_cert.read_bytes())
    version = decode_manifest(fd.manifest_path.read_bytes()).version
    assert traza(["pki", "renew-tls", str(fd.root), "es"]) == 0
    out = capsys.readouterr().out
    new = fd.node_files("es")
    assert new.tls_cert == old.tls_cert.with_name("cert-2.pem") and new.tls_key == old.tls_key.with_name("cert-2.key")
    assert old.tls_cert.is_file() and old.tls_key.is_file()  # beside the old: the node still runs with it
    info = pki.cert_info(new.tls_cert.read_bytes())
    assert info.serial != old_info.serial and info.serial_hex in out and old_info.serial_hex in out
    assert info.san_uris == ("urn:traza:node:es",) and info.san_dns == old_info.san_dns
    assert info.issuer == old_info.issuer and info.not_before > old_info.not_before - pki.BACKDATE
    assert new.tls_key.read_bytes() != old.tls_key.read_bytes() and new.tls_key.stat().st_mode & 0o777 == 0o600
    pki.check_key_matches(new.tls_cert.read_bytes(), new.tls_key.read_bytes())
    meta = json.loads((fd.node_dir("es") / "node.json").read_bytes())
    assert meta["tls"]["serial"] == info.serial_hex and meta["previous_tls"][0]["serial"] == old_info.serial_hex
    # the manifest does not change: nothing to sign
    assert decode_manifest(fd.manifest_path.read_bytes()).version == version
    assert traza(["pki", "renew-tls", str(fd.root), "es"]) == 0
    assert fd.node_files("es").tls_cert.name == "cert-3.pem"


def test_renew_tls_local_client_certificate_keeps_the_old_and_names_the_new(fd, capsys):
    old_cert, _ = fd.node_files("es").clients["system:default"]
    assert traza(["pki", "renew-tls", str(fd.root), "es", "--local", "system:default"]) == 0
    cert, key = fd.node_files("es").clients["system:default"]
    assert cert.name == "system-default@2.pem" and key.name == "system-default@2.key" and old_cert.is_file()
    info, old = pki.cert_info(cert.read_bytes()), pki.cert_info(old_cert.read_bytes())
    assert info.san_uris == ("urn:traza:local:system:default",) and info.serial != old.serial
    assert pki.verify_issued_by(cert.read_bytes(), fd.node_files("es").local_ca.read_bytes())
    assert traza(["pki", "renew-tls", str(fd.root), "es", "--local", "operator:nobody"]) == 1
    assert "no local certificate 'operator:nobody'" in capsys.readouterr().err
    assert traza(["pki", "renew-tls", str(fd.root), "es", "--local", "system"]) == 2


def test_ca_rollover_new_ca_is_trusted_beside_the_old_then_the_old_is_retired(fd, capsys):
    first = draft_cas(fd)
    assert traza(["pki", "new-ca", str(fd.root)]) == 0
    cas = draft_cas(fd)
    assert len(cas) == 2 and cas[0] == first[0]
    new_ca = (fd.root / "ca" / "ca-2.pem").read_bytes()
    assert cas[1].encode() == new_ca and "TLS CA 2" in pki.cert_info(new_ca).subject
    # one rollover at a time
    assert traza(["pki", "new-ca", str(fd.root)]) == 1
    assert "rollover is in progress" in capsys.readouterr().err
    # retiring before every node has a certificate from the new CA is refused, naming them
    assert traza(["pki", "retire-ca", str(fd.root)]) == 1
    err = capsys.readouterr().err
    assert "es" in err and "eu-hub" in err and "renew-tls" in err
    fd.renew_tls("eu-hub", now=time.time())
    fd.renew_tls("es", now=time.time())
    for node in ("eu-hub", "es"):  # renew-tls issues under the newest CA
        assert pki.verify_issued_by(fd.node_files(node).tls_cert.read_bytes(), new_ca)
    assert traza(["pki", "retire-ca", str(fd.root)]) == 0
    assert draft_cas(fd) == [new_ca.decode()]
    assert traza(["pki", "retire-ca", str(fd.root)]) == 1
    assert "nothing to retire" in capsys.readouterr().err
    # and a node added now gets a certificate of the new CA
    fd.add_node("it", kind="national", country="IT", hub="eu-hub", endpoint="https://127.0.0.1:7103", now=time.time())
    assert pki.verify_issued_by(fd.node_files("it").tls_cert.read_bytes(), new_ca)


def test_renew_tls_warns_while_the_new_ca_is_not_published(fd, capsys):
    fd.new_ca(now=time.time())
    assert traza(["pki", "renew-tls", str(fd.root), "es"]) == 0
    assert "not in the published manifest" in capsys.readouterr().out
    with pytest.raises(FederationDirError, match="not in the manifest"):
        fd.renew_tls("nowhere", now=time.time())
