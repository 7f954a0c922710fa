"""`traza audit verify --db`: every tampering is detected, exit 1, naming the first bad index or
checkpoint. Also `show` and `prove`."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from audit.audit_kit import T0, rewrite_log

from gateway.cli.main import main
from gateway.core.b64 import b64_encode
from gateway.core.merkle import leaf_hash
from gateway.core.note import Note, checkpoint_text, sign_ed25519
from gateway.core.timeutil import rfc3339_seconds


@pytest.fixture
def audit_db(tmp_path: Path) -> Callable[[str], Path]:
    """SQLite only: these tests copy and tamper with the SQLite file."""
    return lambda name: tmp_path / f"{name}.db"


@pytest.fixture
def logged(make_node, tmp_path):
    """Node A with 25 entries, checkpoints at 10, 17, 22 cosigned by witness B; 3 entries uncovered."""
    a, b = make_node("mx"), make_node("es")
    wb = b.witness({a.origin: a.key.public_raw})
    for n in (10, 7, 5):
        a.append(n)
        size = a.publish()
        status, _, body = wb.handle(a.publisher.witness_request(b.origin))
        assert status == 200
        a.publisher.add_cosignatures(size, body, {b.origin: b.key.public_raw})
    a.append(3)
    a.close()
    return a, b


def _copy(src: Path, dst: Path) -> Path:
    s, d = sqlite3.connect(src), sqlite3.connect(dst)
    s.backup(d)
    s.close()
    d.close()
    return dst


def _sql(db: Path, *stmts: tuple) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    for stmt in stmts:
        conn.execute(*stmt)
    conn.close()


def _verify(db: Path, capsys, *extra: str) -> tuple[int, str, str]:
    rc = main(["audit", "verify", "--db", str(db), "--no-progress", *extra])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_intact_log_verifies(logged, capsys):
    a, b = logged
    rc, out, _ = _verify(a.db, capsys)
    assert rc == 0, out
    # B cosigned each of the 3 checkpoints the same day: its first of the day and its newest are kept
    assert "25 entries" in out and "3 checkpoints" in out and "2 witness cosignatures" in out
    assert f"newest cosignature per witness: {b.origin} at {rfc3339_seconds(T0)} (" in out
    assert "entries 22..24 are not covered" in out
    rc, out, _ = _verify(
        a.db,
        capsys,
        "--log-key",
        a.key.public_b64,
        "--witness",
        f"{b.origin}={b.key.public_b64}",
        "--min-cosignatures",
        "1",
    )
    assert rc == 0, out


def test_intact_log_verifies_with_a_json_report(logged, capsys):
    a, b = logged
    rc, out, err = _verify(a.db, capsys, "--json")
    assert rc == 0, err
    doc = json.loads(out)
    # three checkpoints, one witness: compaction keeps the day's first cosignature and the newest (SPEC §7.2)
    assert (doc["ok"], doc["size"], doc["checkpoints"], doc["cosignatures"], doc["witnesses"]) == (
        True, 25, 3, 2, [b.origin]), doc
    assert doc["source"] == str(a.db) and doc["log_key_pinned"] is False and doc["latest_size"] == 22
    assert any("22..24" in w for w in doc["warnings"]), doc


def test_truncated_log(logged, capsys, tmp_path):
    db = _copy(logged[0].db, tmp_path / "t.db")
    _sql(db, ("DELETE FROM audit_entries WHERE idx >= 20",))
    rc, _, err = _verify(db, capsys)
    assert rc == 1
    assert (
        "checkpoint #3 (size 22): the log holds only 20 entries: truncated, the first missing index is 20"
        in err
    )


def test_one_entry_edited(logged, capsys, tmp_path):
    db = _copy(logged[0].db, tmp_path / "t.db")
    raw = sqlite3.connect(db).execute("SELECT entry FROM audit_entries WHERE idx=12").fetchone()[0]
    _sql(db, ("UPDATE audit_entries SET entry=? WHERE idx=12", (raw.replace(b'"iss":"mx"', b'"iss":"co"'),)))
    rc, _, err = _verify(db, capsys)
    assert rc == 1 and "index 12: entry bytes do not match the stored leaf hash" in err


def test_one_entry_edited_with_the_tree_rebuilt(logged, capsys, tmp_path):
    db = _copy(logged[0].db, tmp_path / "t.db")
    rewrite_log(db, lambda i, e: e.replace(b'"iss":"mx"', b'"iss":"co"') if i == 12 else e)
    rc, _, err = _verify(db, capsys)
    assert rc == 1
    assert "checkpoint #2 (size 17): root" in err and "an entry below index 17 was changed" in err


def test_two_entries_reordered(logged, capsys, tmp_path):
    db = _copy(logged[0].db, tmp_path / "t.db")
    conn = sqlite3.connect(db, isolation_level=None)
    r4, r6 = (
        conn.execute("SELECT entry, leaf_hash FROM audit_entries WHERE idx=?", (i,)).fetchone()
        for i in (4, 6)
    )
    conn.execute("UPDATE audit_entries SET entry=?, leaf_hash=? WHERE idx=4", r6)
    conn.execute("UPDATE audit_entries SET entry=?, leaf_hash=? WHERE idx=6", r4)
    conn.close()
    rc, _, err = _verify(db, capsys)
    assert rc == 1 and "index 4: entry records idx 6 at position 4" in err


def test_missing_entry_in_the_middle(logged, capsys, tmp_path):
    db = _copy(logged[0].db, tmp_path / "t.db")
    _sql(db, ("DELETE FROM audit_entries WHERE idx = 8",))
    rc, _, err = _verify(db, capsys)
    assert rc == 1 and "index 8: entry is missing (the next stored index is 9)" in err


def test_checkpoint_root_swapped(logged, capsys, tmp_path):
    a, _ = logged
    db = _copy(a.db, tmp_path / "t.db")
    conn = sqlite3.connect(db, isolation_level=None)
    note10, note17 = (
        conn.execute("SELECT note FROM audit_checkpoints WHERE size=?", (s,)).fetchone()[0] for s in (10, 17)
    )
    root10 = note10.split("\n")[2]
    conn.execute(
        "UPDATE audit_checkpoints SET note=? WHERE size=17", (note17.replace(note17.split("\n")[2], root10),)
    )
    conn.close()
    rc, _, err = _verify(db, capsys)
    assert rc == 1 and "checkpoint #2 (size 17): log signature" in err and "does not verify" in err


def _resign(db: Path, key, origin: str, size: int, root: bytes) -> None:
    text = checkpoint_text(origin, size, root)
    note = Note(text, (sign_ed25519(text, origin, key.public_raw, key.sign),)).encode()
    _sql(db, ("UPDATE audit_checkpoints SET note=?, root=? WHERE size=?", (note, root, size)))


def test_resigned_fork_without_cosignatures(logged, capsys, tmp_path):
    """The log key signs a second, different root for size 17 and replaces the first."""
    a, _ = logged
    db = _copy(a.db, tmp_path / "t.db")
    _resign(db, a.key, a.origin, 17, leaf_hash(b"another history"))
    _sql(db, ("DELETE FROM audit_cosignatures WHERE size=17",))
    rc, _, err = _verify(db, capsys)
    assert rc == 1 and "checkpoint #2 (size 17): root" in err and "does not match the root recomputed" in err


def test_history_rewritten_and_every_checkpoint_resigned(logged, capsys, tmp_path):
    """An insider with the log key and the database rewrites entry 3, rebuilds the tree and re-signs
    every checkpoint: the witness cosignatures (over the old roots) give it away."""
    a, b = logged
    db = _copy(a.db, tmp_path / "t.db")
    rewrite_log(db, lambda i, e: e.replace(b'"iss":"mx"', b'"iss":"co"') if i == 3 else e)
    from gateway.audit.reader import AuditReader

    with AuditReader(db) as r:
        roots = {s: r.root(s) for s in (10, 17, 22)}
    for s, root in roots.items():
        _resign(db, a.key, a.origin, s, root)
    rc, _, err = _verify(db, capsys)
    assert rc == 1 and f"checkpoint #1 (size 10): cosignature of witness '{b.origin}' does not verify" in err
    # dropping the cosignatures too: the database alone cannot tell, a required witness can
    _sql(db, ("DELETE FROM audit_cosignatures",))
    assert _verify(db, capsys)[0] == 0
    rc, _, err = _verify(db, capsys, "--witness", f"{b.origin}={b.key.public_b64}", "--min-cosignatures", "1")
    assert rc == 1 and "checkpoint #3 (size 22): 0 valid cosignatures, at least 1 required" in err


def test_min_cosignatures_applies_to_the_latest_checkpoint(logged, capsys, tmp_path):
    """Older checkpoints keep one cosignature a day per witness (compaction, SPEC §7.2): the latest one,
    which the consistency proofs tie every earlier one to, must carry the cosignatures required."""
    a, b = logged
    db = _copy(a.db, tmp_path / "t.db")
    pinned = ("--witness", f"{b.origin}={b.key.public_b64}", "--min-cosignatures", "1")
    _sql(db, ("DELETE FROM audit_cosignatures WHERE size < 22",))
    assert _verify(db, capsys, *pinned)[0] == 0
    _sql(db, ("DELETE FROM audit_cosignatures WHERE size = 22",))
    rc, _, err = _verify(db, capsys, *pinned)
    assert rc == 1 and "checkpoint #3 (size 22): 0 valid cosignatures, at least 1 required" in err


def test_wrong_pinned_log_key(logged, capsys, tmp_path):
    from gateway.crypto.keys import Ed25519Key

    rc, _, err = _verify(logged[0].db, capsys, "--log-key", Ed25519Key.generate().public_b64)
    assert rc == 1 and "checkpoint #1 (size 10): log signature: no signature from a trusted key" in err


def test_tampered_proof_data_is_detected(logged, capsys, tmp_path):
    db = _copy(logged[0].db, tmp_path / "t.db")
    _sql(db, ("UPDATE audit_nodes SET hash=? WHERE level=1 AND idx=5", (leaf_hash(b"x"),)))
    rc, _, err = _verify(db, capsys)
    assert (
        rc == 1 and "checkpoint #2 (size 17): not provably consistent with the checkpoint of size 10" in err
    )


def test_bad_usage_exits_2(tmp_path, capsys):
    assert main(["audit", "verify", "--db", str(tmp_path / "nope.db")]) == 2
    with pytest.raises(SystemExit) as e:
        main(["audit", "verify"])
    assert e.value.code == 2
    capsys.readouterr()


def test_show_and_prove(logged, capsys):
    a, _ = logged
    conn = sqlite3.connect(a.db)
    jti = json.loads(conn.execute("SELECT entry FROM audit_entries WHERE idx=4").fetchone()[0])["jti"]
    conn.close()
    assert main(["audit", "show", "--db", str(a.db), "--jti", jti]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(x)["idx"] for x in lines] == [4]
    assert main(["audit", "show", "--db", str(a.db), "--jti", "nope"]) == 1
    capsys.readouterr()
    assert main(["audit", "prove", "--db", str(a.db), "--index", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["size"] == 22 and out["against"] == "signed checkpoint" and out["entry"]["idx"] == 4
    assert main(["audit", "prove", "--db", str(a.db), "--index", "23"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["size"] == 25 and out["against"].startswith("root of the stored tree")
    assert main(["audit", "prove", "--db", str(a.db), "--index", "4", "--size", "10"]) == 0
    assert json.loads(capsys.readouterr().out)["root"] == b64_encode(
        __import__("gateway.audit.reader", fromlist=["AuditReader"]).AuditReader(a.db).root(10)
    )
    assert main(["audit", "prove", "--db", str(a.db), "--index", "30"]) == 1
    capsys.readouterr()


def test_checkpoint_columns_disagreeing_with_the_signed_note(logged, capsys, tmp_path):
    db = _copy(logged[0].db, tmp_path / "t.db")
    _sql(db, ("UPDATE audit_checkpoints SET root=? WHERE size=17", (leaf_hash(b"x"),)))
    rc, _, err = _verify(db, capsys)
    assert rc == 1 and "checkpoint #2 (size 17): the database records size 17 and another root" in err
