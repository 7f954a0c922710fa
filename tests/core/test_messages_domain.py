"""Issue #15, the standards' fields: the ITI §8(a) marking elements a trace request must carry (an
admission rule: a held version-1 body stays readable), and the new optional members, accepted and
refused with the path of the member at fault. The conditional rules of the new members are also in the
RULES / ACCEPTED tables of test_messages_rejects (decoder) and test_messages_schema (JSON Schema)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from core.message_examples import EXAMPLES, del_path, example, set_path

from adapters import get_adapter
from adapters.base import AdapterError
from gateway.cli.main import main
from gateway.core import messages as m
from gateway.core.errors import Code


def raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def refused_at_admission(body: dict[str, Any]) -> m.BodyInvalid:
    """Refused when accepted now (both entry points), yet readable as a held body."""
    with pytest.raises(m.BodyInvalid) as ei:
        m.decode_body("trace.request", raw(body), admit=True)
    with pytest.raises(m.BodyInvalid) as ei2:
        m.validate_body("trace.request", body, admit=True)
    assert (ei2.value.path, ei2.value.reason) == (ei.value.path, ei.value.reason)
    assert ei.value.code is Code.SCHEMA_INVALID
    m.decode_body("trace.request", raw(body))  # a held v1 body: no admission rule
    return ei.value


# --- ITI §8(a) marking elements in a trace request -----------------------------------------------------


@pytest.mark.parametrize(("missing", "path"), [
    ("firearm.make_name", "$.firearm.make_name"),
    ("firearm.serial_number", "$.firearm.serial_number"),
    ("firearm.country_of_manufacture", "$.firearm.country_of_manufacture"),
])
def test_trace_request_without_a_marking_element_is_refused_naming_it(missing, path):
    e = refused_at_admission(del_path(example("trace.request"), missing))
    assert e.path == path
    assert "ITI §8(a)" in e.reason and "trace request" in e.reason, e.reason


def test_empty_firearm_is_refused_at_the_make():
    e = refused_at_admission(set_path(example("trace.request"), "firearm", {}))
    assert e.path == "$.firearm.make_name"


def test_obliterated_serial_stands_in_for_the_serial():
    body = del_path(example("trace.request"), "firearm.serial_number")
    set_path(body, "firearm.serial_obliterated", True)
    m.decode_body("trace.request", raw(body), admit=True)
    set_path(body, "firearm.serial_obliterated", False)
    assert refused_at_admission(body).path == "$.firearm.serial_number"


def test_country_of_manufacture_is_not_required_of_a_firearm_not_marked_per_iti():
    body = del_path(example("trace.request"), "firearm.country_of_manufacture")
    body["illicit_basis"] = ["NOT_MARKED_PER_ITI"]
    m.decode_body("trace.request", raw(body), admit=True)


def test_admission_rules_apply_to_trace_requests_only():
    # a status hit may name a firearm by its serial alone
    body = example("firearm.status.answer")
    body["hits"][0]["firearm"] = {"serial_number": "D12345Z"}
    m.decode_body("firearm.status.answer", raw(body), admit=True)


def test_every_example_meets_the_admission_rules():
    for mt, body in EXAMPLES.items():
        m.decode_body(mt, raw(body), admit=True)


def test_standard_submission_without_serial_is_refused_with_the_body_path():
    form = {"type": "trace.request", "to": "at", "body": del_path(example("trace.request"), "firearm.serial_number")}
    with pytest.raises(AdapterError) as ei:
        get_adapter("standard").to_standard(json.dumps(form).encode(), "application/vnd.traza.message+json")
    assert str(ei.value).startswith("body.firearm.serial_number: required in a trace request"), str(ei.value)


def test_a_held_body_without_marking_elements_is_still_delivered():
    """Nothing already accepted is lost: delivery writes a held v1 body in every national format."""
    body = del_path(del_path(example("trace.request"), "firearm.make_name"), "firearm.serial_number")
    meta = {"from": "mx", "id": "019a7c3e-52d1-7a4b-8c6e-2f9d1b3a4c5e"}
    for name in ("standard", "mx", "es", "de", "it"):
        assert get_adapter(name).from_standard("trace.request", body, meta)


def test_schema_check_applies_the_admission_rules(tmp_path, capsys):
    f = tmp_path / "req.json"
    f.write_text(json.dumps(del_path(example("trace.request"), "firearm.make_name")))
    assert main(["schema", "check", "trace.request", str(f)]) == 1
    assert "$.firearm.make_name" in capsys.readouterr().err


def test_admission_rules_are_in_the_exported_schema():
    s = m.json_schema("trace.request")
    adm = s["x-traza-admission"]
    assert adm["properties"]["firearm"]["allOf"][0]["required"] == ["make_name"]
    assert adm["else"]["properties"]["firearm"]["required"] == ["country_of_manufacture"]


# --- the new members -----------------------------------------------------------------------------------

FULL_FIREARM = {
    **EXAMPLES["trace.request"]["firearm"],
    "marking_location": "FRAME",
    "essential_components": [
        {"component": "SLIDE", "serial_or_marking": "BKRW537"},
        {"component": "BARREL", "serial_or_marking": "BKRW537"},
    ],
    "state_stock_transfer_marking": {"country": "AT"},
    "barrel_length": {"value": 114, "unit": "mm"},
}


def test_new_members_round_trip():
    bodies = {
        "trace.request": {**example("trace.request"), "firearm": FULL_FIREARM, "priority": "URGENT",
                          "priority_justification": "Suspect in custody; charging deadline in 48 hours",
                          "crime_code": {"system": "NCIC", "code": "5212", "text": "Weapon offense"},
                          "request_kind": "SUSPECT_GUN_REFERRAL"},
        "trace.response": {**example("trace.response"),
                           "first_retail_purchaser": {"name": "John Doe", "date_of_birth": "1980-02-29",
                                                      "address": "Phoenix AZ", "country": "US"},
                           "selling_dealer": {"name": "Desert Guns LLC", "licence_no": "9-86-013-01-7K-04417",
                                              "country": "US"},
                           "time_to_crime_days": 2411},
        "firearm.status.answer": set_path(set_path(example("firearm.status.answer"), "hits[0].record_status",
                                                   "PAWNED"), "hits[0].date_of_recovery", "2026-11-02"),
        "licence.verify.answer": {**example("licence.verify.answer"), "euc": {
            "number": "US-EUC-2019-118", "issuing_authority": "US Department of Commerce",
            "date_of_issue": "2019-06-01", "end_user": {"name": "Glock Inc.", "country": "US"},
            "country_of_final_destination": "US", "end_use_statement": "Resale to licensed dealers",
            "signatory_name": "J. Smith", "signatory_position": "Director", "non_reexport_clause": True,
            "post_shipment_verification_consent": False, "government_authenticated": True}},
        "notice": {**example("notice"), "intelligence": True, "source_reliability": "B", "information_accuracy": 2},
    }
    bodies["licence.verify.answer"]["licence"]["exporter"] = {"name": "Glock GmbH", "business_name": "GLOCK",
                                                              "address": "Deutsch-Wagram", "country": "AT"}
    bodies["trace.response"]["custody_chain"] += [
        {"event": "STATE_TO_CIVILIAN_TRANSFER", "date": "2021-01-05", "country": "US"},
        {"event": "PRIVATE_TRANSFER", "date": "2022-03-01", "country": "US"},
        {"event": "CONVERTED", "date": "2023-04-01", "country": "US"},
    ]
    for mt, body in bodies.items():
        out = m.decode_body(mt, raw(body), admit=True)
        assert json.loads(m.encode_body(out)) == body, mt


@pytest.mark.parametrize(("mt", "path", "value", "at", "reason"), [
    ("trace.request", "firearm.marking_location", "GRIP", "$.firearm.marking_location", "allowed: BARREL, BOLT"),
    ("trace.request", "firearm.essential_components", [{"component": "MAGAZINE", "serial_or_marking": "1"}],
     "$.firearm.essential_components[0].component", "allowed: "),
    ("trace.request", "firearm.essential_components", [{"component": "SLIDE"}],
     "$.firearm.essential_components[0].serial_or_marking", "missing required"),
    ("trace.request", "firearm.state_stock_transfer_marking", {"country": "ZZ"},
     "$.firearm.state_stock_transfer_marking.country", "not an ISO 3166-1"),
    ("trace.request", "firearm.barrel_length", {"value": 114}, "$.firearm.barrel_length.unit", "missing required"),
    ("trace.request", "firearm.barrel_length", {"value": 4.5, "unit": "inch"}, "$.firearm.barrel_length.unit",
     "allowed: cm, in, mm"),
    ("trace.request", "firearm.barrel_length", {"value": 0, "unit": "mm"}, "$.firearm.barrel_length.value", ""),
    ("trace.request", "priority", "HIGH", "$.priority", "allowed: ROUTINE, URGENT"),
    ("trace.request", "crime_code", {"code": "5212"}, "$.crime_code.system", "missing required"),
    ("trace.response", "selling_dealer", {"name": "Desert Guns LLC"}, "$.selling_dealer.licence_no",
     "missing required"),
    ("trace.response", "first_retail_purchaser", {"country": "US"}, "$.first_retail_purchaser.name",
     "missing required"),
    ("trace.response", "time_to_crime_days", -1, "$.time_to_crime_days", ">= 0"),
    ("licence.verify.answer", "licence.exporter", {"business_name": "GLOCK"}, "$.licence.exporter.name",
     "missing required"),
    ("licence.verify.answer", "euc", {"issuing_authority": "x"}, "$.euc.number", "missing required"),
    ("notice", "source_reliability", "D", "$.source_reliability", "allowed: A, B, C, X"),
    ("notice", "information_accuracy", 5, "$.information_accuracy", "allowed: 1, 2, 3, 4"),
])
def test_a_bad_new_member_is_refused_with_its_path(mt, path, value, at, reason):
    with pytest.raises(m.BodyInvalid) as ei:
        m.decode_body(mt, raw(set_path(example(mt), path, value)))
    assert ei.value.path == at
    assert reason in ei.value.reason, ei.value.reason


def test_schema_export_shows_the_new_fields(tmp_path):
    assert main(["schema", "export", str(tmp_path)]) == 0
    s = {p.name.removesuffix(".schema.json"): json.loads(p.read_text()) for p in tmp_path.iterdir()}
    fa = s["trace.request"]["$defs"]["Firearm"]["properties"]
    for name in ("marking_location", "essential_components", "state_stock_transfer_marking", "barrel_length"):
        assert name in fa
    req = s["trace.request"]["properties"]
    assert {"priority", "priority_justification", "crime_code"} <= set(req)
    assert "SUSPECT_GUN_REFERRAL" in req["request_kind"]["enum"]
    resp = s["trace.response"]["properties"]
    assert {"first_retail_purchaser", "selling_dealer", "time_to_crime_days"} <= set(resp)
    assert "PRIVATE_TRANSFER" in s["trace.response"]["$defs"]["CustodyEvent"]["properties"]["event"]["enum"]
    assert {"FELONY", "PAWNED"} <= set(s["firearm.status.answer"]["$defs"]["StatusHit"]["properties"]
                                       ["record_status"]["enum"])
    assert "exporter" in s["licence.verify.answer"]["$defs"]["Licence"]["properties"]
    assert "euc" in s["licence.verify.answer"]["properties"]
    assert {"intelligence", "source_reliability", "information_accuracy"} <= set(s["notice"]["properties"])


# --- docs/messages.md names the source of every member --------------------------------------------------


def _members(cls: type, prefix: str = "") -> list[str]:
    """Member paths of a body Struct (``a.b``, ``a[].b``); a Firearm member stops at the Firearm (it has
    its own table)."""
    from msgspec import inspect as mi

    def struct_of(t: Any) -> tuple[bool, Any] | None:
        while isinstance(t, mi.Metadata):
            t = t.type
        if isinstance(t, mi.UnionType):
            return next((r for r in map(struct_of, t.types) if r), None)
        if isinstance(t, mi.ListType):
            r = struct_of(t.item_type)
            return (True, r[1]) if r else None
        return (False, t) if isinstance(t, mi.StructType) else None

    out: list[str] = []
    info = mi.type_info(cls)
    for f in info.fields:  # type: ignore[union-attr]
        r = struct_of(f.type)
        path = prefix + f.encode_name + ("[]" if r and r[0] else "")
        out.append(path)
        if r and r[1].cls is not m.Firearm:
            out += _members(r[1].cls, path + ".")
    return out


def _source_tables() -> dict[str, dict[str, str]]:
    text = (Path(__file__).resolve().parents[2] / "docs" / "messages.md").read_text(encoding="utf-8")
    section = text.split("## Fields and their sources", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, dict[str, str]] = {}
    current = ""
    for line in section.splitlines():
        if line.startswith("### "):
            current = "Firearm" if "Firearm" in line else line.split("`")[1]
            tables[current] = {}
        elif line.startswith("| `") and current:
            field, source = line.split(" | ", 1)
            tables[current][field.split("`")[1]] = source.rstrip(" |")
    return tables


def test_messages_doc_names_a_source_for_every_member():
    tables = _source_tables()
    assert set(tables) == {"Firearm", *m.MESSAGE_TYPES}
    wanted = {"Firearm": _members(m.Firearm), **{mt: _members(cls) for mt, cls in m.MESSAGE_TYPES.items()}}
    for name, members in wanted.items():
        missing = [p for p in members if p not in tables[name]]
        assert not missing, f"docs/messages.md: no source for {name} {missing}"
        assert not set(tables[name]) - set(members), f"{name}: rows for no member {set(tables[name]) - set(members)}"
        assert all(tables[name].values())
