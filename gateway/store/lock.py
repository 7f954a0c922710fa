"""One process per data dir: an exclusive ``flock`` on ``<data_dir>/traza.lock``, which holds the PID.

Two processes writing one audit log can fork it (each appends its own entry at the same index), so a node
takes this lock before it reads or writes anything in its data dir and keeps it for its whole life. The
kernel drops an ``flock`` when its holder dies, however it dies (kill -9 included), so a lock file left
behind by a dead process never blocks: only its stale PID remains, overwritten by the next holder. The
file itself is never deleted (deleting it would let a second process lock a new file while the first
still holds the old one).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

LOCK_NAME = "traza.lock"


class DataDirLocked(Exception):
    """Another process (or another node of this process) holds the data dir; the message names the lock
    file and the holder's PID."""


class DataDirLock:
    """The lock on ``data_dir`` (taken by the constructor, raises :class:`DataDirLocked`); :meth:`release`
    drops it (also done by the kernel when the process ends)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise DataDirLocked(
                f"{self.path}: data_dir {data_dir} is in use by a running traza node (PID {holder}); "
                "one node per data_dir (two writers would fork its audit log)") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None


def _holder(fd: int) -> str:
    """The PID written by the holder; it writes it just after locking, so wait a moment for it."""
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return text
        time.sleep(0.05)
    return "unknown"
