"""Forwarding: one outbox loop per peer, woken by ``_wake``. Each loop sends the due envelopes in queue
order (FIFO) behind a circuit breaker, once the peer holds the blobs they name, then settles the
results in one transaction: a verified ack dequeues, a rejection or expiry dead-letters (with an
error message back to the originator), anything else is retried later with jittered back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from functools import partial
from typing import Any

from gateway.core.envelope import (
    NO_REPLY_TYPES,
    decode_envelope,
    verify_ack,
)
from gateway.core.errors import TrazaError
from gateway.core.events import ReceiptOverdue
from gateway.core.relay import (
    BlobsRefused,
    PeerAnswered,
    PeerResult,
    PeerUnreachable,
    QueueExpired,
    Resend,
    Row,
)
from gateway.core.retry import CircuitBreaker
from gateway.crypto.keys import verifier_for
from gateway.crypto.tls import CertRefusal, node_cert_refusal
from gateway.node.blobs import _blob_refs
from gateway.node.state import _NodeState, _rfc3339
from gateway.store import relay as st
from gateway.store.crashpoints import crash_point
from gateway.transport.peer import PeerClient, PeerUnavailable, Result


class ForwardMixin(_NodeState):
    # --- forwarding ----------------------------------------------------------------------------------

    def _wake(self, peer: str) -> None:
        ev = self.wake.get(peer)
        if ev is None:
            ev = self.wake[peer] = asyncio.Event()
        ev.set()
        if peer not in self.forwarders and not self.stopping.is_set():
            # supervised: a failed read or write (disk full, I/O error) restarts the loop, never ends it
            self.forwarders[peer] = self._supervise(f"forward:{peer}", lambda: self._forward_loop(peer))

    def _client(self, peer: str) -> PeerClient:
        cl = self.clients.get(peer)
        node = self.fed.node(peer)
        if node is None:
            raise PeerUnavailable(f"{peer} is no longer in the manifest")
        if cl is None or cl.endpoint != node.endpoint.rstrip("/"):
            cl = self.clients[peer] = PeerClient(peer, node.endpoint, self.client_tls_context(),
                                                 check=partial(self._server_refusal, peer))
        return cl

    def _server_refusal(self, peer: str, cert_der: bytes | None) -> CertRefusal | None:
        """Checked before every request to ``peer`` (new or kept-alive connection), with the manifest in
        force at that moment: a certificate revoked since the connection was opened gets nothing more."""
        return node_cert_refusal(cert_der, self.fed, peer)

    async def _forward_loop(self, peer: str) -> None:
        ev = self.wake[peer]
        lim = self.cfg.limits
        breaker = self.breakers.setdefault(peer, CircuitBreaker(threshold=3, cooldown=lim.retry_min * 4,
                                                                max_cooldown=max(lim.retry_min * 4, lim.retry_max)))
        while not self.stopping.is_set():
            now = self.clock()
            # the queue to a peer is FIFO: when anything is due, send the oldest rows, so that after an
            # outage messages retried on jittered schedules still arrive in the order they were queued
            rows = await self.db.read(partial(st.due_fifo, peer=peer, now=now, limit=self.cfg.limits.max_batch))
            if not rows:
                nxt = await self.db.read(partial(st.next_due_at, peer=peer))
                ev.clear()
                timeout = None if nxt is None else max(0.01, nxt - self.clock())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ev.wait(), timeout=min(timeout, 5.0) if timeout else 5.0)
                continue
            if not breaker.allow(now):
                await asyncio.sleep(0.2)
                continue
            expired = [r for r in rows if r.exp <= now]
            live = [r for r in rows if r.exp > now]
            # (the error messages a dead letter sends back wake their own queue once committed)
            if expired:
                await self._decide(partial(self.relay.expired, QueueExpired(peer, _rows(expired)), now=now), now)
            if not live:
                continue
            live, blocked, pending, blob_err, blob_bytes, refused = self._push_blobs(peer, live)
            if refused:  # the peer will never take a blob these name (413): the messages fail, no retry
                t = self.clock()
                await self._decide(partial(self.relay.blobs_refused,
                                           BlobsRefused(peer, [(_row(r), why) for r, why in refused]), now=t), t)
            if blocked:
                breaker.failure(self.clock(), rand=random.random())
                self.count("blob_upload_failures")
                self.log.warning("blob.upload_failed", peer=peer, detail=(blob_err or "")[:300], queued=len(blocked))
                await self._retry_later(peer, blocked, blob_err or "blob upload failed", None)
            if not live:
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
                results = await self._client(peer).send_batch(
                    [r.envelope for r in live], timeout=30.0 + blob_bytes / (16 * 1024 * 1024) if blob_bytes else None)
            except PeerUnavailable as exc:
                breaker.failure(self.clock(), rand=random.random())
                self.metrics.peer_up.labels(peer).set(0)
                self.count("forward_failures")
                self.log.warning("peer.unavailable", peer=peer, detail=str(exc)[:200], queued=len(live))
                await self._retry_later(peer, live, str(exc), exc.retry_after)
                continue
            crash_point("forward.before_settle")
            breaker.success()
            self.metrics.hop_latency.labels(peer).observe(time.monotonic() - t0)
            self.metrics.peer_up.labels(peer).set(1)
            self.latency_samples.append(time.monotonic() - t0)
            if len(self.latency_samples) > 1000:
                del self.latency_samples[:500]
            t = self.clock()
            answered = self._check_answers(peer, live, results, t)
            await self._decide(partial(self.relay.answered, answered, now=t), t)

    async def _retry_later(self, peer: str, rows: list[st.OutboxRow], error: str, retry_after: float | None) -> None:
        """Per-message back-off with jitter (gateway.core.relay.Relay.unreachable)."""
        now = self.clock()
        event = PeerUnreachable(peer=peer, rows=_rows(rows), error=error, retry_after=retry_after,
                                rand=[random.random() for _ in rows])
        await self._decide(lambda _view: self.relay.unreachable(event, now), now)

    def _check_answers(self, peer: str, rows: list[st.OutboxRow], results: list[Result], now: float) -> PeerAnswered:
        """The peer's answers, each ack verified (signed by ``peer``, to us, for that envelope's token)."""
        by_jti = {r.jti: r for r in results}
        checked = []
        for row in rows:
            jti = row.jti
            res = by_jti.get(jti)
            if res is None:
                continue
            idx = error = None
            if res.status in ("accepted", "duplicate") and res.ack:
                try:
                    idx = verify_ack(res.ack, fed=self.fed, expected_iss=peer, expected_aud=self.id, jti=jti,
                                     token=decode_envelope(row.envelope).token, now=now,
                                     key_verifier=verifier_for).idx
                except TrazaError as err:
                    error = err.detail
            checked.append(PeerResult(jti=jti, status=res.status, ack=res.ack, ack_idx=idx, ack_error=error,
                                      code=res.error.code if res.error else None,
                                      detail=res.error.detail if res.error else None))
        return PeerAnswered(peer, [_row(r, blobs=True) for r in rows], checked)

    # --- receipt watchdog (issue #11) ------------------------------------------------------------------

    async def _receipt_watchdog_loop(self) -> None:
        """Mark this node's messages that were forwarded ``receipt_overdue`` seconds ago and still have no
        receipt or error: ``receipt.overdue`` audited once each, a timeline step, the metric."""
        timeout = self.cfg.limits.receipt_overdue
        while not self.stopping.is_set():
            await self.check_receipts(self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=min(30.0, max(0.05, timeout / 4)))

    async def check_receipts(self, now: float) -> list[str]:
        """One watchdog pass at ``now``: the ids newly marked overdue."""
        timeout = self.cfg.limits.receipt_overdue

        def fn(conn: sqlite3.Connection) -> list[str]:
            late = st.mark_overdue(conn, origin=self.id, forwarded_before=now - timeout, now=now,
                                   no_receipt=NO_REPLY_TYPES)
            for m in late:
                self.audit.stage(conn, [ReceiptOverdue(jti=m.jti, mt=m.mt, iss=m.iss, aud=m.aud, dig=m.dig,
                                                       to=m.next_hop, forwarded_at=_rfc3339(m.updated_at),
                                                       after_s=int(timeout))], now)
                st.add_timeline(conn, m.jti, "overdue", now, node=self.id,
                                detail=f"no receipt {int(now - m.updated_at)} s after it was forwarded")
            return [m.jti for m in late]

        late = await self.db.write(fn)
        for jti in late:
            self.log.warning("receipt.overdue", jti=jti, after_s=int(timeout))
        self.metrics.receipts_overdue.set(len(await self.db.read(st.overdue)))
        return late

    async def resend(self, jti: str, operator: str) -> dict[str, Any]:
        """Operator: offer an overdue message again to its first hop, the same envelope and ``jti`` (a hop
        that already holds it answers ``duplicate``; nothing is delivered twice). Audited, refusals too."""
        now = self.clock()
        # KeyError: no such message sent from this node
        await self._operator_decision(partial(self.relay.resend, Resend(jti=jti, operator=operator), now=now), now)
        m = await self.db.read(lambda c: st.get_message(c, jti))
        assert m is not None and m.next_hop is not None
        return {"jti": jti, "action": "resend", "peer": m.next_hop}

    async def _wake_all_outbox(self) -> None:
        for p in await self.db.read(st.outbox_peers):
            self._wake(p)


def _row(r: st.OutboxRow, *, blobs: bool = False) -> Row:
    """An outbox row as the relay's rules see it."""
    shas = tuple(ref.sha256 for ref in _blob_refs(r.envelope)) if blobs else ()
    return Row(jti=r.jti, attempts=r.attempts, exp=r.exp, blobs=shas)


def _rows(rows: list[st.OutboxRow]) -> list[Row]:
    return [_row(r) for r in rows]
