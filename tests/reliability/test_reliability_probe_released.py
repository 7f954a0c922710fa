"""The queue to a peer must move again when the peer returns (docs/operations.md: "When the peer returns,
the queue drains oldest first"). With the peer down, mx queued more short-lived messages than a batch
holds; when its breaker let one probe through, the batch it read had only expired rows: they were
dead-lettered, nothing was sent, the probe was never given back and the breaker said "probing" for good:
the expired rows after them stayed queued and a new message was never sent, until a restart.

Real nodes in-process on 127.0.0.1; bounded by the waits below."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
from core.message_examples import example
from kit.nodes import started, state
from kit.waiting import eventually

from gateway.localfed import NodeSpec, build

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]


async def test_a_probe_batch_of_expired_rows_does_not_stop_the_queue_for_good(tmp_path: Path):
    built = build(tmp_path, SPECS, limits={"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 60.0,
                                           "max_batch": 8})
    body = msgspec.json.encode(example("notice"))
    async with started(built["mx"].config) as mx:
        short = [await mx.submit(mt="notice", to="es", body=body, system="t", ttl=1) for _ in range(20)]
        await asyncio.sleep(3)  # the hub is down; they expire in the queue
        async with started(built["hub"].config), started(built["es"].config):
            live = await mx.submit(mt="notice", to="es", body=body, system="t")

            async def sent() -> bool:
                return await state(mx, live) in ("forwarded", "delivered")

            await eventually(sent, timeout=30.0)
            queues = (await mx.ops_view("queues"))["queues"]
            assert queues == [], queues  # every expired row dead-lettered, none left queued
            dead = {d["jti"] for d in (await mx.ops_view("dead-letters"))["dead_letters"]}
            assert set(short) <= dead
