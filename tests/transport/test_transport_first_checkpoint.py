"""``GET /v1/audit/checkpoint`` (SPEC §4.4) before a node has signed its first checkpoint (one
``checkpoint_interval`` after start): ``503`` with ``Retry-After``, as every ``503`` of SPEC §4.1 (it had
no ``Retry-After``).

Real node in-process, real mTLS on 127.0.0.1, real SQLite."""

from __future__ import annotations

from kit.nodes import started

from gateway.audit.db import AuditError
from gateway.crypto.tls import client_context
from gateway.localfed import NodeSpec, build
from gateway.transport.peer import PeerClient
from gateway.trust.pki import FederationDir

SPECS = [NodeSpec("eu-hub", "hub", "NL"), NodeSpec("es", "national", "ES", hub="eu-hub")]


async def _get_checkpoint(root, nodes) -> tuple[int, bytes, dict[str, str]]:
    f = FederationDir(root / "pki").node_files("es")
    ctx = client_context(f.tls_cert, f.tls_key, [(root / "pki" / "ca" / "ca.pem").read_text()])
    cl = PeerClient("eu-hub", f"https://127.0.0.1:{nodes['eu-hub'].peer_port}", ctx, timeout=5)
    try:
        status, body, headers = await cl.request("GET", "/v1/audit/checkpoint")
        return status, body, dict(headers)
    finally:
        await cl.close()


async def test_no_checkpoint_to_serve_is_503_with_retry_after(tmp_path, monkeypatch):
    nodes = build(tmp_path, SPECS, limits={"checkpoint_interval": 3600})

    def nothing_signed(self):
        raise AuditError("no checkpoint has been signed")

    async with started(nodes["eu-hub"].config) as hub:
        monkeypatch.setattr(type(hub.shared.audit), "served_checkpoint", nothing_signed)
        status, body, headers = await _get_checkpoint(tmp_path, nodes)
    assert status == 503 and b"overloaded" in body, body
    assert int(headers["Retry-After"]) >= 1

