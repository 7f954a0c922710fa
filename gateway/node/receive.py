"""Receiving envelopes from peers: the relay pipeline of SPEC §4.1–§4.2.

``receive_batch`` runs the pure checks of ``gateway.core.envelope`` (steps 1–9) on each envelope of a
batch, checks and (at the recipient) decrypts the blobs they name, then commits the batch in one
group-committed ``Database.write``: the replay check, the stored message with its audit entry and
evidence, the signed ack (steps 10–12), and either the outbox row to the next hop or local delivery
(inbox, or the state change a receipt or error message brings).
"""

from __future__ import annotations

import asyncio
import sqlite3

import msgspec

from gateway.core import strictjson
from gateway.core.b64 import b64url_decode
from gateway.core.envelope import (
    Verified,
    append_hop,
    encode_envelope,
    make_ack,
    verify_envelope,
)
from gateway.core.errors import Code, TrazaError
from gateway.core.messages import MESSAGE_TYPES, decode_body
from gateway.core.policy import ANSWER_TYPES, Answer, Sent, check_answer
from gateway.crypto.keys import verifier_for
from gateway.node.state import _NodeState
from gateway.store import relay as st
from gateway.store.blobs import BlobError
from gateway.store.crashpoints import crash_point
from gateway.transport.peer import ErrorBody as EB
from gateway.transport.peer import Result


class ReceiveMixin(_NodeState):
    # --- receiving (SPEC §4.1, §4.2) -----------------------------------------------------------------

    def _open_payload(self, ct: bytes, info: bytes, kid: str) -> bytes:
        key = self.enc_keys.get(kid)
        if key is None:
            raise TrazaError(Code.DECRYPT_FAILED, f"no private key for {kid}")
        return key.open(ct, info)

    def _verify(self, raw: bytes, peer: str | None, now: float) -> Verified:
        return verify_envelope(
            raw,
            here=self.id,
            peer=peer,
            fed=self.fed,
            now=now,
            key_verifier=verifier_for,
            known_types=MESSAGE_TYPES,
            limits=self.limits,
            open_payload=self._open_payload,
            decode_body=decode_body,
        )

    async def receive_batch(self, peer: str, raws: list[msgspec.Raw]) -> list[Result]:
        now = self.clock()
        checked: list[Verified | tuple[TrazaError, str | None]] = []
        for raw in raws:
            try:
                ver = self._verify(bytes(raw), peer, now)
            except TrazaError as err:
                checked.append((err, _best_effort_jti(bytes(raw))))
                continue
            try:
                if ver.claims.blobs:
                    self._check_blobs(ver)
                checked.append(ver)
            except TrazaError as err:
                err.jti = ver.claims.jti  # the envelope itself verified
                checked.append((err, ver.claims.jti))
        for i, item in enumerate(checked):
            if isinstance(item, Verified) and item.claims.blobs and item.next_hop is None:
                try:  # recipient: decrypt the blobs for the national system (off the event loop)
                    await asyncio.to_thread(self._open_blobs, item)
                except TrazaError as err:
                    err.jti = item.claims.jti
                    checked[i] = (err, item.claims.jti)
                except BlobError as exc:  # e.g. a message id that cannot name an index file
                    checked[i] = (TrazaError(Code.MALFORMED, f"blobs of {item.claims.jti[:64]}: {exc}"), None)
                except OSError as exc:
                    checked[i] = (TrazaError(Code.INTERNAL, f"blobs of {item.claims.jti}: {exc}", jti=item.claims.jti),
                                  item.claims.jti)
        results = await self.db.write(lambda conn: self._commit_received(conn, peer, checked, now))
        crash_point("receive.after_commit")
        for v in checked:
            if isinstance(v, Verified):
                if v.next_hop:
                    self._wake(v.next_hop)
                else:
                    self.inbox_event.set()
        for item, r in zip(checked, results, strict=True):
            mt = item.claims.mt if isinstance(item, Verified) else "unknown"
            self.metrics.received.labels(mt, peer, r.status).inc()
            self.count(f"envelopes_{r.status}")
            self.log.info("envelope", jti=r.jti, peer=peer, status=r.status,
                          code=r.error.code if r.error else None)
        return results

    @property
    def max_batch(self) -> int:
        return self.cfg.limits.max_batch

    async def refuse_batch(self, peer: str, err: TrazaError, envelopes: int | None) -> None:
        """A whole batch refused before any envelope was looked at: one audit entry, durable before the
        answer, and nothing else kept (SPEC §4.1, §11)."""
        now = self.clock()
        event = {"event": "envelope.rejected", "from": peer, "to": self.id, "code": err.code.value,
                 "detail": err.detail, **({"envelopes": envelopes} if envelopes is not None else {})}
        await self.db.write(lambda conn: self.audit.stage(conn, [event], now))
        self.metrics.received.labels("batch", peer, "rejected").inc()
        self.log.warning("batch.rejected", peer=peer, code=err.code.value, envelopes=envelopes)

    def _commit_received(self, conn: sqlite3.Connection, peer: str,
                         checked: list[Verified | tuple[TrazaError, str | None]], now: float) -> list[Result]:
        out: list[Result] = []
        seen: dict[str, Result] = {}
        for item in checked:
            if not isinstance(item, Verified):
                err, jti = item
                # only a verified message id indexes the entry (and so the message's evidence); an id read
                # from an envelope that did not verify is recorded as a claim (issue #10 item 9)
                ids = {"jti": err.jti} if err.jti is not None else {"claimed_jti": jti} if jti is not None else {}
                self.audit.stage(conn, [{"event": "envelope.rejected", **ids, "from": peer, "to": self.id,
                                         "code": err.code.value, "detail": err.detail}], now)
                out.append(Result(jti=jti, status="rejected", error=EB(code=err.code.value, detail=err.public_detail)))
                continue
            v = item
            c = v.claims
            if c.jti in seen:
                out.append(seen[c.jti])
                continue
            if v.next_hop is None and c.mt in ANSWER_TYPES:
                try:  # SPEC §5 "Who may answer": refused answers change no state
                    self._check_answer(conn, v)
                except TrazaError as err:
                    self.audit.stage(conn, [{"event": "envelope.rejected", **self._msg_fields(v), "from": peer,
                                             "to": self.id, "for": v.body.for_, "code": err.code.value,
                                             "detail": err.detail}], now)
                    out.append(Result(jti=c.jti, status="rejected",
                                      error=EB(code=err.code.value, detail=err.public_detail)))
                    continue
            existing = st.get_message(conn, c.jti)
            if existing is not None:
                if existing.dig == v.dig and existing.ack is not None:
                    self.audit.stage(conn, [{"event": "envelope.duplicate", **self._msg_fields(v), "from": peer,
                                             "to": self.id}], now)
                    out.append(Result(jti=c.jti, status="duplicate", ack=existing.ack))
                else:
                    detail = "message id already used by a different envelope"
                    self.audit.stage(conn, [{"event": "envelope.rejected", **self._msg_fields(v), "from": peer,
                                             "to": self.id, "code": Code.MALFORMED.value, "detail": detail}], now)
                    out.append(Result(jti=c.jti, status="rejected", error=EB(code="malformed", detail=detail)))
                continue
            res = self._store_accepted(conn, v, peer, now)
            seen[c.jti] = res
            out.append(res)
        crash_point("receive.before_commit")
        return out

    def _check_answer(self, conn: sqlite3.Connection, v: Verified) -> None:
        """SPEC §5 "Who may answer" for a receipt or error addressed to this node (gateway.core.policy)."""
        c, body = v.claims, v.body
        m = st.get_message(conn, body.for_)
        sent = Sent(jti=m.jti, iss=m.iss, aud=m.aud, dig=m.dig) if m is not None else None
        nodes = self.fed.nodes
        route = self.fed.route(m.iss, m.aud) if m is not None and m.iss in nodes and m.aud in nodes else []
        check_answer(Answer(mt=c.mt, jti=c.jti, iss=c.iss, aud=c.aud, irt=c.irt, for_=body.for_,
                            dig=getattr(body, "dig", None), by=getattr(body, "by", None)),
                     sent, here=self.id, route=route)

    def _store_accepted(self, conn: sqlite3.Connection, v: Verified, peer: str, now: float) -> Result:
        c = v.claims
        env = v.envelope
        if v.next_hop is not None:
            env = append_hop(env, signer=self.signer, here=self.id, jti=c.jti, came_from=peer, to=v.next_hop,
                             received_at=now)
        (idx,) = self.audit.stage(conn, [{"event": "envelope.accepted", **self._msg_fields(v), "from": peer,
                                         "to": v.next_hop or self.id}], now)
        ack = make_ack(self.signer, here=self.id, peer=peer, jti=c.jti, token=env.token, idx=idx, now=now)
        self.audit.stage_evidence(conn, c.jti, envelope={"token": env.token, "hops": list(env.hops)}, ack=ack,
                                  keys=self._signing_keys(c.iss, *(h.iss for h in v.hops), self.id))
        for b in c.blobs or []:
            self.blobs.note_expiry(b.sha256, c.exp)
        local = v.next_hop is None
        state = "received" if local else "queued"
        data = encode_envelope(env)
        st.insert_message(conn, st.StoredMessage(
            jti=c.jti, dig=v.dig, mt=c.mt, iss=c.iss, aud=c.aud, cid=c.cid, irt=c.irt, cls=c.cls, exp=c.exp,
            envelope=data, size=len(data), received_from=peer, received_at=now, ack=ack, ack_idx=idx,
            state=state, next_hop=v.next_hop, updated_at=now))
        st.add_timeline(conn, c.jti, "accepted", now, node=self.id, detail=f"from {peer}")
        if local:
            self._deliver_locally(conn, v, now)
        else:
            assert v.next_hop is not None
            st.enqueue(conn, c.jti, v.next_hop, now)
            self._queued(+1)
        return Result(jti=c.jti, status="accepted", ack=ack)

    def _deliver_locally(self, conn: sqlite3.Connection, v: Verified, now: float) -> None:
        """Recipient side: receipts and errors update our own messages; the rest goes to the inbox."""
        c = v.claims
        body = v.body
        if c.mt == "receipt":
            target = body.for_
            # recorded under the message the receipt is for, so that message's evidence includes it
            self.audit.stage(conn, [{"event": "receipt.received", "jti": target, "mt": c.mt, "iss": c.iss,
                                     "aud": c.aud, "dig": v.dig, "receipt": c.jti, "status": body.status}], now)
            # the answer rule (_check_answer) has checked that ``target`` is our message
            self.audit.stage_evidence(conn, target, receipt={"token": v.envelope.token,
                                                             "payload": v.envelope.payload})
            st.set_state(conn, target, "delivered", now, node=c.iss, detail=f"receipt {body.status}")
            st.set_state(conn, c.jti, "consumed", now, node=self.id)
            return
        if c.mt == "error":
            st.set_state(conn, body.for_, "failed", now, node=body.by, detail=f"{body.code}: {body.detail or ''}")
            st.set_state(conn, c.jti, "consumed", now, node=self.id)
            return
        assert v.plaintext is not None
        st.to_inbox(conn, c.jti, v.plaintext, now)



def _best_effort_jti(raw: bytes) -> str | None:
    """The message id of an envelope we reject, if it can be read at all (for the result and the audit)."""
    try:
        doc = strictjson.loads(raw, "envelope")  # strict: a hostile token nests 100,000 deep
        token = doc.get("token") if isinstance(doc, dict) else None
        if not isinstance(token, str):
            return None
        claims = strictjson.loads(b64url_decode(token.split(".")[1]), "claims")
        jti = claims.get("jti") if isinstance(claims, dict) else None
        return jti if isinstance(jti, str) and len(jti) <= 64 else None
    except (TrazaError, ValueError, IndexError):
        return None
