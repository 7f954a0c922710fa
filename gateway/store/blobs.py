"""Blob storage (SPEC §4.3): content-addressed files under one folder, written while hashing, resumable.

Layout of ``root``::

    <sha256>           a complete blob; its name is the b64url SHA-256 of its bytes
    <sha256>.part      bytes received so far of an upload that has not finished (kept across restarts)
    index/<jti>.json   what a delivered message carries (the local store of a recipient only)

A :class:`BlobWriter` appends to the ``.part`` file and hashes as it goes (:meth:`BlobWriter.hash` and
:meth:`BlobWriter.append` apart: the transport hashes in its event loop and appends from a thread).
Resuming re-hashes the bytes already in the ``.part`` file (streamed, so memory does not grow with the
blob). When the last byte of
the declared total has arrived, :meth:`BlobWriter.commit` checks the digest: on a match it fsyncs and
renames the file into place (atomic); on a mismatch it deletes the partial file, so nothing of a bad
upload is kept. Blob files are written and read around the page cache where the file system allows it
(O_DIRECT, :class:`gateway.durable.DirectAppender` and :func:`gateway.durable.read_pieces`: filling the
page cache was most of a relay's CPU on the benchmark VM); elsewhere through it, with the disk write-back
started in the background (:class:`gateway.durable.EarlyFlush`) so the fsync at the end has little left
to wait for. Reading is streamed in :data:`READ_CHUNK` pieces.

No event loop here: the transport calls the slow parts (appends, commit with its fsync) from a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from gateway.core.b64 import b64url_encode
from gateway.durable import DirectAppender, read_pieces

READ_CHUNK = 1024 * 1024
_SHA_RE = re.compile(r"^[A-Za-z0-9_-]{43}\Z")
_JTI_RE = re.compile(r"^[0-9a-f-]{36}\Z")


class BlobError(Exception):
    """A blob operation was refused; the message names the blob and the reason."""


class BadBlobName(BlobError):
    """Not a b64url SHA-256 (43 characters of the URL-safe alphabet)."""


class BlobTooLarge(BlobError):
    pass


class BlobBusy(BlobError):
    """Another upload of the same blob is in progress on this node."""


class BadRange(BlobError):
    """A resumed upload does not start where the received bytes end (``received`` says where)."""

    def __init__(self, detail: str, received: int) -> None:
        super().__init__(detail)
        self.received = received


class DigestMismatch(BlobError):
    """The bytes received do not hash to the blob's name (the partial file has been deleted)."""


def check_name(sha: str) -> str:
    if not _SHA_RE.match(sha):
        raise BadBlobName(f"blob name {sha[:80]!r} is not a base64url SHA-256 (43 characters)")
    return sha


def sha256_file(path: Path, limit: int | None = None) -> tuple[Any, int]:
    """Streamed SHA-256 of ``path`` (of its first ``limit`` bytes): (hash object, bytes hashed)."""
    h = hashlib.sha256()
    n = 0
    for piece in read_pieces(path, 0, limit, READ_CHUNK):
        h.update(piece)
        n += len(piece)
    return h, n


def file_digest(path: Path) -> tuple[str, int]:
    """b64url SHA-256 and length of a file, streamed."""
    h, n = sha256_file(path)
    return b64url_encode(h.digest()), n


class BlobWriter:
    """One upload into ``<sha>.part``: :meth:`write` pieces, then :meth:`commit` once ``received == total``,
    or :meth:`close` to keep what arrived for a later resume."""

    def __init__(self, store: BlobStore, sha: str, total: int, start: int) -> None:
        self.store = store
        self.sha = sha
        self.total = total
        self.part = store.root / f"{sha}.part"
        have = self.part.stat().st_size if self.part.exists() else 0
        if start > have:
            raise BadRange(f"blob {sha}: upload resumes at byte {start} but {have} bytes have been received", have)
        self._hash: Any
        self._hash, hashed = sha256_file(self.part, start) if start else (hashlib.sha256(), 0)
        if hashed != start:
            raise BadRange(f"blob {sha}: only {hashed} bytes could be read back from the partial file", hashed)
        self.received = start  # bytes appended (on disk once a piece fills, or at commit / close)
        self._hashed = start  # bytes taken into the digest (ahead of ``received`` while a thread appends)
        self._file = DirectAppender(self.part, start)  # around the page cache (gateway.durable)
        self._closed = False

    def write(self, data: bytes) -> None:
        """Hash and append ``data`` (:meth:`hash` then :meth:`append`)."""
        self.hash(data)
        self.append((data,))

    def hash(self, data: bytes) -> None:
        """Take the next ``data`` into the digest; BlobTooLarge when the bytes hashed so far would pass the
        declared total. Every byte is hashed once, in order, before or while it is appended."""
        if self._hashed + len(data) > self.total:
            raise BlobTooLarge(f"blob {self.sha}: more than the declared {self.total} bytes")
        self._hash.update(data)
        self._hashed += len(data)

    def append(self, pieces: Sequence[bytes]) -> None:
        """Append ``pieces`` (already hashed) to the ``.part`` file. Safe to call from a thread (one call at
        a time) while the caller hashes the next pieces."""
        if self.received + sum(len(p) for p in pieces) > self._hashed:
            raise BlobError(f"blob {self.sha}: bytes appended before they were hashed")
        for data in pieces:
            self._file.write(data)
            self.received += len(data)

    @property
    def complete(self) -> bool:
        return self.received == self.total

    def commit(self) -> Path:
        """Check the digest of the whole blob; on a match fsync and rename into place, else delete the
        partial file and raise DigestMismatch. Returns the final path."""
        if not self.complete:
            raise BlobError(f"blob {self.sha}: {self.received} of {self.total} bytes received; cannot commit")
        actual = b64url_encode(self._hash.digest())
        try:
            if actual != self.sha:
                self._file.close()
                self.part.unlink(missing_ok=True)
                raise DigestMismatch(f"blob {self.sha}: the {self.total} bytes received hash to {actual}")
            self._file.finish()  # written and fsynced
            self._file.close()
            final = self.store.path(self.sha)
            os.replace(self.part, final)
            self.store._fsync_dir()
            return final
        finally:
            self._release()

    def close(self) -> None:
        """Stop without committing: keep the ``.part`` bytes so the upload can resume."""
        if self._closed:
            return
        with contextlib.suppress(OSError):
            self._file.finish(sync=False)
        self._file.close()
        self._release()

    def _release(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(OSError):
                self._file.close()
            self.store._active.discard(self.sha)


def _private(path: Path, mode: str) -> IO[bytes]:
    """Open ``path`` for writing (``"wb"`` or ``"ab"``), creating it readable by this user only: blobs are
    evidence (the national system's plaintext among them)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "ab" else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o600), mode)


class BlobStore:
    """Content-addressed blobs in ``root`` (mode 0700, files 0600) with a size limit of ``max_blob`` bytes."""

    def __init__(self, root: Path, max_blob: int) -> None:
        self.root = root
        self.max_blob = max_blob
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root.chmod(0o700)
        self._active: set[str] = set()
        self._active_lock = threading.Lock()

    def path(self, sha: str) -> Path:
        return self.root / check_name(sha)

    def size(self, sha: str) -> int | None:
        """Length of the complete blob, or None when it is not (yet) stored."""
        try:
            return self.path(sha).stat().st_size
        except FileNotFoundError:
            return None

    def has(self, sha: str, length: int | None = None) -> bool:
        n = self.size(sha)
        return n is not None and (length is None or n == length)

    def received(self, sha: str) -> int:
        """Bytes of ``sha`` on this node: its length when complete, else what its partial upload holds."""
        n = self.size(sha)
        if n is not None:
            return n
        try:
            return (self.root / f"{sha}.part").stat().st_size
        except FileNotFoundError:
            return 0

    def writer(self, sha: str, total: int, start: int = 0) -> BlobWriter:
        """Start or resume an upload of ``total`` bytes at byte ``start`` (0 starts again)."""
        check_name(sha)
        if total > self.max_blob:
            raise BlobTooLarge(f"blob {sha}: {total} bytes exceeds the limit of {self.max_blob} bytes")
        if total < 0 or start < 0 or start > total:
            raise BadRange(f"blob {sha}: range start {start} of total {total} is not valid", self.received(sha))
        with self._active_lock:  # one upload of a blob at a time, also when writers are opened on threads
            if sha in self._active:
                raise BlobBusy(f"blob {sha}: another upload of it is in progress")
            self._active.add(sha)
        try:
            return BlobWriter(self, sha, total, start)
        except BaseException:
            self._active.discard(sha)
            raise

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        """Store ``data`` (small attachments handed over in memory); returns (sha256, length)."""
        sha = b64url_encode(hashlib.sha256(data).digest())
        if len(data) > self.max_blob:
            raise BlobTooLarge(f"blob of {len(data)} bytes exceeds the limit of {self.max_blob} bytes")
        if not self.has(sha):
            w = self.writer(sha, len(data))
            try:
                w.write(data)
                w.commit()
            finally:
                w.close()
        return sha, len(data)

    def put_file(self, src: Path) -> tuple[str, int]:
        """Copy file ``src`` into the store (streamed, hashed on the way); returns (sha256, length)."""
        tmp = self.temp_path()
        h = hashlib.sha256()
        n = 0
        try:
            with src.open("rb") as fi, _private(tmp, "wb") as fo:
                while piece := fi.read(READ_CHUNK):
                    n += len(piece)
                    if n > self.max_blob:
                        raise BlobTooLarge(f"{src}: more than the limit of {self.max_blob} bytes")
                    h.update(piece)
                    fo.write(piece)
                fo.flush()
                os.fsync(fo.fileno())
            sha = b64url_encode(h.digest())
            self.adopt(tmp, sha)
            return sha, n
        finally:
            tmp.unlink(missing_ok=True)

    def adopt(self, src: Path, sha: str) -> Path:
        """Move a complete file (already fsynced, whose digest the caller computed) into place as ``sha``."""
        dst = self.path(sha)
        if dst.exists():
            src.unlink(missing_ok=True)
        else:
            os.replace(src, dst)
            self._fsync_dir()
        return dst

    def link_from(self, other: BlobStore, sha: str) -> Path:
        """Make ``other``'s complete blob ``sha`` also a blob of this store (hard link, else copy)."""
        dst = self.path(sha)
        if dst.exists():
            return dst
        src = other.path(sha)
        tmp = self.temp_path()
        try:
            try:
                os.link(src, tmp)
            except OSError:
                with src.open("rb") as fi, _private(tmp, "wb") as fo:
                    while piece := fi.read(READ_CHUNK):
                        fo.write(piece)
                    fo.flush()
                    os.fsync(fo.fileno())
            return self.adopt(tmp, sha)
        finally:
            tmp.unlink(missing_ok=True)

    def temp_path(self) -> Path:
        """A fresh temporary file name in this store's folder (for :meth:`adopt`)."""
        fd, name = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        os.close(fd)
        Path(name).unlink()
        return Path(name)

    def read_chunks(self, sha: str, start: int = 0, chunk: int = READ_CHUNK) -> Iterator[bytes]:
        """The blob's bytes from ``start``, in pieces of at most ``chunk`` bytes."""
        yield from read_pieces(self.path(sha), start, None, chunk)

    def delete(self, sha: str) -> None:
        """Remove blob ``sha`` (complete or partial) and its expiry note."""
        self.path(sha).unlink(missing_ok=True)
        (self.root / f"{sha}.part").unlink(missing_ok=True)
        (self.root / ".exp" / check_name(sha)).unlink(missing_ok=True)

    def names(self) -> list[str]:
        """Complete blobs in this store."""
        return sorted(p.name for p in self.root.iterdir() if _SHA_RE.match(p.name))

    # --- retention --------------------------------------------------------------------------------------

    def note_expiry(self, sha: str, exp: float) -> None:
        """An accepted envelope naming ``sha`` expires at ``exp``: keep the blob at least until then."""
        d = self.root / ".exp"
        d.mkdir(exist_ok=True, mode=0o700)
        f = d / check_name(sha)
        try:
            if float(f.read_text()) >= exp:
                return
        except (FileNotFoundError, ValueError):
            pass
        tmp = d / f".{sha}.tmp"
        tmp.write_text(str(int(exp)))
        os.replace(tmp, f)

    def purge(self, now: float, orphan_age: float) -> list[str]:
        """Delete blobs every envelope naming them has expired (``note_expiry``), and blobs or partial
        uploads no envelope named whose files are older than ``orphan_age`` seconds. Returns the names."""
        gone: list[str] = []
        d = self.root / ".exp"
        for p in list(self.root.iterdir()):
            base = p.name.removesuffix(".part")
            if not _SHA_RE.match(base) or base in self._active:
                continue
            try:
                exp: float | None = float((d / base).read_text())
            except (FileNotFoundError, ValueError):
                exp = None
            try:
                old = now - p.stat().st_mtime > orphan_age
            except FileNotFoundError:
                continue
            if (exp is not None and exp < now) or (exp is None and old):
                p.unlink(missing_ok=True)
                if not p.name.endswith(".part"):
                    (d / base).unlink(missing_ok=True)
                    gone.append(base)
        return gone

    # --- what a delivered message carries (recipient's local store) -------------------------------------

    def write_index(self, jti: str, entries: list[dict[str, Any]]) -> None:
        if not _JTI_RE.match(jti):
            raise BlobError(f"message id {jti[:80]!r} is not a UUID")
        d = self.root / "index"
        d.mkdir(exist_ok=True, mode=0o700)
        tmp = d / f".{jti}.tmp"
        with _private(tmp, "wb") as f:
            f.write(json.dumps(entries, sort_keys=True).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, d / f"{jti}.json")

    def read_index(self, jti: str) -> list[dict[str, Any]] | None:
        if not _JTI_RE.match(jti):
            return None
        try:
            data: list[dict[str, Any]] = json.loads((self.root / "index" / f"{jti}.json").read_bytes())
        except FileNotFoundError:
            return None
        return data

    def _fsync_dir(self) -> None:
        with contextlib.suppress(OSError):
            fd = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
