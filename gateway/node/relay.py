"""Applying the relay's commands (:mod:`gateway.core.relay`): the writes inside the caller's transaction,
the effects after it commits.

:class:`Applier` holds what the writes need beyond SQL (the signing key of the moment, the audit log,
the blob store, the reply builder, the evidence keys); :meth:`Applier.decide_and_apply` reads a
:class:`~gateway.store.relay.StoreView`, asks the pure rules for commands and applies them, then
registers the effects (wake-ups, counters, the outbox size the rows actually changed) with
``Database.after_commit``: a rolled-back write leaves neither a wake-up nor a counter behind.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from gateway.audit.facade import NodeAudit
from gateway.audit.reader import AuditReader
from gateway.core import batchsig, relay
from gateway.core.envelope import (
    TYP_ACK,
    AckClaims,
    Envelope,
    Verified,
    ack_claims_for,
    append_hop,
    append_hops_batched,
    encode_envelope,
    hop_claims_for,
    make_ack,
    make_acks_batched,
)
from gateway.core.events import EnvelopeAccepted
from gateway.core.jws import parse_compact
from gateway.core.manifest import Federation
from gateway.crypto.keys import SigningKey
from gateway.store import relay as st
from gateway.store.blobs import BlobStore
from gateway.store.db import Database

ReplyFn = Callable[..., "str | None"]
_PENDING = "\x00pending batch ack"  # an ack signed with the rest of its batch once every entry is staged


class Applied:
    """What applying a decision produced: the ack of each stored batch item (by jti) and the answers to the
    peer, in batch order."""

    def __init__(self) -> None:
        self.acks: dict[str, str] = {}
        self.answers: list[relay.AnswerPeer] = []
        self.commands = 0  # how many commands the decision returned (0: it changed nothing)


class Applier:
    """Applies the relay's commands for one node (explicit dependencies, no node attributes)."""

    def __init__(self, *, here: str, db: Database, audit: NodeAudit, fed: Callable[[], Federation],
                 signer: Callable[[], SigningKey], blobs: BlobStore, reply: ReplyFn,
                 evidence_keys: Callable[..., list[dict[str, Any]]],
                 on_effects: Callable[[list[relay.Effect], int], None]) -> None:
        self.here = here
        self.db = db
        self.audit = audit
        self.fed = fed
        self.signer = signer
        self.blobs = blobs
        self.reply = reply
        self.evidence_keys = evidence_keys
        self.on_effects = on_effects

    def decide(self, conn: sqlite3.Connection, decide: Callable[[st.StoreView], list[relay.Command]], now: float,
               batch: Sequence[Verified | None] = (), peer: str | None = None) -> Applied:
        """Inside a write: run ``decide`` on a view of the store, then :meth:`apply` its commands."""
        return self.apply(conn, decide(self.view(conn)), now, batch=batch, peer=peer)

    def view(self, conn: sqlite3.Connection) -> st.StoreView:
        """The relay's view of the store inside the caller's transaction."""
        return st.StoreView(conn, self.fed(), given_ack=self.given_ack)

    def given_ack(self, conn: sqlite3.Connection, jti: str) -> str | None:
        """The ack this node gave for ``jti``, from its evidence (a dropped transit copy keeps no other)."""
        for kind, value in AuditReader(conn).evidence(jti):
            if kind != "ack":
                continue
            # a version-1 ack, or a batched element (protocol 1.1) whose leaf is the ack's claims
            claims = (msgspec.json.decode(batchsig.parse_element(value, "ack").leaf) if batchsig.is_batched(value)
                      else parse_compact(value, typ=TYP_ACK).claims)
            if claims.get("iss") == self.here:
                return value
        return None

    def apply(self, conn: sqlite3.Connection, commands: Sequence[relay.Command], now: float,
              batch: Sequence[Verified | None] = (), peer: str | None = None) -> Applied:
        """Apply the writes of ``commands`` in order inside the caller's transaction (``batch`` holds the
        verified envelopes the commands name by index, ``peer`` the node that sent them); register the
        effects to run after the commit."""
        out = Applied()
        out.commands = len(commands)
        effects: list[relay.Effect] = []
        delta = 0
        # protocol 1.1 (docs/protocol.md): one signature for the hop records of the batch, one for its acks
        hopped = self._batched_hops(commands, batch, peer, now)
        # (ack claims, envelope) of the messages whose acks are signed together once all are staged
        pending: list[tuple[AckClaims, bytes]] | None = None
        if peer is not None and any(isinstance(c, relay.StoreReceived) for c in commands) \
                and batchsig.acks_negotiated(self.fed(), self.here, peer):
            pending = []
        for cmd in commands:
            match cmd:
                case relay.Wake() | relay.WakeInbox() | relay.Count() | relay.ForgetBlobAt() | relay.PurgeBlob():
                    effects.append(cmd)
                case relay.DropTransit(jti=jti, blobs=shas):
                    st.drop_payload(conn, jti)
                    effects += [relay.PurgeBlob(sha) for sha in shas if not st.blob_held(conn, sha)]
                case relay.Audit(event=event):
                    self.audit.stage(conn, [event], now)
                case relay.StoreReceived():
                    v = batch[cmd.index]
                    assert v is not None and peer is not None
                    out.acks[cmd.jti] = self._store_received(conn, v, peer, cmd, now, hopped.get(cmd.jti), pending)
                case relay.ToInbox(index=index, jti=jti):
                    v = batch[index]
                    assert v is not None and v.plaintext is not None
                    st.to_inbox(conn, jti, v.plaintext, now)
                case relay.RecordReceipt(index=index, for_=target):
                    v = batch[index]
                    assert v is not None
                    self.audit.stage_evidence(conn, target, receipt={"token": v.envelope.token,
                                                                     "payload": v.envelope.payload})
                case relay.RecordAck(jti=jti, ack=ack, peer=to):
                    self.audit.stage_evidence(conn, jti, ack=ack, keys=self.evidence_keys(to))
                case relay.Reply(mt=mt, to=to, irt=irt, cid=cid, body=body):
                    # the reply builder counts its own outbox row (it also serves the local API)
                    rid = self.reply(conn, mt=mt, to=to, body=body, irt=irt, cid=cid, now=now, source="node")
                    hop = st.outbox_peer(conn, rid) if rid is not None else None
                    if hop is not None:
                        effects.append(relay.Wake(hop))
                case relay.AnswerPeer():
                    out.answers.append(cmd if cmd.status != "accepted" or cmd.ack else
                                       relay.AnswerPeer(index=cmd.index, jti=cmd.jti, status="accepted",
                                                        ack=out.acks[cmd.jti or ""]))
                case _:
                    delta += st.apply(conn, cmd, now)
        if pending:  # the acks of the batch, signed once; each envelope stored with its ack, and recorded
            acks = make_acks_batched([claims for claims, _data in pending], signer=self.signer(), now=now)
            pairs = [(claims.jti, ack) for (claims, _data), ack in zip(pending, acks, strict=True)]
            out.acks.update(pairs)
            st.insert_envelopes(conn, [(claims.jti, data, ack) for (claims, data), ack in zip(pending, acks, strict=True)])
            self.audit.stage_acks(conn, pairs)
            out.answers = [a if a.ack != _PENDING else msgspec.structs.replace(a, ack=out.acks[a.jti or ""])
                           for a in out.answers]
        self.db.after_commit(lambda: self.on_effects(effects, delta))
        return out

    def _batched_hops(self, commands: Sequence[relay.Command], batch: Sequence[Verified | None], peer: str | None,
                      now: float) -> dict[str, Envelope]:
        """The envelopes to relay whose whole onward route takes batch signatures, each with our hop record
        as a batched element under one signature (by jti); the others get version-1 hop records."""
        if peer is None:
            return {}
        fed = self.fed()
        items: list[tuple[Envelope, Any]] = []
        for cmd in commands:
            if isinstance(cmd, relay.StoreReceived) and cmd.next_hop is not None:
                v = batch[cmd.index]
                assert v is not None
                if batchsig.hops_negotiated(fed, self.here, v.claims.iss, v.claims.aud):
                    items.append((v.envelope, hop_claims_for(v.envelope, here=self.here, jti=v.claims.jti,
                                                             came_from=peer, to=cmd.next_hop, received_at=now)))
        if not items:
            return {}
        envs = append_hops_batched(items, signer=self.signer(), now=now)
        return {c.jti: e for (_e, c), e in zip(items, envs, strict=True)}

    def _store_received(self, conn: sqlite3.Connection, v: Verified, peer: str, cmd: relay.StoreReceived,
                        now: float, hopped: Envelope | None = None,
                        pending: list[tuple[AckClaims, bytes]] | None = None) -> str:
        """Append our hop (relayed; ``hopped`` when it was signed in a batch), audit ``envelope.accepted``,
        sign the ack with its index (or queue its claims and the envelope on ``pending``: :meth:`apply`
        signs the whole batch's acks, then stores each envelope with its ack), record the evidence and
        insert the message; the ack (:data:`_PENDING` when queued)."""
        c = v.claims
        env = v.envelope
        signer = self.signer()
        if hopped is not None:
            env = hopped
        elif cmd.next_hop is not None:
            env = append_hop(env, signer=signer, here=self.here, jti=c.jti, came_from=peer, to=cmd.next_hop,
                             received_at=now)
        (idx,) = self.audit.stage(conn, [EnvelopeAccepted(jti=c.jti, mt=c.mt, iss=c.iss, aud=c.aud, dig=v.dig,
                                                          from_=peer, to=cmd.next_hop or self.here)], now)
        ack: str | None
        claims: AckClaims | None = None
        if pending is not None:
            claims = ack_claims_for(here=self.here, peer=peer, jti=c.jti, token=env.token, idx=idx, now=now, dig=v.dig)
            ack = None
        else:
            ack = make_ack(signer, here=self.here, peer=peer, jti=c.jti, token=env.token, idx=idx, now=now)
        self.audit.stage_evidence(conn, c.jti, envelope={"token": env.token, "hops": list(env.hops)}, ack=ack,
                                  keys=self.evidence_keys(c.iss, *(h.iss for h in v.hops), self.here))
        # before the commit, on purpose: a rollback leaves a blob kept a little longer, never one purged early
        for b in c.blobs or []:
            self.blobs.note_expiry(b.sha256, c.exp)
        data = encode_envelope(env)
        st.insert_message(conn, st.StoredMessage(
            jti=c.jti, dig=v.dig, mt=c.mt, iss=c.iss, aud=c.aud, cid=c.cid, irt=c.irt, cls=c.cls, exp=c.exp,
            envelope=data, size=len(data), received_from=peer, received_at=now, ack=ack, ack_idx=idx,
            state=cmd.state, next_hop=cmd.next_hop, updated_at=now), envelope_row=claims is None)
        if pending is not None and claims is not None:
            pending.append((claims, data))  # the envelope row is written with its ack (apply)
        if cmd.next_hop is not None and c.blobs:  # a transit copy: its blobs go once no held message names them
            st.note_blobs(conn, c.jti, [b.sha256 for b in c.blobs])
        return _PENDING if ack is None else ack
