"""The forward loop pipelines its settles (issue #17, gateway/node/outbound.py): once a batch's acks are
checked, storing them (the settle) runs beside the next send instead of before it, so that one slow
commit does not hold every message queued behind it. Real nodes in-process, real mTLS on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
from core.message_examples import example
from kit.nodes import started, state
from kit.waiting import eventually

from gateway.core.relay import Relay
from gateway.localfed import NodeSpec, build
from gateway.store import relay as st

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]
LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 60.0}
BODY = msgspec.json.encode(example("notice"))


def hold_settles(node: Any) -> tuple[asyncio.Event, list[str]]:
    """Make ``node``'s settles of answered batches wait for the returned event; the list names what
    they settle, as they start."""
    release = asyncio.Event()
    started_for: list[str] = []
    real = node.shared.decide

    async def decide(fn: Any, now: float, *a: Any, **kw: Any) -> Any:
        if getattr(getattr(fn, "func", None), "__func__", None) is Relay.answered:
            started_for.extend(r.jti for r in fn.args[0].rows)
            await release.wait()
        return await real(fn, now, *a, **kw)

    node.shared.decide = decide
    return release, started_for


async def test_a_slow_settle_does_not_hold_the_next_batch_to_the_same_peer(tmp_path: Path) -> None:
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    async with started(built["hub"].config) as hub, started(built["mx"].config) as mx, \
            started(built["es"].config) as es:
        release, settling = hold_settles(mx)
        first = await mx.submit(mt="notice", to="es", body=BODY, system="test")
        await eventually(lambda: first in settling or None, timeout=10.0)  # hub acked it; mx stores that slowly
        second = await mx.submit(mt="notice", to="es", body=BODY, system="test")
        # the second goes out while the first's settle is still waiting
        await eventually(lambda: _held(hub, second), timeout=10.0)
        assert await state(mx, first) == "queued", "the first is dequeued only once its settle commits"
        release.set()
        for jti in (first, second):
            await eventually(lambda j=jti: _held(es, j), timeout=20.0)
        await eventually(lambda: _empty(mx), timeout=10.0)  # both settled: nothing is sent twice for ever
        assert settling.count(first) == 1, settling


async def _held(node: Any, jti: str) -> bool:
    return await state(node, jti) is not None


async def _empty(node: Any) -> bool:
    return int(await node.db.read(st.queue_total)) == 0
