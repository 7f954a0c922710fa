"""Blob chunk encryption (SPEC §4.3): sizes, streaming, and every way of cutting or altering a blob."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.b64 import b64url_encode
from gateway.crypto.chunks import (
    CHUNK_SIZE,
    HEADER_SIZE,
    TAG_SIZE,
    ChunkDecryptor,
    ChunkEncryptor,
    adecrypt_iter,
    aencrypt_iter,
    blob_info,
    decrypt_file,
    decrypt_iter,
    decrypted_size,
    encrypt_file,
    encrypt_iter,
    encrypted_size,
    new_content_key,
    open_content_key,
    seal_content_key,
)
from gateway.crypto.hpke import DecryptError, EncKey

KEY = new_content_key()
SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE]
STEP = CHUNK_SIZE + TAG_SIZE


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def encrypt(data: bytes, piece: int = 10_000) -> bytes:
    return b"".join(encrypt_iter(KEY, pieces(data, piece)))


def decrypt(blob: bytes, key: bytes = KEY, piece: int = 7_001) -> bytes:
    return b"".join(decrypt_iter(key, pieces(blob, piece)))


def split_chunks(blob: bytes) -> tuple[bytes, list[bytes]]:
    body = blob[HEADER_SIZE:]
    return blob[:HEADER_SIZE], [body[i : i + STEP] for i in range(0, len(body), STEP)]


# Byte-at-a-time feeding is slow in Python, so it runs on the sizes up to one chunk + 1.
CASES = [(n, piece) for n in SIZES for piece in (1, 4096, 100_003) if piece > 1 or n <= CHUNK_SIZE + 1]


@pytest.mark.parametrize(("n", "piece"), CASES)
def test_round_trip(n: int, piece: int) -> None:
    data = os.urandom(n)
    blob = b"".join(encrypt_iter(KEY, pieces(data, piece)))
    assert len(blob) == encrypted_size(n)
    assert decrypted_size(len(blob)) == n
    assert b"".join(decrypt_iter(KEY, pieces(blob, piece))) == data


def test_sizes() -> None:
    assert encrypted_size(0) == HEADER_SIZE + TAG_SIZE
    assert encrypted_size(CHUNK_SIZE) == HEADER_SIZE + CHUNK_SIZE + TAG_SIZE
    assert encrypted_size(CHUNK_SIZE + 1) == HEADER_SIZE + CHUNK_SIZE + 1 + 2 * TAG_SIZE
    assert encrypted_size(4 * 2**30) == HEADER_SIZE + 4 * 2**30 + TAG_SIZE * 65536
    for bad in (
        0,
        HEADER_SIZE,
        HEADER_SIZE + TAG_SIZE - 1,
        HEADER_SIZE + STEP + TAG_SIZE,
        HEADER_SIZE + STEP + 3,
    ):
        with pytest.raises(ValueError):
            decrypted_size(bad)
    with pytest.raises(ValueError):
        encrypted_size(-1)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**40))
def test_size_functions_are_inverse(n: int) -> None:
    assert decrypted_size(encrypted_size(n)) == n


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**24))
def test_every_length_is_either_valid_or_refused(m: int) -> None:
    try:
        n = decrypted_size(m)
    except ValueError:
        return
    assert encrypted_size(n) == m


def test_header_and_nonce_prefix() -> None:
    a, b = encrypt(b"same"), encrypt(b"same")
    assert a[:4] == b"TZB1" and b[:4] == b"TZB1"
    assert a[4:HEADER_SIZE] != b[4:HEADER_SIZE]  # random prefix per blob
    assert a != b


def test_wrong_key_is_refused() -> None:
    blob = encrypt(b"x" * 100)
    with pytest.raises(DecryptError, match="final chunk 0 failed"):
        decrypt(blob, key=new_content_key())


BLOB_DATA = os.urandom(3 * CHUNK_SIZE + 500)  # four chunks: three full, one short final


@pytest.fixture(scope="module")
def blob() -> bytes:
    return encrypt(BLOB_DATA)


def test_truncation_anywhere_is_detected(blob: bytes) -> None:
    _header, chunks = split_chunks(blob)
    assert len(chunks) == 4
    cuts = [0, 3, HEADER_SIZE, HEADER_SIZE + 1, len(blob) - 1, len(blob) - TAG_SIZE]
    cuts += [HEADER_SIZE + i * STEP for i in range(1, 4)]  # at each chunk boundary: final chunk dropped
    cuts += [HEADER_SIZE + i * STEP + 100 for i in range(0, 4)]
    for cut in cuts:
        with pytest.raises(DecryptError):
            decrypt(blob[:cut])


def test_dropped_final_chunk_is_detected(blob: bytes) -> None:
    header, chunks = split_chunks(blob)
    with pytest.raises(DecryptError, match="final chunk 2 failed"):
        decrypt(header + b"".join(chunks[:3]))


def test_reordered_chunks_are_detected(blob: bytes) -> None:
    header, c = split_chunks(blob)
    for order in ([1, 0, 2, 3], [0, 2, 1, 3], [0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 2, 3]):
        with pytest.raises(DecryptError):
            decrypt(header + b"".join(c[i] for i in order))


def test_appended_data_is_detected(blob: bytes) -> None:
    _header, chunks = split_chunks(blob)
    for extra in (b"\x00", chunks[-1], encrypt(b"")[HEADER_SIZE:]):
        with pytest.raises(DecryptError):
            decrypt(blob + extra)


def test_chunks_of_another_blob_are_refused(blob: bytes) -> None:
    # Same key, different stream (another nonce prefix): splicing chunks across blobs fails.
    other = encrypt(BLOB_DATA)
    h1, c1 = split_chunks(blob)
    _, c2 = split_chunks(other)
    with pytest.raises(DecryptError):
        decrypt(h1 + c1[0] + c2[1] + c1[2] + c1[3])


def test_every_flipped_bit_position_class_is_detected(blob: bytes) -> None:
    positions = [0, 3, 4, HEADER_SIZE - 1]  # magic and nonce prefix
    for i in range(4):  # first, middle and last byte of each chunk, and its tag
        start = HEADER_SIZE + i * STEP
        end = min(start + STEP, len(blob))
        positions += [start, start + 1234 % (end - start), end - TAG_SIZE - 1, end - 1]
    for pos in positions:
        bad = bytearray(blob)
        bad[pos] ^= 0x04
        with pytest.raises(DecryptError):
            decrypt(bytes(bad))


def test_decryptor_releases_only_authenticated_chunks(blob: bytes) -> None:
    # A tampered third chunk: the first two come out, then the error; callers discard on error.
    bad = bytearray(blob)
    bad[HEADER_SIZE + 2 * STEP + 10] ^= 1
    out = []
    with pytest.raises(DecryptError, match="chunk 2 failed"):
        for piece in decrypt_iter(KEY, pieces(bytes(bad), 50_000)):
            out.append(piece)
    assert b"".join(out) == BLOB_DATA[: 2 * CHUNK_SIZE]


def test_push_api_misuse_is_refused() -> None:
    enc = ChunkEncryptor(KEY)
    enc.finalize()
    with pytest.raises(ValueError):
        enc.update(b"x")
    with pytest.raises(ValueError, match="content key must be 32 bytes"):
        ChunkDecryptor(b"short")
    with pytest.raises(DecryptError, match="shorter than the header"):
        ChunkDecryptor(KEY).finalize()
    with pytest.raises(DecryptError, match="is not"):
        decrypt(b"XXXX" + encrypt(b"abc")[4:])


def test_memory_does_not_grow_with_size() -> None:
    mib = 2**20
    total = 48 * mib
    block = os.urandom(mib)

    def source() -> Iterator[bytes]:
        for _ in range(total // mib):
            yield block

    tracemalloc.start()
    try:
        n = 0
        h = hashlib.sha256()
        for piece in decrypt_iter(KEY, encrypt_iter(KEY, source())):
            n += len(piece)
            h.update(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == total
    assert h.digest() == hashlib.sha256(block * (total // mib)).digest()
    assert peak < 8 * mib, f"peak {peak / mib:.1f} MiB for a {total // mib} MiB blob"


async def test_async_round_trip() -> None:
    data = os.urandom(2 * CHUNK_SIZE + 77)

    async def src(buf: bytes) -> AsyncIterator[bytes]:
        for p in pieces(buf, 30_000):
            yield p

    blob = b"".join([p async for p in aencrypt_iter(KEY, src(data))])
    assert len(blob) == encrypted_size(len(data))
    assert b"".join([p async for p in adecrypt_iter(KEY, src(blob))]) == data
    with pytest.raises(DecryptError):
        _ = [p async for p in adecrypt_iter(KEY, src(blob[:-1]))]


def test_files(tmp_path: Path) -> None:
    src = tmp_path / "scan.x3p"
    data = os.urandom(CHUNK_SIZE * 2 + 9)
    src.write_bytes(data)
    name, length = encrypt_file(src, tmp_path / "blob", KEY)
    raw = (tmp_path / "blob").read_bytes()
    assert name == b64url_encode(hashlib.sha256(raw).digest()) and length == len(raw) == encrypted_size(
        len(data)
    )
    pname, plen = decrypt_file(tmp_path / "blob", tmp_path / "out.x3p", KEY)
    assert (tmp_path / "out.x3p").read_bytes() == data
    assert pname == b64url_encode(hashlib.sha256(data).digest()) and plen == len(data)
    (tmp_path / "cut").write_bytes(raw[:-5])
    with pytest.raises(DecryptError):
        decrypt_file(tmp_path / "cut", tmp_path / "cut.x3p", KEY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob", "cut", "out.x3p", "scan.x3p"]


def test_content_key_is_bound_to_blob_and_message() -> None:
    rk = EncKey.generate("es/enc/1")
    sha, jti = "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg", "0190f1a2-0000-7000-8000-000000000001"
    assert blob_info(sha, jti) == f"traza/v1/blob|{sha}|{jti}".encode()
    sealed = seal_content_key(rk.kem, rk.public_b64(), KEY, sha, jti)
    assert open_content_key(rk, sealed, sha, jti) == KEY
    for other_sha, other_jti in ((sha[:-1] + "A", jti), (sha, jti[:-1] + "2")):
        with pytest.raises(DecryptError):
            open_content_key(rk, sealed, other_sha, other_jti)
    with pytest.raises(ValueError, match="content key must be 32 bytes"):
        seal_content_key(rk.kem, rk.public_b64(), b"k" * 16, sha, jti)


def test_a_file_of_many_pieces_round_trips_and_a_flipped_bit_midway_leaves_nothing(tmp_path: Path) -> None:
    """encrypt_file and decrypt_file read, en/decrypt, hash and write 1 MiB pieces in three threads at once:
    a file of several pieces comes back intact, and a chunk altered in the middle of the file fails
    authentication there, in order, with no output file left behind."""
    data = os.urandom(5 * 1024 * 1024 + 7)
    (tmp_path / "plain").write_bytes(data)
    name, length = encrypt_file(tmp_path / "plain", tmp_path / "blob", KEY)
    raw = bytearray((tmp_path / "blob").read_bytes())
    assert name == b64url_encode(hashlib.sha256(raw).digest()) and length == len(raw)
    pname, plen = decrypt_file(tmp_path / "blob", tmp_path / "out", KEY)
    assert (tmp_path / "out").read_bytes() == data and plen == len(data)
    assert pname == b64url_encode(hashlib.sha256(data).digest())
    raw[len(raw) // 2] ^= 1
    (tmp_path / "bad").write_bytes(bytes(raw))
    with pytest.raises(DecryptError, match=r"chunk 4[0-9] failed authentication"):
        decrypt_file(tmp_path / "bad", tmp_path / "bad.out", KEY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "blob", "out", "plain"]
