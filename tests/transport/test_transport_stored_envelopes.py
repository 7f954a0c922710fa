"""The forward loop reads what it needs from the envelopes it stored (issue #17) without checking them
again: each was checked strictly (SPEC §3.4) when it was received or built, and the next node checks it
again. It used to decode every envelope it sent three times through the strict JSON gate (its blob
references twice, its token for the ack once), about a tenth of a hub's CPU."""

from __future__ import annotations

import pytest
from kit.federation import make_federation

from gateway.core import strictjson
from gateway.core.envelope import BlobRef, decode_envelope, encode_envelope, stored_token
from gateway.node import outbound

SHA = "a" * 64


@pytest.fixture
def strict_checks(monkeypatch):
    calls = []
    real = strictjson.loads

    def counted(data, what="JSON text"):
        calls.append(what)
        return real(data, what)
    monkeypatch.setattr(strictjson, "loads", counted)
    return calls


def test_the_token_of_a_stored_envelope_is_read_without_the_strict_gate(strict_checks):
    raw = encode_envelope(make_federation().send("mx", "es"))
    want = decode_envelope(raw).token
    strict_checks.clear()
    assert stored_token(raw) == want
    assert strict_checks == []


def test_the_blob_references_of_a_stored_envelope_are_read_without_the_strict_gate(strict_checks):
    tf = make_federation()
    ref = BlobRef(sha256=SHA, len=12345, ct="application/octet-stream", name="scan.x3p")
    with_blob = encode_envelope(tf.send("mx", "es", blobs=[ref]))
    without = encode_envelope(tf.send("mx", "es"))
    strict_checks.clear()
    got = outbound._blob_refs(with_blob)
    assert [(r.sha256, r.len) for r in got] == [(SHA, 12345)]
    assert outbound._blob_refs(without) == []
    assert strict_checks == []


@pytest.mark.parametrize("raw", [b"", b"{}", b'{"token": 5}', b'{"token": "no-dots"}', b'{"token": "a.%%.c"}'])
def test_a_stored_envelope_that_cannot_be_read_names_no_blob(raw):
    assert outbound._blob_refs(raw) == []


# --- the digest an ack is checked against is the one stored with the message -------------------------

async def test_every_queued_row_carries_the_digest_of_the_token_it_holds(tmp_path):
    """The forward loop checks each ack against ``OutboxRow.dig`` (``messages.dig``) instead of reading
    the token back. Rows queued at an origin (built here) and at a hub (received and relayed) must carry
    the digest of the very token they hold, or a good ack would be refused and a wrong one taken."""
    from kit.nodes import started
    from kit.waiting import eventually

    from gateway.core.envelope import token_digest
    from gateway.localfed import NodeSpec, build
    from gateway.store import relay as st

    specs = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
             NodeSpec("es", "national", "ES", hub="hub")]
    built = build(tmp_path / "fed", specs, limits={"retry_min": 0.05, "retry_max": 0.2})
    body = b'{"title": "t", "text": "x"}'

    def queued(node, peer):
        return node.db.read_sync(lambda c: st.due_fifo(c, peer, 1e12, 100))

    async with started(built["mx"].config) as mx:  # the hub is down: the messages wait at the origin
        sent = [await mx.submit(mt="notice", to="es", body=body, system="test") for _ in range(3)]
        at_origin = queued(mx, "hub")
        assert sorted(r.jti for r in at_origin) == sorted(sent)
        async with started(built["hub"].config) as hub:  # es is down: they wait at the hub
            await eventually(lambda: len(queued(hub, "es")) == 3, timeout=20.0)
            at_hub = queued(hub, "es")
    for rows in (at_origin, at_hub):
        assert [r.dig for r in rows] == [token_digest(stored_token(r.envelope)) for r in rows]
    # the hub's copy has its hop record appended; the token, hence the digest, is the origin's
    assert {r.jti: r.dig for r in at_origin} == {r.jti: r.dig for r in at_hub}
