"""Operator retry of dead letters (SPEC §6 `POST /ops/v1/dead-letters/<id>/retry`, docs/operations.md),
in-process with real nodes (hub, mx; es is never started) over the real local API with the operator's
client certificate, and through `traza queue retry`.

- A message whose signed `exp` has passed cannot be retried: 409 `expired` naming the message and its
  expiry, the dead letter stays, nothing is queued, and the refusal is audited (`operator.action`,
  outcome `refused`, with the reason); `traza queue retry ID` prints the detail and exits 1.
- A dead letter that has not expired (the hub rejected it: RESTREINT_UE above es's ceiling) is queued
  again: its dead letter leaves the list, the retry is audited, and the hub rejects it again.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import msgspec
from core.message_examples import example
from kit.nodes import started
from kit.waiting import eventually

from gateway.cli.main import main as traza
from gateway.config import Config, load_config
from gateway.localfed import NodeSpec, build
from gateway.national.client import local_request
from gateway.node import Node

LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 60.0}
SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub", max_classification="BASIC_PROTECTION_LEVEL")]


async def call(cfg: Config, method: str, path: str) -> tuple[int, Any]:
    """The local API as the operator, over mTLS (in a thread: the node serves on this event loop)."""
    return await asyncio.to_thread(local_request, cfg, "operator", method, path, b"" if method == "POST" else None)


async def dead_letters(cfg: Config) -> list[dict[str, Any]]:
    status, doc = await call(cfg, "GET", "/ops/v1/dead-letters")
    assert status == 200, doc
    return list(doc["dead_letters"])


async def actions(node: Node, jti: str) -> list[dict[str, Any]]:
    doc = await node.audit_entries({"jti": jti, "event": "operator.action", "limit": "100"})
    return [json.loads(base64.b64decode(e["entry"])) for e in doc["entries"]]



async def test_retry_of_an_expired_dead_letter_is_refused_and_audited_a_live_one_is_queued_again(tmp_path, capsys):
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    cfg = load_config(built["mx"].config)
    body = msgspec.json.encode(example("notice"))
    async with started(built["mx"].config) as mx:
        # a dead letter that has not expired: the hub rejects RESTREINT_UE above es's ceiling
        async with started(built["hub"].config):
            secret = await mx.submit(mt="notice", to="es", body=body, system="test", cls="RESTREINT_UE")
            first = await eventually(lambda: _find(dead_letters(cfg), secret), timeout=20.0)
            assert first["code"] == "classification_exceeded" and first["expired"] is False, first
            status, doc = await call(cfg, "POST", f"/ops/v1/dead-letters/{first['id']}/retry")
            assert status == 200 and doc == {"id": first["id"], "jti": secret, "action": "retry", "peer": "hub"}, doc
            done = await actions(mx, secret)
            assert [(a["action"], a["operator"], "outcome" in a) for a in done] == [
                ("dead_letter.retry", "default", False)], done
            # queued again, sent again, rejected again: a new dead letter for the same message
            again = await eventually(lambda: _find(dead_letters(cfg), secret, other_than=first["id"]), timeout=20.0)
            assert again["code"] == "classification_exceeded", again
            status_doc = await mx.message_status(secret) or {}
            timeline = [step["state"] for step in status_doc["timeline"]]
            assert timeline[-3:] == ["failed", "queued", "failed"], timeline

        # the hub is down now: a 2 s message expires in mx's queue into a dead letter
        short = await mx.submit(mt="notice", to="es", body=body, system="test", ttl=2)
        dead = await eventually(lambda: _find(dead_letters(cfg), short), timeout=20.0)
        assert dead["code"] == "expired" and dead["expired"] is True, dead
        assert dead["exp"].endswith("Z") and len(dead["exp"]) == 20, dead
        assert dead["at"].endswith("Z") and dead["at"][:4].isdigit() and "T" in dead["at"], dead  # RFC 3339

        status, doc = await call(cfg, "POST", f"/ops/v1/dead-letters/{dead['id']}/retry")
        assert status == 409, doc
        assert doc["code"] == "expired" and doc["status"] == 409, doc
        assert doc["detail"] == (f"message {short} expired at {dead['exp']}; a signed expiry cannot be extended: "
                                 "discard it, and have the origin send a new message"), doc
        # nothing changed: the dead letter is still there, nothing queued, the message still failed
        assert [d["id"] for d in await dead_letters(cfg) if d["jti"] == short] == [dead["id"]]
        assert (await mx.message_status(short) or {})["state"] == "failed"
        assert mx.queue_depth == 0
        refused = await eventually(lambda: actions(mx, short), timeout=20.0)
        assert [(a["action"], a["operator"], a["outcome"], a["reason"]) for a in refused] == [
            ("dead_letter.retry", "default", "refused", doc["detail"])], refused

        # `traza queue retry ID`: the problem detail on stderr, exit status 1
        capsys.readouterr()
        rc = await asyncio.to_thread(traza, ["queue", "retry", str(dead["id"]), "--config", str(built["mx"].config)])
        err = capsys.readouterr().err
        assert rc == 1 and "HTTP 409 expired" in err and doc["detail"] in err, err
        assert len(await actions(mx, short)) == 2  # that refusal is audited too

        status, doc404 = await call(cfg, "POST", "/ops/v1/dead-letters/999999/retry")
        assert status == 404 and doc404["code"] == "not_found", doc404

        # discarding it still works
        status, gone = await call(cfg, "POST", f"/ops/v1/dead-letters/{dead['id']}/discard")
        assert status == 200 and gone["jti"] == short, gone
        assert not [d for d in await dead_letters(cfg) if d["jti"] == short]


async def _find(rows: Any, jti: str, other_than: int | None = None) -> dict[str, Any] | None:
    return next((d for d in await rows if d["jti"] == jti and d["id"] != other_than), None)

