"""Outbound: the queues to the peers (issue #11: a composed service of the node).

One loop per next hop, woken by :meth:`Outbound.wake`, sends (with replicas of one node: claims with a
lease, then sends; docs/ha.md) the due envelopes in queue order (FIFO), as many as fit one request
(``max_batch`` envelopes and ``max_request`` bytes: gateway.core.relay.fit_batch; a peer that still refuses
a batch as too large gets it halved, and an envelope it refuses alone is dead-lettered), behind a circuit
breaker, once the peer holds the blobs they name (the blob pusher uploads them in tasks
of their own), then hands what happened to the relay's rules (gateway/core/relay.py): a verified ack
dequeues, a rejection or expiry dead-letters (with an error back to the origin), anything else is
retried with per-message jittered back-off. A purge loop deletes travelling blobs no live envelope names.

Pipelined settles (issue #17): once a batch's answers are checked, storing what they mean (the settle: a
dequeue, a retry, a dead letter, in one group commit) runs as a task of its own while the loop sends the
next batch; the rows of a batch still settling are not read again, and at most :data:`SETTLING` settles
are outstanding per peer. Batches still go one at a time, in queue order. A settle that fails re-raises
in the loop (which its supervisor restarts); its rows, still queued, are sent again and answered as
duplicates. A crash before a settle commits is the ``forward.before_settle`` case: the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import msgspec

from gateway.core import batchsig
from gateway.core.b64 import b64url_decode
from gateway.core.envelope import stored_token, verify_ack
from gateway.core.errors import TrazaError
from gateway.core.relay import (
    PeerAnswered,
    PeerResult,
    PeerUnreachable,
    QueueExpired,
    Row,
    TooLarge,
    batch_body_size,
    fit_batch,
    split_after_too_large,
)
from gateway.core.replicas import lease_end
from gateway.core.retry import CircuitBreaker
from gateway.crypto.keys import verifier_for
from gateway.crypto.tls import CertRefusal, node_cert_refusal
from gateway.node.services import Shared
from gateway.node.supervise import pause
from gateway.store import relay as st
from gateway.store.blobs import BlobError, BlobStore
from gateway.store.crashpoints import crash_point
from gateway.transport.peer import BatchTooLarge, BlobRefused, PeerClient, PeerUnavailable, Result

# settles of answered batches outstanding per peer while the next batch is sent (one in progress, one queued)
SETTLING = 2


class _BlobLite(msgspec.Struct):
    sha256: str
    len: int


class _BlobClaims(msgspec.Struct):
    blobs: list[_BlobLite] | None = None


_blob_claims = msgspec.json.Decoder(_BlobClaims)


def _blob_refs(envelope_bytes: bytes) -> list[_BlobLite]:
    """The ``blobs`` claim of a stored envelope (read without verifying or the strict JSON gate: it passed
    both when it was received or built)."""
    try:
        return _blob_claims.decode(b64url_decode(stored_token(envelope_bytes).split(".")[1])).blobs or []
    except (msgspec.DecodeError, msgspec.ValidationError, TrazaError, ValueError, IndexError):
        return []


class Outbound:
    """The queues to the peers, their clients and breakers, and the blob pusher."""

    def __init__(self, shared: Shared, *, blobs: BlobStore, client_tls: Callable[[], ssl.SSLContext]) -> None:
        self.s = shared
        self.blobs = blobs  # blobs as they travel
        self.client_tls = client_tls
        self.clients: dict[str, PeerClient] = {}
        self.breakers: dict[str, CircuitBreaker] = {}
        self.events: dict[str, asyncio.Event] = {}
        self.loops: dict[str, asyncio.Task[None]] = {}
        self.blobs_at: set[tuple[str, str]] = set()  # (peer, sha) known to be complete at the peer
        self.uploads: dict[tuple[str, str], asyncio.Task[int]] = {}  # blob uploads in progress
        self.upload_locks: dict[str, asyncio.Lock] = {}
        self.settling: dict[str, dict[asyncio.Task[Any], frozenset[str]]] = {}  # per peer: settle -> its jtis
        # per peer that refused a batch as too large (413): the request limit assumed for it since, below
        # our own max_request (the federation's default); kept while the node runs
        self.request_limits: dict[str, int] = {}
        # per peer: when and how the last exchange with it failed (the operator's views, docs/runbooks.md)
        self.last_error: dict[str, tuple[float, str]] = {}
        self.latency_samples: list[float] = []

    def wake(self, peer: str) -> None:
        """Something is queued for ``peer``: start its loop (supervised: a failed read or write restarts
        it, never ends it) or wake it."""
        ev = self.events.get(peer)
        if ev is None:
            ev = self.events[peer] = asyncio.Event()
        ev.set()
        if peer not in self.loops and not self.s.stopping.is_set():
            self.loops[peer] = self.s.supervise(f"forward:{peer}", lambda: self._loop(peer))

    async def wake_all(self) -> None:
        for p in await self.s.db.read(st.outbox_peers):
            self.wake(p)

    def client(self, peer: str) -> PeerClient:
        cl = self.clients.get(peer)
        node = self.s.fed.node(peer)
        if node is None:
            raise PeerUnavailable(f"{peer} is no longer in the manifest")
        if cl is None or cl.endpoints != node.urls:  # a manifest may move or add replicas
            cl = self.clients[peer] = PeerClient(peer, node.urls, self.client_tls(),
                                                 check=partial(self._server_refusal, peer))
        return cl

    def _server_refusal(self, peer: str, cert_der: bytes | None) -> CertRefusal | None:
        """Checked before every request to ``peer`` (new or kept-alive connection), with the manifest in
        force at that moment: a certificate revoked since the connection was opened gets nothing more."""
        return node_cert_refusal(cert_der, self.s.fed, peer)

    def tasks(self) -> list[asyncio.Task[Any]]:
        return [*self.loops.values(), *self.uploads.values(), *(t for s in self.settling.values() for t in s)]

    async def stop(self) -> None:
        """Stop the loops and uploads (the caller has set ``stopping``)."""
        for ev in self.events.values():
            ev.set()
        tasks = self.tasks()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def close(self) -> None:
        """Close the clients to the peers (after :meth:`stop`)."""
        for cl in self.clients.values():
            await cl.close()

    async def _loop(self, peer: str) -> None:
        ev = self.events[peer]
        lim = self.s.cfg.limits
        breaker = self.breakers.setdefault(peer, CircuitBreaker(threshold=3, cooldown=lim.retry_min * 4,
                                                                max_cooldown=max(lim.retry_min * 4, lim.retry_max)))
        settling = self.settling.setdefault(peer, {})
        while not self.s.stopping.is_set():
            await self._settled(settling, wait=len(settling) >= SETTLING)
            busy = frozenset().union(*settling.values())
            ev.clear()  # a wake-up from here on is seen by the waits below
            now = self.s.clock()
            # the queue to a peer is FIFO: when anything is due, send the oldest rows, so that after an
            # outage messages retried on jittered schedules still arrive in the order they were queued
            me = self.s.replica
            batch = self.s.cfg.limits.max_batch
            max_bytes = self.request_limits.get(peer, self.s.cfg.limits.max_request)
            if me is None:  # rows still settling are passed over without reading their envelopes
                rows = await self.s.db.read_now(partial(st.due_fifo, peer=peer, now=now, limit=batch, skip=busy,
                                                        max_bytes=max_bytes))
            else:  # replicas of one node: the rows this one may send, leased to it (docs/ha.md); rows still
                # settling are claimed again with the others (their lease renewed), then skipped
                rows = await self.s.db.write(partial(st.claim, peer=peer, me=me, now=now,
                                                     until=lease_end(now, self.s.cfg.store.lease),
                                                     limit=batch + len(busy), skip=busy, max_bytes=max_bytes))
                rows = rows[:batch]
            if busy and not rows:  # only rows whose answers are being stored: wait for that, or for new rows
                woken = asyncio.ensure_future(ev.wait())
                await asyncio.wait([woken, *settling], return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                continue
            if not rows:
                nxt = await self.s.db.read_now(partial(st.next_due_at, peer=peer) if me is None else
                                           partial(st.next_claim_at, peer=peer, me=me))
                # nothing is scheduled further ahead than the longest backoff (or a lease): rows that are
                # were scheduled before the clock moved back, and are due now (docs/reliability.md)
                horizon = max(self.s.cfg.limits.retry_max, self.s.cfg.store.lease) + 1.0
                if nxt is not None and nxt - now > horizon:
                    moved = await self.s.db.write(partial(st.pull_in, peer=peer, now=now, horizon=horizon))
                    self.s.log.warning("outbox.rescheduled", peer=peer, rows=moved,
                                       detail=f"scheduled {nxt - now:.0f} s ahead, beyond the longest backoff: "
                                              "the clock went back; due now")
                    continue
                timeout = None if nxt is None else max(0.01, nxt - self.s.clock())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ev.wait(), timeout=min(timeout, 5.0) if timeout else 5.0)
                continue
            expired = [r for r in rows if r.exp <= now]
            live = [r for r in rows if r.exp > now]
            # a request holds what fits the peer's request limit (SPEC §4.1, §11), sizes from the stored bytes
            live = live[:fit_batch([len(r.envelope) for r in live], max_bytes=max_bytes, max_count=batch)]
            # expired rows leave the queue whatever the peer's state (their error messages to the origin wake
            # their own queue once committed)
            if expired:
                await self.s.decide(partial(self.s.rules.expired, QueueExpired(peer, _rows(expired)), now=now), now)
            if not live:
                continue
            if not breaker.allow(now):
                await asyncio.sleep(0.2)
                continue
            live, blocked, pending, blob_err, blob_bytes, refused = self.push_blobs(peer, live)
            if refused:  # the peer will never take a blob these name (413): the messages fail, no retry
                t = self.s.clock()
                await self.s.decide(partial(self.s.rules.too_large,
                                           TooLarge(peer, [(_row(r), why) for r, why in refused]), now=t), t)
            if blocked:
                breaker.failure(self.s.clock(), rand=random.random())
                self.last_error[peer] = (self.s.clock(), (blob_err or "blob upload failed")[:300])
                self.s.count("blob_upload_failures")
                self.s.log.warning("blob.upload_failed", peer=peer, detail=(blob_err or "")[:300], queued=len(blocked))
                await self._retry_later(peer, blocked, blob_err or "blob upload failed", None)
            if not live:
                breaker.release()  # nothing was sent: a probe taken above is given back (else: "probing" for good)
                if pending:  # only envelopes whose blobs are still uploading: wait for an upload or a wake-up
                    ev.clear()
                    waits = [asyncio.ensure_future(ev.wait()), *pending]
                    await asyncio.wait(waits, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                    waits[0].cancel()
                continue
            t0 = time.monotonic()
            crash_point("forward.before_send")
            try:
                # a recipient decrypts the blobs before it acks: allow for that (at 16 MiB/s, beyond the usual 30 s)
                results = await self.client(peer).send_batch(
                    [r.envelope for r in live], timeout=30.0 + blob_bytes / (16 * 1024 * 1024) if blob_bytes else None)
            except BatchTooLarge as exc:  # the peer is up (its breaker closes: it answered, a probe too), and
                # would refuse this request again: send less
                breaker.success()
                self.s.metrics.peer_up.labels(peer).set(1)
                await self._too_large(peer, live, str(exc))
                continue
            except PeerUnavailable as exc:
                breaker.failure(self.s.clock(), rand=random.random())
                self.last_error[peer] = (self.s.clock(), str(exc)[:300])
                self.s.metrics.peer_up.labels(peer).set(0)
                self.s.count("forward_failures")
                self.s.log.warning("peer.unavailable", peer=peer, detail=str(exc)[:200], queued=len(live))
                await self._retry_later(peer, live, str(exc), exc.retry_after)
                continue
            crash_point("forward.before_settle")
            breaker.success()
            self.s.metrics.hop_latency.labels(peer).observe(time.monotonic() - t0)
            self.s.metrics.peer_up.labels(peer).set(1)
            self.latency_samples.append(time.monotonic() - t0)
            if len(self.latency_samples) > 1000:
                del self.latency_samples[:500]
            t = self.s.clock()
            answered = self._check_answers(peer, live, results, t)
            settle = asyncio.create_task(self.s.decide(partial(self.s.rules.answered, answered, now=t), t),
                                         name=f"settle:{peer}")
            settling[settle] = frozenset(r.jti for r in live)
            settle.add_done_callback(lambda _t: ev.set())  # its rows may be read again

    async def _too_large(self, peer: str, rows: list[st.OutboxRow], error: str) -> None:
        """``peer`` refused the batch of ``rows`` whole as too large (413; nothing of it was kept): halve the
        request limit assumed for it (gateway.core.relay.split_after_too_large), or, for one envelope
        refused alone, fail that message for good (a dead letter, and an error to its origin) so that the
        queue behind it moves on. Neither is a failure of the peer: no back-off, the next batch goes now."""
        sizes = [len(r.envelope) for r in rows]
        limit = split_after_too_large(sizes)
        if limit is not None:
            limit = min(limit, self.request_limits.get(peer, limit))
            self.request_limits[peer] = limit
            self.s.count("batches_split")
            self.s.log.warning("batch.too_large", peer=peer, envelopes=len(rows), bytes=batch_body_size(sizes),
                               max_bytes=limit, detail=error[:300])
            return
        why = f"{peer} refuses this envelope of {sizes[0]} bytes alone as too large: {error}"
        self.s.count("envelopes_too_large")
        self.s.log.warning("envelope.too_large", peer=peer, jti=rows[0].jti, bytes=sizes[0], detail=error[:300])
        t = self.s.clock()
        await self.s.decide(partial(self.s.rules.too_large, TooLarge(peer, [(_row(rows[0]), why)]), now=t), t)

    @staticmethod
    async def _settled(settling: dict[asyncio.Task[Any], frozenset[str]], *, wait: bool) -> None:
        """Forget the settles that are done, re-raising the first that failed (the loop restarts and its
        rows, still queued, go again); with ``wait``, first wait until one is done."""
        if wait and settling:
            await asyncio.wait(settling, return_when=asyncio.FIRST_COMPLETED)
        failed: BaseException | None = None
        for task in [t for t in settling if t.done()]:
            del settling[task]
            exc = None if task.cancelled() else task.exception()  # every one retrieved: no asyncio warning
            failed = failed or exc
        if failed is not None:
            raise failed

    async def _retry_later(self, peer: str, rows: list[st.OutboxRow], error: str, retry_after: float | None) -> None:
        """Per-message back-off with jitter (gateway.core.relay.Relay.unreachable)."""
        now = self.s.clock()
        event = PeerUnreachable(peer=peer, rows=_rows(rows), error=error, retry_after=retry_after,
                                rand=[random.random() for _ in rows])
        await self.s.decide(lambda _view: self.s.rules.unreachable(event, now), now)

    def _check_answers(self, peer: str, rows: list[st.OutboxRow], results: list[Result], now: float) -> PeerAnswered:
        """The peer's answers, each ack verified (signed by ``peer``, to us, for that envelope's token)."""
        by_jti = {r.jti: r for r in results}
        checked = []
        seen = batchsig.Seen()  # batched acks (protocol 1.1): the batch signature is verified once
        for row in rows:
            jti = row.jti
            res = by_jti.get(jti)
            if res is None:
                continue
            idx = error = None
            if res.status in ("accepted", "duplicate") and res.ack:
                try:
                    idx = verify_ack(res.ack, fed=self.s.fed, expected_iss=peer, expected_aud=self.s.here, jti=jti,
                                     dig=row.dig, now=now, key_verifier=verifier_for, seen=seen).idx
                except TrazaError as err:
                    error = err.detail
            checked.append(PeerResult(jti=jti, status=res.status, ack=res.ack, ack_idx=idx, ack_error=error,
                                      code=res.error.code if res.error else None,
                                      detail=res.error.detail if res.error else None))
        return PeerAnswered(peer, [_row(r, blobs=True) for r in rows], checked)

    def push_blobs(self, peer: str, rows: list[st.OutboxRow]) -> tuple[
            list[st.OutboxRow], list[st.OutboxRow], list[asyncio.Task[int]], str | None, int,
            list[tuple[st.OutboxRow, str]]]:
        """Before envelopes go to ``peer``, it must hold every blob they name. Uploads run as their own
        tasks (one at a time per peer), so envelopes without blobs are not held up behind a large file.
        Returns (rows ready to send, rows whose upload failed, uploads in progress, last error, bytes of
        the blobs the ready rows name, rows with a blob the peer refuses for good and why)."""
        ready: list[st.OutboxRow] = []
        blocked: list[st.OutboxRow] = []
        refused: list[tuple[st.OutboxRow, str]] = []
        refusals: dict[str, str] = {}  # sha -> why the peer refuses it for good
        pending: dict[str, asyncio.Task[int]] = {}
        error: str | None = None
        outcome: dict[str, bool | None] = {}  # True complete at the peer, False failed, None uploading
        ready_bytes = 0
        for row in rows:
            refs = _blob_refs(row.envelope)
            for ref in refs:
                if ref.sha256 in outcome:
                    continue
                if (peer, ref.sha256) in self.blobs_at:
                    outcome[ref.sha256] = True
                    done = self.uploads.get((peer, ref.sha256))
                    if done is not None and done.done():
                        del self.uploads[(peer, ref.sha256)]
                    continue
                task = self.uploads.get((peer, ref.sha256))
                if task is not None and task.done():
                    del self.uploads[(peer, ref.sha256)]
                    exc = None if task.cancelled() else task.exception()
                    if exc is None and not task.cancelled():
                        outcome[ref.sha256] = True
                        continue
                    outcome[ref.sha256] = False
                    error = str(exc) if exc is not None else "upload cancelled"
                    if isinstance(exc, BlobRefused):
                        refusals[ref.sha256] = str(exc)
                    continue
                if task is None:
                    task = asyncio.create_task(self._upload_blob(peer, ref.sha256, ref.len),
                                               name=f"blob:{peer}:{ref.sha256[:8]}")
                    self.uploads[(peer, ref.sha256)] = task
                outcome[ref.sha256] = None
                pending[ref.sha256] = task
            states = [outcome[r.sha256] for r in refs]
            why = next((refusals[r.sha256] for r in refs if r.sha256 in refusals), None)
            if why is not None:
                refused.append((row, why))
            elif all(states):
                ready.append(row)
                ready_bytes += sum(r.len for r in refs)
            elif False in states:
                blocked.append(row)
        return ready, blocked, list(pending.values()), error, ready_bytes, refused

    async def _upload_blob(self, peer: str, sha: str, length: int) -> int:
        """One blob to ``peer`` (HEAD, then PUT of what it lacks); wakes the forwarder when done either way."""
        lock = self.upload_locks.setdefault(peer, asyncio.Lock())
        try:
            async with lock:
                t0 = time.monotonic()
                try:
                    sent = await self.client(peer).upload_blob(sha, self.blobs.path(sha), length)
                except (OSError, BlobError) as exc:
                    raise PeerUnavailable(f"blob {sha}: {exc}") from None
                if len(self.blobs_at) > 10_000:
                    self.blobs_at.clear()
                self.blobs_at.add((peer, sha))
                if sent:
                    self.s.count("blob_bytes_sent", sent)
                    self.s.log.info("blob.uploaded", peer=peer, sha256=sha, len=length, sent=sent,
                                  seconds=round(time.monotonic() - t0, 3))
                return sent
        finally:
            if not self.s.stopping.is_set():
                self.wake(peer)

    async def purge_loop(self, interval: float = 600.0) -> None:
        """Delete blobs (as they travel) once every envelope naming them has expired, and uploads no
        envelope named after the longest TTL (docs/blobs.md)."""
        while not self.s.stopping.is_set():
            if await pause(self.s.stopping, interval):
                break
            try:
                gone = await asyncio.to_thread(self.blobs.purge, self.s.clock() - self.s.cfg.limits.clock_skew,
                                               float(self.s.cfg.limits.max_ttl))
            except OSError as exc:
                self.s.log.warning("blob.purge_failed", detail=str(exc)[:200])
                continue
            if gone:
                self.s.count("blobs_purged", len(gone))
                self.s.log.info("blob.purged", count=len(gone))


def _row(r: st.OutboxRow, *, blobs: bool = False) -> Row:
    """An outbox row as the relay's rules see it."""
    shas = tuple(ref.sha256 for ref in _blob_refs(r.envelope)) if blobs else ()
    return Row(jti=r.jti, attempts=r.attempts, exp=r.exp, blobs=shas)


def _rows(rows: list[st.OutboxRow]) -> list[Row]:
    return [_row(r) for r in rows]
