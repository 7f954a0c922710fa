"""Corruption a node notices itself (issue 11, F4; docs/reliability.md "Start-up self-check").

One node (mx; its hub and es are in the manifest but never started) writes a real log of about 100
entries (node.started, 98 envelope.accepted, node.stopped) and signs checkpoints of it; each test starts
from a copy of that data folder, damages it on disk, and starts the node as a real `traza run` process:

- a flipped bit in audit entry 60            -> exit 2, one line naming index 60;
- a malformed page in the middle of node.db (cell pointers overwritten, or the whole page random bytes)
                                             -> exit 2, one line with PRAGMA quick_check's finding;
- a lost tail: kill -9 of a running node, then its WAL cut after the first half of its commits (what a
  disk that acknowledged fsyncs it never made leaves) -> exit 2, "log has N entries but checkpoint of
  size M was signed", caught by the copy of the last checkpoint kept outside the database;
- `traza audit verify --db` on each damaged database, and on a file that is not a database: one line,
  exit 1, no traceback;
- `--accept-damaged-store REASON` starts the damaged node and its log then holds `store.check_failed`;
- a healthy node starts, and the check of a 100,000-entry log is timed.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.audit import log as audit_log
from gateway.audit.checkpoints import (
    CHECKPOINT_FILE,
    CheckpointFile,
    publish_checkpoint,
    read_checkpoint_file,
)
from gateway.audit.db import connect as audit_connect
from gateway.audit.db import transaction
from gateway.audit.reader import AuditReader
from gateway.cli.main import main as traza
from gateway.config import load_config
from gateway.core.note import origin_for
from gateway.crypto.keys import Ed25519Key
from gateway.localfed import LocalNode, NodeSpec, build
from gateway.national.client import local_request
from gateway.node import Node

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]
# checkpoints every 0.2 s; the hub is never up, so retries are slow and add nothing to the log
LIMITS = {"checkpoint_interval": 0.2, "retry_min": 60.0, "retry_max": 120.0}
MESSAGES = 98
STANDARD = "application/vnd.traza.message+json"


def _notice(i: int) -> dict[str, object]:
    return {"type": "notice", "to": "es", "handling": "H1", "classification": "BASIC_PROTECTION_LEVEL",
            "purpose": "INVESTIGATION", "body": {"title": f"selfcheck {i}", "text": f"notice {i}"}}


def _log_size(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute("SELECT count(*) FROM audit_entries").fetchone()[0])
    finally:
        conn.close()


def _signed_size(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute("SELECT coalesce(max(size), 0) FROM audit_checkpoints").fetchone()[0])
    finally:
        conn.close()


def _kept_size(data_dir: Path) -> int:
    kept = read_checkpoint_file(data_dir / CHECKPOINT_FILE)
    return 0 if kept is None else kept[1]


async def _write_log(config: Path, data_dir: Path) -> None:
    node = Node(load_config(config))
    await node.start()
    try:
        for i in range(MESSAGES):
            await node.submit(mt="notice", to="es", body=json.dumps(_notice(i)["body"]).encode(), system="test")
        deadline = time.monotonic() + 30
        while _signed_size(data_dir / "node.db") != _log_size(data_dir / "node.db"):  # checkpoints caught up
            assert time.monotonic() < deadline, "no checkpoint of the whole log within 30 s"
            await asyncio.sleep(0.1)
    finally:
        await node.stop()


@dataclass
class Store:
    node: LocalNode
    pristine: Path

    @property
    def data_dir(self) -> Path:
        return self.node.data_dir

    @property
    def db(self) -> Path:
        return self.node.data_dir / "node.db"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("fed")
    mx = build(root, SPECS, limits=LIMITS)["mx"]
    asyncio.run(_write_log(mx.config, mx.data_dir))
    # fold the WAL into node.db, so that the damage below lands in the file SQLite reads
    conn = sqlite3.connect(mx.data_dir / "node.db", isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    pristine = root / "pristine-mx"
    shutil.copytree(mx.data_dir, pristine)
    return Store(mx, pristine)


@pytest.fixture
def store(built: Store) -> Iterator[Store]:
    """The module's node with its data folder as the log left it (restored for each test)."""
    shutil.rmtree(built.data_dir)
    shutil.copytree(built.pristine, built.data_dir)
    wal = Path(f"{built.db}-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # everything is in node.db
    yield built


# -- damage ------------------------------------------------------------------------------------------------


def _entry(db: Path, idx: int) -> bytes:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return bytes(conn.execute("SELECT entry FROM audit_entries WHERE idx=?", (idx,)).fetchone()[0])
    finally:
        conn.close()


def flip_bit_in_entry(db: Path, idx: int) -> None:
    """Flip one bit in the middle of audit entry ``idx`` where it lies in the file (every copy of its bytes,
    should a stale one sit in free space)."""
    entry, data = _entry(db, idx), bytearray(db.read_bytes())
    at = data.find(entry)
    assert at >= 0, f"entry {idx} not found as one run of bytes in {db}"
    while at >= 0:
        data[at + len(entry) // 2] ^= 0x04
        at = data.find(entry, at + 1)
    db.write_bytes(bytes(data))


def break_page_of_entry(db: Path, idx: int, how: str) -> int:
    """Damage the b-tree page holding audit entry ``idx`` (a page in the middle of the file): overwrite its
    cell pointer array with 0xFF bytes (``pointers``) or the whole page with (seeded) random bytes
    (``random``). Returns that page's number."""
    entry, data = _entry(db, idx), bytearray(db.read_bytes())
    page_size = struct.unpack(">H", data[16:18])[0]
    page = data.find(entry) // page_size
    assert 0 < page < len(data) // page_size - 1, "the entry's page should be in the middle of the file"
    start = page * page_size
    if how == "pointers":
        data[start + 8 : start + 48] = b"\xff" * 40
    else:
        data[start : start + page_size] = random.Random(11).randbytes(page_size)
    db.write_bytes(bytes(data))
    return page + 1  # SQLite numbers pages from 1


def commit_ends(wal: Path) -> list[int]:
    """The offset just past each committed transaction of a WAL (frames of the current WAL only: the salt
    of each frame header must be the WAL header's)."""
    data = wal.read_bytes()
    page_size, salt = struct.unpack(">I", data[8:12])[0], data[16:24]
    frame, off, ends = 24 + page_size, 32, []
    while off + frame <= len(data) and data[off + 8 : off + 16] == salt:
        commit = struct.unpack(">I", data[off + 4 : off + 8])[0]
        off += frame
        if commit:
            ends.append(off)
    return ends


def drop_last_commits(wal: Path, keep: int) -> None:
    """Cut a WAL after its first ``keep`` committed transactions."""
    ends = commit_ends(wal)
    assert 2 <= keep <= len(ends), f"{wal}: {len(ends)} commits in the WAL, {keep} to keep"
    with wal.open("r+b") as f:
        f.truncate(ends[keep - 1])


# -- the node as a process ---------------------------------------------------------------------------------


def traza_run(config: Path, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`traza run` expected to refuse: it must exit by itself."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "run", "--config", str(config), *extra],
        capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL,
    )


def spawn(node: LocalNode, *extra: str) -> subprocess.Popen[bytes]:
    log = open(node.data_dir.parent / f"{node.id}.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "run", "--config", str(node.config), *extra],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    log.close()
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, f"{node.id} exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{node.ops_port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"{node.id} not ready within 30 s")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    proc.send_signal(sig)
    proc.wait(timeout=20)


def one_line_refusal(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit 2, no traceback, exactly one `traza:` line on stderr holding each of ``expected``."""
    out = result.stdout + result.stderr
    assert "Traceback" not in out, out
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("traza:")]
    assert len(lines) == 1, out
    assert result.returncode == 2, (result.returncode, out)
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def audit_verify_fails(db: Path, capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    """`traza audit verify --db`: exit 1, one line on stderr, nothing on stdout, no traceback."""
    rc = traza(["audit", "verify", "--db", str(db), "--no-progress"])
    out = capsys.readouterr()
    assert rc == 1, (rc, out)
    assert out.out == "" and len(out.err.splitlines()) == 1, out
    for text in expected:
        assert text in out.err, out.err
    return out.err


# -- the tests ---------------------------------------------------------------------------------------------


def test_flipped_bit_in_audit_entry_60_refuses_start_naming_index_60(store: Store, capsys) -> None:
    assert _log_size(store.db) >= 100
    flip_bit_in_entry(store.db, 60)
    line = one_line_refusal(traza_run(store.node.config), "index 60", "--accept-damaged-store")
    assert "entry bytes do not match the stored leaf hash" in line
    audit_verify_fails(store.db, capsys, "index 60")


@pytest.mark.parametrize(("how", "finding"), [
    ("pointers", "On tree page {page} cell"),  # quick_check lists what it found
    ("random", "database disk image is malformed"),  # a page too broken to walk stops quick_check itself
])
def test_malformed_page_refuses_start_with_quick_check_finding(store: Store, capsys, how: str, finding: str) -> None:
    page = break_page_of_entry(store.db, 50, how)
    expected = f"PRAGMA quick_check: {finding.format(page=page)}"
    one_line_refusal(traza_run(store.node.config), expected)
    audit_verify_fails(store.db, capsys, expected)


def test_lost_tail_after_kill_9_and_a_cut_wal_refuses_start(store: Store, capsys) -> None:
    node = store.node
    cfg = load_config(node.config)
    proc = spawn(node)
    try:
        for i in range(30):
            status, doc = local_request(cfg, "system", "POST", "/local/v1/messages",
                                        json.dumps(_notice(1000 + i)).encode(), STANDARD)
            assert status == 201, doc
        deadline = time.monotonic() + 30
        while _kept_size(store.data_dir) < _log_size(store.db):  # the checkpoint file too, not only the database
            assert time.monotonic() < deadline, "no checkpoint of the whole log kept within 30 s"
            time.sleep(0.1)
    finally:
        stop(proc, signal.SIGKILL)
    signed = _kept_size(store.data_dir)
    wal = Path(f"{store.db}-wal")
    found = len(commit_ends(wal))
    # the most of the WAL (at most half its commits) whose loss SQLite cannot tell: on a copy, it recovers a
    # log shorter than the checkpoint kept outside the database, whose own checkpoints all fit in it (the
    # node logs more, its retries to the absent peer, between that checkpoint and the kill; how much
    # depends on how busy the machine is)
    for kept in range(found // 2, 1, -1):
        copy = store.data_dir.parent / f"lost-tail-copy-{kept}"
        copy.mkdir()
        shutil.copy(store.db, copy / "node.db")
        shutil.copy(wal, copy / "node.db-wal")
        drop_last_commits(copy / "node.db-wal", kept)
        left = _log_size(copy / "node.db")
        if left < signed:
            break
    assert left < signed, (found, kept, left, signed)
    with AuditReader(copy / "node.db") as r:
        cp = r.checkpoint()
        assert cp is not None and cp.size <= left
    drop_last_commits(wal, kept)

    wal_bytes = wal.read_bytes()
    one_line_refusal(traza_run(node.config), f"log has {left} entries but checkpoint of size {signed} was signed",
                     CHECKPOINT_FILE)
    assert wal.read_bytes() == wal_bytes  # the refused start changed nothing (read-only check)
    audit_verify_fails(store.db, capsys, f"the log holds only {left} entries", CHECKPOINT_FILE)
    with capsys.disabled():
        print(f"\nlost tail: WAL cut after {kept} of {found} commits; log {left} entries, checkpoint kept {signed}")


def test_audit_verify_reports_a_file_that_is_not_a_database_in_one_line(tmp_path: Path, capsys) -> None:
    junk = tmp_path / "node.db"
    junk.write_bytes(os.urandom(8192))
    audit_verify_fails(junk, capsys, str(junk))


def test_override_starts_the_damaged_node_and_records_store_check_failed(store: Store) -> None:
    flip_bit_in_entry(store.db, 60)
    reason = "bit rot on the old disk; backup checked by A. Auditor, ticket 4711"
    proc = spawn(store.node, "--accept-damaged-store", reason)
    stop(proc)
    with AuditReader(store.db) as r:
        found = [json.loads(e) for _, e in r.entries(event="store.check_failed")]
    assert len(found) == 1, found
    assert "index 60" in found[0]["detail"] and found[0]["reason"] == reason, found
    # the copy kept outside was set aside (kept as evidence) and replaced by the log's latest checkpoint
    assert list(store.data_dir.glob(f"{CHECKPOINT_FILE}.damaged-*"))
    assert _kept_size(store.data_dir) > 0


def _metrics(node: Node) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text, _ = node.metrics_text()
    return {s.name: s.value for f in text_string_to_metric_families(text.decode()) for s in f.samples}


def test_the_store_check_and_the_free_disk_are_exported_for_alerts(store: Store) -> None:
    """``traza_store_check_ok`` is 1 after a passed check and 0 when the node runs on a damaged store
    (TrazaStoreCheckFailed); ``traza_data_free_bytes`` is the free space of the data folder's file system
    (TrazaDiskNearlyFull)."""
    for damaged in (False, True):
        if damaged:
            flip_bit_in_entry(store.db, 60)
        node = Node(load_config(store.node.config), accept_damaged_store="test" if damaged else None)
        try:
            m = _metrics(node)
            disk = shutil.disk_usage(store.data_dir)
            assert m["traza_store_check_ok"] == (0 if damaged else 1)
            assert abs(m["traza_data_free_bytes"] - disk.free) < 64 * 1024 * 1024
            assert m["traza_data_size_bytes"] == disk.total
        finally:
            node.db.close()
            node.data_lock.release()


def test_healthy_node_starts_and_its_check_is_fast_with_100k_entries(store: Store) -> None:
    cfg = load_config(store.node.config)
    fed_name = json.loads(cfg.resolve(cfg.trust.manifest).read_text())["federation"]
    key = Ed25519Key.from_pem(cfg.resolve(cfg.keys.audit).read_bytes())
    # grow the node's own log to 100,000 entries and sign it, as the node would
    conn = audit_connect(store.db)
    have = _log_size(store.db)
    ev = {"event": "envelope.accepted", "jti": "", "mt": "notice", "iss": "mx", "aud": "es", "from": "mx",
          "to": "hub", "dig": "sha-256=:" + "A" * 43 + "=:"}
    for start in range(have, 100_000, 5000):
        with transaction(conn):
            audit_log.stage(conn, [{**ev, "jti": f"0197a6f0-0000-7000-8000-{i:012d}"}
                                   for i in range(start, min(start + 5000, 100_000))], node="mx")
    with transaction(conn):
        size = publish_checkpoint(conn, origin=origin_for(fed_name, "mx"), key=key, now=time.time())
        cp = AuditReader(conn).checkpoint()
    conn.close()
    assert size == 100_000 and cp is not None
    CheckpointFile(store.data_dir / CHECKPOINT_FILE).save(cp.served(), cp.size)

    t0 = time.perf_counter()
    node = Node(cfg)
    construct = time.perf_counter() - t0
    try:
        assert node.store_report.ok and node.store_report.size == 100_000, node.store_report.problems
        check = node.store_report.seconds
        print(f"\nstart-up self-check of a 100,000-entry log: {check:.2f} s; Node() in all {construct:.2f} s")
        assert check < 10.0, check  # measured about 0.3 s (docs/reliability.md); bound for a busy machine
    finally:
        node.db.close()
        node.data_lock.release()  # the data dir is locked for the node's life (one process per data dir)
    proc = spawn(store.node)  # and the real process starts and is ready
    stop(proc)
    with AuditReader(store.db) as r:
        assert not r.entries(event="store.check_failed")


def test_override_needs_a_reason(built: Store, capsys) -> None:
    assert traza(["run", "--config", str(built.node.config), "--accept-damaged-store", " "]) == 2
    assert "--accept-damaged-store needs a reason" in capsys.readouterr().err
