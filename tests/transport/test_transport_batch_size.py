"""A batch to a peer fits its request limit (SPEC §4.1, §11: a request body of at most ``max_request``
bytes, 16 MiB by default, answered 413 with nothing kept). The forward loop capped a batch by count only,
so a queue of large envelopes made one request over the limit, the peer refused it whole (413), and the
sender resent the same batch for ever: every later message to that peer waited behind it until they all
expired. Real nodes in-process over real mTLS on 127.0.0.1, with small request limits to keep it quick."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import msgspec
from kit.nodes import entries, started, state
from kit.waiting import eventually

from gateway.localfed import LocalNode, NodeSpec, build, write_config
from gateway.node import Node

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]
LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 3600.0}
SMALL_REQUEST = 64 * 1024  # a request body of at most 64 KiB: four large notices (below) do not fit
LARGE_TEXT = 12_000  # characters of a large notice's text: an envelope of about 17 KB once sealed


def set_limits(node: LocalNode, **limits: Any) -> None:
    """Give one node of a built federation its own ``[limits]`` (the others keep theirs)."""
    doc = tomllib.loads(node.config.read_text(encoding="utf-8"))
    doc["limits"] = {**doc.get("limits", {}), **limits}
    write_config(node.config, doc)


def large_body() -> bytes:
    return msgspec.json.encode({"title": "large", "text": os.urandom(LARGE_TEXT // 2).hex()})


SMALL_BODY = msgspec.json.encode({"title": "small", "text": "queued after the large ones"})


async def queued_for(node: Node, peer: str) -> int:
    return int(await node.db.read(lambda c: c.execute("SELECT count(*) FROM outbox WHERE peer=?",
                                                      (peer,)).fetchone()[0]))


async def in_inbox(node: Node, jtis: list[str]) -> bool:
    held = {r.jti for r in await node.inbox_page(0, 1000)}
    return all(j in held for j in jtis)


async def test_large_envelopes_queued_to_a_peer_all_arrive_and_do_not_block_a_small_one_behind_them(
        tmp_path: Path) -> None:
    """Ten envelopes of ~17 KB queued at the hub for es while es is down (and sent by mx to the hub), then
    a small notice: once es is up, all eleven arrive in es's inbox. Every node's request limit is 64 KiB,
    so the batch of eleven (~170 KB) made by count alone was refused whole (413) for ever."""
    built = build(tmp_path / "fed", SPECS, limits={**LIMITS, "max_request": SMALL_REQUEST})
    async with started(built["hub"].config) as hub, started(built["mx"].config) as mx:
        large = [await mx.submit(mt="notice", to="es", body=large_body(), system="test") for _ in range(10)]
        small = await mx.submit(mt="notice", to="es", body=SMALL_BODY, system="test")
        await eventually(lambda: _is(queued_for(hub, "es"), 11), timeout=30.0)
        assert await queued_for(mx, "hub") == 0
        async with started(built["es"].config) as es:
            await eventually(lambda: in_inbox(es, [*large, small]), timeout=30.0)
            assert await entries(es, event="envelope.rejected") == []  # no request was over es's limit
        assert await queued_for(hub, "es") == 0


async def test_a_peer_with_a_smaller_request_limit_than_the_sender_still_gets_everything(tmp_path: Path) -> None:
    """The hub assumes the federation's default request limit (16 MiB, its own ``max_request``); es takes
    64 KiB only and refuses the hub's first batch (413). The hub splits the batch for es until it fits,
    instead of resending it as it was for ever; everything arrives, the small notice too."""
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    set_limits(built["es"], max_request=SMALL_REQUEST)
    async with started(built["hub"].config) as hub, started(built["mx"].config) as mx:
        large = [await mx.submit(mt="notice", to="es", body=large_body(), system="test") for _ in range(10)]
        small = await mx.submit(mt="notice", to="es", body=SMALL_BODY, system="test")
        await eventually(lambda: _is(queued_for(hub, "es"), 11), timeout=30.0)
        async with started(built["es"].config) as es:
            await eventually(lambda: in_inbox(es, [*large, small]), timeout=30.0)
            refused = await entries(es, event="envelope.rejected")
            assert refused and all(e["code"] == "too_large" for e in refused), refused  # the 413s that split it
        assert await queued_for(hub, "es") == 0
        assert hub.counters.get("batches_split", 0) >= 1
        assert await hub.db.read(lambda c: c.execute("SELECT count(*) FROM dead_letters").fetchone()[0]) == 0


async def test_an_envelope_a_peer_refuses_alone_as_too_large_is_dead_lettered_and_does_not_block_the_queue(
        tmp_path: Path) -> None:
    """es takes requests of 8 KiB only: a large notice (~17 KB) can never reach it. Alone in its request it
    is refused with 413: the hub dead-letters it (``too_large``, naming the 413) and an error goes back to
    mx, where it fails; the small notice queued behind it arrives."""
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    set_limits(built["es"], max_request=8 * 1024)
    async with started(built["hub"].config) as hub, started(built["mx"].config) as mx:
        large = await mx.submit(mt="notice", to="es", body=large_body(), system="test")
        small = await mx.submit(mt="notice", to="es", body=SMALL_BODY, system="test")
        await eventually(lambda: _is(queued_for(hub, "es"), 2), timeout=30.0)
        async with started(built["es"].config) as es:
            await eventually(lambda: in_inbox(es, [small]), timeout=30.0)
            assert not await in_inbox(es, [large])
            await eventually(lambda: _is(state(mx, large), "failed"), timeout=30.0)
        (peer, code, detail), = await hub.db.read(lambda c: c.execute(
            "SELECT peer, code, detail FROM dead_letters WHERE jti=?", (large,)).fetchall())
        assert (peer, code) == ("es", "too_large")
        assert "413" in detail and "es refuses" in detail, detail
        assert await queued_for(hub, "es") == 0
        timeline = (await mx.message_status(large) or {}).get("timeline", [])
        assert any("too_large" in (step.get("detail") or "") for step in timeline), timeline


async def _is(got: Any, want: Any) -> bool:
    return bool(await got == want)
