"""Peer API over mutual TLS (SPEC §4): the server routes and the client that talks to one peer.

This is the one place where aiohttp errors become Traza errors. The server identifies the caller by the
SAN URI of its client certificate and asks the node (``PeerBackend``) to check it against the live
manifest on every request, so a revocation applies without a restart.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

from gateway.core.errors import HTTP_STATUS, Code, TrazaError
from gateway.crypto.tls import peer_node_id

PROBLEM = "application/problem+json"


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
    return problem(HTTP_STATUS.get(err.code, 400), err.code, err.public_detail, headers)


class PeerBackend(Protocol):
    """What the node provides to the peer server."""

    max_request: int

    def identify_peer(self, cert_der: bytes | None) -> str:
        """The node id of a client certificate, checked against the live manifest (revocation, node
        known); raises TrazaError otherwise."""

    def shed_load(self) -> float | None:
        """Seconds to put in Retry-After when the node refuses new work, else None."""

    async def receive_batch(self, peer: str, envelopes: list[msgspec.Raw]) -> list[Result]: ...

    def manifest_document(self) -> bytes: ...

    def checkpoint_text(self) -> str: ...

    async def consistency_proof(self, old: int, new: int) -> list[str]: ...

    async def witness_add_checkpoint(self, peer: str, body: bytes) -> tuple[int, str, bytes]: ...


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


def peer_app(backend: PeerBackend, *, on_denied: Callable[[web.Request, TrazaError], None] | None = None,
             extra_routes: Callable[[web.Application], None] | None = None) -> web.Application:
    """The peer API application: every route requires a known, unrevoked federation node."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            request["peer"] = backend.identify_peer(_peer_cert(request))
        except TrazaError as err:
            if on_denied:
                on_denied(request, err)
            return problem(403, err.code, err.public_detail)
        try:
            return await handler(request)
        except TrazaError as err:
            return error_response(err)

    async def post_envelopes(request: web.Request) -> web.StreamResponse:
        retry = backend.shed_load()
        if retry is not None:
            return problem(503, Code.OVERLOADED, "node is shedding load; retry later",
                           {"Retry-After": str(max(1, round(retry)))})
        body = await read_body(request, backend.max_request)
        try:
            batch = _batch_decoder.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise TrazaError(Code.MALFORMED, f"request: {exc}") from None
        results = await backend.receive_batch(request["peer"], batch.envelopes)
        return web.Response(body=_json.encode(BatchResponse(results=results)), content_type="application/json")

    async def get_manifest(request: web.Request) -> web.StreamResponse:
        return web.Response(body=backend.manifest_document(), content_type="application/json")

    async def get_checkpoint(request: web.Request) -> web.StreamResponse:
        return web.Response(text=backend.checkpoint_text(), content_type="text/plain")

    async def get_consistency(request: web.Request) -> web.StreamResponse:
        try:
            old, new = int(request.query["old"]), int(request.query["new"])
        except (KeyError, ValueError):
            raise TrazaError(Code.MALFORMED, "query needs integers old and new") from None
        hashes = await backend.consistency_proof(old, new)
        return web.Response(body=_json.encode({"hashes": hashes}), content_type="application/json")

    async def post_witness(request: web.Request) -> web.StreamResponse:
        body = await read_body(request, 64 * 1024)
        status, ctype, out = await backend.witness_add_checkpoint(request["peer"], body)
        # the witness answers with a full media type ("text/plain; charset=utf-8"), which aiohttp only
        # accepts as a header, not as content_type
        return web.Response(status=status, body=out, headers={"Content-Type": ctype})

    app = web.Application(middlewares=[authenticate], client_max_size=backend.max_request + 1)
    app.router.add_post("/v1/envelopes", post_envelopes)
    app.router.add_get("/v1/manifest", get_manifest)
    app.router.add_get("/v1/audit/checkpoint", get_checkpoint)
    app.router.add_get("/v1/audit/proof/consistency", get_consistency)
    app.router.add_post("/v1/witness/add-checkpoint", post_witness)
    if extra_routes:
        extra_routes(app)
    return app


class PeerUnavailable(Exception):
    """The peer could not be reached or answered with a whole-request failure; retry later."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class PeerClient:
    """Keep-alive mTLS client to one peer. The server must present a certificate naming that peer."""

    def __init__(self, peer: str, endpoint: str, ssl_ctx: ssl.SSLContext, *, timeout: float = 30.0) -> None:
        self.peer = peer
        self.endpoint = endpoint.rstrip("/")
        self._ssl = ssl_ctx
        self._timeout = ClientTimeout(total=timeout, connect=min(10.0, timeout))
        self._session: ClientSession | None = None

    def _sess(self) -> ClientSession:
        if self._session is None or self._session.closed:
            self._session = ClientSession(
                connector=TCPConnector(ssl=self._ssl, limit=4, keepalive_timeout=30),
                timeout=self._timeout,
                json_serialize=lambda o: _json.encode(o).decode(),
            )
        return self._session

    def _check_server(self, resp: Any) -> None:
        """Refuse a server whose certificate names another node. aiohttp may already have released a
        connection whose small response it read whole; then the peer's signed ack (checked by the
        caller against the expected peer's manifest key) is what proves who accepted the envelope."""
        conn = resp.connection
        sslobj = conn.transport.get_extra_info("ssl_object") if conn and conn.transport else None
        if sslobj is None:
            return
        der = sslobj.getpeercert(binary_form=True)
        if der is None or peer_node_id(der) != self.peer:
            raise PeerUnavailable(f"server at {self.endpoint} is not {self.peer!r} (certificate identity)")

    async def request(self, method: str, path: str, *, body: bytes | None = None,
                      content_type: str = "application/json", headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        h = {"Content-Type": content_type} if body is not None else {}
        h.update(headers or {})
        try:
            async with self._sess().request(method, self.endpoint + path, data=body, headers=h) as resp:
                self._check_server(resp)
                data = await resp.read()
                return resp.status, data, dict(resp.headers)
        except (TimeoutError, ClientError, OSError, ssl.SSLError) as exc:
            raise PeerUnavailable(f"{self.peer}: {type(exc).__name__}: {exc}") from None

    async def send_batch(self, envelopes: list[bytes]) -> list[Result]:
        body = b'{"envelopes":[' + b",".join(envelopes) + b"]}"
        status, data, headers = await self.request("POST", "/v1/envelopes", body=body)
        if status == 200:
            try:
                return _response_decoder.decode(data).results
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise PeerUnavailable(f"{self.peer}: unreadable response: {exc}") from None
        retry = None
        if status == 503:
            try:
                retry = float(headers.get("Retry-After", "1"))
            except ValueError:
                retry = 1.0
        detail = data[:300].decode("utf-8", "replace")
        raise PeerUnavailable(f"{self.peer}: HTTP {status}: {detail}", retry_after=retry)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
