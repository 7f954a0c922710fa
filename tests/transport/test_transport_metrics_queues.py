"""The queue gauges follow the queue (docs/operations.md, ``traza_queue_depth``, ``traza_queue_oldest_age_seconds``):
once the queue to a peer has drained, its series no longer reports the last depth and age it had. They
kept them until a restart, so ``TrazaQueueStuck`` (oldest age > 900 s) kept firing for a queue long empty.

Real nodes in-process on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import msgspec
from core.message_examples import example
from kit.nodes import started, state
from kit.waiting import eventually

from gateway.localfed import NodeSpec, build

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]


def _series(text: bytes, name: str) -> list[str]:
    return [line for line in text.decode().splitlines() if line.startswith(name + "{")]


async def test_the_queue_gauges_of_a_drained_queue_do_not_keep_their_last_values(tmp_path: Path):
    built = build(tmp_path, SPECS, limits={"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 60.0})
    async with started(built["mx"].config) as mx:
        jti = await mx.submit(mt="notice", to="es", body=msgspec.json.encode(example("notice")), system="t")
        text, _ = mx.metrics_text()
        assert _series(text, "traza_queue_depth") == ['traza_queue_depth{peer="hub"} 1.0']
        async with started(built["hub"].config), started(built["es"].config):

            async def forwarded() -> bool:
                return await state(mx, jti) in ("forwarded", "delivered")

            await eventually(forwarded, timeout=30.0)
            async def drained() -> bool:
                return (await mx.ops_view("queues"))["queues"] == []

            await eventually(drained, timeout=10.0)
            text, _ = mx.metrics_text()
    depth = _series(text, "traza_queue_depth")
    assert depth in ([], ['traza_queue_depth{peer="hub"} 0.0']), depth
    assert _series(text, "traza_queue_oldest_age_seconds") in (
        [], ['traza_queue_oldest_age_seconds{peer="hub"} 0.0']), text
