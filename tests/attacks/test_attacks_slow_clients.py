"""Slow and flooding clients (issue #10 item 7): an authenticated connection that idles, trickles its
headers or stalls in its body is closed within its timeout; the connections a listener holds are capped.

A real node started in-process from gateway.localfed configs with short timeouts; real mTLS clients
(asyncio streams) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ssl
import time

import pytest
from kit.waiting import eventually

from gateway.config import load_config
from gateway.crypto.tls import client_context
from gateway.localfed import NodeSpec, build
from gateway.node import Node
from gateway.trust.pki import FederationDir

SPECS = [NodeSpec("eu-hub", "hub", "NL"), NodeSpec("es", "national", "ES", hub="eu-hub")]
LIMITS = {"handshake_timeout": 1.0, "header_timeout": 1.0, "body_timeout": 1.0, "keepalive_timeout": 1.5,
          "max_connections": 8, "checkpoint_interval": 60.0}
GET = b"GET /v1/manifest HTTP/1.1\r\nHost: eu-hub\r\n\r\n"


@pytest.fixture
async def hub(tmp_path):
    built = build(tmp_path, SPECS, limits=LIMITS)
    node = Node(load_config(built["eu-hub"].config))
    await node.start()
    f = FederationDir(tmp_path / "pki").node_files("es")
    ctx = client_context(f.tls_cert, f.tls_key, [(tmp_path / "pki" / "ca" / "ca.pem").read_text()])
    try:
        yield node, built["eu-hub"].peer_port, ctx
    finally:
        await node.stop()


async def connect(port: int, ctx: ssl.SSLContext) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, ssl=ctx)


async def closed_after(reader: asyncio.StreamReader, t0: float, limit: float = 15.0) -> float:
    """Seconds from ``t0`` until the server closed the connection (reads and drops what comes first)."""
    async with asyncio.timeout(limit):
        while await reader.read(65536):
            pass
    return time.monotonic() - t0


async def read_response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(h.split(b":", 1)[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))
    await reader.readexactly(length)
    return head


def timed_out(node: Node, phase: str) -> float:
    return node.metrics.timed_out.labels("peer", phase)._value.get()


async def test_idle_authenticated_connection_is_closed_after_the_keepalive_timeout(hub):
    _node, port, ctx = hub
    reader, writer = await connect(port, ctx)
    writer.write(GET)
    assert (await read_response(reader)).startswith(b"HTTP/1.1 200")
    t0 = time.monotonic()
    held = await closed_after(reader, t0)  # the connection is kept alive, then idles
    writer.close()
    assert 1.0 <= held <= 6.0, held  # keepalive_timeout 1.5 s (slack for a loaded machine)


async def test_connection_that_never_sends_a_request_is_closed_after_the_header_timeout(hub):
    node, port, ctx = hub
    t0 = time.monotonic()
    reader, writer = await connect(port, ctx)
    held = await closed_after(reader, t0)
    writer.close()
    assert held <= 6.0, held  # header_timeout 1 s
    assert timed_out(node, "header") == 1


async def test_header_trickler_is_closed_after_the_header_timeout(hub):
    """Headers sent a few bytes at a time, each well within any idle limit, never completing."""
    node, port, ctx = hub
    reader, writer = await connect(port, ctx)
    writer.write(GET)  # one good request first: the trickled one is a later request on the connection
    await read_response(reader)
    t0 = time.monotonic()
    writer.write(b"POST /v1/envelopes HTTP/1.1\r\nHost: eu-hub\r\n")

    async def trickle() -> None:
        for _ in range(100):  # at most 20 s
            await asyncio.sleep(0.2)
            writer.write(b"X-Slow: a\r\n")
            await writer.drain()

    task = asyncio.create_task(trickle())
    try:
        held = await closed_after(reader, t0)
    finally:
        task.cancel()
        writer.close()
    assert held <= 6.0, held
    assert timed_out(node, "header") == 1


async def test_partial_body_is_closed_after_the_body_timeout(hub):
    node, port, ctx = hub
    reader, writer = await connect(port, ctx)
    writer.write(b"POST /v1/envelopes HTTP/1.1\r\nHost: eu-hub\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n" + b'{"envelopes":[')
    t0 = time.monotonic()
    held = await closed_after(reader, t0)
    writer.close()
    assert held <= 6.0, held  # body_timeout 1 s
    assert timed_out(node, "body") == 1


async def test_body_that_keeps_coming_is_not_cut(hub):
    """A slow but steady body (a byte every 0.3 s, under the 1 s body timeout) is served in full."""
    node, port, ctx = hub
    reader, writer = await connect(port, ctx)
    body = b'{"envelopes":[{"token":"x","payload":"","hops":[]}]}'  # one envelope: read whole, then rejected
    writer.write(b"POST /v1/envelopes HTTP/1.1\r\nHost: eu-hub\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body))
    for i in range(0, len(body), 6):
        await asyncio.sleep(0.3)
        writer.write(body[i:i + 6])
    head = await read_response(reader)
    writer.close()
    assert head.startswith(b"HTTP/1.1 200"), head
    assert timed_out(node, "body") == 0


async def test_connections_over_the_cap_are_refused_at_once(hub):
    """max_connections 8: eight connections that never finish their handshake hold the listener; the
    ninth is closed as soon as it is accepted and counted; once they are cut (handshake timeout), a
    client is served again."""
    node, port, ctx = hub
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(8)]
    await eventually(lambda: node.listeners["peer"].open == 8, timeout=5)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing said
    writer.close()
    await eventually(lambda: node.metrics.tls_refused.labels("peer", "connection_limit")._value.get() == 1, timeout=5)
    assert node.listeners["peer"].open == 8
    await eventually(lambda: node.listeners["peer"].open == 0, timeout=5)  # handshake timeout 1 s
    assert node.metrics.tls_refused.labels("peer", "handshake_timeout")._value.get() == 8
    for _, w in held:
        w.close()
    r2, w2 = await connect(port, ctx)
    w2.write(GET)
    assert (await read_response(r2)).startswith(b"HTTP/1.1 200")
    w2.close()


async def test_request_answered_later_than_the_header_timeout_is_not_cut():
    """A complete request whose answer takes longer than header_timeout (a 4 GiB attachment encrypted at
    submission takes ~15 s) is answered, not closed as a header trickler: aiohttp feeds the handler an
    empty chunk when it drains its queue, which must not re-arm the header timer."""
    from aiohttp import web

    from gateway.transport.listener import Listener, ListenLimits, serve

    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(1.0)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/slow", slow)
    timeouts: list[tuple[str, ...]] = []
    listener = Listener("local", ListenLimits(header_timeout=0.3), on_refused=lambda *a: None,
                        on_timeout=lambda *a: timeouts.append(a))
    from gateway.localfed import free_ports

    port = free_ports(1)[0]
    runner = await serve(app, "127.0.0.1", port, None, listener)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = b'{"a": 1}'
        writer.write(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        head = await asyncio.wait_for(read_response(reader), 10.0)
        writer.close()
    finally:
        await runner.cleanup()
    assert head.startswith(b"HTTP/1.1 200"), head
    assert timeouts == []
