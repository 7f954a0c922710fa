"""Strict validation of message bodies (SPEC §5): every bad body is `schema_invalid` with the JSON path of
the first fault, for missing members, unknown members, wrong types, values outside code lists and the
conditional rules."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from core.message_examples import EXAMPLES, del_path, example, set_path

from gateway.core import messages as m
from gateway.core.errors import Code

UUID4 = "3f2b8c1e-4d5a-4b6c-9e7f-0a1b2c3d4e5f"


def raw(body: dict) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def rejected(mt: str, body: dict[str, Any]) -> m.BodyInvalid:
    """Decode ``body`` both ways (bytes and Python data); both must fail identically."""
    with pytest.raises(m.BodyInvalid) as ei:
        m.decode_body(mt, raw(body))
    e = ei.value
    assert e.code is Code.SCHEMA_INVALID
    assert e.detail == f"{e.reason} - at `{e.path}`"
    with pytest.raises(m.BodyInvalid) as ei2:
        m.validate_body(mt, body)
    assert ei2.value.path == e.path
    return e


def required_members(mt: str) -> list[str]:
    info = msgspec.structs.fields(m.MESSAGE_TYPES[mt])
    return [f.encode_name for f in info if f.required]


REQUIRED = {
    # recovery: required unless request_kind is SUSPECT_GUN_REFERRAL (a rule, see RULES)
    "trace.request": ["request_kind", "firearm", "illicit_basis", "legal_basis", "intended_use"],
    "trace.acknowledgement": ["received_at"],
    "trace.response": ["status"],
    "firearm.status.query": ["serial_number", "context"],
    "firearm.status.answer": ["result", "hit_confirmation_required"],
    "ballistic.submission": [
        "exhibit_id",
        "exhibit_kind",
        "origin",
        "calibre",
        "occurrence_date",
        "topography",
    ],
    "ballistic.hit": ["hit_id", "status", "exhibits"],
    "licence.verify.query": ["licence_number", "issuing_state", "context"],
    "licence.verify.answer": ["status"],
    "notice": ["title", "text"],
    "receipt": ["for", "dig", "status", "at"],
    "error": ["for", "code", "at", "by"],
}


@pytest.mark.parametrize("mt", list(REQUIRED))
def test_required_members_are_the_bold_ones_of_the_spec(mt):
    assert sorted(required_members(mt)) == sorted(REQUIRED[mt])


@pytest.mark.parametrize(("mt", "member"), [(mt, f) for mt, fs in REQUIRED.items() for f in fs])
def test_missing_required_member(mt, member):
    e = rejected(mt, del_path(example(mt), member))
    assert e.path == f"$.{member}"
    assert e.reason == f"Object missing required field `{member}`"


# Missing required members of nested objects.
NESTED_MISSING = [
    ("trace.request", "recovery.date"),
    ("trace.request", "firearm.make_codes[0].code"),
    ("trace.request", "case_refs[0].number"),
    ("trace.request", "firearm.import_marking.country_of_import"),
    ("trace.response", "status_reason.code"),
    ("trace.response", "custody_chain[2].date"),
    ("trace.response", "custody_chain[0].event"),
    ("firearm.status.answer", "hits[0].record_ref"),
    ("firearm.status.answer", "hits[0].record_status"),
    ("firearm.status.answer", "hits[0].match_quality"),
    ("ballistic.submission", "topography[0].sha256"),
    ("ballistic.submission", "topography[0].region"),
    ("ballistic.hit", "exhibits[1].owner_country"),
    ("ballistic.hit", "confirmation.examiner"),
    ("licence.verify.answer", "licence.goods[0].description"),
]


@pytest.mark.parametrize(("mt", "path"), NESTED_MISSING)
def test_missing_nested_member(mt, path):
    e = rejected(mt, del_path(example(mt), path))
    assert e.path == f"$.{path}"
    assert "missing required field" in e.reason


UNKNOWN_AT = {
    "trace.request": "firearm",
    "trace.acknowledgement": "",
    "trace.response": "custody_chain[1]",
    "firearm.status.query": "",
    "firearm.status.answer": "hits[0].owner",
    "ballistic.submission": "topography[0]",
    "ballistic.hit": "confirmation",
    "licence.verify.query": "firearm_markings[0]",
    "licence.verify.answer": "licence.goods[0]",
    "notice": "",
    "receipt": "",
    "error": "",
}


@pytest.mark.parametrize("mt", list(UNKNOWN_AT))
def test_unknown_member_at_top_level(mt):
    body = example(mt)
    body["urgency"] = "URGENT"
    e = rejected(mt, body)
    assert e.path == "$.urgency"
    assert e.reason.startswith("Object contains unknown field `urgency` (members here: "), e.reason


@pytest.mark.parametrize("mt", [mt for mt, at in UNKNOWN_AT.items() if at])
def test_unknown_member_in_a_nested_object(mt):
    at = UNKNOWN_AT[mt]
    body = set_path(example(mt), f"{at}.colour", "black")
    e = rejected(mt, body)
    assert e.path == f"$.{at}.colour"


# (type, member, bad value, reason fragment): values outside a code list, wrong types, bad formats.
BAD_VALUES = [
    ("trace.request", "request_kind", "SUSPECT_GUN", "Invalid enum value 'SUSPECT_GUN'"),
    ("trace.request", "firearm.type", "PR", "Invalid enum value 'PR'"),
    ("trace.request", "firearm.type", "p", "Invalid enum value 'p'"),
    ("trace.request", "firearm.type_detail", "Y", "Invalid enum value 'Y'"),
    ("trace.request", "firearm.make_codes[0].system", "ATF", "Invalid enum value 'ATF'"),
    ("trace.request", "firearm.country_of_manufacture", "AUT", "Expected `str` matching regex"),
    ("trace.request", "firearm.country_of_manufacture", "at", "Expected `str` matching regex"),
    ("trace.request", "firearm.year_of_manufacture", "2019", "Expected `int | null`, got `str`"),
    ("trace.request", "firearm.year_of_manufacture", 19, "Expected `int` >= 1000"),
    ("trace.request", "firearm.serial_obliterated", "no", "Expected `bool | null`, got `str`"),
    ("trace.request", "firearm.serial_number", "", "Expected `str` of length >= 1"),
    ("trace.request", "firearm.serial_number", "X" * 65, "Expected `str` of length <= 64"),
    ("trace.request", "firearm.barrel_length_mm", 0, "Expected `int` >= 1"),
    ("trace.request", "firearm.eu_category", "D", "Expected `str` matching regex"),
    ("trace.request", "illicit_basis[1]", "STOLEN", "Invalid enum value 'STOLEN'"),
    ("trace.request", "illicit_basis", [], "Expected `array` of length >= 1"),
    ("trace.request", "illicit_basis", "UNLICENSED_TRANSFER", "Expected `array`, got `str`"),
    ("trace.request", "requested_info[0]", "LAST_LEGAL_OWNER", "Invalid enum value 'LAST_LEGAL_OWNER'"),
    ("trace.request", "recovery.date", "14/10/2026", "Invalid RFC3339 encoded date"),
    ("trace.request", "recovery.date", "2026-02-30", "Invalid RFC3339 encoded date"),
    ("trace.request", "recovery.location.country", "México", "Expected `str` matching regex"),
    ("trace.request", "requester.email", "rastreo at fgr", "Expected `str` matching regex"),
    ("trace.request", "respond_by", "2026-12-15T00:00:00Z", "Invalid RFC3339 encoded date"),
    ("trace.acknowledgement", "received_at", "2026-11-27T09:14:03", "Expected `datetime` with a timezone"),
    ("trace.acknowledgement", "received_at", 1795770843, "Expected `datetime`, got `int`"),
    ("trace.acknowledgement", "received_at", "27.11.2026 09:14", "Invalid RFC3339 encoded datetime"),
    ("trace.acknowledgement", "tracking_ref", "", "Expected `str` of length >= 1"),
    ("trace.acknowledgement", "missing_information", "photo", "Expected `array | null`, got `str`"),
    ("trace.response", "status", "DONE", "Invalid enum value 'DONE'"),
    ("trace.response", "status", None, "Expected `str`, got `null`"),
    ("trace.response", "custody_chain[1].event", "SHIPPED", "Invalid enum value 'SHIPPED'"),
    ("trace.response", "custody_chain[2].country", "USA", "Expected `str` matching regex"),
    ("trace.response", "status_reason", "records destroyed", "Expected `object | null`, got `str`"),
    ("firearm.status.query", "context", "INVESTIGATION", "Invalid enum value 'INVESTIGATION'"),
    ("firearm.status.query", "type", "Pistol", "Invalid enum value 'Pistol'"),
    ("firearm.status.query", "serial_number", 12345, "Expected `str`, got `int`"),
    ("firearm.status.answer", "result", "ERROR", "Invalid enum value 'ERROR'"),
    ("firearm.status.answer", "hits[0].record_status", "WANTED", "Invalid enum value 'WANTED'"),
    ("firearm.status.answer", "hits[0].match_quality", "FUZZY", "Invalid enum value 'FUZZY'"),
    ("firearm.status.answer", "hit_confirmation_required", "yes", "Expected `bool`, got `str`"),
    ("firearm.status.answer", "hits[0].firearm.type", "X", "Invalid enum value 'X'"),
    ("ballistic.submission", "exhibit_kind", "SHOTSHELL", "Invalid enum value 'SHOTSHELL'"),
    ("ballistic.submission", "origin", "TEST", "Invalid enum value 'TEST'"),
    ("ballistic.submission", "topography", [], "Expected `array` of length >= 1"),
    ("ballistic.submission", "topography[0].sha256", "98" * 32, "Expected `str` matching regex"),
    (
        "ballistic.submission",
        "topography[0].sha256",
        "mD1xaKh5gm_E4k-YplcJOTS2IritLmB9-MqNT4-VOXo=",
        "Expected `str` matching regex",
    ),
    ("ballistic.submission", "topography[0].region", "Land", "Invalid enum value 'Land'"),
    ("ballistic.submission", "topography[0].size_x", 0, "Expected `int` >= 1"),
    ("ballistic.submission", "topography[0].increment_x_m", 2.58, "Expected `float` <= 1"),
    ("ballistic.submission", "bullet.twist", "Clockwise", "Invalid enum value 'Clockwise'"),
    ("ballistic.submission", "bullet.number_of_lands", -1, "Expected `int` >= 0"),
    ("ballistic.submission", "correlation.countries[1]", "mx", "Expected `str` matching regex"),
    ("ballistic.submission", "occurrence_date", "UNKNOWN", "Invalid RFC3339 encoded date"),
    ("ballistic.hit", "status", "MATCH", "Invalid enum value 'MATCH'"),
    ("ballistic.hit", "confirmation.method", "MICROSCOPE", "Invalid enum value 'MICROSCOPE'"),
    ("ballistic.hit", "next_steps[0]", "ARREST", "Invalid enum value 'ARREST'"),
    ("ballistic.hit", "correlation.rank", 0, "Expected `int` >= 1"),
    ("ballistic.hit", "correlation.score", "high", "Expected `int | float | null`, got `str`"),
    ("licence.verify.query", "context", "DENIAL_CONSULTATION", "Invalid enum value 'DENIAL_CONSULTATION'"),
    ("licence.verify.query", "issuing_state", "Austria", "Expected `str` matching regex"),
    (
        "licence.verify.query",
        "firearm_markings",
        {"serial_number": "BKRW537"},
        "Expected `array | null`, got `object`",
    ),
    ("licence.verify.answer", "status", "UNKNOWN", "Invalid enum value 'UNKNOWN'"),
    ("licence.verify.answer", "licence.goods[0].quantity", 0, "Expected `int` >= 1"),
    ("licence.verify.answer", "licence.goods[0].quantity", 1.5, "Expected `int | null`, got `float`"),
    ("licence.verify.answer", "covers_firearm", 1, "Expected `bool | null`, got `int`"),
    ("notice", "links[1]", "not-a-message-id", "Expected `str` matching regex"),
    ("notice", "links[0]", UUID4, "Expected `str` matching regex"),
    ("notice", "title", "", "Expected `str` of length >= 1"),
    ("receipt", "status", "ACCEPTED", "Invalid enum value 'ACCEPTED'"),
    ("receipt", "for", "019A7C3E-52D1-7A4B-8C6E-2F9D1B3A4C5E", "Expected `str` matching regex"),
    ("receipt", "dig", "q1Kc9m0wXh2vYt7ZpR3sLf8uN4bJ6dEaGi5oMkWyTxB", "Expected `str` matching regex"),
    ("receipt", "at", "2026-11-27", "Invalid RFC3339 encoded datetime"),
    ("error", "code", "timeout", "Invalid enum value 'timeout'"),
    ("error", "code", "EXPIRED", "Invalid enum value 'EXPIRED'"),
    ("error", "by", "Latam Hub", "Expected `str` matching regex"),
    ("error", "for", 42, "Expected `str`, got `int`"),
]


@pytest.mark.parametrize(("mt", "member", "value", "reason"), BAD_VALUES)
def test_bad_value(mt, member, value, reason):
    e = rejected(mt, set_path(example(mt), member, value))
    assert e.path == f"$.{member}"
    assert reason in e.reason, e.reason


def test_every_type_has_a_bad_value_case():
    assert {mt for mt, *_ in BAD_VALUES} == set(m.MESSAGE_TYPES)


# Conditional rules: (type, changes to apply as (path, value|DELETE), expected path, reason fragment).
DELETE = object()
RULES = [
    ("trace.response", [("status_reason", DELETE)], "status_reason", "required unless status is `COMPLETED`"),
    ("trace.response", [("status", "REFUSED"), ("status_reason", None)], "status_reason", "required unless"),
    (
        "trace.response",
        [("custody_chain[1].document_ref", DELETE)],
        "custody_chain[1].document_ref",
        "required for an `EXPORTED` event",
    ),
    ("trace.request", [("firearm.type", "Z")], "firearm.free_text", "required when type is `Z`"),
    (
        "trace.request",
        [("firearm.make_codes[0].code", "ZZZ")],
        "firearm.free_text",
        "required when the NCIC make code is `ZZZ`",
    ),
    ("trace.request", [("illicit_basis[1]", "ILLICIT_UNDER_NATIONAL_LAW")], "illicit_basis[1]", "duplicate"),
    ("trace.request", [("requested_info[2]", "MANUFACTURE_RECORD")], "requested_info[2]", "duplicate"),
    (
        "firearm.status.answer",
        [("hits[0].firearm.type", "Z")],
        "hits[0].firearm.free_text",
        "required when type",
    ),
    ("firearm.status.answer", [("result", "NO_HIT")], "hits", "must be absent or empty"),
    ("firearm.status.answer", [("hits", [])], "hits", "exactly one hit"),
    ("firearm.status.answer", [("hits", DELETE)], "hits", "exactly one hit"),
    ("firearm.status.answer", [("result", "MULTIPLE_HITS")], "hits", "two or more hits"),
    ("ballistic.submission", [("origin", "TEST_FIRE")], "firearm", "required when origin is `TEST_FIRE`"),
    ("ballistic.submission", [("cartridge_case", {"brand": "Fiocchi"})], "cartridge_case", "not allowed"),
    (
        "ballistic.submission",
        [("exhibit_kind", "CARTRIDGE_CASE"), ("bullet", DELETE)],
        "topography[0].region",
        "`LEA` is not a region of a cartridge_case",
    ),
    ("ballistic.submission", [("exhibit_kind", "CARTRIDGE_CASE")], "bullet", "not allowed"),
    (
        "ballistic.submission",
        [("correlation.date_to", "2024-12-31")],
        "correlation.date_to",
        "is before date_from",
    ),
    ("ballistic.submission", [("correlation.countries[2]", "ES")], "correlation.countries[2]", "duplicate"),
    ("ballistic.hit", [("confirmation", DELETE)], "confirmation", "required when status is `CONFIRMED_HIT`"),
    ("ballistic.hit", [("exhibits", [EXAMPLES["ballistic.hit"]["exhibits"][0]])], "exhibits", "length >= 2"),
    (
        "ballistic.hit",
        [("exhibits[1]", {"exhibit_id": "ES-CGPC-2026-0457-P2", "owner_country": "ES"})],
        "exhibits[1]",
        "duplicate",
    ),
    ("ballistic.hit", [("next_steps[1]", "INITIATE_TRACE")], "next_steps[1]", "duplicate"),
    ("licence.verify.answer", [("status", "NOT_DISCLOSABLE")], "licence", "not allowed when status"),
    ("licence.verify.answer", [("status", "NOT_FOUND")], "licence", "not allowed when status"),
    (
        "licence.verify.answer",
        [("licence.date_of_expiry", "2019-07-29")],
        "licence.date_of_expiry",
        "is before date_of_issue",
    ),
    (
        "licence.verify.answer",
        [("licence.transit_countries", ["DE", "DE"])],
        "licence.transit_countries[1]",
        "dup",
    ),
    (
        "licence.verify.query",
        [("firearm_markings[0].type", "Z")],
        "firearm_markings[0].free_text",
        "type is `Z`",
    ),
    # issue #15: domain fields
    ("trace.request", [("recovery", DELETE)], "recovery", "required unless request_kind is `SUSPECT_GUN_REFERRAL`"),
    ("trace.request", [("priority", "URGENT")], "priority_justification", "required when priority is `URGENT`"),
    (
        "trace.request",
        [("firearm.barrel_length", {"value": 5, "unit": "in"})],
        "firearm.barrel_length",
        "contradicts barrel_length_mm 114",
    ),
    (
        "trace.request",
        [("firearm.essential_components", [{"component": "SLIDE", "serial_or_marking": "BKRW537"}] * 2)],
        "firearm.essential_components[1]",
        "duplicate",
    ),
    ("notice", [("intelligence", True)], "source_reliability", "required when the content is intelligence"),
    ("notice", [("source_reliability", "B")], "information_accuracy", "required when the content is intelligence"),
    ("notice", [("information_accuracy", 2)], "source_reliability", "required when the content is intelligence"),
    (
        "notice",
        [("intelligence", False), ("source_reliability", "B"), ("information_accuracy", 2)],
        "intelligence",
        "contradicts source_reliability",
    ),
    (
        "licence.verify.answer",
        [("status", "NOT_DISCLOSABLE"), ("licence", DELETE), ("euc", {"number": "US-DOC-EUC-2019-118"})],
        "euc",
        "not allowed when status is `NOT_DISCLOSABLE`",
    ),
]


def apply(body: dict, changes: list) -> dict:
    for path, value in changes:
        if value is DELETE:
            del_path(body, path)
        else:
            set_path(body, path, value)
    return body


@pytest.mark.parametrize(("mt", "changes", "path", "reason"), RULES)
def test_conditional_rule(mt, changes, path, reason):
    e = rejected(mt, apply(example(mt), changes))
    assert e.path == f"$.{path}"
    assert reason in e.reason, e.reason


# The same rules are satisfied by these bodies.
ACCEPTED = [
    ("trace.response", [("status", "COMPLETED"), ("status_reason", DELETE)]),
    (
        "trace.response",
        [("custody_chain[1].event", "TRANSFERRED_TO_DEALER"), ("custody_chain[1].document_ref", DELETE)],
    ),
    ("trace.request", [("firearm.type", "Z"), ("firearm.free_text", "Craft-made pistol, no markings")]),
    (
        "trace.request",
        [("request_kind", "OBLITERATED_SERIAL_REFERRAL"), ("firearm.serial_obliterated", True)],
    ),
    ("firearm.status.answer", [("result", "NO_HIT"), ("hits", DELETE)]),
    ("firearm.status.answer", [("result", "NO_HIT"), ("hits", []), ("hit_confirmation_required", False)]),
    (
        "firearm.status.answer",
        [("result", "MULTIPLE_HITS"), ("hits", EXAMPLES["firearm.status.answer"]["hits"] * 2)],
    ),
    ("ballistic.submission", [("origin", "TEST_FIRE"), ("firearm", EXAMPLES["trace.request"]["firearm"])]),
    ("ballistic.submission", [("topography[0].region", "Other")]),
    (
        "ballistic.submission",
        [
            ("exhibit_kind", "CARTRIDGE_CASE"),
            ("bullet", DELETE),
            (
                "cartridge_case",
                {"firing_pin_class": "Rectangular", "breech_face_class": ["Parallel", "Granular"]},
            ),
            ("topography[0].region", "BreechFace"),
        ],
    ),
    ("ballistic.submission", [("correlation", {})]),
    ("ballistic.hit", [("status", "LEAD"), ("confirmation", DELETE)]),
    ("licence.verify.answer", [("status", "NOT_FOUND"), ("licence", DELETE)]),
    ("licence.verify.answer", [("licence.date_of_expiry", "2019-07-30")]),
    # issue #15: domain fields
    ("trace.request", [("request_kind", "SUSPECT_GUN_REFERRAL"), ("recovery", DELETE)]),
    (
        "trace.request",
        [("priority", "URGENT"), ("priority_justification", "Suspect in custody; charging deadline 48 h")],
    ),
    ("trace.request", [("priority", "ROUTINE")]),
    ("trace.request", [("firearm.barrel_length", {"value": 4.49, "unit": "in"})]),
    ("trace.request", [("firearm.barrel_length_mm", DELETE), ("firearm.barrel_length", {"value": 11.4, "unit": "cm"})]),
    ("notice", [("intelligence", True), ("source_reliability", "X"), ("information_accuracy", 4)]),
    ("notice", [("source_reliability", "A"), ("information_accuracy", 1)]),
    ("notice", [("intelligence", False)]),
    ("licence.verify.answer", [("euc", {"number": "US-DOC-EUC-2019-118", "non_reexport_clause": True})]),
]


@pytest.mark.parametrize(("mt", "changes"), ACCEPTED)
def test_rule_satisfied(mt, changes):
    body = apply(example(mt), changes)
    out = m.decode_body(mt, raw(body))
    assert m.decode_body(mt, m.encode_body(out)) == out
    assert m.validate_body(mt, body) == out


def test_first_fault_is_reported():
    body = example("trace.response")
    set_path(body, "status", "DONE")
    set_path(body, "custody_chain[0].event", "SHIPPED")
    assert rejected("trace.response", body).path == "$.status"


def test_validate_body_is_strict_about_types():
    body = set_path(example("firearm.status.answer"), "hit_confirmation_required", "true")
    assert rejected("firearm.status.answer", body).path == "$.hit_confirmation_required"
    body = set_path(example("trace.request"), "firearm.year_of_manufacture", 2019.0)
    assert rejected("trace.request", body).path == "$.firearm.year_of_manufacture"


# --- issue #14: errors that say what to do -----------------------------------------------------------------


@pytest.mark.parametrize(("mt", "member", "value", "allowed"), [
    ("trace.request", "request_kind", "TRACER", ["TRACE", "OBLITERATED_SERIAL_REFERRAL"]),
    ("trace.request", "firearm.type", "PR", ["P", "R", "S"]),
    ("trace.request", "illicit_basis[1]", "STOLEN", ["UNLICENSED_TRANSFER"]),
    ("receipt", "status", "ACCEPTED", ["DELIVERED", "REFUSED_BY_SYSTEM"]),
])
def test_an_enum_error_names_the_member_and_lists_the_allowed_values(mt, member, value, allowed):
    e = rejected(mt, set_path(example(mt), member, value))
    assert f"Invalid enum value {value!r}" in e.reason, e.reason
    name = member.rsplit(".", 1)[-1].split("[")[0]
    assert name in e.reason, e.reason
    for v in allowed:
        assert v in e.reason, e.reason


def test_a_member_of_another_message_type_says_the_type_may_be_wrong():
    # a trace.request body sent as trace.response: its first member is not a trace.response member
    e = rejected("trace.response", example("trace.request"))
    assert e.path == "$.request_kind"
    assert "trace.request" in e.reason and "`type`" in e.reason, e.reason


def test_an_unknown_member_lists_the_members_of_its_object():
    e = rejected("notice", {**example("notice"), "priority": "URGENT"})
    assert "`priority`" in e.reason and "title" in e.reason and "text" in e.reason, e.reason


@pytest.mark.parametrize(("mt", "member", "value"), [
    ("trace.request", "firearm.country_of_manufacture", "ZZ"),
    ("trace.request", "recovery.location.country", "QQ"),
    ("ballistic.submission", "correlation.countries[1]", "AA"),
    ("licence.verify.query", "issuing_state", "EU"),
    ("trace.response", "custody_chain[2].country", "UK"),
])
def test_a_country_code_not_assigned_in_iso_3166_1_is_refused(mt, member, value):
    e = rejected(mt, set_path(example(mt), member, value))
    assert e.path == f"$.{member}"
    assert repr(value) in e.reason and "ISO 3166-1" in e.reason, e.reason


@pytest.mark.parametrize("code", ["MX", "ES", "AT", "US", "XK", "GB"])
def test_assigned_country_codes_are_accepted(code):
    m.decode_body("trace.request", raw(set_path(example("trace.request"), "firearm.country_of_manufacture", code)))
