"""Attacks on a node's outgoing connections (SPEC §4, issue #10 item 3): a next hop whose certificate is
revoked, or is not what a node certificate must be, gets nothing, on new and kept-alive connections.

Real nodes started in-process from gateway.localfed configs, real mTLS on 127.0.0.1."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
from aiohttp import web
from kit.tlskit import CA, make_leaf, rsa_key, write_pair
from kit.waiting import eventually

from gateway.config import load_config
from gateway.crypto.tls import cert_serial_hex, client_context, server_context
from gateway.localfed import LocalNode, NodeSpec, build
from gateway.node import Node
from gateway.transport.peer import PeerClient, PeerUnavailable
from gateway.trust.pki import FederationDir

SPECS = [NodeSpec("eu-hub", "hub", "NL"), NodeSpec("es", "national", "ES", hub="eu-hub"),
         NodeSpec("it", "national", "IT", hub="eu-hub")]
LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 60.0}
NOTICE = msgspec.json.encode({"title": "t", "text": "x"})


@contextlib.asynccontextmanager
async def running(built: dict[str, LocalNode], *ids: str) -> AsyncIterator[dict[str, Node]]:
    nodes: dict[str, Node] = {}
    try:
        for nid in ids:
            nodes[nid] = Node(load_config(built[nid].config))
            await nodes[nid].start()
        yield nodes
    finally:
        for n in nodes.values():
            await n.stop()


def _pem_der(path: Path) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER)


def outbox_error(node: Node, jti: str) -> str | None:
    row = node.db._conn.execute("SELECT last_error FROM outbox WHERE jti=?", (jti,)).fetchone()
    return row[0] if row else None


async def test_forward_to_a_server_whose_certificate_was_revoked_at_run_time_is_refused(tmp_path):
    """es forwards to eu-hub over a kept-alive connection; a manifest revoking eu-hub's TLS certificate is
    applied to es at run time; the next forward is refused before anything is written to that connection
    (eu-hub sees no request from es at all), and the message stays queued at es."""
    built = build(tmp_path, SPECS, limits=LIMITS)
    async with running(built, "eu-hub", "es") as nodes:
        hub, es = nodes["eu-hub"], nodes["es"]
        seen: list[str] = []  # every request on the hub's peer listener passes identify_peer
        identify = hub.identify_peer

        def counting(der: bytes | None) -> str:
            who = identify(der)
            seen.append(who)
            return who

        hub.identify_peer = counting  # type: ignore[method-assign]
        first = await es.submit(mt="notice", to="it", body=NOTICE, system="test")
        assert await eventually(lambda: hub.message_status(first), timeout=20)
        session = es.clients["eu-hub"]._session
        assert session is not None and session.connector is not None
        assert await eventually(lambda: sum(len(v) for v in session.connector._conns.values())), (
            "no kept-alive connection to eu-hub is open")

        fd = FederationDir(tmp_path / "pki")
        serial = cert_serial_hex(_pem_der(fd.node_files("eu-hub").tls_cert))
        now = time.time()
        assert fd.revoke(cert_serial=serial, now=now) is not None
        fd.sign("eu", now=now)
        fd.sign("ameripol", now=now)
        published = fd.published_dir
        before = es.fed.version
        es.apply_manifest((published / "manifest.json").read_bytes(), (published / "manifest.sig").read_bytes(),
                          source="test")
        assert es.fed.version > before
        from_es = seen.count("es")

        second = await es.submit(mt="notice", to="it", body=NOTICE, system="test")
        error = await eventually(lambda: outbox_error(es, second), timeout=20)
        assert "revoked" in error and serial in error, error
        await eventually(lambda: es.counters.get("forward_failures", 0) >= 2, timeout=20)  # retried, refused again
        assert seen.count("es") == from_es, "a request from es reached the revoked server"
        assert await hub.message_status(second) is None
        assert (await es.message_status(second) or {})["state"] == "queued"


async def test_server_with_an_rsa_certificate_from_the_federation_ca_is_refused(tmp_path):
    """A server presenting an RSA certificate from the federation CA that names the expected node: the
    client refuses it (SPEC §4: node keys are ECDSA P-256) and sends it no request."""
    built = build(tmp_path, SPECS[:2], limits=LIMITS)
    fd = FederationDir(tmp_path / "pki")
    ca = CA.from_files(fd.ca_cert_path, tmp_path / "pki" / "ca" / "ca.key")
    cert, key = make_leaf(ca, ["urn:traza:node:eu-hub"], key=rsa_key())
    c, k = write_pair(tmp_path / "rogue", "eu-hub-rsa", cert, key)
    requests: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        requests.append(request.path)
        return web.json_response({"results": []})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app)
    await runner.setup()
    port = built["eu-hub"].peer_port
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_context(c, k, [ca.pem]))
    await site.start()
    es = fd.node_files("es")
    cl = PeerClient("eu-hub", f"https://127.0.0.1:{port}", client_context(es.tls_cert, es.tls_key, [ca.pem]),
                    timeout=5)
    try:
        try:
            await cl.send_batch([])
            refused = None
        except PeerUnavailable as exc:
            refused = str(exc)
        assert refused is not None and "ECDSA P-256" in refused, refused
        assert requests == []
    finally:
        await cl.close()
        await runner.cleanup()
