"""Start-up identity attacks: a node started with another node's certificate or keys, or a second process
on the same data_dir (two writers of one audit log can fork it). Each refuses to start with one line
naming the file and the reason; `traza run` exits 2 without a traceback."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.config import load_config
from gateway.crypto.pki import issue_node_cert, load_issued, make_federation_ca, make_local_ca
from gateway.demo.procs import Federation, wait_ready
from gateway.localfed import LocalNode, NodeSpec, build, free_ports, write_config
from gateway.node import Node, NodeError
from gateway.trust.pki import FederationDir

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]


@pytest.fixture(scope="module")
def fed(tmp_path_factory) -> tuple[Path, dict[str, LocalNode]]:
    root = tmp_path_factory.mktemp("startup")
    return root, build(root, SPECS)


def variant(fed: tuple[Path, dict[str, LocalNode]], name: str, node: str = "mx",
            sections: dict[str, dict[str, Any]] | None = None, **keys: Path | str) -> Path:
    """A copy of ``node``'s config with ``keys`` (and the members of ``sections``) replaced and its own
    data_dir; returns its path."""
    root, nodes = fed
    doc: dict[str, Any] = tomllib.loads(nodes[node].config.read_text())
    doc["keys"].update({k: str(v) for k, v in keys.items()})
    for section, members in (sections or {}).items():
        doc.setdefault(section, {}).update(members)
    doc["node"]["data_dir"] = str(root / "variants" / name / "data")
    out = root / "variants" / name / f"{node}.toml"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_config(out, doc)
    return out


def refuses(cfg_path: Path, *must: str) -> str:
    with pytest.raises(NodeError) as info:
        Node(load_config(cfg_path))
    msg = str(info.value)
    assert "\n" not in msg, msg
    for part in must:
        assert part in msg, msg
    return msg


def files(fed: tuple[Path, dict[str, LocalNode]], node: str):
    return FederationDir(fed[0] / "pki").node_files(node)


def test_node_started_with_another_nodes_tls_certificate_and_key_is_refused(fed):
    es = files(fed, "es")
    cfg = variant(fed, "es-tls", tls_cert=es.tls_cert, tls_key=es.tls_key)
    refuses(cfg, str(es.tls_cert), "urn:traza:node:es", "'mx'")


def test_node_started_with_a_tls_key_that_does_not_match_its_certificate_is_refused(fed):
    es = files(fed, "es")
    cfg = variant(fed, "tls-key", tls_key=es.tls_key)
    refuses(cfg, str(es.tls_key), "does not match")


def test_node_started_with_another_nodes_audit_key_is_refused(fed):
    es = files(fed, "es")
    cfg = variant(fed, "audit", audit=es.audit_key)
    refuses(cfg, str(es.audit_key), "audit key", "'mx'")


def test_node_started_with_another_nodes_signing_key_is_refused(fed):
    es = files(fed, "es")
    refuses(variant(fed, "sig", sig=es.sig_key), str(es.sig_key), "sig key", "'mx'")


def test_node_started_with_another_nodes_encryption_key_is_refused(fed):
    es = files(fed, "es")
    refuses(variant(fed, "enc", enc=es.enc_key), str(es.enc_key), "enc key", "'mx'")


def test_node_started_with_a_certificate_from_a_foreign_ca_is_refused(fed):
    root, _ = fed
    now = dt.datetime.now(dt.UTC)
    rogue = issue_node_cert(make_federation_ca("rogue", now=now), "mx", now=now)
    d = root / "rogue"
    d.mkdir(exist_ok=True)
    (d / "cert.pem").write_bytes(rogue.cert_pem)
    (d / "cert.key").write_bytes(rogue.key_pem)
    refuses(variant(fed, "rogue", tls_cert=d / "cert.pem", tls_key=d / "cert.key"), str(d / "cert.pem"),
            "tls_ca")


def test_node_started_with_a_non_p256_certificate_is_refused(fed):
    """A P-384 certificate naming mx, signed by the federation CA itself: still not a node certificate."""
    root, _ = fed
    pki = FederationDir(root / "pki")
    ca = load_issued(pki.ca_cert_path.read_bytes(), pki.ca_key_path.read_bytes())
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, None)
    key = ec.generate_private_key(ec.SECP384R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(ca_cert.subject).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier("urn:traza:node:mx")]), False)
            .sign(ca_key, hashes.SHA256()))
    d = root / "p384"
    d.mkdir(exist_ok=True)
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "cert.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    refuses(variant(fed, "p384", tls_cert=d / "cert.pem", tls_key=d / "cert.key"), str(d / "cert.pem"), "P-256")


def test_node_whose_local_ca_is_the_federation_ca_is_refused(fed):
    """The local listener must trust this node's own local CA only, never the federation CA (whose holders
    could then mint operator certificates)."""
    root, _ = fed
    ca = FederationDir(root / "pki").ca_cert_path
    refuses(variant(fed, "local-ca-fed", local_ca=ca), str(ca), "federation")


def test_node_whose_local_ca_is_not_a_ca_certificate_is_refused(fed):
    mx = files(fed, "mx")
    refuses(variant(fed, "local-ca-leaf", local_ca=mx.tls_cert), str(mx.tls_cert), "not a CA")


def test_node_whose_local_ca_is_not_a_certificate_is_refused(fed):
    root, _ = fed
    junk = root / "junk.pem"
    junk.write_text("not a certificate\n")
    refuses(variant(fed, "local-ca-junk", local_ca=junk), str(junk), "PEM")


def test_node_with_its_own_files_starts(fed):
    """The control: the same variant machinery with mx's own files builds a node (and a fresh local CA of
    another name is accepted: only a federation CA or a non-CA is refused)."""
    root, _ = fed
    other = make_local_ca("traza-demo", "mx", now=dt.datetime.now(dt.UTC))
    (root / "other-local-ca.pem").write_bytes(other.cert_pem)
    node = Node(load_config(variant(fed, "own", local_ca=root / "other-local-ca.pem")))
    node.db.close()
    node.data_lock.release()


def run_exits_2_with_one_line(cfg: Path, *must: str) -> str:
    """``traza run --config cfg`` as a real process: exit status 2, no traceback, and exactly one line on
    stderr (besides the node's JSON log records) that holds every string of ``must``; returns it."""
    r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "run", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.lstrip().startswith("{")]
    assert len(lines) == 1, r.stderr
    for part in must:
        assert part in lines[0], lines[0]
    return lines[0]


def test_cli_run_with_another_nodes_tls_certificate_exits_2_with_one_line(fed):
    es = files(fed, "es")
    run_exits_2_with_one_line(variant(fed, "cli-es-tls", tls_cert=es.tls_cert, tls_key=es.tls_key), str(es.tls_cert))


# --- issue #14: the five start-up failures a newcomer met, each one line and exit 2 ---------------------


def test_cli_run_with_an_unknown_adapter_exits_2_naming_the_key_and_the_adapters(fed):
    cfg = variant(fed, "cli-adapter", sections={"adapter": {"name": "nope"}})
    run_exits_2_with_one_line(cfg, str(cfg), "adapter.name", "'nope'", "standard", "es", "mx")


def test_cli_run_with_local_ca_pointing_at_a_key_exits_2_with_one_line(fed):
    mx = files(fed, "mx")
    key = mx.tls_cert.parent / "cert.key"
    line = run_exits_2_with_one_line(variant(fed, "cli-local-ca-key", local_ca=key), str(key), "keys.local_ca")
    assert "private key" in line, line


def test_cli_run_with_a_tls_key_that_does_not_match_exits_2_with_one_line(fed):
    es = files(fed, "es")
    run_exits_2_with_one_line(variant(fed, "cli-tls-key", tls_key=es.tls_key), str(es.tls_key), "keys.tls_key",
                              "does not match")


def test_cli_run_with_trust_anchor_pointing_at_the_manifest_exits_2_with_one_line(fed):
    _, nodes = fed
    manifest = Path(tomllib.loads(nodes["mx"].config.read_text())["trust"]["manifest"])
    cfg = variant(fed, "cli-anchor", sections={"trust": {"anchor": str(manifest)}})
    line = run_exits_2_with_one_line(cfg, str(manifest), "trust.anchor")
    assert "manifest" in line.split("trust.anchor", 1)[1], line  # says what the file is instead


def test_cli_run_on_a_port_in_use_exits_2_naming_the_listener_and_the_address(fed):
    cfg = variant(fed, "cli-port")
    peer = tomllib.loads(cfg.read_text())["listen"]["peer"]
    host, port = peer.rsplit(":", 1)
    with socket.socket() as taken:
        taken.bind((host, int(port)))
        taken.listen()
        run_exits_2_with_one_line(cfg, str(cfg), "listen.peer", peer, "in use")


# --- one process per data_dir ------------------------------------------------------------------------

def test_second_node_on_the_same_data_dir_in_one_process_is_refused(tmp_path):
    nodes = build(tmp_path, SPECS[:2])
    first = Node(load_config(nodes["mx"].config))
    try:
        msg = refuses(nodes["mx"].config, str(nodes["mx"].data_dir), f"PID {os.getpid()}")
        assert "in use by a running traza node" in msg
    finally:
        first.db.close()
        first.data_lock.release()
    again = Node(load_config(nodes["mx"].config))  # released: a new node starts
    again.db.close()
    again.data_lock.release()


def _second_config(tmp_path: Path, node: LocalNode) -> Path:
    """The same node and data_dir on other ports (so only the data_dir is shared)."""
    doc: dict[str, Any] = tomllib.loads(node.config.read_text())
    p, lo, ops = free_ports(3)
    doc["listen"] = {"peer": f"127.0.0.1:{p}", "local": f"127.0.0.1:{lo}", "ops": f"127.0.0.1:{ops}"}
    out = tmp_path / "second.toml"
    write_config(out, doc)
    return out


def test_second_traza_run_on_the_same_data_dir_exits_naming_the_first_pid(tmp_path):
    fed = Federation(tmp_path / "fed", SPECS[:2])
    try:
        fed.start("mx")
        first = fed.procs["mx"]
        second = _second_config(tmp_path, fed.nodes["mx"])
        r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "run", "--config", str(second)],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode != 0, r.stderr
        assert "Traceback" not in r.stderr, r.stderr
        assert f"PID {first.pid}" in r.stderr and str(fed.nodes["mx"].data_dir) in r.stderr, r.stderr
        assert first.poll() is None  # the first one keeps running
        fed.wait_ready("mx", timeout=5)

        # kill -9: the lock dies with the process; the lock file (with its stale PID) stays and does not block
        fed.stop("mx", signal.SIGKILL)
        lock_files = [p for p in fed.nodes["mx"].data_dir.iterdir() if p.name.endswith(".lock")]
        assert lock_files and lock_files[0].read_text().strip() == str(first.pid)
        log = open(tmp_path / "second.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli.main", "run", "--config", str(second)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            port = int(load_config(second).listen.ops.rsplit(":", 1)[1])
            wait_ready(proc, port, tmp_path / "second.log")
            assert lock_files[0].read_text().strip() == str(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
            log.close()
    finally:
        fed.stop_all()


async def test_a_listener_that_cannot_start_gives_back_the_ports_and_the_data_dir(fed):
    """The local port is taken: the node refuses to start (NodeError naming listen.local) after its peer
    listener was already listening; that port and the data dir are free again for the next attempt."""
    cfg_path = variant(fed, "port-local")
    cfg = load_config(cfg_path)
    host, port = cfg.listen.local.rsplit(":", 1)
    node = Node(cfg)
    with socket.socket() as taken:
        taken.bind((host, int(port)))
        taken.listen()
        with pytest.raises(NodeError) as info:
            await node.start()
    assert "listen.local" in str(info.value) and "already in use" in str(info.value), info.value
    peer_host, peer_port = cfg.listen.peer.rsplit(":", 1)
    with socket.socket() as again:  # the peer listener's port was given back
        again.bind((peer_host, int(peer_port)))
    second = Node(load_config(cfg_path))  # and the data dir's lock
    second.db.close()
    second.data_lock.release()
