"""Blob streaming over the peer API (SPEC §4.3), real mTLS on 127.0.0.1 against a real node started
in-process: PUT/HEAD, resume after a dropped connection (only the rest is sent), nothing kept of a
mismatch, 411/413/416, and an envelope naming a blob the hub does not hold is refused with blob_missing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest
from aiohttp import ClientError

from gateway.config import load_config
from gateway.core.b64 import b64url_encode
from gateway.core.envelope import SUITES, BlobEnc, BlobRef, build_envelope, encode_envelope
from gateway.core.ids import uuid7
from gateway.crypto.chunks import encrypt_file, encrypted_size, new_content_key, seal_content_key
from gateway.crypto.hpke import seal
from gateway.crypto.keys import SigningKey
from gateway.crypto.tls import client_context
from gateway.localfed import NodeSpec, build
from gateway.node import Node
from gateway.store.blobs import BlobStore, BlobTooLarge
from gateway.transport.peer import (
    COMPLETE_HEADER,
    RECEIVED_HEADER,
    WRITE_BATCH,
    PeerClient,
    PeerUnavailable,
    receive_into,
)
from gateway.trust.pki import FederationDir

SPECS = [NodeSpec("eu-hub", "hub", "NL"), NodeSpec("es", "national", "ES", hub="eu-hub"),
         NodeSpec("it", "national", "IT", hub="eu-hub")]
MAX_BLOB = 4 * 1024 * 1024


def name(data: bytes) -> str:
    return b64url_encode(hashlib.sha256(data).digest())


@pytest.fixture
async def hub(tmp_path):
    nodes = build(tmp_path, SPECS, limits={"max_blob": MAX_BLOB})
    node = Node(load_config(nodes["eu-hub"].config))
    await node.start()
    f = FederationDir(tmp_path / "pki").node_files("es")
    ca = [(tmp_path / "pki" / "ca" / "ca.pem").read_text()]
    cl = PeerClient("eu-hub", f"https://127.0.0.1:{nodes['eu-hub'].peer_port}",
                    client_context(f.tls_cert, f.tls_key, ca), timeout=10)
    try:
        yield tmp_path, node, cl
    finally:
        await cl.close()
        await node.stop()


async def put_raw(cl: PeerClient, sha: str, data: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    status, body, _ = await cl.request("PUT", f"/v1/blobs/{sha}", body=data, content_type="application/octet-stream",
                                       headers=headers)
    return status, json.loads(body) if body else {}


async def test_put_then_head_then_already_present(hub, tmp_path):
    _root, node, cl = hub
    data = os.urandom(1_500_000)
    sha = name(data)
    assert await cl.blob_received(sha) == (0, False)
    status, doc = await put_raw(cl, sha, data)
    assert status == 201 and doc == {"sha256": sha, "len": len(data)}
    assert node.blobs.path(sha).read_bytes() == data
    status, _, headers = await cl.request("HEAD", f"/v1/blobs/{sha}")
    assert status == 200 and headers[RECEIVED_HEADER] == str(len(data)) and headers[COMPLETE_HEADER] == "true"
    assert headers["Content-Length"] == str(len(data))
    status, doc = await put_raw(cl, sha, data)
    assert status == 200 and doc["len"] == len(data)
    src = tmp_path / "f.bin"
    src.write_bytes(data)
    assert await cl.upload_blob(sha, src, len(data)) == 0  # nothing sent: the peer has it


async def test_interrupted_upload_resumes_and_sends_only_the_rest(hub, tmp_path):
    _root, node, cl = hub
    data = os.urandom(3 * 1024 * 1024 + 123)
    sha = name(data)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    first = 1024 * 1024 + 7

    async def broken():
        yield data[:first]
        await asyncio.sleep(0.3)  # let the bytes reach the node
        raise ConnectionAbortedError("cable pulled")

    with pytest.raises((ClientError, ConnectionAbortedError, OSError)):
        async with cl._sess().put(cl.endpoint + f"/v1/blobs/{sha}", data=broken(),
                                  headers={"Content-Length": str(len(data))}) as resp:
            await resp.read()
    # the node keeps what arrived; HEAD says how much (the dropped request may take a moment to end)
    deadline = time.monotonic() + 10
    received = 0
    while time.monotonic() < deadline:
        received, complete = await cl.blob_received(sha)
        if received == first and sha not in node.blobs._active:
            break
        await asyncio.sleep(0.05)
    assert received == first and not complete
    assert (node.blobs.root / f"{sha}.part").stat().st_size == first
    seen: list[int] = []
    sent = await cl.upload_blob(sha, src, len(data), progress=seen.append)
    assert sent == len(data) - first  # only the remainder travelled
    assert seen[0] == first and seen[-1] == len(data)
    assert node.blobs.path(sha).read_bytes() == data
    assert not (node.blobs.root / f"{sha}.part").exists()


async def test_an_upload_reads_the_file_on_a_thread_so_the_event_loop_never_waits_for_the_disk(hub, tmp_path,
                                                                                            monkeypatch):
    """A hub uploads each blob it relays to the next hop. Reading the file (around the page cache, from the
    disk itself) ran on the event loop: about 0.6 ms per MiB during which the node answered nothing else
    (0.65 s for 1 GiB), and the disk and the connection took turns instead of working at once."""
    import gateway.transport.peer as peer_mod

    _root, node, cl = hub
    data = os.urandom(3 * 1024 * 1024 + 5)
    sha = name(data)
    src = tmp_path / "up.bin"
    src.write_bytes(data)
    loop_thread = threading.get_ident()
    readers: list[int] = []
    real = peer_mod.read_pieces

    def recorded(*args, **kw):
        for piece in real(*args, **kw):
            readers.append(threading.get_ident())
            yield piece

    monkeypatch.setattr(peer_mod, "read_pieces", recorded)
    assert await cl.upload_blob(sha, src, len(data)) == len(data)
    assert node.blobs.path(sha).read_bytes() == data
    assert len(readers) == 4 and loop_thread not in readers, readers


async def test_a_resumed_upload_reads_back_what_it_kept_on_a_thread_not_the_event_loop(hub, tmp_path, monkeypatch):
    """A resumed PUT first reads back and hashes the bytes already received (up to max_blob: seconds for a
    few GiB). That ran on the event loop, so a resume froze the node: no envelope, ack or health check
    answered until it was done."""
    import gateway.store.blobs as blobs_mod

    _root, node, cl = hub
    data = os.urandom(3 * 1024 * 1024 + 9)
    sha = name(data)
    src = tmp_path / "resume.bin"
    src.write_bytes(data)
    first = 2 * 1024 * 1024
    status, _doc = await put_raw(cl, sha, data[:first], {"Content-Range": f"bytes 0-{first - 1}/{len(data)}"})
    assert status == 202
    loop_thread = threading.get_ident()
    hashed_on: list[int] = []
    real = blobs_mod.sha256_file

    def recorded(*args, **kw):
        hashed_on.append(threading.get_ident())
        return real(*args, **kw)

    monkeypatch.setattr(blobs_mod, "sha256_file", recorded)
    assert await cl.upload_blob(sha, src, len(data)) == len(data) - first
    assert node.blobs.path(sha).read_bytes() == data
    assert hashed_on and loop_thread not in hashed_on, hashed_on


async def test_read_ahead_keeps_order_raises_in_order_and_finishes_the_read_in_flight_before_closing():
    from gateway.transport.peer import read_ahead

    assert [p async for p in read_ahead(iter([b"a", b"b", b"c"]))] == [b"a", b"b", b"c"]

    def failing():
        yield b"a"
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        async for p in read_ahead(failing()):
            got.append(p)
    assert got == [b"a"]
    state = {"reading": False, "closed_while_reading": False}

    def slow():
        try:
            for p in (b"a", b"b", b"c"):
                state["reading"] = True
                time.sleep(0.05)
                state["reading"] = False
                yield p
        finally:
            state["closed_while_reading"] = state["reading"]

    gen = read_ahead(slow())
    assert await gen.__anext__() == b"a"  # b is being read on the thread now
    await gen.aclose()  # the caller stops early (the upload failed)
    assert state == {"reading": False, "closed_while_reading": False}

    async def consume() -> None:
        async for _p in read_ahead(slow()):
            await asyncio.sleep(0)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.02)  # a read is in flight on the thread
    task.cancel()  # the node stops, or the upload times out
    with pytest.raises(asyncio.CancelledError):
        await task
    assert state == {"reading": False, "closed_while_reading": False}


async def test_mismatch_keeps_nothing(hub):
    _root, node, cl = hub
    data = os.urandom(200_000)
    wrong = name(b"another file")
    status, doc = await put_raw(cl, wrong, data)
    assert status == 422 and doc["code"] == "payload_mismatch" and "nothing of it was kept" in doc["detail"]
    assert await cl.blob_received(wrong) == (0, False)
    assert [p.name for p in node.blobs.root.iterdir()] == []


async def test_length_limits_and_ranges(hub):
    _root, _node, cl = hub
    data = os.urandom(1000)
    sha = name(data)

    async def gen():
        yield data

    # no Content-Length (chunked transfer encoding) -> 411
    async with cl._sess().put(cl.endpoint + f"/v1/blobs/{sha}", data=gen()) as resp:
        assert resp.status == 411
        assert (await resp.json(content_type=None))["code"] == "malformed"
    # over the ciphertext of max_blob bytes of plaintext (SPEC §11: max_blob limits the plaintext)
    # -> 413, declared through Content-Range or by the length itself
    over = encrypted_size(MAX_BLOB) + 1
    status, doc = await put_raw(cl, sha, data[:10], {"Content-Range": f"bytes 0-9/{over}"})
    assert status == 413 and doc["code"] == "too_large"
    try:
        status, doc = await put_raw(cl, name(b"x" * over), b"x" * over)
        assert status == 413
    except PeerUnavailable:
        pass  # the node may answer and close before the client finished sending
    # a resume that starts beyond what arrived -> 416 naming where to resume
    status, _doc = await put_raw(cl, sha, data[500:], {"Content-Range": "bytes 500-999/1000"})
    assert status == 416
    # a range that does not reach the end -> 202, then the rest -> 201
    status, doc = await put_raw(cl, sha, data[:400], {"Content-Range": "bytes 0-399/1000"})
    assert status == 202 and doc["received"] == 400
    status, doc = await put_raw(cl, sha, data[400:], {"Content-Range": "bytes 400-999/1000"})
    assert status == 201
    # a malformed name
    status, _doc = await put_raw(cl, "not-a-digest", data)
    assert status == 400


def _encrypted_notice(root: Path, node: Node, blob_src: Path, tmp: Path) -> tuple[bytes, str, Path]:
    """An envelope es -> it (through eu-hub) naming one encrypted blob; returns (envelope, blob sha, blob file)."""
    f = FederationDir(root / "pki").node_files("es")
    signer = SigningKey.from_pem(f.sig_kid, f.sig_alg, f.sig_key.read_bytes())  # type: ignore[arg-type]
    now = time.time()
    jti = uuid7(now, os.urandom(10))
    ek = node.fed.current_key("it", "enc", now)
    assert ek is not None and ek.kem and ek.public_key
    ck = new_content_key()
    enc_path = tmp / "blob.enc"
    esha, elen = encrypt_file(blob_src, enc_path, ck)
    sealed = seal_content_key(ek.kem, ek.public_key, ck, esha, jti)
    ref = BlobRef(sha256=esha, len=elen, ct="application/octet-stream", name="scan.bin",
                  enc=BlobEnc(suite=SUITES[ek.kem], kid=ek.kid, key=b64url_encode(sealed)))
    kem, pub = ek.kem, ek.public_key
    env = build_envelope(signer=signer, iss="es", aud="it", jti=jti, mt="notice", body=b'{"title":"t","text":"x"}',
                         now=now, ttl=3600, seal=lambda pt, info: seal(kem, pub, pt, info), enc_kem=kem,
                         enc_kid=ek.kid, blobs=[ref])
    return encode_envelope(env), esha, enc_path


async def test_envelope_naming_a_missing_blob_is_refused_until_the_blob_is_uploaded(hub, tmp_path):
    root, node, cl = hub
    src = tmp_path / "scan.bin"
    src.write_bytes(os.urandom(300_000))
    env, esha, enc_path = _encrypted_notice(root, node, src, tmp_path)
    (res,) = await cl.send_batch([env])
    assert res.status == "rejected" and res.error is not None and res.error.code == "blob_missing"
    assert esha in res.error.detail
    assert await cl.upload_blob(esha, enc_path, enc_path.stat().st_size) == enc_path.stat().st_size
    (res,) = await cl.send_batch([env])
    assert res.status == "accepted" and res.ack
    # the hub holds the ciphertext only
    assert node.blobs.path(esha).read_bytes() == enc_path.read_bytes()
    assert src.read_bytes()[:4096] not in node.blobs.path(esha).read_bytes()
    # kept until the envelope expires, then purged
    from gateway.core.jws import parse_compact

    exp = parse_compact(json.loads(env)["token"], typ="traza-envelope+jwt").claims["exp"]
    assert node.blobs.purge(exp - 1, orphan_age=10**6) == []
    assert node.blobs.purge(exp + 1, orphan_age=10**6) == [esha] and not node.blobs.has(esha)


async def test_recipient_decrypts_blobs_and_refuses_a_key_that_does_not_open(tmp_path):
    """`it` as recipient (envelopes come from eu-hub with its hop): a good blob is decrypted into the
    plaintext store and listed in the inbox; a blob that does not decrypt rejects its envelope (decrypt_failed)."""
    from gateway.core.envelope import append_hop, decode_envelope
    from gateway.core.jws import parse_compact

    nodes = build(tmp_path, SPECS)
    node = Node(load_config(nodes["it"].config))
    await node.start()
    fd = FederationDir(tmp_path / "pki")
    hubf = fd.node_files("eu-hub")
    ca = [(tmp_path / "pki" / "ca" / "ca.pem").read_text()]
    cl = PeerClient("it", f"https://127.0.0.1:{nodes['it'].peer_port}",
                    client_context(hubf.tls_cert, hubf.tls_key, ca), timeout=10)
    hub_signer = SigningKey.from_pem(hubf.sig_kid, hubf.sig_alg, hubf.sig_key.read_bytes())  # type: ignore[arg-type]
    try:
        src = tmp_path / "scan.bin"
        plain = os.urandom(200_000)
        src.write_bytes(plain)

        def via_hub(raw: bytes) -> bytes:
            env = decode_envelope(raw)
            jti = parse_compact(env.token, typ="traza-envelope+jwt").claims["jti"]
            return encode_envelope(append_hop(env, signer=hub_signer, here="eu-hub", jti=jti, came_from="es",
                                              to="it", received_at=time.time()))

        good, esha, enc_path = _encrypted_notice(tmp_path, node, src, tmp_path)
        bad_dir = tmp_path / "bad"
        bad_dir.mkdir()
        bad, bsha, bad_path = _encrypted_notice(tmp_path, node, src, bad_dir)
        for blob_sha, path in ((esha, enc_path), (bsha, bad_path)):
            assert await cl.upload_blob(blob_sha, path, path.stat().st_size) > 0
        (res,) = await cl.send_batch([via_hub(good)])
        assert res.status == "accepted", res
        page = await node.local_inbox(0, 10)
        (msg,) = page["messages"]
        (att,) = msg["attachments"]
        assert att["sha256"] == b64url_encode(hashlib.sha256(plain).digest()) and att["len"] == len(plain)
        assert att["url"] == f"/local/v1/blobs/{att['sha256']}" and att["name"] == "scan.bin"
        assert node.plain_blobs.path(att["sha256"]).read_bytes() == plain
        # the second envelope's blob altered on disk (the other blob's ciphertext, sealed with another key):
        # the content key opens, the chunks do not authenticate
        node.blobs.path(bsha).write_bytes(enc_path.read_bytes())
        (res,) = await cl.send_batch([via_hub(bad)])
        assert res.status == "rejected" and res.error is not None and res.error.code == "decrypt_failed", res
    finally:
        await cl.close()
        await node.stop()


async def test_origin_stores_an_adapters_attachment_and_encrypts_it_for_the_token(tmp_path):
    """An X3P file handed to mx's local API (x3p adapter with the submission fields as defaults): the
    plaintext goes to local-blobs, its chunk-encrypted copy to blobs, and the token names the copy with
    the content key sealed to es."""
    import sqlite3

    from adapters.x3p import X3P_MEDIA_TYPE, X3pAdapter
    from gateway.core.jws import parse_compact
    from gateway.crypto.chunks import decrypt_file, open_content_key
    from gateway.crypto.hpke import EncKey

    vectors = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "x3p"
    sidecar = json.loads((Path(__file__).resolve().parents[2] / "adapters" / "x3p" / "samples" /
                          "mx-fgr-2026-1180-c3-breechface.json").read_text())
    sidecar["to"] = "es"
    specs = [NodeSpec("latam-hub", "hub", "CO"), NodeSpec("eu-hub", "hub", "NL"),
             NodeSpec("mx", "national", "MX", hub="latam-hub"), NodeSpec("es", "national", "ES", hub="eu-hub")]
    nodes = build(tmp_path, specs)
    node = Node(load_config(nodes["mx"].config))
    node.adapter = X3pAdapter(defaults=sidecar)
    await node.start()
    try:
        data = (vectors / "testing.x3p").read_bytes()
        jti = await node.local_submit(X3P_MEDIA_TYPE, data, "default")
        assert node.plain_blobs.path(name(data)).read_bytes() == data
        con = sqlite3.connect(nodes["mx"].data_dir / "node.db")
        (raw,) = con.execute("SELECT envelope FROM envelopes WHERE jti=?", (jti,)).fetchone()
        con.close()
        claims = parse_compact(json.loads(raw)["token"], typ="traza-envelope+jwt").claims
        (ref,) = claims["blobs"]
        # bytes posted to the local API carry no file name: the adapter names it
        assert ref["name"] == "topography.x3p" and ref["ct"] == X3P_MEDIA_TYPE and ref["enc"]["kid"].startswith("es/enc/")
        enc = node.blobs.path(ref["sha256"]).read_bytes()
        assert len(enc) == ref["len"] and enc[:4] == b"TZB1" and data[:256] not in enc
        # es's key opens the content key, and the chunks decrypt to the file
        esf = FederationDir(tmp_path / "pki").node_files("es")
        es_key = EncKey.from_private_bytes(esf.enc_kid, esf.kem, esf.enc_key.read_bytes())  # type: ignore[arg-type]
        from gateway.core.b64 import b64url_decode

        ck = open_content_key(es_key, b64url_decode(ref["enc"]["key"]), ref["sha256"], jti)
        out = tmp_path / "out.x3p"
        assert decrypt_file(node.blobs.path(ref["sha256"]), out, ck) == (name(data), len(data))
        assert out.read_bytes() == data
    finally:
        await node.stop()


# --- receive_into: the body of a PUT, gathered into batches written by a thread --------------------------

async def _pieces(data: bytes, sizes: list[int], then: BaseException | None = None):
    at, i = 0, 0
    while at < len(data):
        n = sizes[i % len(sizes)]
        yield data[at : at + n]
        at += n
        i += 1
        await asyncio.sleep(0)
    if then is not None:
        raise then


async def test_receive_into_writes_every_piece_in_order(tmp_path):
    data = os.urandom(2 * WRITE_BATCH + 123_457)  # two full batches and a tail
    store = BlobStore(tmp_path, max_blob=len(data))
    w = store.writer(name(data), len(data))
    await receive_into(w, _pieces(data, [65_536, 262_144, 1, 1_048_576, 31_337]))
    assert w.received == len(data)
    w.commit()  # the digest of what was written matches
    assert store.path(name(data)).read_bytes() == data


async def test_receive_into_keeps_every_byte_that_arrived_when_the_sender_goes_away(tmp_path):
    data = os.urandom(WRITE_BATCH + 500_000)
    store = BlobStore(tmp_path, max_blob=10 * len(data))
    sha = name(data + b"rest")
    w = store.writer(sha, len(data) + 4)
    with pytest.raises(ConnectionResetError):
        await receive_into(w, _pieces(data, [262_144], then=ConnectionResetError("peer gone")))
    w.close()
    assert store.received(sha) == len(data)  # the batch still being gathered was written too
    assert (tmp_path / f"{sha}.part").read_bytes() == data


async def test_receive_into_refuses_more_than_the_declared_total(tmp_path):
    data = os.urandom(WRITE_BATCH + 10)
    store = BlobStore(tmp_path, max_blob=10 * len(data))
    w = store.writer(name(data[:-10]), len(data) - 10)
    with pytest.raises(BlobTooLarge):
        await receive_into(w, _pieces(data, [WRITE_BATCH // 2]))
    w.close()


class _SlowWriter:
    """A writer whose append blocks until released: stands for a disk slower than the network."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.writing = False
        self.written = 0

    def hash(self, data):
        pass

    def append(self, pieces):
        self.writing = True
        self.started.set()
        self.release.wait(10)
        self.written += sum(len(p) for p in pieces)
        self.writing = False


@pytest.mark.parametrize("tail", [10, WRITE_BATCH], ids=["cancelled-reading", "cancelled-waiting-for-the-thread"])
async def test_a_cancelled_receive_returns_only_once_the_thread_is_done_with_the_file(tail):
    w = _SlowWriter()

    async def body():
        yield b"x" * WRITE_BATCH  # handed to the thread, which blocks
        yield b"y" * tail  # a full batch waits for the thread to be free; a short one is gathered
        await asyncio.Event().wait()  # then the sender stalls

    task = asyncio.create_task(receive_into(w, body()))  # type: ignore[arg-type]
    await asyncio.to_thread(w.started.wait, 10)
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done() and w.writing  # still waiting for the thread: the caller may not close the file yet
    w.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not w.writing and w.written == WRITE_BATCH + tail  # what arrived after the first batch was written too


async def test_a_resume_cancelled_while_reading_back_releases_the_blob_once_the_thread_is_done(tmp_path, monkeypatch):
    """The node stops (or the sender goes away) while a resume reads back what it kept on a thread: once
    that thread is done, the upload it opened is released, so the blob is not left busy for ever."""
    import gateway.store.blobs as blobs_mod
    from gateway.transport.peer import _open_writer

    data = os.urandom(1024 * 1024)
    sha = name(data)
    store = BlobStore(tmp_path, max_blob=len(data))
    (tmp_path / f"{sha}.part").write_bytes(data[:4096])
    real = blobs_mod.sha256_file
    reading = threading.Event()

    def slow(*args, **kw):
        reading.set()
        time.sleep(0.2)
        return real(*args, **kw)

    monkeypatch.setattr(blobs_mod, "sha256_file", slow)
    task = asyncio.create_task(_open_writer(store, sha, len(data), 4096))
    await asyncio.to_thread(reading.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sha not in store._active
    monkeypatch.setattr(blobs_mod, "sha256_file", real)
    w = await _open_writer(store, sha, len(data), 4096)  # not BlobBusy
    w.write(data[4096:])
    assert w.commit() == store.path(sha) and store.path(sha).read_bytes() == data
