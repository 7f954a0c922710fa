"""Checkpoint publishing: C2SP format, the interval, and the refusals that keep a log from forking."""

from __future__ import annotations

import asyncio

import pytest
from audit.audit_kit import rewrite_log

from gateway.audit.checkpoints import ForkRefused, Publisher, ed25519_note_verifier
from gateway.audit.db import AuditError, connect
from gateway.audit.reader import AuditReader
from gateway.core.b64 import b64_encode
from gateway.core.merkle import leaf_hash, root_of
from gateway.core.note import NoteError, key_id, open_checkpoint, parse_note
from gateway.crypto.keys import Ed25519Key


def test_checkpoint_is_a_c2sp_signed_note_of_the_log(make_node):
    a = make_node("es")
    a.append(5)
    assert a.publish() == 5
    with AuditReader(a.db) as r:
        cp = r.checkpoint()
        assert cp is not None and r.origin == "traza/traza-test/es"
        lines = cp.note.split("\n")
        assert lines[:3] == ["traza/traza-test/es", "5", b64_encode(r.root(5))] and lines[3] == ""
        sig = parse_note(cp.note).signatures[0]
        assert sig.name == "traza/traza-test/es"
        assert sig.key_id == key_id("traza/traza-test/es", 0x01, a.key.public_raw)
        checkpoint, _ = open_checkpoint(cp.note, ed25519_note_verifier(a.origin, a.key.public_raw))
        assert checkpoint.root == root_of([leaf_hash(raw) for _, raw, _ in r.iter_entries()])
        with pytest.raises(NoteError):
            open_checkpoint(cp.note, ed25519_note_verifier(a.origin, Ed25519Key.generate().public_raw))
        assert cp.public_key == a.key.public_b64 and r.served_checkpoint() == cp.note


def test_publish_only_when_the_log_grew(make_node):
    a = make_node("es")
    assert a.publisher.publish() is None  # empty log: nothing to sign
    a.append(2)
    assert a.publish() == 2
    assert a.publisher.publish() is None
    a.append(1)
    assert a.publish() == 3
    with AuditReader(a.db) as r:
        assert [c.size for c in r.checkpoints()] == [2, 3]


async def test_run_signs_at_most_every_interval(make_node):
    a = make_node("es")
    a.publisher.interval = 0.2
    seen: list[int] = []

    async def on_cp(cp):
        seen.append(cp.size)

    stop = asyncio.Event()
    task = asyncio.create_task(a.publisher.run(stop, on_cp))
    for _ in range(10):  # entries keep arriving for ~0.5 s
        await a.appender.append_many([{"event": "node.started"}])
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    stop.set()
    await task
    assert 2 <= len(seen) <= 5, seen
    assert seen == sorted(seen) and seen[-1] == 10


def test_refuses_two_roots_for_one_size_even_after_restart(make_node):
    a = make_node("es")
    a.append(8)
    assert a.publish() == 8
    # someone rewrites entry 3 and the stored tree: it now has another root at size 8
    rewrite_log(a.db, lambda i, e: e.replace(b"mx", b"MX") if i == 3 else e)
    a.publisher.close()
    pub = Publisher(a.db, origin=a.origin, key=a.key)  # a fresh process: the refusal is persistent
    with pytest.raises(ForkRefused, match="a checkpoint of that size was signed with root"):
        pub.sign(8)
    pub.close()
    with AuditReader(a.db) as r:
        assert len(r.checkpoints()) == 1


def test_refuses_a_root_inconsistent_with_the_last_checkpoint(make_node):
    a = make_node("es")
    a.append(8)
    a.publish()
    a.append(4)
    rewrite_log(a.db, lambda i, e: e.replace(b"mx", b"MX") if i == 2 else e)  # history below size 8
    with pytest.raises(ForkRefused, match="not consistent with the signed checkpoint of size 8"):
        a.publisher.publish()


def test_refuses_to_sign_below_the_latest_checkpoint(make_node):
    a = make_node("es")
    a.append(10)
    a.publish()
    conn = connect(a.db)  # a restored backup: the log lost its last entries
    conn.execute("DELETE FROM audit_entries WHERE idx >= 6")
    conn.close()
    a.append(1)
    with pytest.raises(ForkRefused, match="size 10 was already signed"):
        a.publisher.sign(7)
    assert a.publisher.publish() is None  # 7 < 10: not "new", nothing signed
    with pytest.raises(ForkRefused, match="holds only 7"):
        a.publisher.sign(11)


def test_cosignatures_are_verified_before_they_are_kept(make_node):
    a, b, c = make_node("es"), make_node("it"), make_node("de")
    a.append(3)
    a.publish()
    wb, wc = b.witness({a.origin: a.key.public_raw}), c.witness({a.origin: a.key.public_raw})
    status, _, body_b = wb.handle(a.publisher.witness_request(b.origin))
    assert status == 200
    status, _, body_c = wc.handle(a.publisher.witness_request(c.origin))
    assert status == 200
    known = {b.origin: b.key.public_raw}
    # c is unknown to this log: its line is ignored
    assert a.publisher.add_cosignatures(3, body_b + body_c, known) == [b.origin]
    assert a.publisher.last_cosigned_size(b.origin) == 3
    # a cosignature that does not verify is refused
    forged = (
        body_b.replace(body_b[-10:-6], b"AAAA")
        if body_b[-10:-6] != b"AAAA"
        else body_b.replace(b"A", b"B", 1)
    )
    with pytest.raises(AuditError, match="does not verify"):
        a.publisher.add_cosignatures(3, forged, known)
    with AuditReader(a.db) as r:
        served = r.served_checkpoint()
        assert served == r.checkpoint().note + body_b.decode()
        note = parse_note(served)
        assert [s.name for s in note.signatures] == [a.origin, b.origin]
