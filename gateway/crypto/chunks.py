"""Blob encryption in fixed-size AEAD chunks (SPEC §4.3), streaming, memory independent of size.

Format ``TZB1`` (all lengths in bytes)::

    header   = "TZB1" (4) || nonce prefix (7, random)                                  11 bytes
    chunk i  = AES-256-GCM(content key, nonce_i, plaintext_i, aad = header)          len + 16 bytes
    nonce_i  = nonce prefix (7) || i as uint32 big-endian (4) || final flag (1: 0x01 last, else 0x00)

Every chunk holds ``CHUNK_SIZE`` (64 KiB) of plaintext except the last, which holds 0 to ``CHUNK_SIZE``
bytes; there is always at least one chunk (an empty file is one empty final chunk), and a file whose size
is a multiple of ``CHUNK_SIZE`` ends with a full final chunk. This is the STREAM construction (Hoang,
Reyhanitabar, Rogaway, Vizár 2015): the counter in the nonce detects reordering, dropped or duplicated
chunks; the final flag detects truncation at a chunk boundary and appended data.

The content key is 32 random bytes per blob, sealed with HPKE to the recipient's ``enc`` key with
``info = "traza/v1/blob|" + sha256 + "|" + jti`` where ``sha256`` is the blob's name: the base64url SHA-256
of the *encrypted* bytes (what ``PUT /v1/blobs/<sha256>`` and the token's ``blobs[].sha256`` carry, so
hubs can check it without the key).

A decryptor releases each chunk as soon as it is authenticated, before the end of the stream is seen:
the plaintext is only complete and trustworthy once ``finalize()`` (or the generator) returns without
DecryptError. Write it to a temporary file and rename on success (:func:`decrypt_file` does that).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.core.b64 import b64url_encode
from gateway.crypto import hpke
from gateway.crypto.hpke import DecryptError, EncKey
from gateway.durable import DirectAppender, read_pieces

MAGIC = b"TZB1"
PREFIX_SIZE = 7
HEADER_SIZE = len(MAGIC) + PREFIX_SIZE
CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
KEY_SIZE = 32
_MAX_CHUNKS = 2**32
_READ = 1024 * 1024


def new_content_key() -> bytes:
    """A fresh random 32-byte AES-256-GCM content key (one per blob)."""
    return os.urandom(KEY_SIZE)


def chunk_count(plaintext_len: int) -> int:
    if plaintext_len < 0:
        raise ValueError(f"plaintext length {plaintext_len} is negative")
    return max(1, -(-plaintext_len // CHUNK_SIZE))


def encrypted_size(plaintext_len: int) -> int:
    """Exact length of the encrypted blob for a plaintext of ``plaintext_len`` bytes."""
    return HEADER_SIZE + plaintext_len + TAG_SIZE * chunk_count(plaintext_len)


def decrypted_size(encrypted_len: int) -> int:
    """Inverse of :func:`encrypted_size`; ValueError if no plaintext length encrypts to that size."""
    body = encrypted_len - HEADER_SIZE
    if body < TAG_SIZE:
        raise ValueError(f"{encrypted_len} bytes is too short for an encrypted blob")
    full, rest = divmod(body, CHUNK_SIZE + TAG_SIZE)
    if rest == 0:  # ends with a full final chunk
        return full * CHUNK_SIZE
    if rest < TAG_SIZE:
        raise ValueError(f"{encrypted_len} bytes is not the size of any encrypted blob")
    n = full * CHUNK_SIZE + rest - TAG_SIZE
    if encrypted_size(n) != encrypted_len:  # "rest == TAG_SIZE" only valid as the sole empty chunk
        raise ValueError(f"{encrypted_len} bytes is not the size of any encrypted blob")
    return n


def _nonce(prefix: bytes, index: int, final: bool) -> bytes:
    if index >= _MAX_CHUNKS:
        raise ValueError(f"blob exceeds {_MAX_CHUNKS} chunks")
    return prefix + index.to_bytes(4, "big") + (b"\x01" if final else b"\x00")


def _check_key(key: bytes) -> AESGCM:
    if len(key) != KEY_SIZE:
        raise ValueError(f"content key must be {KEY_SIZE} bytes, got {len(key)}")
    return AESGCM(key)


class ChunkEncryptor:
    """Push-style (sans-I/O) encryptor: ``update()`` returns ciphertext ready so far, ``finalize()`` the
    rest. Holds at most one chunk of plaintext; usable from sync or async code alike."""

    def __init__(self, key: bytes, *, nonce_prefix: bytes | None = None) -> None:
        self._aead = _check_key(key)
        prefix = os.urandom(PREFIX_SIZE) if nonce_prefix is None else nonce_prefix
        if len(prefix) != PREFIX_SIZE:
            raise ValueError(f"nonce prefix must be {PREFIX_SIZE} bytes, got {len(prefix)}")
        self._prefix = prefix
        self._header = MAGIC + prefix
        self._buf = bytearray()
        self._index = 0
        self._header_sent = False
        self._done = False

    def _seal(self, data: bytes | memoryview, final: bool) -> bytes:
        ct = self._aead.encrypt(_nonce(self._prefix, self._index, final), data, self._header)
        self._index += 1
        return ct

    def _start(self) -> list[bytes]:
        if self._header_sent:
            return []
        self._header_sent = True
        return [self._header]

    def update(self, data: bytes) -> bytes:
        if self._done:
            raise ValueError("ChunkEncryptor.update() after finalize()")
        out = self._start()
        self._buf += data
        # A full chunk is only known not to be the last once at least one more byte has arrived.
        off = 0
        with memoryview(self._buf) as view:
            while len(view) - off > CHUNK_SIZE:
                out.append(self._seal(view[off : off + CHUNK_SIZE], final=False))
                off += CHUNK_SIZE
        del self._buf[:off]
        return b"".join(out)

    def finalize(self) -> bytes:
        if self._done:
            raise ValueError("ChunkEncryptor.finalize() called twice")
        out = self._start()
        out.append(self._seal(bytes(self._buf), final=True))
        self._buf.clear()
        self._done = True
        return b"".join(out)


class ChunkDecryptor:
    """Push-style decryptor. Raises DecryptError on the first chunk that fails, or in ``finalize()`` if
    the stream ended early. Holds at most one encrypted chunk."""

    def __init__(self, key: bytes) -> None:
        self._aead = _check_key(key)
        self._buf = bytearray()
        self._header: bytes | None = None
        self._prefix = b""
        self._index = 0
        self._done = False

    def _open(self, data: bytes | memoryview, final: bool) -> bytes:
        assert self._header is not None
        try:
            pt = self._aead.decrypt(_nonce(self._prefix, self._index, final), data, self._header)
        except InvalidTag:
            where = "final chunk" if final else "chunk"
            raise DecryptError(
                f"encrypted blob: {where} {self._index} failed authentication "
                "(wrong key, altered, reordered, truncated or extended)"
            ) from None
        self._index += 1
        return pt

    def _read_header(self) -> None:
        if self._header is None and len(self._buf) >= HEADER_SIZE:
            header = bytes(self._buf[:HEADER_SIZE])
            if header[: len(MAGIC)] != MAGIC:
                raise DecryptError(f"encrypted blob: header {header[:4]!r} is not {MAGIC!r}")
            self._header = header
            self._prefix = header[len(MAGIC) :]
            del self._buf[:HEADER_SIZE]

    def update(self, data: bytes) -> bytes:
        if self._done:
            raise ValueError("ChunkDecryptor.update() after finalize()")
        self._buf += data
        self._read_header()
        if self._header is None:
            return b""
        out: list[bytes] = []
        step = CHUNK_SIZE + TAG_SIZE
        off = 0
        with memoryview(self._buf) as view:
            while len(view) - off > step:  # more follows, so this chunk is not the final one
                out.append(self._open(view[off : off + step], final=False))
                off += step
        del self._buf[:off]
        return b"".join(out)

    def finalize(self) -> bytes:
        if self._done:
            raise ValueError("ChunkDecryptor.finalize() called twice")
        self._done = True
        if self._header is None:
            raise DecryptError(f"encrypted blob: {len(self._buf)} bytes, shorter than the header")
        if len(self._buf) < TAG_SIZE:
            raise DecryptError(
                f"encrypted blob: truncated, {len(self._buf)} bytes left after chunk {self._index}"
            )
        pt = self._open(bytes(self._buf), final=True)
        self._buf.clear()
        return pt


def encrypt_iter(key: bytes, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Encrypt a stream of plaintext pieces (any sizes); yields ciphertext pieces."""
    enc = ChunkEncryptor(key)
    for piece in chunks:
        out = enc.update(piece)
        if out:
            yield out
    yield enc.finalize()


def decrypt_iter(key: bytes, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Decrypt a stream of ciphertext pieces (any sizes); yields authenticated plaintext pieces and
    raises DecryptError at the first failure or at the end of a truncated stream."""
    dec = ChunkDecryptor(key)
    for piece in chunks:
        out = dec.update(piece)
        if out:
            yield out
    last = dec.finalize()
    if last:
        yield last


async def aencrypt_iter(key: bytes, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """:func:`encrypt_iter` over an async iterable (e.g. an aiohttp request body)."""
    enc = ChunkEncryptor(key)
    async for piece in chunks:
        out = enc.update(piece)
        if out:
            yield out
    yield enc.finalize()


async def adecrypt_iter(key: bytes, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """:func:`decrypt_iter` over an async iterable."""
    dec = ChunkDecryptor(key)
    async for piece in chunks:
        out = dec.update(piece)
        if out:
            yield out
    last = dec.finalize()
    if last:
        yield last


def _hashing(pieces: Iterable[bytes], h: Any) -> Iterator[bytes]:
    """``pieces`` unchanged, each added to hash ``h`` as it passes."""
    for piece in pieces:
        h.update(piece)
        yield piece


def _ahead(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """``pieces``, each made in a thread of its own while the caller uses the one before: reading,
    encrypting or decrypting and hashing the next piece overlap writing this one (on two cores, the
    stages run at once). One piece is made ahead, no more, so memory does not grow; an exception
    raised making a piece is raised here, in order."""
    it = iter(pieces)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunks-ahead") as pool:
        nxt = pool.submit(next, it, None)
        while (piece := nxt.result()) is not None:
            nxt = pool.submit(next, it, None)
            yield piece


def _atomic_write(dst: Path, pieces: Iterable[bytes]) -> tuple[str, int]:
    """Write pieces to ``dst`` via a temporary file, fsync, rename; returns (b64url sha256, length).
    Nothing is left at ``dst`` if ``pieces`` raises. The pieces are made and hashed in a thread while
    the previous one is written (:func:`_ahead`); the file is written around the page cache where the
    file system allows it (:class:`gateway.durable.DirectAppender`)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")
    os.close(fd)
    h = hashlib.sha256()
    n = 0
    try:
        f = DirectAppender(Path(tmp))
        try:
            # three stages at once: read and en/decrypt (inner thread), hash (outer thread), write (here)
            for piece in _ahead(_hashing(_ahead(pieces), h)):
                n += len(piece)
                f.write(piece)
            f.finish()
        finally:
            f.close()
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return b64url_encode(h.digest()), n


def encrypt_file(src: Path, dst: Path, key: bytes) -> tuple[str, int]:
    """Encrypt file ``src`` into ``dst``; returns the blob name (b64url SHA-256 of the encrypted bytes)
    and the encrypted length."""
    return _atomic_write(dst, encrypt_iter(key, _ahead(read_pieces(src, chunk=_READ))))


def decrypt_file(src: Path, dst: Path, key: bytes) -> tuple[str, int]:
    """Decrypt blob ``src`` into ``dst`` (only created if the whole blob authenticates); returns the b64url
    SHA-256 and length of the plaintext. DecryptError on any failure."""
    return _atomic_write(dst, decrypt_iter(key, _ahead(read_pieces(src, chunk=_READ))))


def blob_info(sha256: str, jti: str) -> bytes:
    """HPKE ``info`` sealing a blob's content key: ``traza/v1/blob|<sha256>|<jti>``."""
    return f"traza/v1/blob|{sha256}|{jti}".encode()


def seal_content_key(kem: str, public_b64: str, content_key: bytes, sha256: str, jti: str) -> bytes:
    """Seal a blob's content key to the recipient's manifest ``enc`` key (``kem``, ``public_key``)."""
    if len(content_key) != KEY_SIZE:
        raise ValueError(f"content key must be {KEY_SIZE} bytes, got {len(content_key)}")
    return hpke.seal(kem, public_b64, content_key, blob_info(sha256, jti))


def open_content_key(key: EncKey, sealed: bytes, sha256: str, jti: str) -> bytes:
    """Open a sealed content key; DecryptError if it is not for this key, blob and message."""
    content_key = key.open(sealed, blob_info(sha256, jti))
    if len(content_key) != KEY_SIZE:
        raise DecryptError(f"{key.kid}: sealed content key is {len(content_key)} bytes, expected {KEY_SIZE}")
    return content_key
