"""A node with several endpoints (SPEC §2, 1.1: replicas of one node): the peer client takes them in
turn and fails over to the next when one cannot be reached; real mTLS on 127.0.0.1 with the node
certificates `traza pki` makes. Two plain aiohttp servers stand for two replicas of the hub (each
presents the hub's certificate and counts what it serves); a port nobody listens on stands for a dead
replica."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.crypto.tls import client_context, server_context
from gateway.localfed import NodeSpec, build, free_ports
from gateway.transport.peer import PeerClient, PeerUnavailable
from gateway.trust.pki import FederationDir

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("es", "national", "ES", hub="hub")]


@pytest.fixture
async def replicas(tmp_path: Path) -> Any:
    build(tmp_path / "fed", SPECS)
    fd = FederationDir(tmp_path / "fed" / "pki")
    hub, es = fd.node_files("hub"), fd.node_files("es")
    ca = [fd.ca_cert_path.read_text()]
    served: collections.Counter[int] = collections.Counter()
    runners, urls = [], []
    for port in free_ports(2):
        async def answer(request: web.Request, port: int = port) -> web.Response:
            served[port] += 1
            return web.Response(text=f"replica {port}")

        app = web.Application()
        app.router.add_get("/v1/audit/checkpoint", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_context(hub.tls_cert, hub.tls_key, ca)).start()
        runners.append(runner)
        urls.append(f"https://127.0.0.1:{port}")
    try:
        yield urls, served, client_context(es.tls_cert, es.tls_key, ca), runners
    finally:
        for r in runners:
            await r.cleanup()


async def test_requests_take_the_replicas_in_turn(replicas):
    urls, served, ctx, _ = replicas
    client = PeerClient("hub", urls, ctx, timeout=5)
    try:
        for _ in range(6):
            status, _, _ = await client.request("GET", "/v1/audit/checkpoint")
            assert status == 200
    finally:
        await client.close()
    assert sorted(served.values()) == [3, 3], served


async def test_a_dead_replica_is_skipped_and_the_error_names_every_endpoint(replicas):
    urls, served, ctx, runners = replicas
    dead = f"https://127.0.0.1:{free_ports(1)[0]}"
    client = PeerClient("hub", [dead, urls[0]], ctx, timeout=5)
    try:
        for _ in range(4):
            status, data, _ = await client.request("GET", "/v1/audit/checkpoint")
            assert status == 200 and data.decode() == f"replica {urls[0].rsplit(':', 1)[1]}"
        assert client.endpoint == urls[0]  # the one that answered last: a blob upload resumes there
        await runners[0].cleanup()  # now every replica is down
        with pytest.raises(PeerUnavailable) as info:
            await client.request("GET", "/v1/audit/checkpoint")
        assert dead in str(info.value) and urls[0] in str(info.value), info.value
    finally:
        await client.close()
    assert sum(served.values()) == 4
