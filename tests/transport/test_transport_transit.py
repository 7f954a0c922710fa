"""Transit copies (SPEC §11, 1.1; issue #19): a relaying node drops the payload and the blob ciphertext as
soon as the next hop has acknowledged the message, receipts and errors included, and keeps what evidence
needs; the message's evidence bundle from that node still verifies. The origin and the recipient keep
theirs. Real nodes in-process over real mTLS on 127.0.0.1."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import msgspec
from kit.nodes import attach, bundle_of, started, state
from kit.waiting import eventually

from gateway.localfed import NodeSpec, build
from gateway.node import Node

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]
LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 3600.0}


def held_payload(node: Node) -> dict[str, int]:
    """message id -> bytes of the envelope the node still holds."""
    con = sqlite3.connect(f"file:{node.data_dir / 'node.db'}?mode=ro", uri=True)
    try:
        return dict(con.execute("SELECT jti, length(envelope) FROM messages").fetchall())
    finally:
        con.close()


async def test_hub_drops_payload_and_blob_once_the_next_hop_acked_and_its_evidence_still_verifies(tmp_path: Path) -> None:
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    async with started(built["hub"].config) as hub, started(built["mx"].config) as mx, \
            started(built["es"].config) as es:
        small = msgspec.json.encode({"title": "t", "text": "x" * 100})
        large = msgspec.json.encode({"title": "t", "text": "x" * 15_000})
        scan = await attach(mx, tmp_path, 50_000)
        jtis = [await mx.submit(mt="notice", to="es", body=small, system="test"),
                await mx.submit(mt="notice", to="es", body=large, system="test", attachments=[scan])]

        async def all_in_inbox() -> bool:
            return len(await es.inbox_page(0, 10)) == 2

        await eventually(all_in_inbox, timeout=30.0)
        for jti in jtis:
            assert await es.inbox_ack(jti, "system:test")

        async def delivered() -> bool:
            return all([await state(mx, j) == "delivered" for j in jtis])

        await eventually(delivered, timeout=30.0)
        receipts = [j for j in held_payload(hub) if j not in jtis]
        assert len(receipts) == 2  # the receipts passed back through the hub too
        assert all(n == 0 for n in held_payload(hub).values()), held_payload(hub)  # nothing of any payload
        travelling = [p.name for p in hub.blobs.root.iterdir() if not p.name.startswith(".")]
        assert travelling == [], travelling  # the blob ciphertext went with the payload
        # the origin and the recipient keep theirs
        assert all(held_payload(mx)[j] > 0 for j in jtis) and all(held_payload(es)[j] > 0 for j in jtis)
        assert await hub.audit.publish(hub.clock()) is not None
        raw = await bundle_of(hub, jtis[1])
        assert raw is not None
    path = tmp_path / "bundle.json"
    path.write_bytes(raw)
    done = subprocess.run([sys.executable, "-m", "gateway.cli.main", "audit", "verify-bundle", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


async def test_a_message_the_next_hop_has_not_acked_keeps_its_payload_at_the_hub(tmp_path: Path) -> None:
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    async with started(built["hub"].config) as hub, started(built["mx"].config) as mx:  # es is down
        jti = await mx.submit(mt="notice", to="es", body=msgspec.json.encode({"title": "t", "text": "x"}),
                              system="test")

        async def at_hub() -> bool:
            return jti in held_payload(hub)

        await eventually(at_hub, timeout=20.0)
        assert held_payload(hub)[jti] > 0  # queued for es: the hub must still be able to send it
