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
