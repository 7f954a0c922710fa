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
from gateway.core.errors import Code, TrazaError
from gateway.core.retry import CircuitBreaker, next_attempt_at
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
            expired = [r for r in rows if r[4] <= now]
            live = [r for r in rows if r[4] > now]
            if expired:
                await self.db.write(partial(self._expire, rows=expired, peer=peer, now=now))
                await self._wake_all_outbox()  # the error messages it queued may go to a peer never woken
            if not live:
                continue
            live, blocked, pending, blob_err, blob_bytes, refused = self._push_blobs(peer, live)
            if refused:  # the peer will never take a blob these name (413): the messages fail, no retry
                await self.db.write(partial(self._refuse_rows, rows=refused, peer=peer, now=self.clock()))
                await self._wake_all_outbox()  # the error messages _give_up queued
            if blocked:
                breaker.failure(self.clock(), rand=random.random())
                self.count("blob_upload_failures")
                self.log.warning("blob.upload_failed", peer=peer, detail=(blob_err or "")[:300], queued=len(blocked))
                await self.db.write(partial(self._retry_later, rows=blocked, peer=peer, error=blob_err or "blob upload failed",
                                            now=self.clock(), retry_after=None))
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
                    [bytes(r[3]) for r in live], timeout=30.0 + blob_bytes / (16 * 1024 * 1024) if blob_bytes else None)
            except PeerUnavailable as exc:
                breaker.failure(self.clock(), rand=random.random())
                self.metrics.peer_up.labels(peer).set(0)
                self.count("forward_failures")
                self.log.warning("peer.unavailable", peer=peer, detail=str(exc)[:200], queued=len(live))
                await self.db.write(partial(self._retry_later, rows=live, peer=peer, error=str(exc), now=self.clock(),
                                            retry_after=exc.retry_after))
                continue
            crash_point("forward.before_settle")
            breaker.success()
            self.metrics.hop_latency.labels(peer).observe(time.monotonic() - t0)
            self.metrics.peer_up.labels(peer).set(1)
            self.latency_samples.append(time.monotonic() - t0)
            if len(self.latency_samples) > 1000:
                del self.latency_samples[:500]
            await self.db.write(partial(self._settle, rows=live, results=results, peer=peer, now=self.clock()))
            if any(r.status == "rejected" for r in results):
                await self._wake_all_outbox()  # the error messages _give_up queued

    def _retry_later(self, conn: sqlite3.Connection, rows: list[Any], peer: str, error: str, now: float,
                     retry_after: float | None) -> None:
        lim = self.cfg.limits
        for _seq, jti, attempts, _env, exp in rows:
            at = next_attempt_at(now, attempts + 1, exp, rand=random.random(), base=lim.retry_min, cap=lim.retry_max)
            if at is not None and retry_after:
                at = max(at, now + retry_after)
            if at is None or at >= exp:
                at = float(exp)  # one last look at expiry time, then it expires
            st.reschedule(conn, jti, at, error[:500])

    def _expire(self, conn: sqlite3.Connection, rows: list[Any], peer: str, now: float) -> None:
        for _seq, jti, _attempts, _env_bytes, _exp in rows:
            m = st.get_message(conn, jti)
            if m is None:
                continue
            fields = {"jti": jti, "mt": m.mt, "iss": m.iss, "aud": m.aud, "dig": m.dig, "from": self.id, "to": peer}
            self.audit.stage(conn, [{"event": "envelope.expired", **fields}], now)
            self._give_up(conn, m, peer, Code.EXPIRED, f"expired in the queue for {peer}", now)

    def _give_up(self, conn: sqlite3.Connection, m: st.StoredMessage, peer: str | None, code: Code, detail: str,
                 now: float) -> None:
        st.dead_letter(conn, m.jti, peer, code.value, detail, now)
        self._queued(-1)
        self.audit.stage(conn, [{"event": "envelope.dead_lettered", "jti": m.jti, "mt": m.mt, "iss": m.iss,
                                 "aud": m.aud, "dig": m.dig, "code": code.value, "to": peer}], now)
        st.set_state(conn, m.jti, "failed" if m.iss == self.id else "dead", now, node=self.id, detail=f"{code.value}: {detail}")
        if m.mt not in NO_REPLY_TYPES and m.iss != self.id:
            self._reply_in_txn(conn, mt="error", to=m.iss, irt=m.jti, cid=m.cid, now=now, source="node",
                               body={"for": m.jti, "code": code.value, "at": _rfc3339(now), "by": self.id,
                                     "detail": detail})

    def _refuse_rows(self, conn: sqlite3.Connection, rows: list[tuple[Any, str]], peer: str, now: float) -> None:
        for row, why in rows:
            m = st.get_message(conn, row[1])
            if m is not None:
                self._give_up(conn, m, peer, Code.TOO_LARGE, why[:500], now)

    def _settle(self, conn: sqlite3.Connection, rows: list[Any], results: list[Result], peer: str, now: float) -> None:
        by_jti = {r.jti: r for r in results}
        for _seq, jti, _attempts, env_bytes, _exp in rows:
            m = st.get_message(conn, jti)
            if m is None:
                continue
            res = by_jti.get(jti)
            token = decode_envelope(bytes(env_bytes)).token
            if res is None:
                st.reschedule(conn, jti, now + self.cfg.limits.retry_min, "no result for this envelope")
                continue
            if res.status in ("accepted", "duplicate") and res.ack:
                try:
                    ack = verify_ack(res.ack, fed=self.fed, expected_iss=peer, expected_aud=self.id, jti=jti,
                                     token=token, now=now, key_verifier=verifier_for)
                except TrazaError as err:
                    st.reschedule(conn, jti, now + self.cfg.limits.retry_min, f"invalid ack: {err.detail}")
                    continue
                st.dequeue(conn, jti)
                self.metrics.forwarded.labels(m.mt, peer, res.status).inc()
                self.audit.stage_evidence(conn, jti, ack=res.ack, keys=self._signing_keys(peer))
                self._queued(-1)
                self.audit.stage(conn, [{"event": "envelope.forwarded", "jti": jti, "mt": m.mt, "iss": m.iss,
                                         "aud": m.aud, "dig": m.dig, "from": self.id, "to": peer,
                                         "ack_idx": ack.idx}], now)
                conn.execute("UPDATE messages SET state='forwarded', updated_at=? WHERE jti=? AND state='queued'",
                             (now, jti))
                st.add_timeline(conn, jti, "forwarded", now, node=peer, detail=res.ack)
            elif res.status == "rejected" and res.error is not None and res.error.code == Code.BLOB_MISSING.value:
                # we uploaded its blobs, yet the peer lacks one (it lost it, or our record is stale): upload again
                for ref in _blob_refs(bytes(env_bytes)):
                    self._blobs_at.discard((peer, ref.sha256))
                st.reschedule(conn, jti, now + self.cfg.limits.retry_min, f"{peer}: {res.error.detail}"[:500])
            elif res.status == "rejected":
                rej = res.error
                self.metrics.forwarded.labels(m.mt, peer, "rejected").inc()
                code = Code(rej.code) if rej and rej.code in Code._value2member_map_ else Code.INTERNAL
                self._give_up(conn, m, peer, code, f"rejected by {peer}: {rej.detail if rej else ''}", now)
            else:
                st.reschedule(conn, jti, now + self.cfg.limits.retry_min, f"unexpected result {res.status}")


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
                self.audit.stage(conn, [{"event": "receipt.overdue", "jti": m.jti, "mt": m.mt, "iss": m.iss,
                                         "aud": m.aud, "dig": m.dig, "to": m.next_hop,
                                         "forwarded_at": _rfc3339(m.updated_at), "after_s": int(timeout)}], now)
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
        that already holds it answers ``duplicate``; nothing is delivered twice). Audited."""
        now = self.clock()

        def fn(conn: sqlite3.Connection) -> dict[str, Any]:
            m = st.get_message(conn, jti)
            refused = None
            if m is None or m.iss != self.id:
                raise TrazaError(Code.MALFORMED, f"no message {jti} sent from this node")
            if m.exp <= now:
                refused = f"message {jti} expired at {_rfc3339(m.exp)}; a signed expiry cannot be extended"
            elif m.state != "forwarded" or st.in_outbox(conn, jti):
                refused = f"message {jti} is {m.state}: only a forwarded message waiting for its receipt is resent"
            fields = {"event": "operator.action", "action": "message.resend", "operator": operator, "jti": jti,
                      "mt": m.mt, "iss": m.iss, "aud": m.aud, "dig": m.dig, "to": m.next_hop}
            if refused:
                self.audit.stage(conn, [{**fields, "outcome": "refused", "reason": refused}], now)
                return {"refused": refused, "expired": m.exp <= now}
            self.audit.stage(conn, [fields], now)
            assert m.next_hop is not None
            st.enqueue(conn, jti, m.next_hop, now)
            self._queued(+1)
            st.set_state(conn, jti, "queued", now, node=self.id, detail=f"resent by {operator}")
            return {"jti": jti, "action": "resend", "peer": m.next_hop}

        res = await self.db.write(fn)
        if "refused" in res:
            raise TrazaError(Code.EXPIRED if res["expired"] else Code.POLICY_DENIED, res["refused"])
        self._wake(res["peer"])
        return res

    async def _wake_all_outbox(self) -> None:
        for p in await self.db.read(st.outbox_peers):
            self._wake(p)
