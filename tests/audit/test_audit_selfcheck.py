"""The start-up store check (gateway.audit.selfcheck) on real audit databases, without a node: the copy of
the last checkpoint kept outside the database, its signatures and cosignatures, a rewritten log, and the
file that never moves back. The node-level tests are in tests/reliability/."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from audit.audit_kit import rewrite_log

from gateway.audit.checkpoints import CHECKPOINT_FILE, CheckpointFile, read_checkpoint_file
from gateway.audit.selfcheck import StoreReport, check_store
from gateway.core.b64 import b64_decode, b64_encode
from gateway.crypto.keys import Ed25519Key


@pytest.fixture
def audit_db(tmp_path: Path) -> Callable[[str], Path]:
    """SQLite only: the start-up check reads the SQLite file itself (PRAGMA quick_check, the WAL a killed node left)."""
    return lambda name: tmp_path / f"{name}.db"


@pytest.fixture
def cosigned(make_node, tmp_path):
    """mx's log: 40 entries, a checkpoint of 40 cosigned by es and kept in ``last-checkpoint``."""
    a, b = make_node("mx"), make_node("es")
    wb = b.witness({a.origin: a.key.public_raw})
    a.append(40)
    size = a.publish()
    status, _, body = wb.handle(a.publisher.witness_request(b.origin))
    assert status == 200
    a.publisher.add_cosignatures(size, body, {b.origin: b.key.public_raw})
    cp = a.publisher.reader.checkpoint()
    assert cp is not None and cp.cosignatures
    kept = tmp_path / CHECKPOINT_FILE
    CheckpointFile(kept).save(cp.served(), cp.size)
    a.close()
    return a, b, kept


def _check(a, b, kept: Path, log_key: bytes | None = None) -> StoreReport:
    return check_store(a.db, kept, origin=a.origin, log_keys=[log_key or a.key.public_raw],
                       witness_keys={b.origin: b.key.public_raw})


def test_sound_store_passes(cosigned):
    a, b, kept = cosigned
    report = _check(a, b, kept)
    assert report.ok, report.problems
    assert (report.size, report.signed_size) == (40, 40)


def test_lost_tail_rows_with_their_checkpoint_are_caught_by_the_kept_copy(cosigned):
    a, b, kept = cosigned
    conn = sqlite3.connect(a.db, isolation_level=None)
    conn.execute("DELETE FROM audit_entries WHERE idx >= 33")
    conn.execute("DELETE FROM audit_cosignatures")
    conn.execute("DELETE FROM audit_checkpoints")
    conn.close()
    report = _check(a, b, kept)
    assert report.problems == [
        f"{a.db}: log has 33 entries but checkpoint of size 40 was signed (kept in {kept}): entries 33..39 are lost"
    ]


def test_forged_cosignature_in_the_kept_copy_is_refused(cosigned):
    a, b, kept = cosigned
    text = kept.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1]  # the witness's cosignature line
    name_key, sig = last.rsplit(" ", 1)
    raw = bytearray(b64_decode(sig))
    raw[-1] ^= 1
    kept.write_text(text.replace(last, f"{name_key} {b64_encode(bytes(raw))}"))
    report = _check(a, b, kept)
    assert len(report.problems) == 1 and f"cosignature of witness {b.origin!r} does not verify" in report.problems[0]


def test_kept_copy_signed_with_another_key_is_refused(cosigned):
    a, b, kept = cosigned
    report = _check(a, b, kept, log_key=Ed25519Key.generate().public_raw)
    assert len(report.problems) == 1 and "log signature" in report.problems[0], report.problems


def test_log_rewritten_with_matching_hashes_fails_on_the_signed_root(cosigned):
    a, b, kept = cosigned
    rewrite_log(a.db, lambda i, e: e.replace(b'"mt":"trace.request"', b'"mt":"trace.response"') if i == 25 else e)
    report = _check(a, b, kept)
    assert len(report.problems) == 1, report.problems
    assert "does not match the root recomputed from entries 0..39" in report.problems[0]


def test_kept_copy_never_moves_back(tmp_path, cosigned):
    _a, _b, kept = cosigned
    text, size, _ = read_checkpoint_file(kept) or ("", 0, b"")
    f = CheckpointFile(kept)
    assert not f.save("older checkpoint\n", size - 1)
    assert read_checkpoint_file(kept) == (text, size, read_checkpoint_file(kept)[2])  # unchanged
    assert not list(tmp_path.glob(f".{CHECKPOINT_FILE}.tmp"))


def test_entries_another_replica_appends_during_the_check_are_not_a_tree_mismatch(make_node, tmp_path, monkeypatch):
    """Replicas of one node share one log (docs/ha.md): a replica starting while another appends reads the
    log's size, then the entries; those appended in between are not part of that size (the check once
    compared the stored tree at the size it read with a root over every entry it then found, and refused
    to start a sound replica)."""
    from gateway.audit.reader import AuditReader

    a = make_node("mx")
    a.append(40)
    a.publish()
    a.append(10)  # 50 entries, the last 10 after the checkpoint
    a.close()
    real = AuditReader.size
    monkeypatch.setattr(AuditReader, "size", lambda self: real(self) - 5)  # 5 more arrived after size was read
    report = check_store(a.db, tmp_path / CHECKPOINT_FILE, origin=a.origin, log_keys=[a.key.public_raw],
                         witness_keys={})
    assert report.ok, report.problems
    assert report.size == 45
