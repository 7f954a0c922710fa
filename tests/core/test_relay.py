"""The relay's rules as exchange tables (gateway/core/relay.py): an event and what the store holds in,
the commands out. No sockets, no database, no clock: a dictionary stands for the store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
import pytest

from gateway.core import events as ev
from gateway.core import relay as r
from gateway.core.errors import Code, TrazaError
from gateway.core.policy import Answer

NOW = 1_800_000_000.0
CFG = r.Config(here="hub", retry_min=1.0, retry_max=300.0)
ROUTES = {("mx", "es"): ["mx", "hub", "es"], ("es", "mx"): ["es", "hub", "mx"]}


@dataclass
class Store:
    """A :class:`gateway.core.relay.View` over dictionaries."""

    messages: dict[str, r.Known] = field(default_factory=dict)
    outbox: set[str] = field(default_factory=set)
    inbox: dict[str, bool] = field(default_factory=dict)
    dead: dict[int, tuple[str, str | None]] = field(default_factory=dict)

    def message(self, jti: str) -> r.Known | None:
        return self.messages.get(jti)

    def route(self, iss: str, aud: str) -> Sequence[str]:
        return ROUTES.get((iss, aud), [])

    def in_outbox(self, jti: str) -> bool:
        return jti in self.outbox

    def inbox_taken(self, jti: str) -> bool | None:
        return self.inbox.get(jti)

    def dead_letter(self, dl_id: int) -> tuple[str, str | None] | None:
        return self.dead.get(dl_id)


def known(jti: str = "m1", *, iss: str = "mx", aud: str = "es", mt: str = "trace.request", state: str = "queued",
          dig: str = "D1", ack: str | None = "ACK", exp: float = NOW + 3600, next_hop: str | None = "es") -> r.Known:
    return r.Known(jti=jti, dig=dig, mt=mt, iss=iss, aud=aud, cid=jti, exp=int(exp), state=state, next_hop=next_hop,
                   ack=ack)


def arrived(jti: str = "m1", *, index: int = 0, dig: str = "D1", mt: str = "trace.request", iss: str = "mx",
            aud: str = "es", next_hop: str | None = "es", answer: Answer | None = None,
            status: str | None = None, code: str | None = None) -> r.Arrived:
    return r.Arrived(index=index, jti=jti, dig=dig, mt=mt, iss=iss, aud=aud, cid=jti, next_hop=next_hop,
                     answer=answer, status=status, code=code)


def kinds(commands: Sequence[r.Command]) -> list[str]:
    return [type(c).__name__ for c in commands]


def answers(commands: Sequence[r.Command]) -> list[tuple[str | None, str, str | None]]:
    return [(c.jti, c.status, c.code) for c in commands if isinstance(c, r.AnswerPeer)]


def audits(commands: Sequence[r.Command]) -> list[ev.Event]:
    return [c.event for c in commands if isinstance(c, r.Audit)]


# --- receiving ---------------------------------------------------------------------------------------------

HUB = r.Relay(CFG)
ORIGIN = r.Relay(r.Config(here="mx", retry_min=1.0, retry_max=300.0))
RECIPIENT = r.Relay(r.Config(here="es", retry_min=1.0, retry_max=300.0))


def test_a_new_envelope_at_a_hop_is_stored_acked_queued_and_its_queue_woken():
    out = HUB.received(r.Received("mx", [arrived()]), Store(), NOW)
    assert kinds(out) == ["StoreReceived", "Timeline", "AnswerPeer", "Enqueue", "Wake"]
    assert out[0] == r.StoreReceived(index=0, jti="m1", state="queued", next_hop="es")
    assert out[3:] == [r.Enqueue("m1", "es"), r.Wake("es")]
    assert answers(out) == [("m1", "accepted", None)]


def test_a_new_envelope_for_this_node_goes_to_the_inbox_and_wakes_it():
    out = RECIPIENT.received(r.Received("hub", [arrived(next_hop=None)]), Store(), NOW)
    assert kinds(out) == ["StoreReceived", "Timeline", "AnswerPeer", "ToInbox", "WakeInbox"]
    assert out[0] == r.StoreReceived(index=0, jti="m1", state="received", next_hop=None)


# the dedupe table: what the store holds for the id → the answer, the audit event, whether anything is stored
DEDUPE = [
    ("replay of an acked envelope", known(dig="D1", ack="ACK-1"), "D1", ("duplicate", None, "envelope.duplicate", False)),
    ("same id, other envelope", known(dig="D0"), "D1", ("rejected", "malformed", "envelope.rejected", False)),
    ("same id, never acked", known(dig="D1", ack=None), "D1", ("rejected", "malformed", "envelope.rejected", False)),
    ("unknown id", None, "D1", ("accepted", None, None, True)),
]


@pytest.mark.parametrize(("held", "dig", "expected"), [row[1:] for row in DEDUPE], ids=[row[0] for row in DEDUPE])
def test_dedupe_table(held, dig, expected):
    store = Store(messages={"m1": held} if held else {})
    out = HUB.received(r.Received("mx", [arrived(dig=dig)]), store, NOW)
    status, code, event, stored = expected
    assert answers(out) == [("m1", status, code)]
    assert [e.__struct_config__.tag for e in audits(out)] == ([event] if event else [])
    assert any(isinstance(c, r.StoreReceived) for c in out) is stored
    if status == "duplicate":
        assert [c.ack for c in out if isinstance(c, r.AnswerPeer)] == ["ACK-1"]  # the first ack, again


def test_the_same_envelope_twice_in_one_batch_is_stored_once_and_both_get_its_ack():
    out = HUB.received(r.Received("mx", [arrived(index=0), arrived(index=1)]), Store(), NOW)
    assert kinds(out).count("StoreReceived") == 1 and kinds(out).count("Enqueue") == 1
    assert answers(out) == [("m1", "accepted", None), ("m1", "accepted", None)]


def test_a_different_envelope_reusing_a_message_id_within_one_batch_is_rejected_and_audited():
    """Across two requests a second envelope with a known id and another digest is refused; within one
    batch it was answered "accepted" with the first one's ack (naming the other token) and not audited."""
    out = HUB.received(r.Received("mx", [arrived(index=0, dig="D1"), arrived(index=1, dig="D2")]), Store(), NOW)
    assert kinds(out).count("StoreReceived") == 1 and kinds(out).count("Enqueue") == 1
    assert answers(out) == [("m1", "accepted", None), ("m1", "rejected", "malformed")]
    [event] = audits(out)
    assert isinstance(event, ev.EnvelopeRejected) and event.jti == "m1" and event.dig == "D2"
    assert event.code == "malformed" and "different envelope" in event.detail


def test_a_body_value_quoted_by_a_schema_fault_reaches_neither_the_audit_log_nor_the_peer():
    """SPEC §7.1: entries never hold payload content. A recipient's schema fault quotes the value at fault
    (decrypted: the previous hop, a hub, must not learn it either); the path and the reason stay."""
    err = TrazaError(Code.SCHEMA_INVALID, "body.status: Invalid enum value 'ZQXCANARY4422' for status - at `$.status`")
    out = HUB.received(r.Received("mx", [r.Refused.of(0, err, "m1")]), Store(), NOW)
    [event] = audits(out)
    [answer] = [c for c in out if isinstance(c, r.AnswerPeer)]
    for text in (event.detail, answer.detail):
        assert "ZQXCANARY4422" not in text and "$.status" in text and "Invalid enum value" in text, text


def test_a_refused_envelope_is_indexed_only_by_a_verified_id():
    err = TrazaError(Code.BAD_SIGNATURE, "ES256 signature of kid mx/sig/1 does not verify")
    out = HUB.received(r.Received("mx", [r.Refused.of(0, err, "claimed-id")]), Store(), NOW)
    [event] = audits(out)
    assert isinstance(event, ev.EnvelopeRejected) and event.jti is None and event.claimed_jti == "claimed-id"
    # the peer sees the public detail only: every signature failure looks the same
    assert [(c.status, c.detail) for c in out if isinstance(c, r.AnswerPeer)] == [
        ("rejected", "signature verification failed")]
    err.jti = "verified-id"
    [event] = audits(HUB.received(r.Received("mx", [r.Refused.of(0, err, "verified-id")]), Store(), NOW))
    assert isinstance(event, ev.EnvelopeRejected) and event.jti == "verified-id" and event.claimed_jti is None


def receipt(*, iss: str = "es", status: str = "DELIVERED", dig: str = "D1") -> r.Arrived:
    ans = Answer(mt="receipt", jti="r1", iss=iss, aud="mx", irt="m1", for_="m1", dig=dig)
    return arrived("r1", mt="receipt", iss=iss, aud="mx", dig="DR", next_hop=None, answer=ans, status=status)


def test_a_receipt_from_the_recipient_marks_our_message_delivered_with_its_evidence():
    store = Store(messages={"m1": known(state="forwarded")})
    out = ORIGIN.received(r.Received("hub", [receipt()]), store, NOW)
    assert kinds(out) == ["StoreReceived", "Timeline", "AnswerPeer", "Audit", "RecordReceipt", "SetState", "SetState"]
    assert r.SetState(jti="m1", state="delivered", node="es", detail="receipt DELIVERED") in out
    assert r.RecordReceipt(0, "m1") in out
    [event] = audits(out)
    assert isinstance(event, ev.ReceiptReceived) and event.jti == "m1" and event.receipt == "r1"


# who may answer (SPEC §5), as the relay applies it: a refused answer changes no state
ANSWERS = [
    ("a receipt signed by a hub", receipt(iss="hub"), "policy_denied"),
    ("a receipt naming another token", receipt(dig="OTHER"), "policy_denied"),
    ("an error from a node on the route", arrived("e1", mt="error", iss="hub", aud="mx", next_hop=None, code="expired",
                                                  answer=Answer(mt="error", jti="e1", iss="hub", aud="mx", irt="m1",
                                                                for_="m1", by="hub")), None),
    ("an error from a node off the route", arrived("e1", mt="error", iss="de", aud="mx", next_hop=None,
                                                   answer=Answer(mt="error", jti="e1", iss="de", aud="mx", irt="m1",
                                                                 for_="m1", by="de")), "policy_denied"),
]


@pytest.mark.parametrize(("item", "refused"), [a[1:] for a in ANSWERS], ids=[a[0] for a in ANSWERS])
def test_answer_table(item, refused):
    store = Store(messages={"m1": known(state="forwarded")})
    out = ORIGIN.received(r.Received("hub", [item]), store, NOW)
    state_changes = [c for c in out if isinstance(c, r.SetState) and c.jti == "m1"]
    if refused:
        assert answers(out) == [(item.jti, "rejected", refused)]
        assert not state_changes and not any(isinstance(c, r.StoreReceived) for c in out)
        [event] = audits(out)
        assert isinstance(event, ev.EnvelopeRejected) and event.for_ == "m1"
    else:
        assert answers(out) == [(item.jti, "accepted", None)]
        assert [c.state for c in state_changes] == ["failed"]


# --- forwarding ----------------------------------------------------------------------------------------------


def row(jti: str = "m1", attempts: int = 0, exp: float = NOW + 3600, blobs: tuple[str, ...] = ()) -> r.Row:
    return r.Row(jti=jti, attempts=attempts, exp=int(exp), blobs=blobs)


SETTLE = [
    ("verified ack", r.PeerResult(jti="m1", status="accepted", ack="A", ack_idx=7),
     ["Dequeue", "Count", "RecordAck", "Audit", "SetState", "DropTransit"]),
    ("duplicate with a verified ack", r.PeerResult(jti="m1", status="duplicate", ack="A", ack_idx=3),
     ["Dequeue", "Count", "RecordAck", "Audit", "SetState", "DropTransit"]),
    ("ack that does not verify", r.PeerResult(jti="m1", status="accepted", ack="A", ack_error="bad signature"),
     ["Reschedule"]),
    ("accepted without an ack", r.PeerResult(jti="m1", status="accepted"), ["Reschedule"]),
    ("blob missing at the peer", r.PeerResult(jti="m1", status="rejected", code="blob_missing", detail="no blob"),
     ["ForgetBlobAt", "Reschedule"]),
    ("rejected", r.PeerResult(jti="m1", status="rejected", code="classification_exceeded", detail="too secret"),
     ["Count", "DeadLetter", "Audit", "SetState", "Reply"]),
    ("something else", r.PeerResult(jti="m1", status="queued"), ["Reschedule"]),
]


@pytest.mark.parametrize(("result", "expected"), [s[1:] for s in SETTLE], ids=[s[0] for s in SETTLE])
def test_settle_table(result, expected):
    store = Store(messages={"m1": known()})
    out = HUB.answered(r.PeerAnswered("es", [row(blobs=("S1",))], [result]), store, NOW)
    assert kinds(out) == expected
    for c in out:
        if isinstance(c, r.Reschedule):
            assert c.at == NOW + CFG.retry_min
        if isinstance(c, r.SetState) and c.state == "forwarded":
            assert c.only_from == "queued"  # a receipt that overtook the ack is not undone
        if isinstance(c, r.ForgetBlobAt):
            assert c == r.ForgetBlobAt("es", "S1")


# transit copies (SPEC §11, 1.1): who drops the payload once the next hop acked it
TRANSIT = [("a relay", HUB, True), ("the origin", ORIGIN, False), ("the recipient of an answer", RECIPIENT, False)]


@pytest.mark.parametrize(("rules", "drops"), [t[1:] for t in TRANSIT], ids=[t[0] for t in TRANSIT])
def test_only_a_relay_drops_its_copy_once_acked(rules, drops):
    held = known(iss="mx", aud="es") if rules is not RECIPIENT else known(iss="es", aud="mx")
    acked = r.PeerResult(jti="m1", status="accepted", ack="A", ack_idx=1)
    out = rules.answered(r.PeerAnswered("x", [row(blobs=("S1", "S2"))], [acked]), Store(messages={"m1": held}), NOW)
    assert [c for c in out if isinstance(c, r.DropTransit)] == ([r.DropTransit("m1", ("S1", "S2"))] if drops else [])
    [forwarded] = [c for c in out if isinstance(c, r.SetState)]
    assert (forwarded.detail == "A") is not drops  # the origin's timeline shows the ack; a relay's only its index


def test_no_result_for_an_envelope_offers_it_again():
    out = HUB.answered(r.PeerAnswered("es", [row()], []), Store(messages={"m1": known()}), NOW)
    assert out == [r.Reschedule("m1", NOW + 1.0, "no result for this envelope")]


def test_a_rejection_at_the_origin_fails_the_message_without_an_error_to_itself():
    store = Store(messages={"m1": known()})
    out = ORIGIN.answered(r.PeerAnswered("hub", [row()], [r.PeerResult(jti="m1", status="rejected", code="weird")]),
                          store, NOW)
    assert "Reply" not in kinds(out)
    [dl] = [c for c in out if isinstance(c, r.DeadLetter)]
    assert dl.code == "internal"  # a code outside SPEC §9 is not trusted as one
    assert [c.state for c in out if isinstance(c, r.SetState)] == ["failed"]


def test_a_rejection_at_a_hop_sends_an_error_back_to_the_origin_naming_this_hop():
    out = HUB.answered(r.PeerAnswered("es", [row()], [r.PeerResult(jti="m1", status="rejected", code="expired")]),
                       Store(messages={"m1": known()}), NOW)
    [reply] = [c for c in out if isinstance(c, r.Reply)]
    assert (reply.mt, reply.to, reply.irt, reply.body["by"], reply.body["code"]) == ("error", "mx", "m1", "hub", "expired")
    assert [c.state for c in out if isinstance(c, r.SetState)] == ["dead"]


def test_an_answer_is_never_answered():
    store = Store(messages={"r1": known("r1", mt="receipt", iss="es", aud="mx")})
    out = HUB.answered(r.PeerAnswered("mx", [row("r1")], [r.PeerResult(jti="r1", status="rejected", code="expired")]),
                       store, NOW)
    assert "Reply" not in kinds(out) and "DeadLetter" in kinds(out)


def test_backoff_grows_per_message_with_jitter_never_before_retry_after_and_never_past_expiry():
    rows = [row("a", attempts=0), row("b", attempts=5), row("c", attempts=20, exp=NOW + 10)]
    out = HUB.unreachable(r.PeerUnreachable(peer="es", rows=rows, error="down", rand=[0.5, 0.5, 0.5]), NOW)
    at = {c.jti: c.at for c in out if isinstance(c, r.Reschedule)}
    assert NOW < at["a"] < at["b"]  # exponential per message
    assert at["c"] == NOW + 10  # one last look at expiry time
    jitter = HUB.unreachable(r.PeerUnreachable(peer="es", rows=rows[:1], error="down", rand=[0.0]), NOW)
    assert jitter[0].at != at["a"]  # the jitter comes from the event's randomness
    late = HUB.unreachable(r.PeerUnreachable(peer="es", rows=rows[:1], error="x", rand=[0.5], retry_after=120.0), NOW)
    assert late[0].at >= NOW + 120.0


def test_a_row_that_expired_in_the_queue_is_audited_then_dead_lettered():
    out = HUB.expired(r.QueueExpired("es", [row()]), Store(messages={"m1": known()}), NOW)
    assert kinds(out) == ["Audit", "DeadLetter", "Audit", "SetState", "Reply"]
    assert [type(e).__name__ for e in audits(out)] == ["EnvelopeExpired", "EnvelopeDeadLettered"]


def test_a_blob_refused_for_size_fails_the_message_once_never_retried():
    out = HUB.too_large(r.TooLarge("es", [(row(), "blob over 4 GiB")]), Store(messages={"m1": known()}), NOW)
    assert "Reschedule" not in kinds(out)
    [dl] = [c for c in out if isinstance(c, r.DeadLetter)]
    assert dl.code == "too_large"


def test_rows_that_vanished_from_the_store_are_skipped():
    assert HUB.expired(r.QueueExpired("es", [row("gone")]), Store(), NOW) == []
    assert HUB.answered(r.PeerAnswered("es", [row("gone")], []), Store(), NOW) == []


# --- the size of a batch ---------------------------------------------------------------------------------------

MIB = 1024 * 1024


def test_batch_body_size_is_the_length_of_the_body_the_sender_writes():
    envs = [b'{"token":"a","payload":"xx"}', b'{"token":"b"}', b"{}"]
    for n in range(1, 4):
        body = r.batch_body(envs[:n])
        assert r.batch_body_size([len(e) for e in envs[:n]]) == len(body)
        assert len(msgspec.json.decode(body)["envelopes"]) == n  # the JSON a receiver decodes


@pytest.mark.parametrize(("sizes", "max_bytes", "max_count", "fits"), [
    ([], 1000, 256, 0),  # nothing queued
    ([100] * 5, 10_000, 256, 5),  # all of them fit
    ([100] * 5, 10_000, 3, 3),  # max_batch still caps the count
    ([100, 100, 100], 16 + 100 + 1 + 100, 256, 2),  # framing counted exactly: two fit to the byte...
    ([100, 100, 100], 16 + 100 + 1 + 100 - 1, 256, 1),  # ...one byte less and only one does
    ([2000, 10], 1000, 256, 1),  # the first goes alone even over the limit (the peer decides)
    ([10, 2000, 10], 1000, 256, 1),  # FIFO: nothing jumps the queue past an envelope that does not fit
])
def test_fit_batch_table(sizes, max_bytes, max_count, fits):
    assert r.fit_batch(sizes, max_bytes=max_bytes, max_count=max_count) == fits


def test_envelopes_of_almost_1_mib_fill_a_16_mib_request_without_passing_it():
    """The liveness defect this stops: 24 envelopes of ~0.93 MiB went as one batch of ~22 MiB (capped by
    count only), refused whole with 413 by every peer, for ever."""
    sizes = [962_275] * 24
    n = r.fit_batch(sizes, max_bytes=16 * MIB, max_count=256)
    assert n == 17
    assert r.batch_body_size(sizes[:n]) <= 16 * MIB < r.batch_body_size(sizes[:n + 1])
    assert r.fit_batch([MIB] * 300, max_bytes=16 * MIB, max_count=256) == 15  # 1 MiB each: 15 and the framing


def test_a_batch_refused_as_too_large_is_halved_until_one_envelope_which_is_refused_for_good():
    sizes = [10_000] * 16
    limit, sent = 16 * MIB, []
    while (n := r.fit_batch(sizes, max_bytes=limit, max_count=256)) > 1:
        sent.append(n)
        limit = r.split_after_too_large(sizes[:n]) or 0  # the peer refuses every batch (413)
    assert sent == [16, 8, 4, 2]
    assert r.split_after_too_large(sizes[:1]) is None  # alone and still refused: never retried


def test_a_split_batch_fits_the_peer_again():
    """A peer whose limit lies between: the halved limit lets a batch through."""
    sizes = [10_000] * 16
    peer_limit = 50_000
    limit = 16 * MIB
    for _ in range(10):
        n = r.fit_batch(sizes, max_bytes=limit, max_count=256)
        if r.batch_body_size(sizes[:n]) <= peer_limit:
            break
        limit = r.split_after_too_large(sizes[:n]) or 0
    assert n == 4 and r.batch_body_size(sizes[:n]) <= peer_limit


# --- local delivery and operators ----------------------------------------------------------------------------


def test_inbox_ack_table():
    store = Store(messages={"m1": known(iss="mx", aud="es", state="received")}, inbox={"m1": False})
    out = RECIPIENT.inbox_acked(r.InboxAcked(jti="m1", who="system"), store, NOW)
    assert kinds(out) == ["TakeInbox", "Audit", "SetState", "Count", "Reply"]
    [reply] = [c for c in out if isinstance(c, r.Reply)]
    assert (reply.mt, reply.to, reply.body["dig"], reply.body["status"]) == ("receipt", "mx", "D1", "DELIVERED")
    # traza_messages_delivered_total{type} is labelled with the message type, as the submitted counter (it
    # was always type="message")
    [count] = [c for c in out if isinstance(c, r.Count)]
    assert (count.what, count.labels) == ("delivered", (store.messages["m1"].mt,))
    store.inbox["m1"] = True
    assert RECIPIENT.inbox_acked(r.InboxAcked(jti="m1", who="system"), store, NOW) == []  # acked once
    with pytest.raises(KeyError):
        RECIPIENT.inbox_acked(r.InboxAcked(jti="nope", who="system"), store, NOW)


def test_dead_letter_retry_of_a_live_message_queues_it_and_of_an_expired_one_is_refused_and_audited():
    store = Store(messages={"m1": known(state="dead")}, dead={5: ("m1", "es")})
    out = HUB.dead_letter_action(r.DeadLetterAction(dl_id=5, action="retry", operator="ana"), store, NOW)
    assert kinds(out) == ["TakeDeadLetter", "Audit", "Enqueue", "Wake", "SetState"]
    store.messages["m1"] = known(state="dead", exp=NOW - 1)
    with pytest.raises(r.Refusal) as refused:
        HUB.dead_letter_action(r.DeadLetterAction(dl_id=5, action="retry", operator="ana"), store, NOW)
    assert refused.value.code is Code.EXPIRED
    [event] = audits(refused.value.writes)
    assert isinstance(event, ev.OperatorAction) and event.outcome == "refused"
    discard = HUB.dead_letter_action(r.DeadLetterAction(dl_id=5, action="discard", operator="ana"), store, NOW)
    assert [c.state for c in discard if isinstance(c, r.SetState)] == ["discarded"]
    # SPEC §7.1: an entry about a message carries its fields (they had only the action, operator and jti)
    m = store.messages["m1"]
    for entry in (*audits(out), *audits(refused.value.writes), *audits(discard)):
        got = ev.as_entry(entry)
        assert (got["mt"], got["iss"], got["aud"], got["dig"], got["from"], got["to"]) == (
            m.mt, m.iss, m.aud, m.dig, HUB.here, "es"), got
    with pytest.raises(KeyError):
        HUB.dead_letter_action(r.DeadLetterAction(dl_id=6, action="discard", operator="ana"), store, NOW)


RESEND = [
    ("forwarded, waiting for its receipt", known(state="forwarded", next_hop="hub"), set(), None),
    ("still queued", known(state="queued", next_hop="hub"), {"m1"}, Code.POLICY_DENIED),
    ("already delivered", known(state="delivered", next_hop="hub"), set(), Code.POLICY_DENIED),
    ("expired", known(state="forwarded", next_hop="hub", exp=NOW - 1), set(), Code.EXPIRED),
]


@pytest.mark.parametrize(("held", "outbox", "refused"), [x[1:] for x in RESEND], ids=[x[0] for x in RESEND])
def test_resend_table(held, outbox, refused):
    store = Store(messages={"m1": held}, outbox=outbox)
    event = r.Resend(jti="m1", operator="ana")
    if refused is None:
        out = ORIGIN.resend(event, store, NOW)
        assert kinds(out) == ["Audit", "Enqueue", "Wake", "SetState"] and r.Enqueue("m1", "hub") in out
        return
    with pytest.raises(r.Refusal) as err:
        ORIGIN.resend(event, store, NOW)
    assert err.value.code is refused and kinds(err.value.writes) == ["Audit"]


def test_resend_of_a_message_from_elsewhere_names_nothing():
    with pytest.raises(KeyError):
        HUB.resend(r.Resend(jti="m1", operator="ana"), Store(messages={"m1": known()}), NOW)


def test_writes_and_effects_partition_the_commands():
    out = HUB.received(r.Received("mx", [arrived()]), Store(), NOW)
    assert r.effects(out) == [r.Wake("es")]
    assert len(r.writes(out)) + len(r.effects(out)) == len(out)


# --- typed audit events -------------------------------------------------------------------------------------


def test_typed_events_keep_their_wire_names_and_leave_out_what_is_unset():
    entry = ev.as_entry(ev.EnvelopeRejected(from_="mx", to="hub", for_="m1", code="policy_denied", detail="no"))
    assert entry == {"event": "envelope.rejected", "from": "mx", "to": "hub", "for": "m1", "code": "policy_denied",
                     "detail": "no"}
    fwd = ev.EnvelopeForwarded(jti="m1", mt="notice", iss="mx", aud="es", dig="D", from_="hub", to="es", ack_idx=3)
    assert ev.decode_entry(msgspec.json.encode(ev.as_entry(fwd))) == fwd


def test_a_peers_retry_after_longer_than_the_longest_backoff_is_capped():
    """A row is never scheduled further ahead than ``retry_max`` (or its expiry), whatever Retry-After a
    peer asks for: a schedule beyond that can then only come from a clock moved back (the forward loop
    pulls such rows in, docs/reliability.md)."""
    row = r.Row(jti="m1", attempts=0, exp=NOW + 7 * 86400)
    out = HUB.unreachable(r.PeerUnreachable(peer="es", rows=[row], error="HTTP 503", retry_after=86400.0,
                                            rand=[0.5]), NOW)
    [resched] = [c for c in out if isinstance(c, r.Reschedule)]
    assert resched.at <= NOW + HUB.cfg.retry_max, resched

