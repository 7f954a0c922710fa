"""TLS certificate renewal and the federation CA rollover on running nodes (issue #12), in-process with
real mTLS on 127.0.0.1 and the files `traza pki` makes:

- a renewed certificate (`renew-tls`, written beside the old one) is swapped into the peer listener and
  the peer clients of the running node on SIGHUP or at the manifest poll: a keep-alive connection opened
  before goes on working, a new handshake sees the new serial (server and client side);
- a node starts with its renewed certificate when the configured one is revoked;
- CA rollover: while the manifest lists both CAs, nodes with certificates from either talk to each other;
  once the old CA is removed, a node still holding a certificate from it is refused (on the connection it
  already had open too), and talks again once renewed.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from core.message_examples import example
from kit.nodes import started
from kit.waiting import eventually

from gateway.crypto.pki import cert_info
from gateway.crypto.tls import cert_serial_hex, client_context
from gateway.localfed import NodeSpec, build
from gateway.node import Node
from gateway.store import relay as st
from gateway.trust.pki import FederationDir, FederationDirError

LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 60.0, "keepalive_timeout": 30.0}
SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]
BODY = msgspec.json.encode(example("notice"))
GET = b"GET /v1/manifest HTTP/1.1\r\nHost: hub\r\n\r\n"


def publish(fd: FederationDir) -> None:
    fd.sign("eu", now=time.time())
    assert fd.sign("ameripol", now=time.time()).published


async def response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(h.split(b":", 1)[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))
    await reader.readexactly(length)
    return head


def server_serial(writer: asyncio.StreamWriter) -> str:
    return cert_serial_hex(writer.get_extra_info("ssl_object").getpeercert(binary_form=True))


def serial_of(path: Path) -> str:
    return cert_info(path.read_bytes()).serial_hex


async def delivered(node: Node, jti: str) -> bool:
    m = await node.db.read(lambda c: st.get_message(c, jti))
    return m is not None


@pytest.fixture
def fed(tmp_path: Path) -> tuple[dict[str, Any], FederationDir]:
    built = build(tmp_path / "fed", SPECS, limits=LIMITS, manifest_poll_seconds=600.0)
    return built, FederationDir(tmp_path / "fed" / "pki")


async def test_renewed_server_certificate_new_handshakes_see_it_open_connections_continue(fed):
    built, fd = fed
    es = fd.node_files("es")
    ctx = client_context(es.tls_cert, es.tls_key, [fd.ca_cert_path.read_text()])
    old = serial_of(fd.node_files("hub").tls_cert)
    async with started(built["hub"].config) as hub:
        reader, writer = await asyncio.open_connection("127.0.0.1", built["hub"].peer_port, ssl=ctx)
        writer.write(GET)
        assert (await response(reader)).startswith(b"HTTP/1.1 200")
        assert server_serial(writer) == old

        res = fd.renew_tls("hub", now=time.time())
        assert hub.reload_files("sighup") is None and hub.tls_serial == res.serial != old

        # the connection opened before the swap is still served (same TLS session, old certificate)
        writer.write(GET)
        assert (await response(reader)).startswith(b"HTTP/1.1 200")
        assert server_serial(writer) == old
        # a new handshake sees the new certificate
        r2, w2 = await asyncio.open_connection("127.0.0.1", built["hub"].peer_port, ssl=ctx)
        assert server_serial(w2) == res.serial
        w2.write(GET)
        assert (await response(r2)).startswith(b"HTTP/1.1 200")
        for w in (writer, w2):
            w.close()
        renewed = await hub_events(hub, "key.rotated")
        assert [(e["use"], e["kid"], e["previous"], e["serial"], e["previous_serial"], e["reason"])
                for e in renewed] == [("tls", "hub/tls/2", ["hub/tls/1"], res.serial, old, "sighup")]
        assert hub.tls_cert == res.cert  # the dashboard's expiry and traza_expiry_seconds read this one


async def hub_events(node: Node, event: str) -> list[dict[str, Any]]:
    import base64

    await asyncio.sleep(0.1)  # audit_event_bg is group-committed
    doc = await node.audit_entries({"event": event, "limit": "100"})
    return [json.loads(base64.b64decode(e["entry"])) for e in doc["entries"]]


async def test_renewed_client_certificate_is_used_by_new_connections_while_kept_alive_ones_continue(fed):
    """es's peer client to the hub: a kept-alive connection made with the old certificate is reused after
    the swap; a second connection opened at the same time presents the new one (seen by the hub)."""
    built, fd = fed
    seen: list[str] = []
    async with started(built["hub"].config) as hub, started(built["es"].config) as es:
        identify = hub.identify_peer

        def spy(der: bytes | None) -> str:
            if der is not None:
                seen.append(cert_serial_hex(der))
            return identify(der)

        hub.identify_peer = spy  # type: ignore[method-assign]
        old = es.tls_serial
        cl = es._client("hub")
        assert (await cl.request("GET", "/v1/manifest"))[0] == 200
        assert seen == [old]
        res = fd.renew_tls("es", now=time.time())
        await es.poll_manifest()  # the manifest poll reloads the certificate files, too
        assert es.tls_serial == res.serial
        seen.clear()
        statuses = await asyncio.gather(*(cl.request("GET", "/v1/manifest") for _ in range(2)))
        assert [s for s, _, _ in statuses] == [200, 200]
        assert sorted(seen) == sorted([old, res.serial]), (seen, old, res.serial)
        # and messages flow with it
        jti = await es.submit(mt="notice", to="hub", body=BODY, system="test")
        assert await eventually(lambda: delivered(hub, jti), timeout=20.0)


async def test_node_starts_with_its_renewed_certificate_when_the_configured_one_is_revoked(fed):
    built, fd = fed
    old = serial_of(fd.node_files("es").tls_cert)
    res = fd.renew_tls("es", now=time.time())
    fd.revoke(now=time.time(), cert_serial=old)
    publish(fd)
    async with started(built["hub"].config) as hub, started(built["es"].config) as es:
        assert es.tls_serial == res.serial and es.tls_cert == res.cert
        jti = await es.submit(mt="notice", to="hub", body=BODY, system="test")
        assert await eventually(lambda: delivered(hub, jti), timeout=20.0)


async def test_ca_rollover_either_ca_during_the_overlap_old_one_refused_after_removal(fed):
    built, fd = fed
    async with started(built["hub"].config) as hub, started(built["mx"].config) as mx, \
            started(built["es"].config) as es:
        nodes = (hub, mx, es)
        first = await es.submit(mt="notice", to="mx", body=BODY, system="test")
        assert await eventually(lambda: delivered(mx, first), timeout=20.0)  # es has a connection open to hub
        # 1. a second CA, published: every node trusts both
        fd.new_ca(now=time.time())
        publish(fd)
        for n in nodes:
            await n.poll_manifest()
            assert len(n.fed.manifest.tls_ca) == 2
        # 2. the hub and mx get certificates from the new CA; es keeps its old-CA certificate
        for name, node in (("hub", hub), ("mx", mx)):
            fd.renew_tls(name, now=time.time())
            node.reload_files("sighup")
            assert "TLS CA 2" in cert_info(node.tls_cert.read_bytes()).issuer
        # during the overlap both directions work: es (old CA) <-> hub (new CA) <-> mx (new CA)
        for src, dst in ((es, mx), (mx, es)):
            jti = await src.submit(mt="notice", to=dst.id, body=BODY, system="test")
            assert await eventually(lambda jti=jti, dst=dst: delivered(dst, jti), timeout=20.0)
        # 3. the old CA is removed while es still holds a certificate from it (forced): es is refused at
        # once, on a connection opened before the removal too (every request is checked)
        with pytest.raises(FederationDirError, match="renew-tls"):
            fd.retire_ca(now=time.time())
        old_ctx = client_context(es.tls_cert, es.tls_key, hub.fed.manifest.tls_ca)
        reader, writer = await asyncio.open_connection("127.0.0.1", built["hub"].peer_port, ssl=old_ctx)
        writer.write(GET)
        assert (await response(reader)).startswith(b"HTTP/1.1 200")
        fd.retire_ca(now=time.time(), force=True)
        publish(fd)
        for n in nodes:
            await n.poll_manifest()
            assert len(n.fed.manifest.tls_ca) == 1
        writer.write(GET)
        head = await response(reader)
        assert head.startswith(b"HTTP/1.1 403"), head
        writer.close()
        refused = await es.submit(mt="notice", to="mx", body=BODY, system="test")
        await eventually(lambda: hub.metrics.tls_refused.labels("peer", "unknown_ca")._value.get() > 0, timeout=20.0)
        assert not await delivered(hub, refused)
        f = fd.node_files("es")
        # 4. es renewed (under the new CA): its queued message goes through
        fd.renew_tls("es", now=time.time())
        assert f.tls_cert != fd.node_files("es").tls_cert
        es.reload_files("sighup")
        assert await eventually(lambda: delivered(mx, refused), timeout=20.0)

