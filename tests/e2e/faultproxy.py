"""A TCP proxy on 127.0.0.1 that loses answers, for end-to-end fault tests.

It relays bytes both ways without looking inside them (and counts them: ``bytes_up``, ``bytes_down``), so TLS (and the mTLS identities of both ends)
passes through unchanged. For the first ``cut_first`` connections it drops the answer: when bytes come
back from the upstream server *after* ``answered()`` has grown since the connection was opened (the
caller makes ``answered()`` count what the server durably answered, e.g. audit entries), the proxy
aborts both sides without forwarding those bytes. The client never sees the answer the server gave.

The proxy runs its own asyncio loop in a daemon thread, and stops by itself after ``lifetime`` seconds
if ``stop()`` was not called first.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable


class FaultProxy:
    def __init__(self, *, cut_first: int, answered: Callable[[], int], lifetime: float = 60.0) -> None:
        self.cut_first = cut_first
        self.answered = answered
        self.lifetime = lifetime
        self.target_port: int | None = None  # set before the first client connects
        self.connections = 0  # connections accepted
        self.cuts = 0  # answers dropped
        self.bytes_up = 0  # bytes relayed client -> server (TLS records included)
        self.bytes_down = 0  # bytes relayed server -> client
        self.errors: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._open: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)

    # --- control (from the test's thread) -----------------------------------------------------------

    def start(self) -> int:
        """Bind a free port on 127.0.0.1 and serve; returns the port."""
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start within 10 s")
        if self.errors:
            raise RuntimeError(f"fault proxy failed to start: {self.errors[0]}")
        return self.port

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    # --- the proxy's loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        except OSError as exc:
            self.errors.append(f"bind 127.0.0.1: {exc}")
            self._ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.lifetime)
            server.close()
            for t in list(self._open):  # keep-alive connections still relaying
                t.cancel()
            await asyncio.gather(*self._open, return_exceptions=True)

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._open.add(task)
        try:
            await self._relay(c_reader, c_writer)
        finally:
            self._open.discard(task)
            c_writer.transport.abort()

    async def _relay(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        n = self.connections
        self.connections += 1
        if self.target_port is None:
            self.errors.append(f"connection {n}: no target port set")
            c_writer.transport.abort()
            return
        try:
            u_reader, u_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError as exc:
            self.errors.append(f"connection {n}: upstream 127.0.0.1:{self.target_port}: {exc}")
            c_writer.transport.abort()
            return
        sabotage = n < self.cut_first
        baseline = self.answered() if sabotage else 0

        def abort_both() -> None:
            c_writer.transport.abort()
            u_writer.transport.abort()

        async def upstream() -> None:  # client -> server, always whole
            while data := await c_reader.read(65536):
                self.bytes_up += len(data)
                u_writer.write(data)
                await u_writer.drain()
            with contextlib.suppress(OSError):
                u_writer.write_eof()

        async def downstream() -> None:  # server -> client, the answer dropped when sabotaged
            while data := await u_reader.read(65536):
                if sabotage and self.answered() > baseline:
                    self.cuts += 1
                    abort_both()
                    return
                self.bytes_down += len(data)
                c_writer.write(data)
                await c_writer.drain()
            with contextlib.suppress(OSError):
                c_writer.write_eof()

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            abort_both()
