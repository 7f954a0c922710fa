"""Who may log in to a node's local listener (national systems, operators, auditors), on a running node
with real mTLS on 127.0.0.1 and the files `traza pki` makes (issue #12):

- a local client certificate revoked in the manifest (`traza pki revoke --cert-serial`) is refused as soon
  as the node applies that manifest: on a new connection (at the handshake) and on a connection it had
  already opened (every request is checked), as the peer listener does for node certificates;
- the local CA rollover (`traza pki new-local-ca`, then `renew-tls --local` for each client, then
  `retire-local-ca`): after the node re-reads ``keys.local_ca`` (SIGHUP or manifest poll) it trusts
  clients of both CAs; once the old CA is retired, a client still holding a certificate from it is
  refused, on an open connection too; each change of the trusted local CAs is audited (``key.rotated``,
  use ``local_ca``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
from kit.nodes import started

from gateway.crypto.pki import cert_info
from gateway.crypto.tls import client_context
from gateway.localfed import NodeSpec, build
from gateway.node import Node
from gateway.trust.pki import FederationDir, FederationDirError

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("es", "national", "ES", hub="hub")]
LIMITS = {"checkpoint_interval": 60.0, "keepalive_timeout": 30.0}
INBOX = b"GET /local/v1/inbox HTTP/1.1\r\nHost: es\r\n\r\n"


@pytest.fixture
def fed(tmp_path: Path) -> tuple[dict[str, Any], FederationDir]:
    built = build(tmp_path / "fed", SPECS, limits=LIMITS, manifest_poll_seconds=600.0)
    return built, FederationDir(tmp_path / "fed" / "pki")


def publish(fd: FederationDir) -> None:
    fd.sign("eu", now=time.time())
    assert fd.sign("ameripol", now=time.time()).published


def context(fd: FederationDir, cert: Path, key: Path) -> ssl.SSLContext:
    return client_context(cert, key, [fd.ca_cert_path.read_text()])


async def response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(h.split(b":", 1)[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))
    return head + await reader.readexactly(length)


async def connect(port: int, ctx: ssl.SSLContext) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, ssl=ctx)


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(INBOX)
    return await response(reader)


async def fresh(port: int, ctx: ssl.SSLContext) -> str:
    """What a new connection with ``ctx`` gets: the status line, or how the connection failed."""
    try:
        reader, writer = await connect(port, ctx)
        try:
            return (await ask(reader, writer)).split(b"\r\n", 1)[0].decode()
        finally:
            writer.close()
    except (ssl.SSLError, OSError, asyncio.IncompleteReadError) as exc:
        return f"refused ({type(exc).__name__})"


async def events(node: Node, event: str) -> list[dict[str, Any]]:
    await asyncio.sleep(0.1)  # audit_event_bg is group-committed
    doc = await node.audit_entries({"event": event, "limit": "100"})
    return [json.loads(base64.b64decode(e["entry"])) for e in doc["entries"]]


async def test_revoked_local_client_certificate_is_refused_on_open_and_new_connections(fed):
    built, fd = fed
    port = built["es"].local_port
    cert, key = fd.node_files("es").clients["system:default"]
    ctx = context(fd, cert, key)
    async with started(built["es"].config) as es:
        reader, writer = await connect(port, ctx)
        assert (await ask(reader, writer)).startswith(b"HTTP/1.1 200")
        fd.revoke(now=time.time(), cert_serial=cert_info(cert.read_bytes()).serial_hex)
        publish(fd)
        await es.poll_manifest()
        answer = await ask(reader, writer)  # the connection opened before the revocation
        assert answer.startswith(b"HTTP/1.1 403") and b"revoked" in answer, answer
        writer.close()
        assert (await fresh(port, ctx)).startswith("refused"), "a new connection with a revoked certificate"
        assert es.metrics.tls_refused.labels("local", "revoked")._value.get() >= 1
        # SPEC §6: every refused call is audited, also one refused in the TLS handshake (it was only counted
        # and logged: a revoked operator certificate being retried left nothing in the signed log)
        denied = [e for e in await events(es, "auth.denied") if e["listener"] == "local" and e.get("code") == "revoked"]
        assert denied and "handshake" in denied[-1]["detail"], denied
        # another client of the same node is not affected
        other = context(fd, *fd.node_files("es").clients["operator:default"])
        assert await fresh(port, other) == "HTTP/1.1 403 Forbidden"  # the operator role may not read the inbox


async def test_local_ca_rollover_trusts_both_cas_then_refuses_the_retired_one(fed):
    built, fd = fed
    port = built["es"].local_port
    old_cert, old_key = fd.node_files("es").clients["system:default"]
    old_ctx = context(fd, old_cert, old_key)
    async with started(built["es"].config) as es:
        reader, writer = await connect(port, old_ctx)
        assert (await ask(reader, writer)).startswith(b"HTTP/1.1 200")
        # 1. a second local CA; clients renewed under it
        res = fd.new_local_ca("es", now=time.time())
        assert "local CA 2" in cert_info(res.cert.read_bytes()).subject
        renewed = fd.renew_local("es", "system", "default", now=time.time())
        assert "local CA 2" in renewed.issuer
        new_ctx = context(fd, renewed.cert, renewed.key)
        # the node has not re-read keys.local_ca yet: the new CA's clients are not trusted
        assert (await fresh(port, new_ctx)).startswith("refused")
        es.reload_files("sighup")
        assert await fresh(port, new_ctx) == "HTTP/1.1 200 OK"
        assert await fresh(port, old_ctx) == "HTTP/1.1 200 OK"  # the overlap: both CAs
        # 2. retiring is refused while a client still holds a certificate of the old CA
        with pytest.raises(FederationDirError, match="operator:default"):
            fd.retire_local_ca("es", now=time.time())
        for role in ("operator", "auditor"):
            fd.renew_local("es", role, "default", now=time.time())
        fd.retire_local_ca("es", now=time.time())
        await es.poll_manifest()  # the manifest poll re-reads the files too
        answer = await ask(reader, writer)  # opened with the old CA's certificate
        assert answer.startswith(b"HTTP/1.1 403") and b"local CA" in answer, answer
        writer.close()
        assert (await fresh(port, old_ctx)).startswith("refused")
        assert await fresh(port, new_ctx) == "HTTP/1.1 200 OK"
        changes = await events(es, "key.rotated")
        assert [(e["use"], e["reason"], len(e["keys"]), len(e["previous"])) for e in changes] == [
            ("local_ca", "sighup", 2, 1), ("local_ca", "manifest poll", 1, 2)], changes
