"""Message bodies (SPEC §5): every type round-trips, the codec API behaves as documented."""

from __future__ import annotations

import datetime as dt
import json

import msgspec
import pytest
from core.message_examples import EXAMPLES, TRACE_REQUEST_ID, example, set_path

from gateway.core import messages as m
from gateway.core.errors import Code, TrazaError

SPEC_TYPES = [
    "trace.request",
    "trace.acknowledgement",
    "trace.response",
    "firearm.status.query",
    "firearm.status.answer",
    "ballistic.submission",
    "ballistic.hit",
    "licence.verify.query",
    "licence.verify.answer",
    "notice",
    "receipt",
    "error",
]


def raw(body: dict) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def test_registry_has_exactly_the_spec_types():
    assert list(m.MESSAGE_TYPES) == SPEC_TYPES
    assert set(EXAMPLES) == set(SPEC_TYPES)
    for mt, cls in m.MESSAGE_TYPES.items():
        assert issubclass(cls, msgspec.Struct)
        assert m.MESSAGE_TYPE_OF[cls] == mt


@pytest.mark.parametrize("mt", SPEC_TYPES)
def test_example_round_trips(mt):
    body = m.decode_body(mt, raw(EXAMPLES[mt]))
    assert isinstance(body, m.MESSAGE_TYPES[mt])
    again = m.encode_body(body)
    assert m.decode_body(mt, again) == body
    # Re-encoding neither invents nor drops a member: the JSON is the example itself.
    assert json.loads(again) == EXAMPLES[mt]
    assert m.message_type(body) == mt


@pytest.mark.parametrize("mt", SPEC_TYPES)
def test_validate_body_matches_decode_body(mt):
    assert m.validate_body(mt, example(mt)) == m.decode_body(mt, raw(EXAMPLES[mt]))


def test_decoded_values_have_their_types():
    tr = m.decode_body("trace.request", raw(EXAMPLES["trace.request"]))
    assert isinstance(tr, m.TraceRequest)
    assert tr.recovery.date == dt.date(2026, 10, 14)
    assert tr.firearm.type == "P" and tr.firearm.country_of_manufacture == "AT"
    assert tr.firearm.barrel_length_mm == 114 and isinstance(tr.firearm.barrel_length_mm, int)
    ack = m.decode_body("trace.acknowledgement", raw(EXAMPLES["trace.acknowledgement"]))
    assert isinstance(ack, m.TraceAcknowledgement)
    assert ack.received_at == dt.datetime(2026, 11, 27, 8, 14, 3, tzinfo=dt.UTC)
    rc = m.decode_body("receipt", raw(EXAMPLES["receipt"]))
    assert isinstance(rc, m.Receipt) and rc.for_ == TRACE_REQUEST_ID
    err = m.decode_body("error", raw(EXAMPLES["error"]))
    assert isinstance(err, m.ErrorMessage) and err.code is Code.EXPIRED


def test_optional_members_stay_absent():
    body = m.decode_body("trace.acknowledgement", b'{"received_at":"2026-11-27T09:14:03Z"}')
    assert m.encode_body(body) == b'{"received_at":"2026-11-27T09:14:03Z"}'
    # An explicit null is read as "absent" and is not written back.
    body = m.decode_body(
        "trace.acknowledgement", b'{"received_at":"2026-11-27T09:14:03Z","tracking_ref":null}'
    )
    assert m.encode_body(body) == b'{"received_at":"2026-11-27T09:14:03Z"}'
    # An empty list is kept as given.
    body = m.decode_body(
        "trace.acknowledgement", b'{"received_at":"2026-11-27T09:14:03Z","missing_information":[]}'
    )
    assert json.loads(m.encode_body(body))["missing_information"] == []


def test_completed_trace_needs_no_reason():
    body = example("trace.response")
    body["status"] = "COMPLETED"
    del body["status_reason"]
    out = m.decode_body("trace.response", raw(body))
    assert isinstance(out, m.TraceResponse) and out.status_reason is None


def test_rules_hold_for_structs_built_in_code():
    with pytest.raises(m.RuleViolation) as ei:
        m.TraceResponse(status="REFUSED")
    assert ei.value.field == "status_reason"
    with pytest.raises(ValueError, match="free_text"):
        m.Firearm(type="Z")
    ok = m.TraceResponse(status="REFUSED", status_reason=m.StatusReason(code="ONGOING_INVESTIGATION"))
    assert m.decode_body("trace.response", m.encode_body(ok)) == ok


def test_built_struct_encodes_to_wire_names():
    r = m.Receipt(
        for_=TRACE_REQUEST_ID,
        dig=EXAMPLES["receipt"]["dig"],
        status="DELIVERED",
        at=dt.datetime(2026, 11, 27, 8, 14, 5, tzinfo=dt.UTC),
    )
    assert json.loads(m.encode_body(r)) == {
        "for": TRACE_REQUEST_ID,
        "dig": EXAMPLES["receipt"]["dig"],
        "status": "DELIVERED",
        "at": "2026-11-27T08:14:05Z",
    }


def test_error_code_list_is_spec_section_9():
    for code in Code:
        body = set_path(example("error"), "code", code.value)
        out = m.decode_body("error", raw(body))
        assert isinstance(out, m.ErrorMessage) and out.code is code


def test_unknown_type():
    for call in (
        lambda: m.decode_body("trace.request.v2", b"{}"),
        lambda: m.validate_body("firearm.trace", {}),
        lambda: m.json_schema("nope"),
    ):
        with pytest.raises(TrazaError) as ei:
            call()
        assert ei.value.code is Code.UNKNOWN_TYPE
        assert "not known" in ei.value.detail


def test_message_type_of_a_non_body():
    with pytest.raises(TrazaError) as ei:
        m.message_type(m.Firearm(make_name="Glock"))
    assert ei.value.code is Code.UNKNOWN_TYPE


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not valid UTF-8 JSON"),
        (b'{"title": "x", ', "not valid UTF-8 JSON"),
        (b"[]", "Expected `object`, got `array`"),
        (b'"notice"', "Expected `object`, got `str`"),
    ],
)
def test_not_an_object(data, reason):
    with pytest.raises(m.BodyInvalid) as ei:
        m.decode_body("notice", data)
    e = ei.value
    assert e.code is Code.SCHEMA_INVALID
    assert e.path == "$"
    assert reason in e.reason
    assert e.detail.endswith(" - at `$`")
    assert e.mt == "notice"


@pytest.mark.parametrize("data", [b"\xff\xfe{}", b'{"title":"x","title":"y","text":"t"}', b"[" * 40 + b"]" * 40])
def test_not_strict_json_is_malformed(data):
    # SPEC §3.4 (1.1): not UTF-8, a repeated member name, nesting deeper than 32 - malformed, not a schema fault
    with pytest.raises(TrazaError) as ei:
        m.decode_body("notice", data)
    assert ei.value.code is Code.MALFORMED
    assert ei.value.detail.startswith("notice body: ")


def test_error_detail_format():
    body = set_path(example("trace.response"), "custody_chain[1].event", "SHIPPED")
    with pytest.raises(TrazaError) as ei:
        m.decode_body("trace.response", raw(body))
    assert ei.value.code is Code.SCHEMA_INVALID
    assert ei.value.detail == (
        "Invalid enum value 'SHIPPED' for event; allowed: CONVERTED, DEACTIVATED, DESTROYED, EXPORTED, IMPORTED, "
        "MANUFACTURED, PRIVATE_TRANSFER, REPORTED_LOST, REPORTED_STOLEN, RETAIL_SALE, STATE_TO_CIVILIAN_TRANSFER, "
        "TRANSFERRED_TO_DEALER - at `$.custody_chain[1].event`")
    assert ei.value.public_detail == ei.value.detail


def test_unknown_member_with_an_odd_name_is_quoted_in_the_path():
    body = example("notice")
    body["a.b`c"] = 1
    with pytest.raises(m.BodyInvalid) as ei:
        m.decode_body("notice", raw(body))
    assert ei.value.path == '$["a.b`c"]'


def test_decode_accepts_any_key_order():
    body = EXAMPLES["receipt"]
    reordered = {k: body[k] for k in reversed(list(body))}
    assert m.decode_body("receipt", raw(reordered)) == m.decode_body("receipt", raw(body))
