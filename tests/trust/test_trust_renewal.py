"""TLS certificate renewal and the federation CA rollover in the federation folder (issue #12):
`traza pki renew-tls` (node and local client certificates), `pki new-ca`, `pki retire-ca`, through the CLI
as an operator runs them, checked on the files they write."""

from __future__ import annotations

import json
import os
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


def test_local_ca_rollover_in_the_federation_folder(fd, capsys):
    f = fd.node_files("es")
    first = f.local_ca.read_bytes()
    assert traza(["pki", "new-local-ca", str(fd.root), "es"]) == 0
    out = capsys.readouterr().out
    g = fd.node_files("es")
    # the file the node trusts (keys.local_ca) holds both CAs; the new one issues from now on
    assert g.local_ca == f.local_ca and g.local_ca.read_bytes().startswith(first.rstrip(b"\n"))
    assert g.local_ca_cert.name == "ca-2.pem" and "es local CA 2" in pki.cert_info(g.local_ca_cert.read_bytes()).subject
    assert (g.dir / "local" / "ca-1.pem").read_bytes() == first and g.local_ca_key.stat().st_mode & 0o777 == 0o600
    assert "holds 2" in out and "retire-local-ca" in out
    assert traza(["pki", "new-local-ca", str(fd.root), "es"]) == 1  # one rollover at a time
    assert "rollover is in progress" in capsys.readouterr().err
    # a client renewed now is issued by the new CA; retiring waits for every client
    assert traza(["pki", "renew-tls", str(fd.root), "es", "--local", "system:default"]) == 0
    cert, _ = fd.node_files("es").clients["system:default"]
    assert pki.verify_issued_by(cert.read_bytes(), g.local_ca_cert.read_bytes())
    capsys.readouterr()
    assert traza(["pki", "retire-local-ca", str(fd.root), "es"]) == 1
    err = capsys.readouterr().err
    assert "auditor:default, operator:default" in err and "renew-tls" in err, err
    for client in ("operator:default", "auditor:default"):
        assert traza(["pki", "renew-tls", str(fd.root), "es", "--local", client]) == 0
    assert traza(["pki", "retire-local-ca", str(fd.root), "es"]) == 0
    assert g.local_ca.read_bytes() == g.local_ca_cert.read_bytes()
    assert traza(["pki", "retire-local-ca", str(fd.root), "es"]) == 1  # nothing left to retire
    # the next rollover starts from the current CA
    assert traza(["pki", "new-local-ca", str(fd.root), "es"]) == 0
    assert fd.node_files("es").local_ca_cert.name == "ca-3.pem"


def test_retire_local_ca_force_leaves_old_clients_behind(fd, capsys):
    assert traza(["pki", "new-local-ca", str(fd.root), "es"]) == 0
    assert traza(["pki", "retire-local-ca", str(fd.root), "es", "--force"]) == 0
    g = fd.node_files("es")
    old, _ = g.clients["system:default"]
    assert not pki.verify_issued_by(old.read_bytes(), g.local_ca.read_bytes())


def test_renew_tls_local_with_config_points_the_client_section_at_the_new_files(fd, tmp_path, capsys):
    cert, key = fd.node_files("es").clients["system:default"]
    cfg = tmp_path / "es.toml"
    for name in ("a.json", "m.json", "s", "e", "au", "c", "k", "l"):  # load_config wants the files to exist
        (tmp_path / name).write_text("{}")
    rel = lambda p: Path(os.path.relpath(p, tmp_path)).as_posix()  # noqa: E731
    cfg.write_text(
        '[node]\nid = "es"\ndata_dir = "data"\n'
        '[trust]\nanchor = "a.json"\nmanifest = "m.json"\n'
        '[keys]\nsig = "s"\nenc = "e"\naudit = "au"\ntls_cert = "c"\ntls_key = "k"\nlocal_ca = "l"\n'
        '[listen]\npeer = "127.0.0.1:1"\nlocal = "127.0.0.1:2"\nops = "127.0.0.1:3"\n'
        '[client]\n'
        f'system_cert = "{rel(cert)}"   # role system\n'
        f'system_key = "{rel(key)}"\n'
        f'operator_cert = "{rel(cert)}"\noperator_key = "{rel(key)}"\n')
    assert traza(["pki", "renew-tls", str(fd.root), "es", "--local", "system:default", "--config", str(cfg)]) == 0
    new_cert, new_key = fd.node_files("es").clients["system:default"]
    text = cfg.read_text()
    assert f'system_cert = "{rel(new_cert)}"   # role system\n' in text and f'system_key = "{rel(new_key)}"\n' in text
    assert f'operator_cert = "{rel(cert)}"' in text  # another role's lines are not touched
    assert "now name it" in capsys.readouterr().out
    # a config without the role's keys is refused before anything is issued
    assert traza(["pki", "renew-tls", str(fd.root), "es", "--local", "auditor:default", "--config", str(cfg)]) == 1
    assert "client.auditor_cert" in capsys.readouterr().err
    assert fd.node_files("es").clients["auditor:default"][0].name == "auditor-default.pem"
    assert traza(["pki", "renew-tls", str(fd.root), "es", "--config", str(cfg)]) == 2


def test_pki_group_sets_and_removes_a_recipient_group(fd, capsys):
    assert traza(["pki", "group", str(fd.root), "eu-registries", "--members", "es,eu-hub"]) == 0
    assert decode_manifest(fd.manifest_path.read_bytes()).groups == {"eu-registries": ["es", "eu-hub"]}
    assert "group:eu-registries" in capsys.readouterr().out
    assert traza(["pki", "group", str(fd.root), "eu-registries", "--members", "es,fr"]) == 1
    assert "'fr' is not a node of the manifest" in capsys.readouterr().err
    assert traza(["pki", "group", str(fd.root), "eu-registries", "--remove"]) == 0
    assert decode_manifest(fd.manifest_path.read_bytes()).groups == {}
    assert traza(["pki", "group", str(fd.root), "eu-registries", "--remove"]) == 2
    with pytest.raises(SystemExit) as info:  # argparse: one of --members and --remove is required
        traza(["pki", "group", str(fd.root), "eu-registries"])
    assert info.value.code == 2
