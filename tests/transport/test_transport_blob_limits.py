"""Blob limits on the plaintext (SPEC §11 as amended; issue #12): ``max_blob`` bytes of plaintext relay
even though their ciphertext is a little larger; a hop that refuses a blob for size makes the message
fail (dead letter there, ``error`` to the origin) instead of an endless retry. Real nodes in-process over
real mTLS on 127.0.0.1."""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
from kit.nodes import attach, state
from kit.waiting import eventually

from gateway.config import load_config
from gateway.localfed import NodeSpec, build, write_config
from gateway.node import Node

FOUR = [NodeSpec("latam-hub", "hub", "CO"), NodeSpec("eu-hub", "hub", "NL"),
        NodeSpec("mx", "national", "MX", hub="latam-hub"), NodeSpec("es", "national", "ES", hub="eu-hub")]
LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 60.0, "max_blob": 70_000}
BODY = msgspec.json.encode({"title": "scan", "text": "attached"})


def set_limit(cfg_path: Path, **limits: Any) -> None:
    doc = tomllib.loads(cfg_path.read_text())
    doc["limits"].update(limits)
    write_config(cfg_path, doc)


@contextlib.asynccontextmanager
async def running(*paths: Path) -> AsyncIterator[list[Node]]:
    nodes = [Node(load_config(p)) for p in paths]
    for n in nodes:
        await n.start()
    try:
        yield nodes
    finally:
        for n in nodes:
            await n.stop()


async def test_blob_of_exactly_max_blob_plaintext_relays_through_hubs_with_the_same_limit(tmp_path: Path) -> None:
    built = build(tmp_path / "fed", FOUR, limits=LIMITS)
    async with running(*(built[n].config for n in ("latam-hub", "eu-hub", "mx", "es"))) as (_lh, _eh, mx, es):
        jti = await mx.submit(mt="notice", to="es", body=BODY, system="test",
                              attachments=[await attach(mx, tmp_path, LIMITS["max_blob"])])
        await eventually(lambda: _inbox_has(es, jti), timeout=30.0)


async def _inbox_has(node: Node, jti: str) -> bool:
    return any(m["id"] == jti for m in (await node.local_inbox(0, 100))["messages"])


async def test_hop_refusing_a_blob_for_size_dead_letters_the_message_and_tells_the_origin(tmp_path: Path) -> None:
    built = build(tmp_path / "fed", FOUR, limits=LIMITS)
    set_limit(built["eu-hub"].config, max_blob=2_000)  # eu-hub takes smaller blobs than the rest
    async with running(*(built[n].config for n in ("latam-hub", "eu-hub", "mx", "es"))) as (lh, _eh, mx, _es):
        jti = await mx.submit(mt="notice", to="es", body=BODY, system="test",
                              attachments=[await attach(mx, tmp_path, 5_000)])
        # latam-hub gives up at once (no retry loop) and the error reaches mx
        await eventually(lambda: _state_is(mx, jti, "failed"), timeout=30.0)
        dead = (await lh.ops_view("dead-letters"))["dead_letters"]
        assert [(d["jti"], d["code"], d["peer"]) for d in dead] == [(jti, "too_large", "eu-hub")], dead
        assert "refuses blob" in dead[0]["detail"]
        status = await mx.message_status(jti) or {}
        assert status["timeline"][-1]["detail"].startswith("too_large"), status["timeline"]
        # the error's own row leaves latam-hub's queue once mx's ack of it is settled, which may come after
        # mx has applied the error (settles run beside the next send)
        await eventually(lambda: _outbox_empty(lh), timeout=30.0)


async def _outbox_empty(node: Node) -> bool:
    return await node.db.read(lambda c: c.execute("SELECT count(*) FROM outbox").fetchone()[0]) == 0


async def _state_is(node: Node, jti: str, want: str) -> bool:
    return await state(node, jti) == want
