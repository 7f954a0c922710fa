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
from gateway.core.envelope import Verified, verify_envelope
from gateway.core.errors import Code, TrazaError
from gateway.core.events import EnvelopeRejected
from gateway.core.messages import MESSAGE_TYPES, decode_body
from gateway.core.policy import ANSWER_TYPES, Answer
from gateway.core.relay import Arrived, Received, Refused
from gateway.crypto.keys import verifier_for
from gateway.node.relay import Applied
from gateway.node.state import _NodeState
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
        items: list[Arrived | Refused] = [
            _arrived(i, item) if isinstance(item, Verified) else Refused.of(i, *item) for i, item in enumerate(checked)]
        batch = [item if isinstance(item, Verified) else None for item in checked]

        def commit(conn: sqlite3.Connection) -> Applied:
            applied = self.applier.decide(conn, lambda view: self.relay.received(Received(peer, items), view, now),
                                          now, batch=batch, peer=peer)
            crash_point("receive.before_commit")
            return applied

        answers = (await self.db.write(commit)).answers  # wake-ups run after the commit, from the commands
        crash_point("receive.after_commit")
        results = [Result(jti=a.jti, status=a.status, ack=a.ack,
                          error=EB(code=a.code, detail=a.detail or "") if a.code is not None else None) for a in answers]
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
        event = EnvelopeRejected(from_=peer, to=self.id, code=err.code.value, detail=err.detail, envelopes=envelopes)
        await self.db.write(lambda conn: self.audit.stage(conn, [event], now))
        self.metrics.received.labels("batch", peer, "rejected").inc()
        self.log.warning("batch.rejected", peer=peer, code=err.code.value, envelopes=envelopes)


def _arrived(index: int, v: Verified) -> Arrived:
    """The relay's view of a verified envelope: its ids, and the signed facts of an answer addressed here."""
    c, body = v.claims, v.body
    arrived = Arrived(index=index, jti=c.jti, dig=v.dig, mt=c.mt, iss=c.iss, aud=c.aud, cid=c.cid,
                      next_hop=v.next_hop)
    if v.next_hop is not None or c.mt not in ANSWER_TYPES or body is None:
        return arrived
    answer = Answer(mt=c.mt, jti=c.jti, iss=c.iss, aud=c.aud, irt=c.irt, for_=body.for_,
                    dig=getattr(body, "dig", None), by=getattr(body, "by", None))
    return msgspec.structs.replace(arrived, answer=answer, status=getattr(body, "status", None),
                                   code=getattr(body, "code", None), detail=getattr(body, "detail", None))


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
