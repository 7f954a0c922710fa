"""Conditional manifest fetch (SPEC §4.4, 1.1): ``GET /v1/manifest`` answers with an ``ETag`` and a request
naming it in ``If-None-Match`` gets ``304`` and no body; a node polls its hub that way, so an unchanged
manifest costs a few hundred bytes a poll, and a new manifest is still picked up.

Real nodes (in-process, real mTLS on 127.0.0.1, real SQLite), es polling eu-hub through a TCP proxy that
counts the bytes on the wire (TLS records included)."""

from __future__ import annotations

import shutil
import time

import pytest
from faultproxy import FaultProxy  # tests/e2e helper

from gateway.config import load_config
from gateway.crypto.tls import client_context
from gateway.localfed import NodeSpec, build
from gateway.node import Node
from gateway.transport.peer import PeerClient, etag_matches
from gateway.trust.pki import FederationDir

SPECS = [NodeSpec("eu-hub", "hub", "NL"), NodeSpec("es", "national", "ES", hub="eu-hub")]
# what an unchanged manifest may cost a node per poll, both directions, on a kept-alive connection
POLL_BUDGET = 1024


@pytest.fixture
async def pair(tmp_path):
    proxy = FaultProxy(cut_first=0, answered=lambda: 0, lifetime=120)
    port = proxy.start()
    try:
        # no checkpoints (no witness traffic) and no timed polls: the test polls, and es's only traffic
        # through the proxy (in front of eu-hub) is its manifest polls
        nodes = build(tmp_path, SPECS, manifest_poll_seconds=3600, limits={"checkpoint_interval": 3600},
                      endpoints={"eu-hub": f"https://127.0.0.1:{port}"})
        proxy.target_port = nodes["eu-hub"].peer_port
        # es reads its own copy of the manifest file, so a new manifest reaches it only through its hub
        published = tmp_path / "pki" / "published"
        own = tmp_path / "es-manifest"
        own.mkdir()
        for name in ("manifest.json", "manifest.sig"):
            shutil.copy(published / name, own / name)
        cfg = nodes["es"].config
        cfg.write_text(cfg.read_text().replace(str(published / "manifest.json"), str(own / "manifest.json")))
        hub = Node(load_config(nodes["eu-hub"].config))
        es = Node(load_config(cfg))
        await hub.start()
        try:
            await es.start()
            try:
                yield tmp_path, hub, es, proxy, nodes
            finally:
                await es.stop()
        finally:
            await hub.stop()
    finally:
        proxy.stop()


async def _poll(es: Node, proxy: FaultProxy) -> int:
    before = proxy.bytes_up + proxy.bytes_down
    await es.poll_manifest()
    return proxy.bytes_up + proxy.bytes_down - before


async def test_unchanged_manifest_poll_gets_304_and_costs_a_few_hundred_bytes(pair):
    _root, hub, es, proxy, _ = pair
    # es already holds the manifest in force: its ETag goes with the very first poll (after a start too),
    # which then costs the TLS handshake and a 304, not the manifest
    first = await _poll(es, proxy)
    assert (_served(hub, "polls", "304"), _served(hub, "polls", "200")) == (1, 0), "the first poll fetched it whole"
    second = await _poll(es, proxy)
    third = await _poll(es, proxy)
    print(f"manifest {len(hub.manifest_document())} B; poll bytes on the wire: first {first}, "
          f"unchanged {second}, {third}")
    assert second <= POLL_BUDGET and third <= POLL_BUDGET, (first, second, third)
    assert proxy.connections == 1, "the polls share one kept-alive connection"


async def test_new_manifest_is_picked_up_through_the_etag(pair):
    root, hub, es, proxy, _ = pair
    await _poll(es, proxy)
    assert await _poll(es, proxy) <= POLL_BUDGET
    version = es.fed.version
    fd = FederationDir(root / "pki")
    now = time.time()
    fd.bump(now=now)
    fd.sign("eu", now=now)
    fd.sign("ameripol", now=now)
    await hub.poll_manifest()  # the hub takes it from the published file
    assert hub.fed.version == version + 1
    fetched = await _poll(es, proxy)
    assert es.fed.version == version + 1, "es did not pick up the hub's new manifest"
    assert fetched > len(hub.manifest_document())
    assert await _poll(es, proxy) <= POLL_BUDGET  # and the new one is not fetched again


async def test_get_manifest_answers_etag_and_304_for_if_none_match(pair):
    root, hub, _es, _proxy, nodes = pair
    f = FederationDir(root / "pki").node_files("es")
    ctx = client_context(f.tls_cert, f.tls_key, [(root / "pki" / "ca" / "ca.pem").read_text()])
    cl = PeerClient("eu-hub", f"https://127.0.0.1:{nodes['eu-hub'].peer_port}", ctx, timeout=5)
    try:
        status, body, headers = await cl.request("GET", "/v1/manifest")
        etag = headers["Etag"]  # aiohttp writes the name so
        assert status == 200 and body == hub.manifest_document()
        assert etag.startswith('"') and etag.endswith('"') and len(etag) == 45  # quoted b64url SHA-256
        for inm in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            status, body, headers = await cl.request("GET", "/v1/manifest", headers={"If-None-Match": inm})
            assert (status, body, headers.get("Etag")) == (304, b"", etag), inm
        status, body, _ = await cl.request("GET", "/v1/manifest", headers={"If-None-Match": '"other"'})
        assert status == 200 and body == hub.manifest_document()
    finally:
        await cl.close()


def test_idle_peer_connection_outlives_the_default_poll_and_closes_before_the_server():
    """The figure above holds with the default settings only if the poll reuses the connection."""
    from gateway.config import TrustSection
    from gateway.transport.listener import ListenLimits
    from gateway.transport.peer import KEEPALIVE

    assert TrustSection.__struct_defaults__  # msgspec Struct: the default poll is a field default
    poll = TrustSection(anchor="a", manifest="m").manifest_poll_seconds
    assert poll < KEEPALIVE < ListenLimits().keepalive_timeout


def test_etag_matches_reads_if_none_match_as_rfc9110_says():
    assert etag_matches(['"a"'], '"a"')
    assert etag_matches(['"b" , W/"a"'], '"a"')
    assert etag_matches(['"b"', '"a"'], '"a"')
    assert etag_matches(["*"], '"a"')
    assert not etag_matches([], '"a"')
    assert not etag_matches(['"a2"', "a"], '"a"')


def _served(hub: Node, what: str, status: str) -> float:
    """The hub's ``traza_manifest_<what>_total{status}`` counter (0 before the first poll)."""
    return hub.metrics.registry.get_sample_value(f"traza_manifest_{what}_total", {"status": status}) or 0.0


async def test_hub_counts_each_manifest_poll_and_its_bytes(pair):
    """`traza bench --nodes` reads manifest_poll_bytes_per_node_min from these counters: each GET
    /v1/manifest is counted with the bytes of its HTTP exchange (request line and headers received,
    status line, headers and body sent), which are at most what crossed the wire (TLS adds its framing)."""
    root, hub, es, proxy, _ = pair
    fd = FederationDir(root / "pki")  # a new manifest at the hub: es's next poll fetches it whole
    fd.bump(now=time.time())
    fd.sign("eu", now=time.time())
    fd.sign("ameripol", now=time.time())
    await hub.poll_manifest()
    wire = await _poll(es, proxy)
    assert _served(hub, "polls", "200") == 1
    first = _served(hub, "poll_bytes", "200")
    assert len(hub.manifest_document()) < first < wire, (first, wire)
    wire = await _poll(es, proxy)
    assert _served(hub, "polls", "304") == 1 and _served(hub, "polls", "200") == 1
    unchanged = _served(hub, "poll_bytes", "304")
    print(f"unchanged poll: {unchanged:.0f} HTTP bytes, {wire} on the wire")
    assert 100 < unchanged < wire <= POLL_BUDGET, (unchanged, wire)
