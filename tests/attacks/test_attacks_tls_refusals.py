"""Refusals nobody sees (issue #10 item 5): every connection refused in or right after the TLS handshake
(no, foreign, expired, revoked or RSA client certificate, TLS 1.2, not TLS at all, a handshake that never
ends) is counted in ``traza_tls_refused_total{listener,reason}`` and logged once, as one structured line
naming the listener, the peer address and the reason; a flood of them costs a bounded number of lines.

A real node started in-process from gateway.localfed configs; real clients on 127.0.0.1 (blocking sockets
in a thread, so the node's event loop keeps running)."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from kit.tlskit import CA, der, make_ca, make_leaf, rsa_key, write_pair
from kit.waiting import eventually
from structlog.testing import capture_logs

from gateway.config import load_config
from gateway.crypto.tls import cert_serial_hex, client_context
from gateway.localfed import NodeSpec, build
from gateway.node import Node
from gateway.trust.pki import FederationDir

SPECS = [NodeSpec("eu-hub", "hub", "NL"), NodeSpec("es", "national", "ES", hub="eu-hub")]
LIMITS = {"handshake_timeout": 1.0, "checkpoint_interval": 60.0}


class Hub:
    def __init__(self, root: Path, node: Node, port: int, local_port: int) -> None:
        self.root, self.node, self.port, self.local_port = root, node, port, local_port
        self.fd = FederationDir(root / "pki")
        self.ca = CA.from_files(self.fd.ca_cert_path, root / "pki" / "ca" / "ca.key")

    def refused(self, listener: str, reason: str) -> float:
        return self.node.metrics.tls_refused.labels(listener, reason)._value.get()

    def es_context(self) -> ssl.SSLContext:
        f = self.fd.node_files("es")
        return client_context(f.tls_cert, f.tls_key, [self.ca.pem])

    def context_with(self, tmp: Path, cert_key: tuple) -> ssl.SSLContext:
        c, k = write_pair(tmp, "client", *cert_key)
        return client_context(c, k, [self.ca.pem])


@pytest.fixture
async def hub(tmp_path):
    built = build(tmp_path, SPECS, limits=LIMITS)
    node = Node(load_config(built["eu-hub"].config))
    await node.start()
    try:
        yield Hub(tmp_path, node, built["eu-hub"].peer_port, built["eu-hub"].local_port)
    finally:
        await node.stop()


def tls_request(port: int, ctx: ssl.SSLContext) -> str:
    """Handshake and send a request; what happened, from the client's side."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as s:
            s.sendall(b"GET /v1/manifest HTTP/1.1\r\nHost: x\r\n\r\n")
            return "answered" if s.recv(100) else "closed"
    except (ssl.SSLError, OSError) as exc:
        return type(exc).__name__


def raw_bytes(port: int, data: bytes, hold: float = 0.0) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(data)
        time.sleep(hold)
        try:
            return "answered" if raw.recv(100) else "closed"
        except OSError as exc:
            return type(exc).__name__


async def refused_once(hub: Hub, listener: str, reason: str, attempt: Callable[[], str]) -> dict:
    """Run ``attempt`` (blocking) once; the metric for (listener, reason) must grow by exactly one and
    exactly one ``tls.refused`` line must name it; returns that line."""
    before = hub.refused(listener, reason)
    with capture_logs() as logs:
        client_saw = await asyncio.to_thread(attempt)
        await eventually(lambda: hub.refused(listener, reason) > before, timeout=10)
        await asyncio.sleep(0.3)  # nothing more comes
    assert hub.refused(listener, reason) == before + 1
    assert client_saw != "answered", client_saw
    lines = [e for e in logs if e["event"] == "tls.refused"]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line["listener"] == listener and line["reason"] == reason, line
    assert line["remote"].startswith("127.0.0.1:") and line["log_level"] == "warning", line
    return line


async def test_client_without_certificate_is_counted_and_logged(hub):
    anon = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anon.check_hostname = False
    anon.load_verify_locations(cadata=hub.ca.pem)
    await refused_once(hub, "peer", "no_certificate", lambda: tls_request(hub.port, anon))
    await refused_once(hub, "local", "no_certificate", lambda: tls_request(hub.local_port, anon))


async def test_certificate_from_a_foreign_ca_is_counted_and_logged(hub, tmp_path):
    leaf = make_leaf(make_ca("elsewhere"), ["urn:traza:node:es"])
    ctx = hub.context_with(tmp_path / "foreign", leaf)
    line = await refused_once(hub, "peer", "unknown_ca", lambda: tls_request(hub.port, ctx))
    assert "unable to get local issuer certificate" in line["detail"], line


async def test_expired_certificate_is_counted_and_logged(hub, tmp_path):
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    leaf = make_leaf(hub.ca, ["urn:traza:node:es"], not_before=past, not_after=past + dt.timedelta(days=2))
    ctx = hub.context_with(tmp_path / "expired", leaf)
    await refused_once(hub, "peer", "expired", lambda: tls_request(hub.port, ctx))


async def test_revoked_certificate_is_counted_and_logged(hub):
    f = hub.fd.node_files("es")
    serial = cert_serial_hex(der(x509.load_pem_x509_certificate(f.tls_cert.read_bytes())))
    now = time.time()
    hub.fd.revoke(cert_serial=serial, now=now)
    hub.fd.sign("eu", now=now)
    hub.fd.sign("ameripol", now=now)
    pub = hub.fd.published_dir
    hub.node.apply_manifest((pub / "manifest.json").read_bytes(), (pub / "manifest.sig").read_bytes(), source="test")
    ctx = hub.es_context()
    line = await refused_once(hub, "peer", "revoked", lambda: tls_request(hub.port, ctx))
    assert serial in line["detail"], line


async def test_rsa_certificate_is_counted_and_logged(hub, tmp_path):
    ctx = hub.context_with(tmp_path / "rsa", make_leaf(hub.ca, ["urn:traza:node:es"], key=rsa_key()))
    await refused_once(hub, "peer", "bad_key", lambda: tls_request(hub.port, ctx))


async def test_certificate_naming_no_node_is_counted_and_logged(hub, tmp_path):
    ctx = hub.context_with(tmp_path / "nobody", make_leaf(hub.ca, ["urn:traza:node:zz"]))
    await refused_once(hub, "peer", "unknown_node", lambda: tls_request(hub.port, ctx))


async def test_tls12_client_is_counted_and_logged(hub):
    ctx = hub.es_context()
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    await refused_once(hub, "peer", "protocol_version", lambda: tls_request(hub.port, ctx))


async def test_plain_http_on_a_tls_listener_is_counted_and_logged(hub):
    await refused_once(hub, "peer", "not_tls", lambda: raw_bytes(hub.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))


async def test_handshake_that_never_ends_is_counted_and_logged(hub):
    """A client that connects and sends nothing is cut at handshake_timeout (1 s here)."""
    t0 = time.monotonic()
    await refused_once(hub, "peer", "handshake_timeout", lambda: raw_bytes(hub.port, b"", hold=0.0))
    assert time.monotonic() - t0 < 5


async def test_the_served_client_is_not_counted(hub):
    ctx = hub.es_context()
    assert await asyncio.to_thread(tls_request, hub.port, ctx) == "answered"
    samples = hub.node.metrics.tls_refused.collect()[0].samples
    assert [s for s in samples if s.name.endswith("_total")] == []


async def test_a_flood_of_refusals_is_counted_in_full_and_logged_within_the_budget(hub):
    anon = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anon.check_hostname = False
    anon.load_verify_locations(cadata=hub.ca.pem)
    n = 60
    with capture_logs() as logs:
        for _ in range(n):
            await asyncio.to_thread(tls_request, hub.port, anon)
        await eventually(lambda: hub.refused("peer", "no_certificate") >= n, timeout=20)
    lines = [e for e in logs if e["event"] == "tls.refused"]
    assert hub.refused("peer", "no_certificate") == n
    assert 1 <= len(lines) <= 20, len(lines)  # 20 lines per 10 s per listener
    assert sum(1 + e["suppressed"] for e in lines) <= n
