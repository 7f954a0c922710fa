"""Large files written durably: around the page cache where the file system allows it (O_DIRECT,
:class:`DirectAppender`, :func:`read_pieces`, notes below), else through it, starting the disk write-back
while the file is still being written (:class:`EarlyFlush`).

A blob is fsynced before it is renamed into place (SPEC §4.3: a node acknowledges only what is on disk).
Left alone, the kernel keeps the pages of a large new file dirty until that fsync, which then waits for all
of them: about 0.5 s per GiB on the 2-core VM of ``bench/blob_relay.py``, once per stage of a relay (the
origin's encryption, every hop, the recipient's decryption). :class:`EarlyFlush` starts an ``fdatasync``
in a background thread every :data:`FLUSH_EVERY` bytes written, so the final fsync finds little left to
write. Durability does not depend on it: the writer still fsyncs before the rename, and the background
flush works on a file description of its own, so a write-back error is still reported to the writer's.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

FLUSH_EVERY = 64 * 1024 * 1024
_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="early-flush")


class EarlyFlush:
    """Background ``fdatasync`` of ``path`` every ``every`` bytes its writer reports (:meth:`wrote`); at
    most one is running per file, so a disk slower than the writer is not queued up behind."""

    def __init__(self, path: Path, every: int | None = None) -> None:
        self.path = path
        self.every = FLUSH_EVERY if every is None else every
        self._since = 0
        self._job: Future[None] | None = None

    def wrote(self, n: int) -> None:
        """``n`` more bytes were written to the file: start a flush once ``every`` have gathered since the
        last one started, unless that one is still running."""
        self._since += n
        if self._since < self.every or (self._job is not None and not self._job.done()):
            return
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:  # renamed or deleted meanwhile: the writer's own fsync is what counts
            return
        self._since = 0
        self._job = _pool.submit(_flush, fd)


def _flush(fd: int) -> None:
    try:
        with contextlib.suppress(OSError):  # reported to the writer's fsync as well (its own file description)
            os.fdatasync(fd)
    finally:
        os.close(fd)


# --- direct I/O -------------------------------------------------------------------------------------------
#
# On the 2-core VM of ``bench/blob_relay.py`` the kernel spends about 3 s of CPU per GiB filling the page
# cache for a new file (``dd conv=fsync``: 2.95 s of system time) and 2.3 s per GiB reading a file that is
# not cached, against 0.1 s and 0.03 s with O_DIRECT: a relayed blob is written five times (the origin's
# ciphertext, each hop, the recipient's ciphertext and plaintext). Blobs are therefore written and read
# around the page cache where the file system allows it, in aligned 4 MiB pieces; elsewhere (tmpfs, or no
# O_DIRECT) the same code goes through the page cache, with :class:`EarlyFlush`.

ALIGN = 4096  # O_DIRECT offsets, lengths and buffer addresses are multiples of this
PIECE = 4 * 1024 * 1024  # bytes written per direct write
_O_DIRECT = getattr(os, "O_DIRECT", 0)


def _open_direct(path: Path, flags: int, mode: int = 0o600) -> tuple[int, bool]:
    """``os.open`` with O_DIRECT if the file system takes it, else without: (fd, direct)."""
    if _O_DIRECT:
        try:
            return os.open(path, flags | _O_DIRECT, mode), True
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: this file system does not do direct I/O
                raise
    return os.open(path, flags, mode), False


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


class DirectAppender:
    """Write a file from byte ``start`` on (what follows ``start`` is dropped; the bytes before it are
    kept), around the page cache where the file system allows it (module notes). Bytes are gathered in
    an aligned buffer and written :data:`PIECE` at a time; :meth:`finish` writes the rest (the last
    partial block through the page cache, so the file never holds padding) and fsyncs. After a crash
    the file holds a prefix of what was written. Created readable by this user only (blobs are evidence)."""

    def __init__(self, path: Path, start: int = 0) -> None:
        self.path = path
        self._fd, self.direct = _open_direct(path, os.O_WRONLY | os.O_CREAT)
        self._buf = mmap.mmap(-1, PIECE)  # page-aligned, as O_DIRECT needs
        self._view = memoryview(self._buf)
        self._base = start - start % ALIGN  # file offset of the buffer's first byte
        self._fill = start - self._base
        self.size = start
        try:
            if self._fill:  # the block that ``start`` falls in is rewritten whole: read its head back
                with path.open("rb") as f:
                    f.seek(self._base)
                    head = f.read(self._fill)
                if len(head) != self._fill:
                    raise OSError(errno.EIO, f"{path}: {len(head)} of the {self._fill} bytes before {start} read back")
                self._buf[: self._fill] = head
            os.ftruncate(self._fd, start)
        except BaseException:
            self.close()
            raise
        self._flush = None if self.direct else EarlyFlush(path)

    def write(self, data: bytes | memoryview) -> None:
        src = memoryview(data).cast("B")
        n = len(src)
        while src:
            k = min(len(src), PIECE - self._fill)
            self._view[self._fill : self._fill + k] = src[:k]
            self._fill += k
            src = src[k:]
            if self._fill == PIECE:
                _pwrite_all(self._fd, self._view, self._base)
                self._base += PIECE
                self._fill = 0
        self.size += n
        if self._flush is not None:
            self._flush.wrote(n)

    def finish(self, sync: bool = True) -> None:
        """Write what is buffered; with ``sync``, fsync the file. Call once, then :meth:`close`."""
        whole = self._fill - self._fill % ALIGN
        if whole:
            _pwrite_all(self._fd, self._view[:whole], self._base)
        if self._fill > whole:
            tail = self._view[whole : self._fill]
            if self.direct:  # an unaligned length cannot be written directly
                fd = os.open(self.path, os.O_WRONLY)
                try:
                    _pwrite_all(fd, tail, self._base + whole)
                finally:
                    os.close(fd)
            else:
                _pwrite_all(self._fd, tail, self._base + whole)
        self._base += self._fill
        self._fill = 0
        if sync:
            os.fsync(self._fd)  # the file's data and size, whichever descriptor wrote them

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._view.release()
            self._buf.close()


def read_pieces(path: Path, start: int = 0, length: int | None = None, chunk: int = 1024 * 1024) -> Iterator[bytes]:
    """The bytes of ``path`` from ``start`` (``length`` of them, or to the end) in pieces of at most
    ``chunk`` (a multiple of :data:`ALIGN`), read around the page cache where the file system allows it."""
    if chunk <= 0 or chunk % ALIGN:
        raise ValueError(f"chunk {chunk} is not a positive multiple of {ALIGN}")
    fd, _direct = _open_direct(path, os.O_RDONLY)
    buf = mmap.mmap(-1, chunk)
    view = memoryview(buf)
    try:
        offset = start - start % ALIGN
        skip = start - offset
        left = -1 if length is None else length
        while left:
            n = os.preadv(fd, [view], offset)
            end = n if left < 0 else min(n, skip + left)
            piece = view[skip:end].tobytes() if end > skip else b""  # a copy: no view left while suspended
            if left > 0:
                left -= len(piece)
            if piece:
                yield piece
            if n < chunk:  # the end of a regular file
                break
            offset += n
            skip = 0
    finally:
        view.release()
        buf.close()
        os.close(fd)
