"""Large files written durably: start the disk write-back while the file is still being written.

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
import os
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
