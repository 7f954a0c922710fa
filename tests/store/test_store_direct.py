"""Blob files written and read around the page cache (gateway.durable: DirectAppender, read_pieces), on
real files: every length around the alignment and piece boundaries, resumes at unaligned offsets, and
the fallback through the page cache on a file system without O_DIRECT (tmpfs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway import durable
from gateway.durable import ALIGN, PIECE, DirectAppender, read_pieces

LENGTHS = [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, PIECE - 1, PIECE, PIECE + 1, 2 * PIECE + 12345]


def _write(path: Path, data: bytes, start: int = 0, step: int = 100_003) -> DirectAppender:
    w = DirectAppender(path, start)
    try:
        for i in range(0, len(data), step):
            w.write(data[i : i + step])
        w.finish()
    finally:
        w.close()
    return w


def _direct_here(folder: Path) -> bool:
    try:
        os.close(os.open(folder / ".probe", os.O_WRONLY | os.O_CREAT | getattr(os, "O_DIRECT", 0)))
    except OSError:
        return False
    return bool(getattr(os, "O_DIRECT", 0))


@pytest.mark.parametrize("n", LENGTHS)
def test_every_length_round_trips_exactly_with_no_padding_left(tmp_path, n):
    data = os.urandom(n)
    f = tmp_path / "blob"
    w = _write(f, data)
    assert w.size == n and f.stat().st_size == n and f.read_bytes() == data
    assert b"".join(read_pieces(f)) == data
    assert oct(f.stat().st_mode & 0o777) == "0o600"  # blobs are evidence: this user only


def test_reads_from_any_offset_for_any_length(tmp_path):
    data = os.urandom(PIECE + 3 * ALIGN + 17)
    f = tmp_path / "blob"
    _write(f, data)
    for start in (0, 1, ALIGN - 1, ALIGN, 5000, PIECE - 3, PIECE + ALIGN, len(data) - 1, len(data)):
        for length in (None, 0, 1, ALIGN + 1, 2 * 1024 * 1024):
            want = data[start:] if length is None else data[start : start + length]
            got = list(read_pieces(f, start, length, chunk=1024 * 1024))
            assert b"".join(got) == want, (start, length)
            assert all(0 < len(p) <= 1024 * 1024 for p in got)
    with pytest.raises(ValueError, match="multiple of 4096"):
        next(read_pieces(f, chunk=1000))


@pytest.mark.parametrize("start", [1, ALIGN - 1, ALIGN + 7, PIECE + 5])
def test_a_resumed_write_keeps_the_bytes_before_start_and_drops_those_after(tmp_path, start):
    """An upload that resumes at byte ``start`` of a partial file (which may hold more than ``start``
    bytes, e.g. from a sender that started again earlier) rewrites the block ``start`` falls in whole,
    from the bytes read back: nothing before ``start`` changes."""
    first, rest = os.urandom(start + 9000), os.urandom(PIECE + 333)
    f = tmp_path / "blob.part"
    _write(f, first)
    _write(f, rest, start=start)
    assert f.read_bytes() == first[:start] + rest


def test_writes_bypass_the_page_cache_where_the_file_system_allows(tmp_path):
    if not _direct_here(tmp_path):
        pytest.skip("this file system does not do O_DIRECT")
    w = _write(tmp_path / "blob", os.urandom(PIECE + 1))
    assert w.direct


def test_a_file_system_without_direct_io_is_written_through_the_page_cache(tmp_path, monkeypatch):
    """tmpfs refuses O_DIRECT (EINVAL): the same writes go through the page cache, flushed early."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and not _direct_here(shm):
        folder = Path(os.path.join(shm, f"traza-test-{os.getpid()}"))
        folder.mkdir()
    else:  # no tmpfs here: refuse O_DIRECT as tmpfs would
        folder = tmp_path
        real = os.open

        def no_direct(path, flags, mode=0o777):
            if flags & getattr(os, "O_DIRECT", 0):
                raise OSError(22, "Invalid argument")
            return real(path, flags, mode)

        monkeypatch.setattr(durable.os, "open", no_direct)
    try:
        data = os.urandom(PIECE + ALIGN + 1)
        w = _write(folder / "blob", data)
        assert not w.direct
        assert (folder / "blob").read_bytes() == data
        assert b"".join(read_pieces(folder / "blob", 3)) == data[3:]
    finally:
        if folder != tmp_path:
            for p in folder.iterdir():
                p.unlink()
            folder.rmdir()


def test_a_reader_stopped_early_closes_its_file_and_buffer(tmp_path):
    """An upload cut off mid-blob stops its reader at a piece: the file and the aligned buffer go with it
    (no descriptor left open, no 'exported pointers' error at close)."""
    f = tmp_path / "blob"
    _write(f, os.urandom(3 * 1024 * 1024))
    fds = len(os.listdir("/proc/self/fd"))
    reader = read_pieces(f, 1, None, 1024 * 1024)
    assert len(next(reader)) == 1024 * 1024 - 1
    reader.close()
    assert len(os.listdir("/proc/self/fd")) == fds
