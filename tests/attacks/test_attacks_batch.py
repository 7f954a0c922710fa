"""Uncapped batches (issue #10 item 2, SPEC §4.1 and §11): the receiver enforces ``max_batch`` itself.

One request of 400,000 junk envelopes used to make a node write 400,000 audit entries and grow by a
gigabyte. Now a batch over ``max_batch`` is ``413`` and an empty one ``400``; nothing of either is kept
and each refusal is one audit entry. Real node, real mTLS on 127.0.0.1, a federation member as attacker.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gateway.config import load_config
from gateway.crypto.tls import client_context
from gateway.localfed import NodeSpec, build
from gateway.node import Node
from gateway.transport.peer import PeerClient

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]


@contextlib.asynccontextmanager
async def hub_and_attacker(tmp_path: Path) -> AsyncIterator[tuple[Node, PeerClient]]:
    built = build(tmp_path / "fed", SPECS, limits={"max_batch": 256, "checkpoint_interval": 60.0})
    hub = Node(load_config(built["hub"].config))
    await hub.start()
    mx = Node(load_config(built["mx"].config))  # only its certificate is used
    client = PeerClient("hub", hub.fed.nodes["hub"].endpoint,
                        client_context(mx.tls_cert, mx.tls_key, mx.fed.manifest.tls_ca))
    try:
        yield hub, client
    finally:
        await client.close()
        mx.db.close()
        await hub.stop()


async def all_entries(node: Node) -> list[dict[str, Any]]:
    doc = await node.audit_entries({"limit": "100000"})
    return [json.loads(base64.b64decode(e["entry"])) for e in doc["entries"]]


def batch(n: int) -> bytes:
    return b'{"envelopes":[' + b",".join([b'{"token":"x","payload":"","hops":[]}'] * n) + b"]}"


async def test_batch_of_400000_junk_envelopes_is_refused_whole_with_one_audit_entry(tmp_path: Path) -> None:
    async with hub_and_attacker(tmp_path) as (hub, client):
        before = await all_entries(hub)
        status, data, _ = await client.request("POST", "/v1/envelopes", body=batch(400_000))
        assert status == 413, data
        problem = json.loads(data)
        assert problem["code"] == "too_large" and "400000 envelopes exceed max_batch 256" in problem["detail"]
        new = (await all_entries(hub))[len(before):]
        assert [(e["event"], e["code"], e["envelopes"], e["from"]) for e in new] == [
            ("envelope.rejected", "too_large", 400_000, "mx")], new
        assert await hub.db.read(lambda c: c.execute("SELECT count(*) FROM messages").fetchone()[0]) == 0


async def test_empty_batch_is_refused_with_400_and_one_audit_entry(tmp_path: Path) -> None:
    async with hub_and_attacker(tmp_path) as (hub, client):
        before = await all_entries(hub)
        status, data, _ = await client.request("POST", "/v1/envelopes", body=b'{"envelopes":[]}')
        assert status == 400 and json.loads(data)["code"] == "malformed", data
        assert "envelopes is empty" in json.loads(data)["detail"]
        new = (await all_entries(hub))[len(before):]
        assert [(e["event"], e["code"], e["envelopes"]) for e in new] == [("envelope.rejected", "malformed", 0)], new


async def test_batch_of_max_batch_envelopes_is_still_read_envelope_by_envelope(tmp_path: Path) -> None:
    async with hub_and_attacker(tmp_path) as (_hub, client):
        status, data, _ = await client.request("POST", "/v1/envelopes", body=batch(256))
        assert status == 200, data
        results = json.loads(data)["results"]
        assert len(results) == 256 and {r["status"] for r in results} == {"rejected"}
