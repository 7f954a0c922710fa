"""The relay's decisions as a pure state machine (issue #11; in the style of h11 and mitmproxy's proxy
core): events in, commands out.

Events: a verified batch from a peer (:class:`Received`), a peer's answers to what we sent
(:class:`PeerAnswered`), a peer we could not reach or that would not take our blobs
(:class:`PeerUnreachable`), rows that expired in the queue (:class:`QueueExpired`), rows a peer refuses
for size for good (:class:`TooLarge`: a blob they name, or the envelope alone in its request), the
national system's ack of an inbox message (:class:`InboxAcked`), an operator's dead-letter action
(:class:`DeadLetterAction`) or resend (:class:`Resend`). How many queued envelopes go in one request is
a pure rule too (:func:`fit_batch`, :func:`split_after_too_large`).

Commands: writes (:data:`Write`: store, enqueue, dequeue, reschedule, dead-letter, set state, reply,
audit, answer the peer) that the node applies inside one transaction (``gateway.node.relay`` with the
SQL of ``gateway.store.relay``), and effects (:data:`Effect`: wake a queue or the inbox, count, forget a
blob location) that it runs only after that transaction commits, so that a rollback leaves nothing
behind. The decision reads what it needs of the store through a :class:`View`, read inside the same
transaction.

No I/O: time (``now``) and randomness (``rand``) come in with the call; acks are verified by the caller
before (their outcome is part of the event). Rules are tested as exchange tables in
``tests/core/test_relay.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import msgspec

from gateway.core import events as ev
from gateway.core.envelope import NO_REPLY_TYPES
from gateway.core.errors import Code, TrazaError, audit_detail
from gateway.core.policy import ANSWER_TYPES, Answer, Sent, check_answer
from gateway.core.retry import next_attempt_at
from gateway.core.timeutil import rfc3339, rfc3339_seconds

# --- what the decisions read ----------------------------------------------------------------------------


class Known(msgspec.Struct, frozen=True, kw_only=True):
    """A message the store holds (the dedupe store is the message table)."""

    jti: str
    dig: str
    mt: str
    iss: str
    aud: str
    cid: str
    exp: int
    state: str
    next_hop: str | None = None
    ack: str | None = None


class View(Protocol):
    """What a decision may read, inside the transaction that applies it."""

    def message(self, jti: str) -> Known | None: ...

    def route(self, iss: str, aud: str) -> Sequence[str]: ...

    def in_outbox(self, jti: str) -> bool: ...

    def inbox_taken(self, jti: str) -> bool | None:
        """True if taken, False if waiting in the inbox, None if not in the inbox."""

    def dead_letter(self, dl_id: int) -> tuple[str, str | None] | None:
        """(jti, peer) of dead letter ``dl_id``."""


class Config(msgspec.Struct, frozen=True):
    """The node's side of the rules: who it is and how it retries."""

    here: str
    retry_min: float
    retry_max: float


# --- events ------------------------------------------------------------------------------------------


class Arrived(msgspec.Struct, frozen=True, kw_only=True):
    """An envelope of a batch that passed SPEC §4.2 steps 1–9 (and its blob checks), ``index`` in the batch."""

    index: int
    jti: str
    dig: str
    mt: str
    iss: str
    aud: str
    cid: str
    next_hop: str | None  # None: this node is the recipient
    answer: Answer | None = None  # a receipt or error addressed here: its signed facts
    status: str | None = None  # a receipt's status
    code: str | None = None  # an error's code and detail
    detail: str | None = None


class Refused(msgspec.Struct, frozen=True, kw_only=True):
    """An envelope of a batch refused before the store: ``jti`` when it verifiably names it (else
    ``claimed_jti``, what it claims)."""

    index: int
    code: Code
    detail: str
    public_detail: str
    jti: str | None = None
    claimed_jti: str | None = None

    @classmethod
    def of(cls, index: int, err: TrazaError, claimed: str | None) -> Refused:
        return cls(index=index, code=err.code, detail=err.detail, public_detail=err.public_detail, jti=err.jti,
                   claimed_jti=claimed)


class Received(msgspec.Struct, frozen=True):
    peer: str
    items: list[Arrived | Refused]


class Row(msgspec.Struct, frozen=True, kw_only=True):
    """An outbox row as it was offered to a peer."""

    jti: str
    attempts: int
    exp: int
    blobs: tuple[str, ...] = ()  # sha256 of the blobs it names


class PeerResult(msgspec.Struct, frozen=True, kw_only=True):
    """A peer's answer for one envelope; ``ack_idx``/``ack_error`` are the caller's check of its ack."""

    jti: str
    status: str  # accepted | duplicate | rejected | ...
    ack: str | None = None
    ack_idx: int | None = None
    ack_error: str | None = None
    code: str | None = None
    detail: str | None = None


class PeerAnswered(msgspec.Struct, frozen=True):
    peer: str
    rows: list[Row]
    results: list[PeerResult]


class PeerUnreachable(msgspec.Struct, frozen=True, kw_only=True):
    """The rows could not be handed over (connection, 5xx, blob upload failed); one ``rand`` per row."""

    peer: str
    rows: list[Row]
    error: str
    rand: list[float]
    retry_after: float | None = None


class QueueExpired(msgspec.Struct, frozen=True):
    peer: str
    rows: list[Row]


class TooLarge(msgspec.Struct, frozen=True):
    """The peer will never take these rows (413): a blob they name is larger than its ``max_blob``, or the
    envelope alone makes a request larger than its limit. Each row with the reason."""

    peer: str
    rows: list[tuple[Row, str]]


class InboxAcked(msgspec.Struct, frozen=True, kw_only=True):
    jti: str
    who: str
    status: str = "DELIVERED"
    detail: str | None = None


class DeadLetterAction(msgspec.Struct, frozen=True, kw_only=True):
    dl_id: int
    action: Literal["retry", "discard"]
    operator: str


class Resend(msgspec.Struct, frozen=True, kw_only=True):
    jti: str
    operator: str


# --- commands: writes, applied inside the transaction ----------------------------------------------------


class StoreReceived(msgspec.Struct, frozen=True, kw_only=True):
    """Keep batch item ``index``: (relayed) append our hop, audit ``envelope.accepted``, sign the ack with
    that entry's index, record the evidence, insert the message in ``state``."""

    index: int
    jti: str
    state: Literal["received", "queued"]
    next_hop: str | None


class Enqueue(msgspec.Struct, frozen=True):
    jti: str
    peer: str


class Dequeue(msgspec.Struct, frozen=True):
    jti: str


class Reschedule(msgspec.Struct, frozen=True):
    jti: str
    at: float
    error: str


class DeadLetter(msgspec.Struct, frozen=True):
    """Out of the outbox, into the dead letters."""

    jti: str
    peer: str
    code: str
    detail: str


class TakeDeadLetter(msgspec.Struct, frozen=True):
    dl_id: int


class SetState(msgspec.Struct, frozen=True, kw_only=True):
    """The message's state, and a timeline step of that name (``only_from``: the state changes only from
    that state; the step is recorded either way)."""

    jti: str
    state: str
    node: str | None
    detail: str | None = None
    only_from: str | None = None


class Timeline(msgspec.Struct, frozen=True, kw_only=True):
    """A timeline step that is not a state change."""

    jti: str
    step: str
    node: str | None
    detail: str | None = None


class DropTransit(msgspec.Struct, frozen=True):
    """A relaying node's copy is no longer needed once the next hop acknowledged it (SPEC §11, 1.1): drop
    the payload (and the blob ciphertext no other held message names); evidence keeps token, hops, acks."""

    jti: str
    blobs: tuple[str, ...] = ()


class ToInbox(msgspec.Struct, frozen=True):
    index: int
    jti: str


class TakeInbox(msgspec.Struct, frozen=True):
    jti: str


class RecordAck(msgspec.Struct, frozen=True):
    """Evidence: the ack ``peer`` gave for ``jti`` (with ``peer``'s signing keys)."""

    jti: str
    ack: str
    peer: str


class RecordReceipt(msgspec.Struct, frozen=True):
    """Evidence: the receipt of batch item ``index``, under the message it is for."""

    index: int
    for_: str


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """Originate a receipt or error message here (signed, stored, queued for its first hop)."""

    mt: Literal["receipt", "error"]
    to: str
    irt: str
    cid: str
    body: dict[str, str]


class Audit(msgspec.Struct, frozen=True):
    event: ev.AuditEvent


class AnswerPeer(msgspec.Struct, frozen=True, kw_only=True):
    """The result for batch item ``index``; an accepted item's ack comes from its :class:`StoreReceived`."""

    index: int
    jti: str | None
    status: Literal["accepted", "duplicate", "rejected"]
    ack: str | None = None
    code: str | None = None
    detail: str | None = None


Write = (StoreReceived | Enqueue | Dequeue | Reschedule | DeadLetter | TakeDeadLetter | SetState | Timeline
         | DropTransit | ToInbox | TakeInbox | RecordAck | RecordReceipt | Reply | Audit | AnswerPeer)

# --- commands: effects, run after the commit ---------------------------------------------------------


class Wake(msgspec.Struct, frozen=True):
    peer: str


class WakeInbox(msgspec.Struct, frozen=True):
    pass


class Count(msgspec.Struct, frozen=True, kw_only=True):
    """A counter: ``forwarded`` (mt, peer, status), ``received`` (mt, peer, status), ``delivered``."""

    what: str
    labels: tuple[str, ...] = ()


class PurgeBlob(msgspec.Struct, frozen=True):
    """Delete blob ``sha`` of the travelling store: no message held here names it any more."""

    sha: str


class ForgetBlobAt(msgspec.Struct, frozen=True):
    """Our record that ``peer`` holds blob ``sha`` is stale (it said blob_missing)."""

    peer: str
    sha: str


Effect = Wake | WakeInbox | Count | ForgetBlobAt | PurgeBlob
Command = Write | Effect


class Refusal(Exception):
    """An operator action that cannot be done; the writes (its audit entry) are still applied."""

    def __init__(self, code: Code, detail: str, writes: list[Command]) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.writes = writes


# --- the machine ---------------------------------------------------------------------------------------


class Relay:
    """The rules of one node; every method is pure: (event, view, now) -> commands."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.here = cfg.here

    # --- receiving (SPEC §4.1–§4.2 steps 10–12, §5) ---------------------------------------------------

    def received(self, event: Received, view: View, now: float) -> list[Command]:
        """Dedupe, the answer rule, store and ack, route onwards or deliver; one :class:`AnswerPeer` per
        item, in batch order."""
        out: list[Command] = []
        seen: dict[str, str] = {}  # jti -> dig of the envelopes accepted so far in this batch
        peer = event.peer
        for item in event.items:
            if isinstance(item, Refused):
                # a schema fault quotes the value at fault: neither the log nor the peer (maybe a hub, which
                # never sees a sealed body) gets it (SPEC §7.1; gateway.core.errors.audit_detail)
                out += [Audit(ev.EnvelopeRejected(jti=item.jti, claimed_jti=None if item.jti else item.claimed_jti,
                                                  from_=peer, to=self.here, code=item.code.value,
                                                  detail=audit_detail(item.code, item.detail))),
                        AnswerPeer(index=item.index, jti=item.claimed_jti, status="rejected", code=item.code.value,
                                   detail=audit_detail(item.code, item.public_detail))]
                continue
            out += self._arrived(item, peer, view, seen, now)
        return out

    def _arrived(self, a: Arrived, peer: str, view: View, seen: dict[str, str], now: float) -> list[Command]:
        if a.jti in seen:
            if seen[a.jti] == a.dig:  # the same envelope twice in one batch: the first one's answer again
                return [AnswerPeer(index=a.index, jti=a.jti, status="accepted")]
            return self._id_reused(a, peer)
        if a.next_hop is None and a.mt in ANSWER_TYPES and a.answer is not None:
            m = view.message(a.answer.for_)
            sent = Sent(jti=m.jti, iss=m.iss, aud=m.aud, dig=m.dig) if m is not None else None
            route = view.route(m.iss, m.aud) if m is not None else ()
            try:  # SPEC §5 "Who may answer": a refused answer changes no state
                check_answer(a.answer, sent, here=self.here, route=route)
            except TrazaError as err:
                return [Audit(ev.EnvelopeRejected(jti=a.jti, mt=a.mt, iss=a.iss, aud=a.aud, dig=a.dig, from_=peer,
                                                  to=self.here, for_=a.answer.for_,
                                                  code=err.code.value, detail=err.detail)),
                        AnswerPeer(index=a.index, jti=a.jti, status="rejected", code=err.code.value,
                                   detail=err.public_detail)]
        existing = view.message(a.jti)
        if existing is not None:
            if existing.dig == a.dig and existing.ack is not None:
                return [Audit(ev.EnvelopeDuplicate(jti=a.jti, mt=a.mt, iss=a.iss, aud=a.aud, dig=a.dig, from_=peer,
                                                   to=self.here)),
                        AnswerPeer(index=a.index, jti=a.jti, status="duplicate", ack=existing.ack)]
            return self._id_reused(a, peer)
        seen[a.jti] = a.dig
        out: list[Command] = [
            StoreReceived(index=a.index, jti=a.jti, state="queued" if a.next_hop else "received", next_hop=a.next_hop),
            Timeline(jti=a.jti, step="accepted", node=self.here, detail=f"from {peer}"),
            AnswerPeer(index=a.index, jti=a.jti, status="accepted"),
        ]
        if a.next_hop is not None:
            return [*out, Enqueue(a.jti, a.next_hop), Wake(a.next_hop)]
        return out + self._deliver(a, peer, now)

    def _id_reused(self, a: Arrived, peer: str) -> list[Command]:
        """A second envelope under a message id already taken (held, or earlier in the same batch) by an
        envelope of another digest: refused, audited, nothing stored."""
        detail = "message id already used by a different envelope"
        return [Audit(ev.EnvelopeRejected(jti=a.jti, mt=a.mt, iss=a.iss, aud=a.aud, dig=a.dig, from_=peer,
                                          to=self.here, code=Code.MALFORMED.value, detail=detail)),
                AnswerPeer(index=a.index, jti=a.jti, status="rejected", code=Code.MALFORMED.value, detail=detail)]

    def _deliver(self, a: Arrived, peer: str, now: float) -> list[Command]:
        """Recipient side: receipts and errors update our own messages; the rest goes to the inbox."""
        if a.mt == "receipt" and a.answer is not None:
            target = a.answer.for_  # the answer rule has checked it is our message
            return [Audit(ev.ReceiptReceived(jti=target, mt=a.mt, iss=a.iss, aud=a.aud, dig=a.dig, from_=peer,
                                             to=self.here, receipt=a.jti, status=a.status or "")),
                    RecordReceipt(a.index, target),
                    SetState(jti=target, state="delivered", node=a.iss, detail=f"receipt {a.status}"),
                    SetState(jti=a.jti, state="consumed", node=self.here)]
        if a.mt == "error" and a.answer is not None:
            return [SetState(jti=a.answer.for_, state="failed", node=a.answer.by, detail=f"{a.code}: {a.detail or ''}"),
                    SetState(jti=a.jti, state="consumed", node=self.here)]
        return [ToInbox(a.index, a.jti), WakeInbox()]

    # --- forwarding ------------------------------------------------------------------------------------

    def answered(self, event: PeerAnswered, view: View, now: float) -> list[Command]:
        """Settle what a peer answered: a verified ack dequeues; a rejection dead-letters (and sends an
        error back to the origin); anything else is offered again after ``retry_min``."""
        peer = event.peer
        by_jti = {r.jti: r for r in event.results}
        retry_at = now + self.cfg.retry_min
        out: list[Command] = []
        for row in event.rows:
            m = view.message(row.jti)
            if m is None:
                continue
            res = by_jti.get(row.jti)
            if res is None:
                out.append(Reschedule(row.jti, retry_at, "no result for this envelope"))
            elif res.status in ("accepted", "duplicate") and res.ack:
                if res.ack_error is not None or res.ack_idx is None:
                    out.append(Reschedule(row.jti, retry_at, f"invalid ack: {res.ack_error}"))
                    continue
                transit = self.here not in (m.iss, m.aud)
                out += [Dequeue(row.jti), Count(what="forwarded", labels=(m.mt, peer, res.status)),
                        RecordAck(row.jti, res.ack, peer),
                        Audit(ev.EnvelopeForwarded(jti=m.jti, mt=m.mt, iss=m.iss, aud=m.aud, dig=m.dig,
                                                   from_=self.here, to=peer, ack_idx=res.ack_idx)),
                        # the origin's timeline shows the ack itself; a relay keeps it in the evidence only
                        SetState(jti=row.jti, state="forwarded", node=peer, only_from="queued",
                                 detail=f"acked by {peer} at its log index {res.ack_idx}" if transit else res.ack)]
                if transit:  # a transit copy: the next hop holds it now (SPEC §11, 1.1)
                    out.append(DropTransit(row.jti, row.blobs))
            elif res.status == "rejected" and res.code == Code.BLOB_MISSING.value:
                # we uploaded its blobs, yet the peer lacks one (it lost it, or our record is stale): again
                out += [ForgetBlobAt(peer, sha) for sha in row.blobs]
                out.append(Reschedule(row.jti, retry_at, f"{peer}: {res.detail}"[:500]))
            elif res.status == "rejected":
                code = Code(res.code) if res.code is not None and res.code in Code._value2member_map_ else Code.INTERNAL
                out.append(Count(what="forwarded", labels=(m.mt, peer, "rejected")))
                out += self.give_up(m, peer, code, f"rejected by {peer}: {res.detail or ''}", now)
            else:
                out.append(Reschedule(row.jti, retry_at, f"unexpected result {res.status}"))
        return out

    def unreachable(self, event: PeerUnreachable, now: float) -> list[Command]:
        """Per-message exponential back-off with jitter, never before the peer's Retry-After (up to
        ``retry_max``: no row is scheduled further ahead than that, so one that is can only have been
        scheduled before the clock moved back); a message whose next try would come after its expiry gets
        one last look at expiry time."""
        out: list[Command] = []
        for row, rand in zip(event.rows, event.rand, strict=True):
            at = next_attempt_at(now, row.attempts + 1, row.exp, rand=rand, base=self.cfg.retry_min,
                                 cap=self.cfg.retry_max)
            if at is not None and event.retry_after:
                at = max(at, now + min(event.retry_after, self.cfg.retry_max))
            if at is None or at >= row.exp:
                at = float(row.exp)
            out.append(Reschedule(row.jti, at, event.error[:500]))
        return out

    def expired(self, event: QueueExpired, view: View, now: float) -> list[Command]:
        out: list[Command] = []
        for row in event.rows:
            m = view.message(row.jti)
            if m is None:
                continue
            out.append(Audit(ev.EnvelopeExpired(jti=m.jti, mt=m.mt, iss=m.iss, aud=m.aud, dig=m.dig,
                                                from_=self.here, to=event.peer)))
            out += self.give_up(m, event.peer, Code.EXPIRED, f"expired in the queue for {event.peer}", now)
        return out

    def too_large(self, event: TooLarge, view: View, now: float) -> list[Command]:
        out: list[Command] = []
        for row, why in event.rows:
            m = view.message(row.jti)
            if m is not None:
                out += self.give_up(m, event.peer, Code.TOO_LARGE, why[:500], now)
        return out

    def give_up(self, m: Known, peer: str, code: Code, detail: str, now: float) -> list[Command]:
        """Dead-letter ``m``: out of the queue, audited, failed here (or dead, at a hub), and an ``error``
        back to its origin unless it is itself an answer or ours."""
        out: list[Command] = [
            DeadLetter(m.jti, peer, code.value, detail),
            Audit(ev.EnvelopeDeadLettered(jti=m.jti, mt=m.mt, iss=m.iss, aud=m.aud, dig=m.dig, code=code.value,
                                          from_=self.here, to=peer)),
            SetState(jti=m.jti, state="failed" if m.iss == self.here else "dead", node=self.here,
                     detail=f"{code.value}: {detail}"),
        ]
        if m.mt not in NO_REPLY_TYPES and m.iss != self.here:
            out.append(Reply(mt="error", to=m.iss, irt=m.jti, cid=m.cid,
                             body={"for": m.jti, "code": code.value, "at": rfc3339(now), "by": self.here,
                                   "detail": detail}))
        return out

    # --- local delivery and operators -------------------------------------------------------------------

    def inbox_acked(self, event: InboxAcked, view: View, now: float) -> list[Command]:
        """The national system took a message: audited once, and its receipt sent (SPEC §6). An ack of a
        message already taken does nothing; of one not in the inbox raises KeyError."""
        taken = view.inbox_taken(event.jti)
        if taken is None:
            raise KeyError(event.jti)
        if taken:
            return []
        m = view.message(event.jti)
        assert m is not None
        out: list[Command] = [
            TakeInbox(event.jti),
            Audit(ev.EnvelopeDelivered(jti=m.jti, mt=m.mt, iss=m.iss, aud=m.aud, dig=m.dig, from_=self.here,
                                       to=event.who)),
            SetState(jti=m.jti, state="delivered", node=self.here, detail=event.who),
            Count(what="delivered", labels=(m.mt,)),
        ]
        if m.mt not in NO_REPLY_TYPES:
            body = {"for": m.jti, "dig": m.dig, "status": event.status, "at": rfc3339(now)}
            if event.detail:
                body["detail"] = event.detail
            out.append(Reply(mt="receipt", to=m.iss, irt=m.jti, cid=m.cid, body=body))
        return out

    def dead_letter_action(self, event: DeadLetterAction, view: View, now: float) -> list[Command]:
        """Retry (queue again) or discard a dead letter, audited as ``operator.action``; KeyError if there
        is no such dead letter; :class:`Refusal` (audited, nothing else changes) for a retry after the
        message's signed expiry."""
        found = view.dead_letter(event.dl_id)
        if found is None:
            raise KeyError(event.dl_id)
        jti, peer = found
        m = view.message(jti)
        assert m is not None
        act = ev.OperatorAction(action=f"dead_letter.{event.action}", operator=event.operator, jti=jti, mt=m.mt,
                                iss=m.iss, aud=m.aud, dig=m.dig, from_=self.here, to=peer or None)
        if event.action == "retry" and m.exp <= now:
            reason = (f"message {jti} expired at {rfc3339_seconds(m.exp)}; a signed expiry cannot be extended: "
                      "discard it, and have the origin send a new message")
            raise Refusal(Code.EXPIRED, reason, [Audit(msgspec.structs.replace(act, outcome="refused", reason=reason))])
        out: list[Command] = [TakeDeadLetter(event.dl_id), Audit(act)]
        if event.action == "retry" and peer:
            return [*out, Enqueue(jti, peer), Wake(peer),
                    SetState(jti=jti, state="queued", node=self.here, detail=f"retried by {event.operator}")]
        return [*out, SetState(jti=jti, state="discarded", node=self.here, detail=f"discarded by {event.operator}")]

    def resend(self, event: Resend, view: View, now: float) -> list[Command]:
        """Offer an overdue message again to its first hop: the same envelope and ``jti`` (a hop that holds
        it answers ``duplicate``; nothing is delivered twice). :class:`Refusal` (audited) for a message that
        expired or is not waiting for its receipt; KeyError for one that did not originate here."""
        m = view.message(event.jti)
        if m is None or m.iss != self.here:
            raise KeyError(event.jti)
        refused = None
        if m.exp <= now:
            refused = (Code.EXPIRED, f"message {m.jti} expired at {rfc3339(m.exp)}; a signed expiry cannot be extended")
        elif m.state != "forwarded" or view.in_outbox(m.jti) or m.next_hop is None:
            refused = (Code.POLICY_DENIED,
                       f"message {m.jti} is {m.state}: only a forwarded message waiting for its receipt is resent")
        action = ev.OperatorAction(action="message.resend", operator=event.operator, jti=m.jti, mt=m.mt, iss=m.iss,
                                   aud=m.aud, dig=m.dig, from_=self.here, to=m.next_hop)
        if refused is not None:
            code, reason = refused
            raise Refusal(code, reason, [Audit(msgspec.structs.replace(action, outcome="refused", reason=reason))])
        assert m.next_hop is not None
        return [Audit(action), Enqueue(m.jti, m.next_hop), Wake(m.next_hop),
                SetState(jti=m.jti, state="queued", node=self.here, detail=f"resent by {event.operator}")]


# --- the size of a batch (SPEC §4.1, §11) -----------------------------------------------------------------

# the body of ``POST /v1/envelopes`` as a sender writes it (:func:`batch_body`, used by
# ``gateway.transport.peer.PeerClient.send_batch``): the envelopes as stored, joined, in this framing
BATCH_OPEN = b'{"envelopes":['
BATCH_SEP = b","
BATCH_CLOSE = b"]}"


def batch_body(envelopes: Sequence[bytes]) -> bytes:
    """The request body of a batch of (encoded) ``envelopes``."""
    return BATCH_OPEN + BATCH_SEP.join(envelopes) + BATCH_CLOSE


def batch_body_size(sizes: Sequence[int]) -> int:
    """The bytes of :func:`batch_body` for envelopes of ``sizes`` bytes (without building it)."""
    return len(BATCH_OPEN) + sum(sizes) + len(BATCH_SEP) * max(0, len(sizes) - 1) + len(BATCH_CLOSE)


def fit_batch(sizes: Sequence[int], *, max_bytes: int, max_count: int) -> int:
    """How many of the envelopes at the head of a queue (``sizes``: their encoded bytes, in queue order)
    go in the next request: as many as keep its body (:func:`batch_body_size`) within ``max_bytes`` and
    their number within ``max_count``, and always the first one, alone if need be (an envelope of
    ``max_envelope``, 1 MiB, fits the default request limit of 16 MiB; a peer that refuses one alone
    refuses it for good, :func:`split_after_too_large`). 0 only for an empty queue."""
    if not sizes:
        return 0
    body = len(BATCH_OPEN) + sizes[0] + len(BATCH_CLOSE)
    n = 1
    for size in sizes[1:max_count]:
        body += len(BATCH_SEP) + size
        if body > max_bytes:
            break
        n += 1
    return n


def split_after_too_large(sizes: Sequence[int]) -> int | None:
    """A peer refused a whole request of envelopes of ``sizes`` bytes as too large (413: more bytes than its
    request limit, or more envelopes than its ``max_batch``): the request limit to assume for that peer
    from now on, the body of the first half of those envelopes (the batch is halved, down to one envelope,
    and later batches stay within those bytes); None when the request held a single envelope: the peer will
    never take it (no batch is smaller), so the message fails rather than block the queue behind it."""
    if len(sizes) <= 1:
        return None
    return batch_body_size(sizes[:len(sizes) // 2])


def writes(commands: Sequence[Command]) -> list[Write]:
    return [c for c in commands if not isinstance(c, Wake | WakeInbox | Count | ForgetBlobAt | PurgeBlob)]


def effects(commands: Sequence[Command]) -> list[Effect]:
    return [c for c in commands if isinstance(c, Wake | WakeInbox | Count | ForgetBlobAt | PurgeBlob)]
