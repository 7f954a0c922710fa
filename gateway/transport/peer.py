"""Peer API over mutual TLS (SPEC §4): the server routes and the client that talks to one peer.

This is the one place where aiohttp errors become Traza errors. The server identifies the caller by the
SAN URI of its client certificate and asks the node (``PeerBackend``) to check it against the live
manifest on every request, so a revocation applies without a restart.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import msgspec
from aiohttp import (
    ClientError,
    ClientRequest,
    ClientSession,
    ClientTimeout,
    TCPConnector,
    http_exceptions,
    web,
)
from aiohttp.connector import Connection
from aiohttp.typedefs import Middleware

from gateway.core import strictjson
from gateway.core.errors import Code, TrazaError, http_status
from gateway.core.params import int_param
from gateway.core.relay import batch_body
from gateway.crypto.tls import CertRefusal, node_cert_refusal
from gateway.durable import read_pieces
from gateway.logging import get_logger
from gateway.store.blobs import (
    READ_CHUNK,
    BadBlobName,
    BadRange,
    BlobBusy,
    BlobStore,
    BlobTooLarge,
    BlobWriter,
    DigestMismatch,
)
from gateway.store.db import StorageUnavailable

PROBLEM = "application/problem+json"
RECEIVED_HEADER = "Traza-Received-Bytes"
COMPLETE_HEADER = "Traza-Blob-Complete"
# bytes of a blob's body handed at once to the thread that appends them to the file (receive_into)
WRITE_BATCH = 4 * READ_CHUNK
_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)\Z")


# the manifest node of the TLS client certificate, set by the authentication middleware
PEER = web.RequestKey("peer", str)

class BatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    envelopes: list[msgspec.Raw]


class ErrorBody(msgspec.Struct):
    code: str
    detail: str


class Result(msgspec.Struct, omit_defaults=False):
    jti: str | None
    status: str
    ack: str | None = None
    error: ErrorBody | None = None


class BatchResponse(msgspec.Struct):
    results: list[Result]


_batch_decoder = msgspec.json.Decoder(BatchRequest)
_response_decoder = msgspec.json.Decoder(BatchResponse)
_json = msgspec.json.Encoder()


def problem(status: int, code: Code | str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    code_s = code.value if isinstance(code, Code) else code
    body = {"type": f"urn:traza:error:{code_s}", "title": code_s.replace("_", " "), "status": status,
            "detail": detail, "code": code_s}
    return web.Response(status=status, body=_json.encode(body), content_type=PROBLEM, headers=headers)


def error_response(err: TrazaError, headers: dict[str, str] | None = None) -> web.Response:
    return problem(http_status(err), err.code, err.public_detail, headers)


def storage_response(exc: StorageUnavailable) -> web.Response:
    """The store cannot take writes (disk full, I/O error): 503 + Retry-After (SPEC §4.1); nothing of the
    request was kept (its transaction rolled back)."""
    return problem(503, Code.OVERLOADED, "node storage is unavailable; retry later",
                   {"Retry-After": str(max(1, round(exc.retry_after)))})
class Problem(Exception):
    """A refusal with its own HTTP status and problem code (e.g. 409 ``not_checkpointed``), raised by a
    backend that does not speak HTTP; every listener answers it as application/problem+json."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers

    def response(self) -> web.Response:
        return problem(self.status, self.code, self.detail, self.headers)


_WITNESS_CODES = {403: Code.BAD_SIGNATURE.value, 404: Code.UNKNOWN_NODE.value, 422: "inconsistent"}
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: Code.TOO_LARGE.value, 411: Code.MALFORMED.value}


def guard(listener: str) -> Middleware:
    """The outermost middleware of every listener: whatever goes wrong becomes application/problem+json
    with a ``code``. aiohttp's own 4xx (no such route, method not allowed, body too large) keep their
    status; any other exception is a ``500 internal`` whose detail says nothing of it, logged as one
    JSON record with its traceback as a field (never to the client)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Problem as exc:
            return exc.response()
        except TrazaError as err:
            return error_response(err)
        except StorageUnavailable as exc:
            return storage_response(exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise  # redirects and the like
            code = _HTTP_CODES.get(exc.status, Code.MALFORMED.value if exc.status < 500 else Code.INTERNAL.value)
            headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
            return problem(exc.status, code, exc.reason, headers)
        except Exception:
            get_logger().error("request.failed", listener=listener, method=request.method, path=request.path,
                       exc_info=True)
            return problem(500, Code.INTERNAL, "internal error; the node has logged it")

    return middleware


class PeerBackend(Protocol):
    """What the node provides to the peer server."""

    max_request: int

    @property
    def max_batch(self) -> int:
        """Envelopes one ``POST /v1/envelopes`` may carry (SPEC §11)."""

    def identify_peer(self, cert_der: bytes | None) -> str:
        """The node id of a client certificate, checked against the live manifest (revocation, node
        known); raises TrazaError otherwise."""

    def shed_load(self) -> float | None:
        """Seconds to put in Retry-After when the node refuses new work, else None."""

    async def receive_batch(self, peer: str, envelopes: list[msgspec.Raw]) -> list[Result]: ...

    async def refuse_batch(self, peer: str, err: TrazaError, envelopes: int | None) -> None:
        """A whole ``POST /v1/envelopes`` was refused (nothing of it kept): one durable audit entry."""

    def manifest_document(self) -> bytes: ...

    def manifest_etag(self) -> str:
        """The ``ETag`` of :meth:`manifest_document` (SPEC §4.4, 1.1)."""

    def checkpoint_text(self) -> str: ...

    async def consistency_proof(self, old: int, new: int) -> list[str]: ...

    async def witness_add_checkpoint(self, peer: str, body: bytes) -> tuple[int, str, bytes]: ...

    def peer_blobs(self) -> BlobStore:
        """The store of blobs as they travel (ciphertext when encrypted), for PUT/HEAD /v1/blobs."""

    async def peer_evidence(self, peer: str, jti: str) -> bytes:
        """``GET /v1/evidence/<jti>`` for ``peer``: this node's evidence bundle of the message; TrazaError
        ``policy_denied`` for a peer not on its route; Problem 409 before a checkpoint covers it."""

    def blob_stored(self, sha: str, length: int, source: str) -> None:
        """A blob upload completed (for logs and metrics)."""


def etag_matches(if_none_match: list[str], etag: str) -> bool:
    """RFC 9110 §13.1.2: does an ``If-None-Match`` field (each of its lines a comma-separated list of entity
    tags, or ``*``) name ``etag``? The comparison is weak: a ``W/`` prefix is ignored."""
    for line in if_none_match:
        for tag in line.split(","):
            tag = tag.strip()
            if tag == "*" or tag.removeprefix("W/") == etag:
                return True
    return False


def _peer_cert(request: web.Request) -> bytes | None:
    transport = request.transport
    if transport is None:
        return None
    sslobj = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return None
    der: bytes | None = sslobj.getpeercert(binary_form=True)
    return der


async def read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise TrazaError(Code.TOO_LARGE, f"request body of {request.content_length} bytes exceeds {limit}")
    # StreamReader.read(n) returns whatever has arrived (up to n bytes), not the whole body: read to EOF.
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise TrazaError(Code.TOO_LARGE, f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _blob_name(request: web.Request) -> str:
    return request.match_info["sha"]


async def receive_into(writer: BlobWriter, body: AsyncIterable[bytes]) -> None:
    """Stream ``body`` into ``writer``. Each piece read from the connection is hashed at once (hashlib
    releases the GIL) and gathered into batches of :data:`WRITE_BATCH` bytes; a thread appends each batch
    to the file while the event loop reads (TLS, HTTP parsing) and hashes the next, so they overlap.

    At most one batch is being written and one gathered: memory stays about ``2 * WRITE_BATCH`` whatever
    the blob's size. Every byte that arrived is written, also when the body fails (the sender went away).
    Errors of the writer (BlobTooLarge, OSError) and of the body are raised, and a cancellation too, but
    always once no thread is writing the file (the caller closes it next)."""
    loop = asyncio.get_running_loop()
    job: asyncio.Future[None] | None = None
    batch: list[bytes] = []
    size = 0
    try:
        async for piece in body:
            writer.hash(piece)
            batch.append(piece)
            size += len(piece)
            if size >= WRITE_BATCH:
                if job is not None:
                    await asyncio.shield(job)  # a cancellation must not leave the thread writing alone
                job = loop.run_in_executor(None, writer.append, batch)
                batch, size = [], 0
    finally:
        if job is not None:
            await _settle(job)
        if batch:  # what arrived is kept, also when the sender went away: a resume continues after it
            await _settle(loop.run_in_executor(None, writer.append, batch))


async def _open_writer(blobs: BlobStore, sha: str, total: int, start: int) -> BlobWriter:
    """``blobs.writer(...)`` on a thread: a resume first reads back and hashes the bytes already received
    (up to ``max_blob``, seconds for a few GiB), which must not stop the event loop. A cancellation waits
    for the thread, then releases the upload it opened (else the blob would stay busy)."""
    job = asyncio.get_running_loop().run_in_executor(None, blobs.writer, sha, total, start)
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        await _finished(job)
        if not job.cancelled() and job.exception() is None:
            job.result().close()
        raise


async def read_ahead(pieces: Iterator[bytes]) -> AsyncIterator[bytes]:
    """``pieces`` (a blocking reader, e.g. a file read around the page cache), each read on a thread while
    the caller sends the one before: the disk and the connection work at once, and the event loop never
    waits for the disk. One piece is read ahead, no more. An exception raised reading is raised here, in
    order. When the caller stops early (an error, a cancellation), the read in flight finishes before
    ``pieces`` is closed (its file and buffer are released on that thread's terms, never under it)."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead")
    nxt = pool.submit(next, pieces, None)
    try:
        while (piece := await asyncio.wrap_future(nxt)) is not None:
            nxt = pool.submit(next, pieces, None)
            yield piece
    finally:
        pool.shutdown(wait=False)
        try:
            if not nxt.done():
                await _settle(asyncio.wrap_future(nxt))
        except Exception:  # noqa: S110 - a read that failed after the caller stopped: nobody wants its piece
            pass
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()


async def _finished(job: asyncio.Future[Any]) -> bool:
    """Wait until the thread running ``job`` has finished, even through a cancellation of this task;
    True if one arrived meanwhile (the caller raises it once it has cleaned up)."""
    cancelled = False
    while not job.done():
        try:
            await asyncio.wait([job])
        except asyncio.CancelledError:
            cancelled = True
    return cancelled


async def _settle(job: asyncio.Future[Any]) -> None:
    """Wait until the thread running ``job`` has finished, even through a cancellation of this task
    (raised afterwards); then raise what the job raised."""
    if await _finished(job):
        raise asyncio.CancelledError
    job.result()


def blob_handlers(store: Callable[[], BlobStore], *, on_stored: Callable[[web.Request, str, int], None] | None = None,
                  shed_load: Callable[[], float | None] | None = None) -> tuple[Handler, Handler]:
    """``PUT`` and ``HEAD`` handlers for ``.../blobs/{sha}`` (SPEC §4.3), shared by the peer API and the
    local API. The body is streamed into the store while hashing: memory does not grow with the blob.

    PUT: ``Content-Length`` required (411); ``Content-Range: bytes <start>-<end>/<total>`` resumes at
    ``start`` (which must not be beyond the bytes received: 416 otherwise, with ``Traza-Received-Bytes``);
    201 stored, 200 already present, 202 when a range that does not reach the end was received; 422
    ``payload_mismatch`` when the bytes do not hash to the name (nothing is kept); 413 over ``max_blob``.
    HEAD: 200 with ``Traza-Received-Bytes`` (0 when nothing has arrived), ``Traza-Blob-Complete`` and,
    when complete, ``Content-Length`` of the blob.
    """

    async def put(request: web.Request) -> web.StreamResponse:
        blobs = store()
        sha = _blob_name(request)
        try:
            if blobs.has(sha):
                n = blobs.size(sha)
                return web.Response(status=200, body=_json.encode({"sha256": sha, "len": n}),
                                    content_type="application/json", headers={RECEIVED_HEADER: str(n)})
        except BadBlobName as exc:
            return problem(400, Code.MALFORMED, str(exc))
        if shed_load is not None and (retry := shed_load()) is not None:
            return problem(503, Code.OVERLOADED, "node is shedding load; retry later",
                           {"Retry-After": str(max(1, round(retry)))})
        length = request.content_length
        if length is None or "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            return problem(411, Code.MALFORMED, f"blob {sha}: Content-Length is required")
        crange = request.headers.get("Content-Range")
        if crange is None:
            start, total = 0, length
        else:
            m = _RANGE_RE.match(crange.strip())
            if not m:
                return problem(400, Code.MALFORMED, f"blob {sha}: Content-Range {crange!r} is not 'bytes <start>-<end>/<total>'")
            start, end, total = (int(g) for g in m.groups())
            if end < start or end >= total or end - start + 1 != length:
                return problem(400, Code.MALFORMED,
                               f"blob {sha}: Content-Range {crange!r} does not fit Content-Length {length}")
        try:
            writer = await _open_writer(blobs, sha, total, start)
        except BlobTooLarge as exc:
            return problem(413, Code.TOO_LARGE, str(exc))
        except BlobBusy as exc:
            return problem(409, Code.OVERLOADED, str(exc), {"Retry-After": "1"})
        except BadRange as exc:
            return problem(416, Code.MALFORMED, str(exc), {RECEIVED_HEADER: str(exc.received)})
        try:
            await receive_into(writer, request.content.iter_chunked(READ_CHUNK))
            if writer.received != start + length:
                return problem(400, Code.MALFORMED, f"blob {sha}: body ended after {writer.received - start} of {length} bytes",
                               {RECEIVED_HEADER: str(writer.received)})
            if not writer.complete:
                return web.Response(status=202, body=_json.encode({"sha256": sha, "received": writer.received, "total": total}),
                                    content_type="application/json", headers={RECEIVED_HEADER: str(writer.received)})
            try:
                await asyncio.to_thread(writer.commit)
            except DigestMismatch as exc:
                return problem(422, Code.PAYLOAD_MISMATCH, f"{exc}; nothing of it was kept", {RECEIVED_HEADER: "0"})
        except BlobTooLarge as exc:
            return problem(413, Code.TOO_LARGE, str(exc))
        except (ConnectionError, EOFError, http_exceptions.HttpProcessingError) as exc:
            # the sender went away: keep what arrived for its resume (nobody reads this answer)
            return problem(400, Code.MALFORMED, f"blob {sha}: upload interrupted ({type(exc).__name__}) after "
                           f"{writer.received} bytes", {RECEIVED_HEADER: str(writer.received)})
        finally:
            # keeps the received bytes for a resume unless committed or refused; what is still buffered
            # (up to 4 MiB) is written out on a thread, not on the event loop
            await _settle(asyncio.get_running_loop().run_in_executor(None, writer.close))
        if on_stored is not None:
            on_stored(request, sha, total)
        return web.Response(status=201, body=_json.encode({"sha256": sha, "len": total}),
                            content_type="application/json", headers={RECEIVED_HEADER: str(total)})

    async def head(request: web.Request) -> web.StreamResponse:
        blobs = store()
        sha = _blob_name(request)
        try:
            n = blobs.size(sha)
            received = n if n is not None else blobs.received(sha)
        except BadBlobName:
            return web.Response(status=400)
        headers = {RECEIVED_HEADER: str(received), COMPLETE_HEADER: "true" if n is not None else "false"}
        if n is not None:
            headers["Content-Length"] = str(n)  # the blob's length, as a GET would send
        return web.Response(status=200, headers=headers)

    return put, head


def http_request_bytes(request: web.Request) -> int:
    """The size of a received request's head as HTTP/1.1 text: request line, header lines, blank line."""
    v = request.version
    line = f"{request.method} {request.raw_path} HTTP/{v.major}.{v.minor}\r\n".encode()
    return len(line) + sum(len(k) + len(x) + 4 for k, x in request.raw_headers) + 2


def http_response_bytes(request: web.Request, resp: web.StreamResponse, body: int) -> int:
    """The size of a prepared response as HTTP/1.1 text: status line, header lines as sent, blank line, body."""
    v = request.version
    line = f"HTTP/{v.major}.{v.minor} {resp.status} {resp.reason}\r\n".encode()
    return len(line) + sum(len(k.encode()) + len(x.encode()) + 4 for k, x in resp.headers.items()) + 2 + body


def peer_app(backend: PeerBackend, *, on_denied: Callable[[web.Request, TrazaError], None] | None = None,
             extra_routes: Callable[[web.Application], None] | None = None,
             on_manifest: Callable[[int, int], None] | None = None) -> web.Application:
    """The peer API application: every route requires a known, unrevoked federation node.
    ``on_manifest(status, bytes)`` is called after each ``GET /v1/manifest`` answered, with the bytes of
    the HTTP exchange both ways (:func:`http_request_bytes` + :func:`http_response_bytes`)."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            request[PEER] = backend.identify_peer(_peer_cert(request))
        except TrazaError as err:
            if on_denied:
                on_denied(request, err)
            return problem(403, err.code, err.public_detail)
        try:
            return await handler(request)
        except TrazaError as err:
            return error_response(err)
        except StorageUnavailable as exc:
            return storage_response(exc)

    async def post_envelopes(request: web.Request) -> web.StreamResponse:
        retry = backend.shed_load()
        if retry is not None:
            return problem(503, Code.OVERLOADED, "node is shedding load; retry later",
                           {"Retry-After": str(max(1, round(retry)))})
        n: int | None = None
        try:
            body = await read_body(request, backend.max_request)
            try:
                batch = strictjson.decode(body, _batch_decoder, "request")
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise TrazaError(Code.MALFORMED, f"request: {exc}") from None
            n = len(batch.envelopes)
            # SPEC §4.1, §11: 1 to max_batch envelopes, enforced here too, not only by honest senders
            if n == 0:
                raise TrazaError(Code.MALFORMED, "request: envelopes is empty (a batch holds 1 to "
                                 f"{backend.max_batch} envelopes)")
            if n > backend.max_batch:
                raise TrazaError(Code.TOO_LARGE, f"request: {n} envelopes exceed max_batch {backend.max_batch}; "
                                 "nothing of it was kept")
        except TrazaError as err:
            await backend.refuse_batch(request[PEER], err, n)
            raise
        results = await backend.receive_batch(request[PEER], batch.envelopes)
        return web.Response(body=_json.encode(BatchResponse(results=results)), content_type="application/json")

    async def get_manifest(request: web.Request) -> web.StreamResponse:
        # SPEC §4.4 (1.1): a poller naming the manifest it holds gets 304 and no body
        etag = backend.manifest_etag()
        if etag_matches(request.headers.getall("If-None-Match", []), etag):
            resp, body = web.Response(status=304, headers={"ETag": etag}), b""
        else:
            body = backend.manifest_document()
            resp = web.Response(body=body, content_type="application/json", headers={"ETag": etag})
        if on_manifest is None:
            return resp
        await resp.prepare(request)  # the headers as they go out (Date, Server, Content-Length added)
        await resp.write_eof()
        on_manifest(resp.status, http_request_bytes(request) + http_response_bytes(request, resp, len(body)))
        return resp

    async def get_checkpoint(request: web.Request) -> web.StreamResponse:
        return web.Response(text=backend.checkpoint_text(), content_type="text/plain")

    async def get_consistency(request: web.Request) -> web.StreamResponse:
        # RFC 9162 §2.1.4: a proof between two trees of the log, 0 < old <= new
        new = int_param(request.query.get("new"), "new", lo=1)
        old = int_param(request.query.get("old"), "old", lo=1, hi=new)
        hashes = await backend.consistency_proof(old, new)
        return web.Response(body=_json.encode({"hashes": hashes}), content_type="application/json")

    async def post_witness(request: web.Request) -> web.StreamResponse:
        body = await read_body(request, 64 * 1024)
        status, ctype, out = await backend.witness_add_checkpoint(request[PEER], body)
        if status >= 400 and ctype.startswith("text/plain"):
            # C2SP tlog-witness fixes only the 409's body (the witness's size); other refusals are problems
            code = _WITNESS_CODES.get(status, Code.MALFORMED.value)
            return problem(status, code, out.decode("utf-8", "replace").strip())
        # the witness answers with a full media type ("text/plain; charset=utf-8"), which aiohttp only
        # accepts as a header, not as content_type
        return web.Response(status=status, body=out, headers={"Content-Type": ctype})

    async def get_evidence(request: web.Request) -> web.StreamResponse:
        data = await backend.peer_evidence(request[PEER], request.match_info["jti"])
        return web.Response(body=data, content_type="application/json")

    blob_put, blob_head = blob_handlers(
        lambda: backend.peer_blobs(),
        on_stored=lambda request, sha, n: backend.blob_stored(sha, n, f"peer:{request[PEER]}"),
        shed_load=lambda: backend.shed_load())

    app = web.Application(middlewares=[guard("peer"), authenticate], client_max_size=backend.max_request + 1)
    app.router.add_post("/v1/envelopes", post_envelopes)
    app.router.add_put("/v1/blobs/{sha}", blob_put)
    app.router.add_route("HEAD", "/v1/blobs/{sha}", blob_head)
    app.router.add_get("/v1/manifest", get_manifest)
    app.router.add_get("/v1/audit/checkpoint", get_checkpoint)
    app.router.add_get("/v1/audit/proof/consistency", get_consistency)
    app.router.add_post("/v1/witness/add-checkpoint", post_witness)
    app.router.add_get("/v1/evidence/{jti}", get_evidence)
    if extra_routes:
        extra_routes(app)
    return app


class PeerUnavailable(Exception):
    """The peer could not be reached or answered with a whole-request failure; retry later."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class BlobRefused(PeerUnavailable):
    """The peer refuses a blob for good (413: larger than its ``max_blob``): retrying cannot help, the
    message fails (dead letter, and an ``error`` to its origin)."""


class BatchTooLarge(PeerUnavailable):
    """The peer refuses a whole ``POST /v1/envelopes`` as too large (413: a body over its request limit, or
    more envelopes than its ``max_batch``; nothing of it was kept). The same request would be refused again:
    send fewer envelopes (``gateway.core.relay.split_after_too_large``); one refused alone never goes."""


ServerCheck = Callable[[bytes | None], CertRefusal | None]


class ServerRefused(ClientError):
    """The server's certificate failed the check made before anything is sent to it."""


class CheckedConnector(TCPConnector):
    """A connector that checks the server certificate each time it hands out a connection, new or kept
    alive, before the request (line, headers, body) is written. A connection whose certificate fails
    ``check`` (consulted afresh every time: it reads the manifest in force) is closed, never pooled
    again, and the request fails with ServerRefused."""

    def __init__(self, check: ServerCheck, **kw: Any) -> None:
        super().__init__(**kw)
        self._check = check

    async def connect(self, req: ClientRequest, traces: list[Any], timeout: ClientTimeout) -> Connection:
        conn = await super().connect(req, traces, timeout)
        transport = conn.transport
        sslobj = transport.get_extra_info("ssl_object") if transport is not None else None
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        refusal = self._check(der)
        if refusal is not None:
            conn.close()
            raise ServerRefused(f"server at {req.url.origin()} refused ({refusal.reason}): {refusal.detail}")
        return conn


# seconds a client keeps an idle connection to a peer: longer than the default manifest poll (30 s), so
# an unchanged-manifest poll (a 304) needs no new TLS handshake, and shorter than the servers' default
# keepalive_timeout (60 s), so the client, not the server, closes an idle connection
KEEPALIVE = 45.0


class PeerClient:
    """Keep-alive mTLS client to one peer. Before every request the server's certificate must name that
    peer with an ECDSA P-256 key, and pass ``check`` (the node's: the live manifest's revocation list);
    otherwise nothing is sent and the call fails with PeerUnavailable.

    A peer may have several endpoints (SPEC §2, 1.1: replicas of one node sharing one store): requests
    take them in turn (round robin), and a request that cannot reach one (connection refused, reset,
    timeout, TLS failure) is tried on the next before PeerUnavailable is raised. Re-sending a batch to
    another replica is safe: the receiving node deduplicates by message id. :attr:`endpoint` is the one
    that answered last (a blob upload resumes there)."""

    def __init__(self, peer: str, endpoint: str | Sequence[str], ssl_ctx: ssl.SSLContext, *, timeout: float = 30.0,
                 check: ServerCheck | None = None) -> None:
        self.peer = peer
        urls = [endpoint] if isinstance(endpoint, str) else list(endpoint)
        self.endpoints: tuple[str, ...] = tuple(dict.fromkeys(u.rstrip("/") for u in urls))
        if not self.endpoints:
            raise ValueError(f"{peer}: no endpoint")
        self.endpoint = self.endpoints[0]
        self._turn = 0
        self._ssl = ssl_ctx
        self._timeout = ClientTimeout(total=timeout, connect=min(10.0, timeout))
        self._session: ClientSession | None = None
        self._check: ServerCheck = check or (lambda der: node_cert_refusal(der, None, peer))
        # the ETag of the last manifest taken from this peer and applied (or already in force): the next
        # GET /v1/manifest names it in If-None-Match, and an unchanged manifest comes back as a bare 304
        self.manifest_etag: str | None = None

    def _sess(self) -> ClientSession:
        if self._session is None or self._session.closed:
            self._session = ClientSession(
                connector=CheckedConnector(self._check, ssl=self._ssl, limit=4, keepalive_timeout=KEEPALIVE),
                timeout=self._timeout,
                json_serialize=lambda o: _json.encode(o).decode(),
            )
        return self._session

    async def request(self, method: str, path: str, *, body: bytes | None = None,
                      content_type: str = "application/json", headers: dict[str, str] | None = None,
                      timeout: float | None = None) -> tuple[int, bytes, dict[str, str]]:
        h = {"Content-Type": content_type} if body is not None else {}
        h.update(headers or {})
        kw: dict[str, Any] = {}
        if timeout is not None:  # longer than the session's, e.g. while a recipient decrypts large blobs
            kw["timeout"] = ClientTimeout(total=timeout, connect=min(10.0, timeout))
        n = len(self.endpoints)
        start, self._turn = self._turn, (self._turn + 1) % n
        failures = []
        for i in range(n):
            url = self.endpoints[(start + i) % n]
            try:
                async with self._sess().request(method, url + path, data=body, headers=h, **kw) as resp:
                    data = await resp.read()
                    self.endpoint = url
                    return resp.status, data, dict(resp.headers)
            except (TimeoutError, ClientError, OSError, ssl.SSLError) as exc:
                failures.append(f"{url}: {type(exc).__name__}: {exc}" if n > 1 else f"{type(exc).__name__}: {exc}")
        raise PeerUnavailable(f"{self.peer}: {'; '.join(failures)}")

    async def get_manifest(self) -> tuple[bytes, str | None] | None:
        """``GET /v1/manifest`` (SPEC §4.4) with ``If-None-Match: <manifest_etag>`` once one is known:
        None when the peer answers 304 (the manifest is unchanged), else the body and its ETag (the
        caller sets :attr:`manifest_etag` to it once the manifest is applied). PeerUnavailable otherwise."""
        headers = {"If-None-Match": self.manifest_etag} if self.manifest_etag else None
        status, data, resp_headers = await self.request("GET", "/v1/manifest", headers=headers)
        if status == 304 and self.manifest_etag:
            return None
        if status != 200:
            raise PeerUnavailable(f"{self.peer}: GET /v1/manifest: HTTP {status}: {data[:200].decode('utf-8', 'replace')}")
        # header names are case-insensitive; aiohttp sends this one as "Etag"
        return data, next((v for k, v in resp_headers.items() if k.lower() == "etag"), None)

    async def get_evidence(self, jti: str) -> bytes:
        """``GET /v1/evidence/<jti>`` (SPEC §4.4, 1.1): the peer's evidence bundle of the message. TrazaError
        with the peer's code for a refusal it explains (403 policy_denied, 409 not_checkpointed, ...);
        PeerUnavailable when it cannot be asked."""
        status, data, _ = await self.request("GET", f"/v1/evidence/{jti}")
        if status == 200:
            return data
        try:
            doc = msgspec.json.decode(data)
            code, detail = Code(doc["code"]), str(doc.get("detail", ""))
        except (msgspec.DecodeError, KeyError, TypeError, ValueError):
            raise PeerUnavailable(f"{self.peer}: GET /v1/evidence: HTTP {status}: "
                                  f"{data[:200].decode('utf-8', 'replace')}") from None
        raise TrazaError(code, f"{self.peer}: {detail}")

    async def send_batch(self, envelopes: list[bytes], *, timeout: float | None = None) -> list[Result]:
        body = batch_body(envelopes)
        status, data, headers = await self.request("POST", "/v1/envelopes", body=body, timeout=timeout)
        if status == 200:
            try:
                return strictjson.decode(data, _response_decoder, "response").results
            except (msgspec.ValidationError, msgspec.DecodeError, TrazaError) as exc:
                raise PeerUnavailable(f"{self.peer}: unreadable response: {exc}") from None
        retry = None
        if status == 503:
            try:
                retry = float(headers.get("Retry-After", "1"))
            except ValueError:
                retry = 1.0
        detail = data[:300].decode("utf-8", "replace")
        if status == 413:
            n = len(envelopes)
            raise BatchTooLarge(f"{self.peer}: HTTP 413 to a request of {n} envelope{'s' if n != 1 else ''} "
                                f"({len(body)} bytes): {detail}")
        raise PeerUnavailable(f"{self.peer}: HTTP {status}: {detail}", retry_after=retry)

    async def blob_received(self, sha: str) -> tuple[int, bool]:
        """``HEAD /v1/blobs/<sha>``: (bytes the peer holds, complete?)."""
        status, _data, headers = await self.request("HEAD", f"/v1/blobs/{sha}")
        if status != 200:
            raise PeerUnavailable(f"{self.peer}: HEAD /v1/blobs/{sha}: HTTP {status}")
        try:
            received = int(headers.get(RECEIVED_HEADER, "0"))
        except ValueError:
            raise PeerUnavailable(f"{self.peer}: {RECEIVED_HEADER} {headers.get(RECEIVED_HEADER)!r} is not an integer") from None
        return received, headers.get(COMPLETE_HEADER) == "true"

    async def upload_blob(self, sha: str, path: Path, length: int,
                          progress: Callable[[int], None] | None = None) -> int:
        """Make sure the peer holds blob ``sha`` (the file ``path`` of ``length`` bytes): ask what it has
        (HEAD), then stream the rest (PUT with ``Content-Range`` when resuming). Returns the bytes sent
        (0 when the peer already had it). ``progress`` gets the bytes the peer holds so far.
        PeerUnavailable on any failure (retry later; the bytes that arrived are kept for the resume)."""
        received, complete = await self.blob_received(sha)
        if complete:
            if progress:
                progress(length)
            return 0
        if received > length:
            received = 0
        if progress:
            progress(received)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length - received)}
        if received:
            headers["Content-Range"] = f"bytes {received}-{length - 1}/{length}"

        async def body() -> AsyncIterator[bytes]:
            done = received
            async for piece in read_ahead(read_pieces(path, received, length - received, READ_CHUNK)):
                done += len(piece)
                yield piece
                if progress:
                    progress(done)

        timeout = ClientTimeout(total=None, connect=10, sock_read=120)
        try:
            async with self._sess().put(self.endpoint + f"/v1/blobs/{sha}", data=body(), headers=headers,
                                        timeout=timeout) as resp:
                data = await resp.read()
                status = resp.status
        except (TimeoutError, ClientError, OSError, ssl.SSLError) as exc:
            raise PeerUnavailable(f"{self.peer}: PUT /v1/blobs/{sha}: {type(exc).__name__}: {exc}") from None
        if status in (200, 201):
            return length - received
        detail = data[:300].decode("utf-8", "replace")
        if status == 413:
            raise BlobRefused(f"{self.peer} refuses blob {sha} of {length} bytes as too large: {detail}")
        raise PeerUnavailable(f"{self.peer}: PUT /v1/blobs/{sha}: HTTP {status}: {detail}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
