"""BlobStore (SPEC §4.3): hashing while writing, resume across a restart, nothing kept of a bad upload."""

from __future__ import annotations

import hashlib
import os
import stat
import threading

import pytest

from gateway import durable
from gateway.core.b64 import b64url_encode
from gateway.store.blobs import (
    BadBlobName,
    BadRange,
    BlobBusy,
    BlobError,
    BlobStore,
    BlobTooLarge,
    DigestMismatch,
    file_digest,
)


def name(data: bytes) -> str:
    return b64url_encode(hashlib.sha256(data).digest())


DATA = os.urandom(3 * 1024 * 1024 + 17)
SHA = name(DATA)


def test_write_commit_read(tmp_path):
    store = BlobStore(tmp_path / "b", max_blob=10 * 1024 * 1024)
    w = store.writer(SHA, len(DATA))
    for i in range(0, len(DATA), 100_000):
        w.write(DATA[i : i + 100_000])
    assert w.complete
    w.commit()
    assert store.has(SHA) and store.has(SHA, len(DATA)) and not store.has(SHA, len(DATA) + 1)
    assert store.received(SHA) == len(DATA)
    pieces = list(store.read_chunks(SHA))
    assert max(len(p) for p in pieces) <= 1024 * 1024
    assert b"".join(pieces) == DATA
    assert file_digest(store.path(SHA)) == (SHA, len(DATA))
    assert store.names() == [SHA]
    assert not (store.root / f"{SHA}.part").exists()


def test_resume_after_restart_rehashes_the_partial_file(tmp_path):
    root = tmp_path / "b"
    store = BlobStore(root, max_blob=10 * 1024 * 1024)
    w = store.writer(SHA, len(DATA))
    w.write(DATA[:1_000_000])
    w.close()  # connection dropped
    assert store.received(SHA) == 1_000_000 and not store.has(SHA)
    # a new process: a fresh store object over the same folder
    store2 = BlobStore(root, max_blob=10 * 1024 * 1024)
    assert store2.received(SHA) == 1_000_000
    with pytest.raises(BadRange) as exc:
        store2.writer(SHA, len(DATA), start=1_000_001)  # beyond what arrived
    assert exc.value.received == 1_000_000
    w2 = store2.writer(SHA, len(DATA), start=1_000_000)
    w2.write(DATA[1_000_000:])
    w2.commit()
    assert store2.path(SHA).read_bytes() == DATA


def test_resume_earlier_truncates(tmp_path):
    store = BlobStore(tmp_path, max_blob=10 * 1024 * 1024)
    w = store.writer(SHA, len(DATA))
    w.write(DATA[:500])
    w.write(b"garbage")  # bytes the sender will resend from 500
    w.close()
    w = store.writer(SHA, len(DATA), start=500)
    w.write(DATA[500:])
    w.commit()
    assert store.path(SHA).read_bytes() == DATA


def test_digest_mismatch_keeps_nothing(tmp_path):
    store = BlobStore(tmp_path, max_blob=1024)
    other = name(b"something else")
    w = store.writer(other, 10)
    w.write(b"0123456789")
    with pytest.raises(DigestMismatch, match="hash to"):
        w.commit()
    assert not store.has(other) and store.received(other) == 0
    assert [p.name for p in tmp_path.iterdir()] == []


def test_limits_and_names(tmp_path):
    store = BlobStore(tmp_path, max_blob=100)
    with pytest.raises(BlobTooLarge, match="exceeds the limit of 100"):
        store.writer(name(b"x"), 101)
    w = store.writer(name(b"x" * 10), 10)
    with pytest.raises(BlobTooLarge):
        w.write(b"x" * 11)
    with pytest.raises(BlobBusy):
        store.writer(name(b"x" * 10), 10)
    w.close()
    store.writer(name(b"x" * 10), 10).close()  # free again after close
    # "$" also matches before a final newline: a name ending in "\n" (a %0A in the URL) passed
    for bad in ("../etc/passwd", "a" * 42, "a" * 43 + "/", "a+" * 21 + "a", "a" * 43 + "\n"):
        with pytest.raises(BadBlobName):
            store.path(bad)


def test_put_bytes_file_link_and_index(tmp_path):
    a = BlobStore(tmp_path / "a", max_blob=10 * 1024 * 1024)
    b = BlobStore(tmp_path / "b", max_blob=10 * 1024 * 1024)
    assert a.put_bytes(b"hello") == (name(b"hello"), 5)
    src = tmp_path / "src.bin"
    src.write_bytes(DATA)
    assert a.put_file(src) == (SHA, len(DATA))
    b.link_from(a, SHA)
    assert b.path(SHA).read_bytes() == DATA
    entries = [{"sha256": SHA, "len": len(DATA), "ct": "application/x-x3p", "name": "a.x3p"}]
    jti = "01935f4e-0000-7000-8000-000000000000"
    assert b.read_index(jti) is None
    b.write_index(jti, entries)
    assert b.read_index(jti) == entries
    assert b.read_index("../x") is None
    empty = name(b"")
    w = a.writer(empty, 0)
    assert w.complete
    w.commit()
    assert a.path(empty).read_bytes() == b""


def test_purge_after_the_last_expiry_and_of_orphans(tmp_path):
    import time

    store = BlobStore(tmp_path, max_blob=1024)
    t = time.time()
    a, _ = store.put_bytes(b"a")
    b, _ = store.put_bytes(b"b")
    c, _ = store.put_bytes(b"c")  # never named by an envelope
    store.note_expiry(a, t + 100)
    store.note_expiry(a, t + 50)  # the latest expiry counts
    store.note_expiry(b, t + 10_000)
    d = name(b"dddd")
    w = store.writer(d, 4)
    w.write(b"dd")
    w.close()  # an abandoned partial upload
    assert store.purge(t + 60, orphan_age=10**6) == []
    assert store.purge(t + 200, orphan_age=10**6) == [a]
    assert not store.has(a) and store.has(b) and store.has(c) and store.received(d) == 2
    assert sorted(store.purge(t + 200 + 10, orphan_age=100)) == [c]
    assert store.has(b) and store.received(d) == 0
    assert store.names() == [b]


def test_blobs_are_private_to_the_node_user(tmp_path) -> None:
    """Blobs are evidence (plaintext at the origin and recipient): folder 0700, every file 0600."""
    os.umask(0o022)
    store = BlobStore(tmp_path / "blobs", 1 << 20)
    sha, _ = store.put_bytes(b"x3p scan bytes")
    src = tmp_path / "scan.x3p"
    src.write_bytes(b"another scan")
    sha2, _ = store.put_file(src)
    store.write_index("0190f2a4-1c2b-7def-8123-456789abcdef", [{"sha256": sha, "len": 14}])
    w = store.writer(b64url_encode(hashlib.sha256(b"partial upload").digest()), 14)
    w.write(b"partial")
    w.close()
    assert stat.S_IMODE((tmp_path / "blobs").stat().st_mode) == 0o700
    files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert {store.path(sha), store.path(sha2)} <= set(files) and any(p.suffix == ".part" for p in files)
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_hash_refuses_bytes_beyond_the_total_and_append_only_takes_hashed_bytes(tmp_path):
    data = b"x" * 10
    store = BlobStore(tmp_path, max_blob=100)
    w = store.writer(name(data), 10)
    w.hash(data[:4])
    with pytest.raises(BlobError, match="before they were hashed"):
        w.append([data[:4], data[4:8]])  # only 4 bytes were hashed: nothing is appended
    assert w.received == 0
    w.append([data[:2], data[2:4]])
    with pytest.raises(BlobTooLarge):
        w.hash(data[:7])  # 4 + 7 > 10
    w.hash(data[4:])
    w.append([data[4:]])
    w.commit()
    assert store.path(name(data)).read_bytes() == data


def test_early_flush_runs_one_flush_at_a_time_on_a_descriptor_it_closes(tmp_path, monkeypatch):
    started, release, calls = threading.Event(), threading.Event(), []

    def slow_fdatasync(fd):
        calls.append(fd)
        started.set()
        release.wait(10)

    monkeypatch.setattr(durable.os, "fdatasync", slow_fdatasync)
    f = tmp_path / "f"
    f.write_bytes(b"x")
    fds = len(os.listdir("/proc/self/fd"))
    flush = durable.EarlyFlush(f, every=10)
    flush.wrote(9)
    assert calls == []  # not enough written yet
    flush.wrote(1)
    assert started.wait(10) and len(calls) == 1
    flush.wrote(100)
    flush.wrote(100)
    assert len(calls) == 1  # the first is still running: no second one queued behind it
    release.set()
    assert flush._job is not None
    flush._job.result(10)
    assert len(os.listdir("/proc/self/fd")) == fds  # its own descriptor is closed again
    flush.wrote(10)
    flush._job.result(10)
    assert len(calls) == 2
    flush = durable.EarlyFlush(tmp_path / "gone", every=1)
    flush.wrote(5)  # the file was renamed or deleted: nothing to flush, no error
    assert flush._job is None


def test_blob_flushed_early_while_written_commits_intact(tmp_path, monkeypatch):
    """On a file system without O_DIRECT, a blob is written through the page cache and its write-back
    is started while it is written."""
    flushed = []
    real = os.fdatasync
    monkeypatch.setattr(durable, "_O_DIRECT", 0)
    monkeypatch.setattr(durable, "FLUSH_EVERY", 1_000_000)
    monkeypatch.setattr(durable.os, "fdatasync", lambda fd: (flushed.append(fd), real(fd)))
    store = BlobStore(tmp_path / "b", max_blob=10 * 1024 * 1024)
    w = store.writer(SHA, len(DATA))
    for i in range(0, len(DATA), 300_000):
        w.write(DATA[i : i + 300_000])
    w.commit()
    assert flushed  # write-back was started while the blob was being written
    assert store.path(SHA).read_bytes() == DATA
