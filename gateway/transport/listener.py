"""Guarded listeners: the sockets of the peer, local and ops listeners (issue #10 items 5 and 7).

aiohttp's ``TCPSite`` hands the listening socket to ``loop.create_server(..., ssl=ctx)``; asyncio then hides
every failed TLS handshake (it logs them in debug mode only) and aiohttp holds a connection as long as
its client likes. Each listener here is served with ``loop.create_server`` and a protocol factory of its
own instead, which:

- caps the connections open at once (``max_connections``): one over the cap is closed as soon as it is
  accepted, before any TLS work or buffer is spent on it (refusal ``connection_limit``);
- for TLS listeners, wraps the aiohttp protocol in :class:`GuardedSSLProtocol`, a subclass of asyncio's
  ``SSLProtocol`` that observes the handshake: a failure is classified (:func:`classify_handshake_error`)
  and reported; a handshake that completes is then checked by the listener's ``check_peer`` (the peer
  listener's: a node of the manifest, ECDSA P-256, not revoked), and refused there before the HTTP layer
  sees a byte; a handshake that takes longer than ``handshake_timeout`` is aborted and reported;
- serves HTTP with :class:`GuardedRequestHandler`: the headers of a request must be complete within
  ``header_timeout`` of its first byte (of the connection, for the first request), a request body may not
  stall for ``body_timeout`` while the server waits for it, and an idle keep-alive connection is closed
  after ``keepalive_timeout`` (aiohttp's own timer);
- gives memory back to the system after a connection storm (:func:`release_memory`, glibc's
  ``malloc_trim``): the per-connection buffers are freed by Python, but glibc keeps the pages in its
  arenas, so without it a node stays at its peak size after a flood.

Refusals and timeouts go to the ``on_refused`` / ``on_timeout`` callbacks (the node counts them in metrics
and writes a rate-limited log line).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import ssl
from asyncio import sslproto
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.crypto.tls import CertRefusal


@dataclass(frozen=True)
class ListenLimits:
    """Seconds and counts of the ``[limits]`` config section that apply to every listener."""

    handshake_timeout: float = 10.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 60.0
    max_connections: int = 512


OnRefused = Callable[[str, str, str, str], None]  # listener, reason, remote address, detail
OnTimeout = Callable[[str, str, str], None]  # listener, phase (header|body), remote address
PeerCheck = Callable[[bytes | None], CertRefusal | None]

# OpenSSL reason names (ssl.SSLError.reason) -> reason class of traza_tls_refused_total
_SSL_REASONS = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no_certificate",
    "UNSUPPORTED_PROTOCOL": "protocol_version",
    "TLSV1_ALERT_PROTOCOL_VERSION": "protocol_version",
    "NO_SHARED_CIPHER": "no_shared_parameters",
    "NO_SHARED_GROUPS": "no_shared_parameters",
    "NO_SUITABLE_KEY_SHARE": "no_shared_parameters",
    "NO_SUITABLE_SIGNATURE_ALGORITHM": "no_shared_parameters",
    "NO_SHARED_SIGNATURE_ALGORITHMS": "no_shared_parameters",
    "WRONG_VERSION_NUMBER": "not_tls",
    "HTTP_REQUEST": "not_tls",
    "HTTPS_PROXY_REQUEST": "not_tls",
    "UNKNOWN_PROTOCOL": "not_tls",
    "RECORD_LAYER_FAILURE": "not_tls",
    "PACKET_LENGTH_TOO_LONG": "not_tls",
}
# X509_V_ERR_* codes of a client certificate that did not verify
_VERIFY_REASONS = {
    9: "not_yet_valid",  # CERT_NOT_YET_VALID
    10: "expired",  # CERT_HAS_EXPIRED
    2: "unknown_ca",  # UNABLE_TO_GET_ISSUER_CERT
    18: "unknown_ca",  # DEPTH_ZERO_SELF_SIGNED_CERT
    19: "unknown_ca",  # SELF_SIGNED_CERT_IN_CHAIN
    20: "unknown_ca",  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: "unknown_ca",  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
}


def classify_handshake_error(exc: BaseException | type[BaseException]) -> tuple[str, str]:
    """(reason class, detail) of a failed server-side handshake."""
    if isinstance(exc, type):  # asyncio passes the class ConnectionResetError on EOF during the handshake
        return "closed_in_handshake", "the client closed the connection during the handshake"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _VERIFY_REASONS.get(exc.verify_code, "bad_certificate"), f"client certificate: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or "")
        if reason.startswith("SSLV3_ALERT_") or reason.startswith("TLSV1_ALERT_"):
            cls = _SSL_REASONS.get(reason, "alert_from_client")
        else:
            cls = _SSL_REASONS.get(reason, "handshake_failed")
        return cls, f"{exc.library or 'SSL'}: {reason or exc}"
    if isinstance(exc, ConnectionError | EOFError):
        return "closed_in_handshake", f"{type(exc).__name__} during the handshake"
    return "handshake_failed", f"{type(exc).__name__}: {exc}"


# --- memory ---------------------------------------------------------------------------------------------


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        fn = ctypes.CDLL(None).malloc_trim  # glibc; absent elsewhere (musl): nothing to do then
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def release_memory() -> bool:
    """Free what the connections left in reference cycles (asyncio's transports and protocols point at each
    other: they are freed by the cycle collector, not when the connection closes), then return the free
    pages of every malloc arena to the system. False where there is no malloc_trim (not glibc)."""
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


# --- one listener ---------------------------------------------------------------------------------------


class Listener:
    """The guard of one listening socket: counts its connections, enforces the cap, reports refusals and
    timeouts, and trims memory after a storm. ``open`` is the number of connections open now."""

    # trim when at least this many connections came and went since the last trim and few are left
    TRIM_AFTER = 64

    def __init__(self, name: str, limits: ListenLimits, *, on_refused: OnRefused, on_timeout: OnTimeout,
                 check_peer: PeerCheck | None = None) -> None:
        self.name = name
        self.limits = limits
        self.on_refused = on_refused
        self.on_timeout = on_timeout
        self.check_peer = check_peer
        self.open = 0
        self.trims = 0
        self._peak = 0
        self._trim_handle: asyncio.TimerHandle | None = None
        self._transports: set[asyncio.Transport] = set()

    def refused(self, reason: str, remote: str, detail: str) -> None:
        self.on_refused(self.name, reason, remote, detail)

    def opened(self, transport: asyncio.Transport) -> None:
        self._transports.add(transport)

    def closed(self, transport: asyncio.Transport | None) -> None:
        if transport is not None:
            self._transports.discard(transport)
        self.open -= 1
        if self._peak - self.open >= self.TRIM_AFTER and self.open <= self._peak // 4 and self._trim_handle is None:
            self._trim_handle = asyncio.get_running_loop().call_later(1.0, self._trim)

    def _trim(self) -> None:
        self._trim_handle = None
        self._peak = self.open
        if release_memory():
            self.trims += 1

    def abort_all(self) -> None:
        """Close every connection still open (those in a handshake are not known to aiohttp)."""
        for t in list(self._transports):
            t.abort()
        if self._trim_handle is not None:
            self._trim_handle.cancel()
            self._trim_handle = None

    def factory(self, server: web.Server, ssl_ctx: ssl.SSLContext | None) -> Callable[[], asyncio.BaseProtocol]:
        """The protocol factory for ``loop.create_server``: a guarded TLS + HTTP stack per connection, or a
        refusal when the listener is full."""
        loop = asyncio.get_running_loop()
        lim = self.limits

        def make() -> asyncio.BaseProtocol:
            if self.open >= lim.max_connections:
                return _Refuse(self)
            self.open += 1
            self._peak = max(self._peak, self.open)
            http = GuardedRequestHandler(server, loop=loop, keepalive_timeout=lim.keepalive_timeout,
                                         access_log=None)
            http.guard = self
            if ssl_ctx is None:
                http.counted = True
                return http
            return GuardedSSLProtocol(self, loop, http, ssl_ctx)

        return make


class _Refuse(asyncio.Protocol):
    """A connection over the listener's cap: closed at once, nothing read, nothing allocated for it."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.listener.refused("connection_limit", _remote(transport),
                              f"{self.listener.limits.max_connections} connections already open")
        transport.abort()


def _remote(transport: asyncio.BaseTransport | None) -> str:
    peer = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
    return str(peer or "")


class _PeerRefused(ConnectionRefusedError):
    """Raised into SSLProtocol's failure path when a completed handshake's certificate is refused."""


# typeshed describes little of SSLProtocol's internals (its state, its SSL object, its timeouts' types), which
# this subclass works with: typed as Any, and tested against the real module (tests/attacks/)
_SSLProtocol: Any = sslproto.SSLProtocol


class GuardedSSLProtocol(_SSLProtocol):  # type: ignore[misc]
    """asyncio's server-side TLS protocol, observing its handshake (Python 3.11's ``sslproto``).

    The socket read buffer is 16 KiB during the handshake (asyncio allocates 256 KiB per connection,
    which is what 2,000 unauthenticated handshakes turned into half a gigabyte) and 64 KiB once the
    client is authenticated."""

    max_size = 16 * 1024
    MAX_SIZE_AUTHENTICATED = 64 * 1024

    def __init__(self, listener: Listener, loop: asyncio.AbstractEventLoop, app: asyncio.BaseProtocol,
                 ctx: ssl.SSLContext) -> None:
        t = listener.limits.handshake_timeout
        super().__init__(loop, app, ctx, None, server_side=True, ssl_handshake_timeout=t,
                         ssl_shutdown_timeout=t)
        self._listener = listener
        self._remote = ""
        self._reported = False
        self._raw: asyncio.Transport | None = None

    def _report(self, reason: str, detail: str) -> None:
        if not self._reported:
            self._reported = True
            self._listener.refused(reason, self._remote, detail)

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._remote = _remote(transport)
        self._raw = transport
        self._listener.opened(transport)
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._state == sslproto.SSLProtocolState.DO_HANDSHAKE:
            self._report("closed_in_handshake", "the connection was lost during the handshake")
        super().connection_lost(exc)
        self._listener.closed(self._raw)
        self._raw = None

    def _check_handshake_timeout(self) -> None:
        if self._state == sslproto.SSLProtocolState.DO_HANDSHAKE:
            self._report("handshake_timeout", f"no complete handshake within {self._ssl_handshake_timeout} s")
        super()._check_handshake_timeout()

    def _on_handshake_complete(self, handshake_exc: BaseException | type[BaseException] | None) -> None:
        if handshake_exc is None:
            check = self._listener.check_peer
            if check is not None:
                try:
                    refusal = check(self._sslobj.getpeercert(binary_form=True))
                except Exception as exc:  # fail closed: a check that breaks admits nobody
                    refusal = CertRefusal("handshake_failed", f"certificate check failed: {type(exc).__name__}: {exc}")
                if refusal is not None:
                    self._report(refusal.reason, refusal.detail)
                    handshake_exc = _PeerRefused(refusal.detail)
            if handshake_exc is None:
                self.max_size = self.MAX_SIZE_AUTHENTICATED
        else:
            self._report(*classify_handshake_error(handshake_exc))
        super()._on_handshake_complete(handshake_exc)


class GuardedRequestHandler(RequestHandler):
    """aiohttp's HTTP/1.1 connection handler with header and body timeouts (keep-alive is aiohttp's own).

    Header timeout: from the start of the connection (first request) or the first byte of a later request
    until the request's headers are parsed. Body timeout: while a request body is incomplete, the longest
    time with no byte from the client; time while this side has paused reading (flow control, the handler
    is busy writing what it read) does not count."""

    __slots__ = ("_g_body", "_g_body_handle", "_g_header_handle", "_g_last_rx", "counted", "guard")

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.guard: Listener | None = None
        self.counted = False  # plain listener: this handler is the connection (counted in the guard)
        self._g_header_handle: asyncio.TimerHandle | None = None
        self._g_body_handle: asyncio.TimerHandle | None = None
        self._g_body: Any = None
        self._g_last_rx = 0.0

    def _g_remote(self) -> str:
        t = self.transport
        return _remote(t) if t is not None else ""

    def _g_arm_header(self) -> None:
        if self._g_header_handle is None and self.guard is not None:
            self._g_header_handle = self._loop.call_later(self.guard.limits.header_timeout, self._g_header_expired)

    def _g_header_expired(self) -> None:
        self._g_header_handle = None
        if self.guard is not None:
            self.guard.on_timeout(self.guard.name, "header", self._g_remote())
        self.force_close()

    def _g_arm_body(self, at: float) -> None:
        if self._g_body_handle is not None:
            self._g_body_handle.cancel()
        self._g_body_handle = self._loop.call_at(at, self._g_body_check)

    def _g_body_check(self) -> None:
        self._g_body_handle = None
        body, guard = self._g_body, self.guard
        if body is None or body.is_eof() or guard is None or self.transport is None:
            self._g_body = None
            return
        now = self._loop.time()
        limit = guard.limits.body_timeout
        if self._reading_paused:  # we are not reading: the client is not to blame
            self._g_last_rx = now
        if now - self._g_last_rx >= limit:
            guard.on_timeout(guard.name, "body", self._g_remote())
            self.force_close()
            return
        self._g_arm_body(self._g_last_rx + limit)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.counted and self.guard is not None:
            assert isinstance(transport, asyncio.Transport)
            self.guard.opened(transport)
        self._g_last_rx = self._loop.time()
        self._g_arm_header()

    def data_received(self, data: bytes) -> None:
        # aiohttp itself feeds b"" as it drains its queue of parsed requests: no byte from the client,
        # so no new request (a handler slower than header_timeout is not a header trickler)
        if data:
            self._g_last_rx = self._loop.time()
            if self._g_body is None or self._g_body.is_eof():
                self._g_body = None
                self._g_arm_header()  # bytes of a new request
        before = self._request_count
        super().data_received(data)
        if self._request_count != before and self._messages:
            if self._g_header_handle is not None:  # its headers are complete
                self._g_header_handle.cancel()
                self._g_header_handle = None
            payload = self._messages[-1][1]
            if not payload.is_eof() and self.guard is not None:
                self._g_body = payload
                self._g_arm_body(self._g_last_rx + self.guard.limits.body_timeout)

    def connection_lost(self, exc: BaseException | None) -> None:
        for h in (self._g_header_handle, self._g_body_handle):
            if h is not None:
                h.cancel()
        self._g_header_handle = self._g_body_handle = None
        self._g_body = None
        transport = self.transport
        super().connection_lost(exc)
        if self.counted and self.guard is not None:
            self.counted = False
            self.guard.closed(transport)


class _GuardedSite(web.TCPSite):
    """A TCPSite that listens with the listener's own protocol factory (TLS handled by the factory)."""

    __slots__ = ("_factory",)

    def __init__(self, runner: web.BaseRunner, host: str, port: int,
                 factory: Callable[[], asyncio.BaseProtocol]) -> None:
        super().__init__(runner, host, port, reuse_address=True, backlog=512)
        self._factory = factory

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._factory, self._host, self._port, backlog=self._backlog,
                                                reuse_address=self._reuse_address)


async def serve(app: web.Application, host: str, port: int, ssl_ctx: ssl.SSLContext | None,
                listener: Listener) -> web.AppRunner:
    """Serve ``app`` on ``host:port`` through ``listener``'s guards; returns the runner (cleanup stops it)."""
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=listener.limits.keepalive_timeout)
    await runner.setup()
    server = runner.server
    assert server is not None
    site = _GuardedSite(runner, host, port, listener.factory(server, ssl_ctx))
    try:
        await site.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await runner.cleanup()
        raise
    return runner
