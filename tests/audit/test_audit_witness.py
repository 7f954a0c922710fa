"""Witnessing (SPEC §7.3, C2SP tlog-witness v1): two nodes A and B, each with its own database and keys.
B witnesses A; B detects A presenting inconsistent checkpoints, and B's own log records it."""

from __future__ import annotations

import pytest
from audit.audit_kit import message_event
from structlog.testing import capture_logs

from gateway.audit.log import AuditAppender, decode_entry
from gateway.audit.reader import AuditReader
from gateway.audit.witness import WitnessError
from gateway.cli.main import main
from gateway.core.note import (
    Note,
    NoteVerifier,
    encode_add_checkpoint,
    parse_note,
    parse_signature_lines,
    verify_note,
)
from gateway.crypto.keys import Ed25519Key


def _cosig_ok(witness, checkpoint_note: str, line: bytes) -> None:
    note = parse_note(checkpoint_note)
    sigs = parse_signature_lines(line)
    verify_note(Note(note.text, tuple(sigs)), [witness.verifier()])


def test_witness_cosigns_consistent_growth(make_node):
    a, b = make_node("mx"), make_node("es")
    wb = b.witness({a.origin: a.key.public_raw})
    a.append(5)
    a.publish()
    status, ctype, body = wb.handle(a.publisher.witness_request(b.origin))
    assert status == 200 and ctype.startswith("text/plain")
    _cosig_ok(wb, a.publisher.reader.checkpoint().note, body)
    assert a.publisher.add_cosignatures(5, body, {b.origin: b.key.public_raw}) == [b.origin]
    a.append(4)
    a.publish()
    req = a.publisher.witness_request(b.origin)  # old 5, with a consistency proof 5 -> 9
    assert req.startswith(b"old 5\n") and req.count(b"\n") > 5
    status, _, body = wb.handle(req)
    assert status == 200
    assert wb.latest(a.origin) == (9, a.publisher.reader.root(9))
    # the same checkpoint again (old == size, same root) is cosigned again
    status, _, _ = wb.handle(a.publisher.witness_request(b.origin, old_size=9))
    assert status == 200
    assert wb.forks_detected == 0 and wb.alerts() == []


def test_witness_refusals_follow_tlog_witness(make_node, audit_db):
    a, b = make_node("mx"), make_node("es")
    wb = b.witness({a.origin: a.key.public_raw})
    a.append(5)
    a.publish()
    assert wb.handle(a.publisher.witness_request(b.origin))[0] == 200
    a.append(2)
    a.publish()
    # stale old size: 409 with our size as text/x.tlog.size
    status, ctype, body = wb.handle(a.publisher.witness_request(b.origin, old_size=0))
    assert (status, ctype, body) == (409, "text/x.tlog.size", b"5\n")
    # unknown origin: 404
    c = make_node("co")
    c.append(1)
    c.publish()
    assert wb.handle(c.publisher.witness_request(b.origin))[0] == 404
    # signed by another key under A's origin: 403
    other = make_node("mx", key=Ed25519Key.generate(), db=audit_db("impostor"))
    other.append(7)
    other.publish()
    assert wb.handle(other.publisher.witness_request(b.origin, old_size=5))[0] == 403
    # old size beyond the checkpoint: 400; malformed: 400
    req = a.publisher.witness_request(b.origin, old_size=5).replace(b"old 5\n", b"old 8\n", 1)
    assert wb.handle(req)[0] == 400
    assert wb.handle(b"garbage")[0] == 400
    with pytest.raises(WitnessError) as e:
        wb.add_checkpoint(a.origin, 0, [b"\0" * 32], a.publisher.reader.checkpoint().note)
    assert e.value.status == 422  # a non-empty proof from size 0 (C2SP as amended, July 2026)
    assert wb.forks_detected == 0
    assert wb.latest(a.origin)[0] == 5  # nothing changed by refused requests


def test_b_detects_a_presenting_inconsistent_checkpoints_and_logs_it(make_node, audit_db):
    a, b = make_node("mx"), make_node("es")
    wb = b.witness({a.origin: a.key.public_raw})
    a.append(9)
    a.publish()
    assert wb.handle(a.publisher.witness_request(b.origin))[0] == 200
    good_root = a.publisher.reader.root(9)
    # A, with the same key, keeps a second history (another database): a fork
    fork = make_node("mx", key=a.key, db=audit_db("mx-fork"))
    fork.appender.append_sync([message_event(1000 + i, jti=f"forged-{i}") for i in range(9)])
    fork.publish()
    fork.append(3)
    fork.publish()
    # 1. an inconsistent pair: size 12 whose proof from 9 cannot match what B cosigned
    with capture_logs() as logs:
        status, _, body = wb.handle(fork.publisher.witness_request(b.origin, old_size=9), now=1_795_000_100)
    assert status == 422 and b"not consistent" in body
    assert any(e["log_level"] == "error" and e["event"] == "audit.witness.fork_detected" for e in logs)
    # 2. two roots for one size: the fork's size-9 checkpoint
    status, ctype, body = wb.handle(fork.publisher.witness_request(b.origin, old_size=9, size=9))
    assert (status, ctype) == (422, "text/plain") and b"two roots for size 9" in body
    assert wb.forks_detected == 2
    alerts = wb.alerts()
    assert [x["kind"] for x in alerts] == ["inconsistent", "same_size_different_root"]
    assert wb.latest(a.origin) == (9, good_root)  # B never moved to the fork
    # B's own audit log records both, and still verifies
    with AuditReader(b.db) as r:
        entries = [decode_entry(raw) for _, raw in r.entries(event="witness.fork_detected")]
    assert [(e["origin"], e["kind"], e["size"]) for e in entries] == [
        (a.origin, "inconsistent", 12),
        (a.origin, "same_size_different_root", 9),
    ]
    assert [x["audit_idx"] for x in alerts] == [e["idx"] for e in entries]
    b.publish()
    assert main(["audit", "verify", "--db", str(b.db), "--no-progress"]) == 0
    # a fresh Witness object (after a restart) still shows the alerts
    assert b.witness({a.origin: a.key.public_raw}).forks_detected == 2
    # the genuine A can go on
    a.append(2)
    a.publish()
    assert wb.handle(a.publisher.witness_request(b.origin, old_size=9))[0] == 200


def test_check_and_update_are_atomic(make_node):
    """Two requests from the same old size: the second cannot roll the stored size back."""
    a, b = make_node("mx"), make_node("es")
    wb = b.witness({a.origin: a.key.public_raw})
    a.append(4)
    a.publish()
    wb.handle(a.publisher.witness_request(b.origin))
    a.append(4)
    a.publish()
    r8 = a.publisher.witness_request(b.origin, old_size=4)
    a.append(4)
    a.publish()
    r12 = a.publisher.witness_request(b.origin, old_size=4)
    assert wb.handle(r12)[0] == 200
    assert wb.handle(r8)[:3] == (409, "text/x.tlog.size", b"12\n")
    assert wb.latest(a.origin)[0] == 12


def test_witness_requires_its_own_transaction_state(make_node):
    """A witness keeps its state in the node's own database, beside its log."""
    a, b = make_node("mx"), make_node("es")
    wb = b.witness({a.origin: a.key.public_raw})
    a.append(1)
    a.publish()
    wb.handle(a.publisher.witness_request(b.origin))
    wb.close()
    again = b.witness({a.origin: a.key.public_raw})
    assert again.latest(a.origin)[0] == 1
    body = encode_add_checkpoint(0, [], a.publisher.reader.checkpoint().note)
    assert again.handle(body)[:3] == (409, "text/x.tlog.size", b"1\n")
    assert isinstance(again.verifier(), NoteVerifier)
    assert AuditAppender  # imported API surface


# --- C2SP tlog-witness as amended in July 2026 (C2SP#280, SPEC §7.3 1.1): the three 422s -------------------


def test_the_proof_must_be_empty_if_the_old_size_is_zero_otherwise_422(make_node):
    """"The proof MUST be empty if the old size is zero ... the witness MUST respond with a
    "422 Unprocessable Entity" HTTP status code." (was 400)"""
    a, b = make_node("mx"), make_node("es")
    wb = b.witness({a.origin: a.key.public_raw})
    a.append(5)
    a.publish()
    body = encode_add_checkpoint(0, [b"\0" * 32], a.publisher.reader.checkpoint().note)
    status, ctype, text = wb.handle(body)
    assert (status, ctype) == (422, "text/plain") and b"size 0 must be empty" in text
    assert wb.latest(a.origin) is None or wb.latest(a.origin)[0] == 0  # nothing stored
    assert wb.handle(a.publisher.witness_request(b.origin))[0] == 200  # the empty proof is accepted


def test_if_the_consistency_proof_does_not_verify_the_witness_responds_422(make_node):
    """"If the Merkle Consistency Proof doesn't verify, the witness MUST respond with a
    "422 Unprocessable Entity" HTTP status code." (also a proof given between two equal sizes, which
    RFC 9162 §2.1.4.2 never verifies; that was 400)"""
    a, b = make_node("mx"), make_node("es")
    wb = b.witness({a.origin: a.key.public_raw})
    a.append(5)
    a.publish()
    assert wb.handle(a.publisher.witness_request(b.origin))[0] == 200
    a.append(4)
    a.publish()
    good = a.publisher.witness_request(b.origin, old_size=5)
    lines = good.split(b"\n")
    lines[1] = b"A" * 43 + b"="  # the proof's first hash replaced by another well-formed one
    status, ctype, text = wb.handle(b"\n".join(lines))
    assert (status, ctype) == (422, "text/plain") and b"not consistent" in text
    # a non-empty proof between equal sizes does not verify either
    same = encode_add_checkpoint(5, [b"\0" * 32], a.publisher.reader.checkpoint(5).note)
    assert wb.handle(same)[:2] == (422, "text/plain")
    assert wb.latest(a.origin)[0] == 5
    assert wb.handle(good)[0] == 200


def test_a_checkpoint_of_the_witness_size_with_another_root_gets_422_and_is_a_fork(make_node, audit_db):
    """"If the old size matches the checkpoint size, the witness MUST check that the root hashes are also
    identical. If they don't match, the witness MUST respond with a "422 Unprocessable Entity" HTTP status
    code." (was 409 with the size body; whatever old size the client names, it is a fork)"""
    a, b = make_node("mx"), make_node("es")
    wb = b.witness({a.origin: a.key.public_raw})
    a.append(9)
    a.publish()
    assert wb.handle(a.publisher.witness_request(b.origin))[0] == 200
    fork = make_node("mx", key=a.key, db=audit_db("mx-fork"))
    fork.appender.append_sync([message_event(1000 + i, jti=f"forged-{i}") for i in range(9)])
    fork.publish()
    for old in (9, 0):  # the witness's size, or a client that does not know it
        status, ctype, text = wb.handle(fork.publisher.witness_request(b.origin, old_size=old, size=9))
        assert (status, ctype) == (422, "text/plain") and b"fork" in text, (old, status, text)
    assert wb.forks_detected == 2 and wb.latest(a.origin) == (9, a.publisher.reader.root(9))
    # the 409 keeps its C2SP body for a stale old size of the genuine log
    a.append(1)
    a.publish()
    assert wb.handle(a.publisher.witness_request(b.origin, old_size=3))[:3] == (409, "text/x.tlog.size", b"9\n")
