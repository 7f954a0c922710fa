"""``/ops/v1/peers`` and ``traza peers`` show each peer's last error and when it happened
(docs/runbooks.md: "`traza peers --config CONFIG` for the peer's last error (`HTTP 503` means it sheds
load…)"; the views had no such field: an operator saw "down" and a failure count, not why).

Real nodes in-process on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import msgspec
from core.message_examples import example
from kit.nodes import started
from kit.waiting import eventually

from gateway.localfed import NodeSpec, build

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]


async def test_the_peers_view_names_the_last_error_of_a_peer_and_when(tmp_path: Path):
    built = build(tmp_path, SPECS, limits={"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 60.0})
    async with started(built["mx"].config) as mx:
        (hub,) = (await mx.ops_view("peers"))["peers"]
        assert hub["last_error"] is None and hub["last_error_at"] is None
        await mx.submit(mt="notice", to="es", body=msgspec.json.encode(example("notice")), system="t")

        async def failed() -> dict | None:
            (p,) = (await mx.ops_view("peers"))["peers"]
            return p if p["last_error"] else None

        hub = await eventually(failed, timeout=20.0)
        assert "hub" in hub["last_error"] and "Connect" in hub["last_error"], hub
        assert hub["last_error_at"].endswith("Z") and hub["failures"] >= 1
