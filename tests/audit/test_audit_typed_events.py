"""Every entry a running node writes is one of the typed audit events of gateway/core/events.py, field for
field: nothing reaches the log as a free-form dictionary (issue #11)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import msgspec
from kit.nodes import started
from kit.waiting import eventually

from gateway.audit.log import RESERVED
from gateway.core import events as ev
from gateway.localfed import NodeSpec, build
from gateway.node import Node
from gateway.store import relay as st

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]
BODY = msgspec.json.encode({"title": "t", "text": "x"})


async def raw_entries(node: Node) -> list[bytes]:
    doc = await node.audit_entries({"limit": "1000"})
    return [base64.b64decode(e["entry"]) for e in doc["entries"]]


MESSAGE_EVENTS = {"envelope.accepted", "envelope.duplicate", "envelope.forwarded", "envelope.expired",
                  "envelope.dead_lettered", "envelope.delivered", "receipt.received", "receipt.overdue"}


def test_every_event_about_a_message_carries_the_spec_fields():
    """SPEC §7.1: entries for messages carry jti, mt, iss, aud, from, to, dig. Each of these events is a
    MessageEvent, whose fields are required: a missing one is a type error where the event is built."""
    by_tag = {t.__struct_config__.tag: t for t in ev.AuditEvent.__args__}
    for tag in MESSAGE_EVENTS:
        t = by_tag[tag]
        assert issubclass(t, ev.MessageEvent), tag
        required = {f.encode_name for f in msgspec.structs.fields(t) if f.required}
        assert {"jti", "mt", "iss", "aud", "from", "to", "dig"} <= required, (tag, required)


def test_the_event_names_are_the_tags_of_the_typed_union():
    tags = {t.__struct_config__.tag for t in ev.AuditEvent.__args__}
    assert ev.EVENTS == tags and len(tags) == len(ev.AuditEvent.__args__)
    assert {"envelope.accepted", "receipt.overdue", "store.check_failed", "payload.purged"} <= ev.EVENTS


async def test_every_entry_of_a_relayed_exchange_decodes_as_its_typed_event(tmp_path: Path) -> None:
    built = build(tmp_path / "fed", SPECS, limits={"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 60.0})
    async with started(built["hub"].config) as hub, started(built["mx"].config) as mx, \
            started(built["es"].config) as es:
        jti = await mx.submit(mt="notice", to="es", body=BODY, system="test")
        await eventually(lambda: es.inbox_page(0, 10), timeout=20.0)
        assert await es.inbox_ack(jti, "system:test")
        await eventually(lambda: _state(mx, jti, "delivered"), timeout=20.0)
        seen: set[str] = set()
        for node in (hub, mx, es):
            for raw in await raw_entries(node):
                typed = ev.decode_entry(raw)
                stored = {k: v for k, v in json.loads(raw).items() if k not in RESERVED}
                assert ev.as_entry(typed) == stored, (node.id, stored)  # no field outside the type
                seen.add(stored["event"])
                if isinstance(typed, ev.MessageEvent):  # SPEC §7.1: the fields of an entry for a message
                    missing = {"jti", "mt", "iss", "aud", "from", "to", "dig"} - set(stored)
                    assert not missing, (node.id, stored["event"], missing)
        assert {"node.started", "envelope.accepted", "envelope.forwarded", "envelope.delivered",
                "receipt.received"} <= seen


async def _state(node: Node, jti: str, state: str) -> bool:
    m = await node.db.read(lambda c: st.get_message(c, jti))
    return m is not None and m.state == state
