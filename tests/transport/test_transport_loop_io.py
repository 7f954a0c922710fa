"""No file I/O on the event loop (issue #17).

Two blob paths read a whole file on a node's event loop: the upload to the next hop (about 0.6 ms per MiB,
the disk read) and a resumed upload's read-back (its hash, seconds per GiB), and while they ran the node
answered nothing. Both were found by profiling the blob benchmark. This is the class of test that was
missing: three real nodes in-process relay a message with an attachment (encrypted at the origin,
uploaded hop by hop, decrypted at the recipient), a sender drops an upload halfway and resumes it, and
every positioned read and write and every fsync Python makes is recorded with the thread it ran on.
None may run on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest
from kit.nodes import attach, started
from kit.waiting import eventually

from gateway.core.b64 import b64url_encode
from gateway.localfed import NodeSpec, build

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("mx", "national", "MX", hub="hub"),
         NodeSpec("es", "national", "ES", hub="hub")]
LIMITS = {"retry_min": 0.05, "retry_max": 0.3, "checkpoint_interval": 0.5}
BODY = msgspec.json.encode({"title": "t", "text": "x"})
CALLS = ("pwrite", "preadv", "fsync", "fdatasync")
ARM = ("armed", 0, "")


@pytest.fixture
def on_the_loop(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """(call, bytes, caller) of every recorded call made on the test's thread, the nodes' event loop, once
    the test arms it (``seen.append(ARM)``: the set-up before, building keys and files, is not a node's)."""
    loop_thread = threading.get_ident()
    seen: list[Any] = []
    for name in CALLS:
        real = getattr(os, name)

        def recorded(*args: Any, _real: Any = real, _name: str = name) -> Any:
            if threading.get_ident() == loop_thread and ARM in seen:
                size = len(args[1]) if _name == "pwrite" else sum(map(len, args[1])) if _name == "preadv" else 0
                caller = sys._getframe(1)
                where = f"{Path(caller.f_code.co_filename).name}:{caller.f_code.co_name}"
                seen.append((_name, size, f"{where} <- {caller.f_back.f_code.co_name if caller.f_back else '?'}"))
            return _real(*args)

        monkeypatch.setattr(os, name, recorded)
    return seen


async def test_a_relayed_attachment_and_a_resumed_upload_do_no_file_io_on_the_event_loop(
        tmp_path: Path, on_the_loop: list[Any]) -> None:
    built = build(tmp_path / "fed", SPECS, limits=LIMITS)
    async with started(built["hub"].config) as hub, started(built["mx"].config) as mx, \
            started(built["es"].config) as es:
        scan = await attach(mx, tmp_path, 6 * 1024 * 1024 + 77)  # what an adapter hands over (on a thread)
        on_the_loop.append(ARM)
        jti = await mx.submit(mt="notice", to="es", body=BODY, system="test", attachments=[scan])
        await eventually(lambda: es.local_inbox_message(jti), timeout=30.0)
        # a sender that drops its upload halfway, then resumes it (the hub reads back what it kept)
        client = mx.outbound.client("hub")
        data = os.urandom(5 * 1024 * 1024 + 3)
        sha = b64url_encode(hashlib.sha256(data).digest())
        first = 4 * 1024 * 1024 + 4096
        status, _body, _h = await client.request("PUT", f"/v1/blobs/{sha}", body=data[:first],
                                                 content_type="application/octet-stream",
                                                 headers={"Content-Range": f"bytes 0-{first - 1}/{len(data)}"})
        assert status == 202
        src = tmp_path / "resume.bin"
        src.write_bytes(data)
        assert await client.upload_blob(sha, src, len(data)) == len(data) - first
        assert hub.blobs.path(sha).read_bytes() == data
        await asyncio.sleep(0.6)  # a checkpoint or two on every node
    assert on_the_loop == [ARM], Counter((c, w) for c, _n, w in on_the_loop[1:])
