"""Peer listener identity (SPEC §4): a real node started in-process with configs from gateway.localfed
refuses client certificates from a foreign CA, expired ones, and ones revoked in a manifest published
after it started (picked up by its manifest poll, without a restart)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import time
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.crypto.pki import issue_node_cert, load_issued, make_federation_ca
from gateway.crypto.tls import cert_serial_hex, client_context
from gateway.localfed import NodeSpec, build
from gateway.node import Node
from gateway.transport.peer import PeerClient, PeerUnavailable
from gateway.trust.pki import FederationDir

SPECS = [NodeSpec("eu-hub", "hub", "NL"), NodeSpec("es", "national", "ES", hub="eu-hub")]
# an empty batch: a member is served (authenticated, then the batch refused as malformed, SPEC §4.1)
EMPTY = b'{"envelopes":[]}'
SERVED = 400


def write_pair(d: Path, name: str, cert_pem: bytes, key_pem: bytes) -> tuple[Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    c, k = d / f"{name}.pem", d / f"{name}.key"
    c.write_bytes(cert_pem)
    k.write_bytes(key_pem)
    k.chmod(0o600)
    return c, k


@pytest.fixture
async def hub(tmp_path):
    nodes = build(tmp_path, SPECS, manifest_poll_seconds=1)
    node = Node(load_config(nodes["eu-hub"].config))
    await node.start()
    try:
        yield tmp_path, node, nodes["eu-hub"]
    finally:
        await node.stop()


def client(root: Path, hub_port: int, cert: Path, key: Path) -> PeerClient:
    ca = [(root / "pki" / "ca" / "ca.pem").read_text()]
    return PeerClient("eu-hub", f"https://127.0.0.1:{hub_port}", client_context(cert, key, ca), timeout=5)


async def post(cl: PeerClient) -> int:
    try:
        status, _, _ = await cl.request("POST", "/v1/envelopes", body=EMPTY)
        return status
    except PeerUnavailable:
        return -1  # refused during the TLS handshake


async def test_federation_member_is_served(hub):
    root, _node, ln = hub
    f = FederationDir(root / "pki").node_files("es")
    cl = client(root, ln.peer_port, f.tls_cert, f.tls_key)
    try:
        status, data, _ = await cl.request("POST", "/v1/envelopes", body=EMPTY)
        assert status == SERVED and b"envelopes is empty" in data
    finally:
        await cl.close()


async def test_certificate_from_a_foreign_ca_is_refused(hub, tmp_path_factory):
    root, _node, ln = hub
    now = dt.datetime.now(dt.UTC)
    foreign = make_federation_ca("elsewhere", now=now)
    leaf = issue_node_cert(foreign, "es", now=now)  # claims to be es, but not from the federation CA
    cert, key = write_pair(tmp_path_factory.mktemp("foreign"), "es", leaf.cert_pem, leaf.key_pem)
    cl = client(root, ln.peer_port, cert, key)
    try:
        assert await post(cl) in (-1, 403)
    finally:
        await cl.close()


async def test_expired_certificate_from_the_federation_ca_is_refused(hub, tmp_path_factory):
    root, _node, ln = hub
    ca = load_issued((root / "pki" / "ca" / "ca.pem").read_bytes(), (root / "pki" / "ca" / "ca.key").read_bytes())
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    leaf = issue_node_cert(ca, "es", now=long_ago, days=2)  # valid 30..28 days ago
    from gateway.crypto.pki import cert_info

    assert cert_info(leaf.cert_pem).not_after < dt.datetime.now(dt.UTC)
    cert, key = write_pair(tmp_path_factory.mktemp("expired"), "es", leaf.cert_pem, leaf.key_pem)
    cl = client(root, ln.peer_port, cert, key)
    try:
        assert await post(cl) in (-1, 403)
    finally:
        await cl.close()


async def test_certificate_revoked_after_start_is_refused_without_restart(hub):
    root, node, ln = hub
    fd = FederationDir(root / "pki")
    f = fd.node_files("es")
    cl = client(root, ln.peer_port, f.tls_cert, f.tls_key)
    try:
        assert await post(cl) == SERVED
        version = node.fed.version
        serial = cert_serial_hex(_der(f.tls_cert))
        now = time.time()
        assert fd.revoke(cert_serial=serial, now=now) is not None
        fd.sign("eu", now=now)
        fd.sign("ameripol", now=now)
        deadline = time.monotonic() + 15
        while node.fed.version == version and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert node.fed.version > version, "the node did not pick up the published manifest"
        status, data, _ = await cl.request("POST", "/v1/envelopes", body=EMPTY)  # same client, same process
        assert status == 403, data
        assert b"revoked" in data
    finally:
        await cl.close()


def _der(path: Path) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER)


async def test_envelope_without_a_readable_id_is_rejected_and_audited(hub):
    """A token that is not a JWS carries no message id: the envelope is rejected (not a 500 for the batch)
    and the rejection is still audited, without a jti."""
    root, node, ln = hub
    f = FederationDir(root / "pki").node_files("es")
    cl = client(root, ln.peer_port, f.tls_cert, f.tls_key)
    try:
        body = b'{"envelopes":[{"token":"not-a-jws","hops":[]}]}'
        status, data, _ = await cl.request("POST", "/v1/envelopes", body=body)
    finally:
        await cl.close()
    assert status == 200, data
    assert b'"status":"rejected"' in data and b'"jti":null' in data
    page = await node.audit_entries({"event": "envelope.rejected"})
    entries = [json.loads(base64.b64decode(e["entry"])) for e in page["entries"]]
    rejected = [e for e in entries if e.get("from") == "es"]
    assert len(rejected) == 1 and "jti" not in rejected[0], rejected
