"""Receipt watchdog (issue #11): a message forwarded without a receipt after ``limits.receipt_overdue`` is
marked overdue once (``receipt.overdue`` audited, a timeline step, ``traza_receipts_overdue``, ``GET
/ops/v1/overdue``, ``traza queue list --overdue``) and an operator can resend it (same ``jti``: the hub
that holds it answers ``duplicate``, nothing is delivered twice). Real nodes in-process, real mTLS."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import msgspec
from kit.nodes import started
from kit.waiting import eventually

from gateway.cli.main import main as traza
from gateway.config import Config, load_config
from gateway.localfed import NodeSpec, build
from gateway.national.client import local_request
from gateway.node import Node

LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 60.0, "receipt_overdue": 0.5}
SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]
BODY = msgspec.json.encode({"title": "t", "text": "x"})



async def call(cfg: Config, method: str, path: str) -> tuple[int, Any]:
    return await asyncio.to_thread(local_request, cfg, "operator", method, path, b"" if method == "POST" else None)


async def events(node: Node, jti: str, event: str) -> list[dict[str, Any]]:
    doc = await node.audit_entries({"jti": jti, "event": event, "limit": "100"})
    return [json.loads(base64.b64decode(e["entry"])) for e in doc["entries"]]


async def overdue(cfg: Config) -> list[dict[str, Any]]:
    status, doc = await call(cfg, "GET", "/ops/v1/overdue")
    assert status == 200, doc
    return list(doc["overdue"])


async def test_message_without_receipt_is_marked_overdue_once_and_can_be_resent(tmp_path: Path, capsys: Any) -> None:
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    cfg = load_config(built["mx"].config)
    async with started(built["hub"].config) as hub, started(built["mx"].config) as mx:
        jti = await mx.submit(mt="notice", to="es", body=BODY, system="test")  # es is down: no receipt
        rows = await eventually(lambda: overdue(cfg), timeout=20.0)
        assert [(r["jti"], r["to"], r["state"], r["expired"]) for r in rows] == [(jti, "es", "forwarded", False)]
        await asyncio.sleep(1.5)  # several more watchdog passes: still one entry
        marked = await events(mx, jti, "receipt.overdue")
        assert len(marked) == 1 and marked[0]["to"] == "hub" and marked[0]["after_s"] == 0, marked
        timeline = [s["state"] for s in (await mx.message_status(jti) or {})["timeline"]]
        assert timeline[-1] == "overdue", timeline
        assert mx.metrics.receipts_overdue._value.get() == 1
        # the CLI lists it
        capsys.readouterr()
        rc = await asyncio.to_thread(traza, ["queue", "list", "--overdue", "--json", "--config", str(built["mx"].config)])
        assert rc == 0 and jti in capsys.readouterr().out

        # resend: the same envelope again to the hub, which already holds it and answers duplicate
        status, doc = await call(cfg, "POST", f"/ops/v1/messages/{jti}/resend")
        assert status == 200 and doc == {"jti": jti, "action": "resend", "peer": "hub"}, doc
        await eventually(lambda: events(hub, jti, "envelope.duplicate"), timeout=20.0)
        await eventually(lambda: _state(mx, jti, "forwarded"), timeout=20.0)
        done = await events(mx, jti, "operator.action")
        assert [(a["action"], a["operator"], "outcome" in a) for a in done] == [("message.resend", "default", False)]
        # a message that is not waiting for its receipt is not resent (refused, audited)
        status, doc = await call(cfg, "POST", "/ops/v1/messages/01a21b13-0000-7000-8000-00000000f0f0/resend")
        assert status == 404, doc

        # es comes back: the message is delivered, receipted, and no longer overdue
        async with started(built["es"].config) as es:
            await eventually(lambda: _take_all(es), timeout=20.0)
            await eventually(lambda: _state(mx, jti, "delivered"), timeout=30.0)
        assert await overdue(cfg) == []
        assert len(await events(mx, jti, "receipt.overdue")) == 1


async def _state(node: Node, jti: str, state: str) -> bool:
    return (await node.message_status(jti) or {}).get("state") == state


async def _take_all(node: Node) -> bool:
    page = await node.local_inbox(0, 100)
    for m in page["messages"]:
        await node.inbox_ack(m["id"], "system:test")
    return bool(page["messages"])


async def test_resend_of_an_expired_message_is_refused_and_audited(tmp_path: Path) -> None:
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    cfg = load_config(built["mx"].config)
    async with started(built["hub"].config), started(built["mx"].config) as mx:
        jti = await mx.submit(mt="notice", to="es", body=BODY, system="test", ttl=60)
        await eventually(lambda: overdue(cfg), timeout=20.0)
        mx.clock = lambda: 4_000_000_000.0  # long after its signed expiry
        status, doc = await call(cfg, "POST", f"/ops/v1/messages/{jti}/resend")
        assert status == 409 and doc["code"] == "expired", doc
        refused = await events(mx, jti, "operator.action")
        assert [(a["action"], a["outcome"]) for a in refused] == [("message.resend", "refused")], refused
