"""A node whose clock steps back (an NTP correction, a VM restored) keeps forwarding (docs/reliability.md:
"A node never gets stuck"). mx queued messages while its next hop was down, their retries scheduled on
the wall clock; its clock then moved back an hour. The breaker stayed open and the rows stayed due an hour
later: nothing reached es for that hour, a new message neither. Now an open breaker whose opening lies in
the future probes at once, and rows scheduled further ahead than the longest backoff are pulled in.

Real nodes in-process on 127.0.0.1, mx on an injected clock; bounded by the waits below."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
from core.message_examples import example
from kit.nodes import started
from kit.waiting import eventually

from gateway.demo.procs import FOUR
from gateway.localfed import build


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def test_a_node_whose_clock_moved_back_an_hour_forwards_at_once_when_its_hop_returns(tmp_path: Path):
    built = build(tmp_path, FOUR, now=time.time() - 7200,
                  limits={"retry_min": 0.1, "retry_max": 0.5, "checkpoint_interval": 60.0})
    clock = Clock()
    body = msgspec.json.encode(example("notice"))
    async with started(built["mx"].config, clock=clock) as mx:
        ids = [await mx.submit(mt="notice", to="es", body=body, system="t") for _ in range(3)]
        await asyncio.sleep(2.0)  # latam-hub is down: the breaker opens, retries are scheduled
        clock.offset = -3600.0
        async with started(built["latam-hub"].config), started(built["eu-hub"].config), \
                started(built["es"].config) as es:

            async def all_in_inbox() -> bool:
                held = {r.jti for r in await es.inbox_page(0, 100)}
                return all(j in held for j in ids)

            await eventually(all_in_inbox, timeout=20.0)  # the queued ones, with no new traffic to pull them
            ids.append(await mx.submit(mt="notice", to="es", body=body, system="t"))
            await eventually(all_in_inbox, timeout=20.0)  # and a new one
