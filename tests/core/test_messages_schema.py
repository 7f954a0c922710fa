"""Exported JSON Schemas agree with the decoder: every example is valid against its schema, the bad bodies of
the rejection tables are invalid against it, and no body the decoder accepts is refused by the schema
(Hypothesis mutates the examples)."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from core.message_examples import EXAMPLES, example, set_path
from core.test_messages_rejects import ACCEPTED, BAD_VALUES, DELETE, RULES, apply
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.core import messages as m
from gateway.core.errors import Code, TrazaError

# --- a small JSON Schema (2020-12) validator covering the keywords msgspec and messages.py emit ---------


class Invalid(Exception):
    pass


def _type_ok(t: str, v: Any) -> bool:
    return {
        "object": lambda: isinstance(v, dict),
        "array": lambda: isinstance(v, list),
        "string": lambda: isinstance(v, str),
        "integer": lambda: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda: isinstance(v, bool),
        "null": lambda: v is None,
    }[t]()


def _format_ok(fmt: str, v: str) -> bool:
    try:
        if fmt == "date":
            return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", v)) and bool(dt.date.fromisoformat(v))
        if fmt == "date-time":
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", v):
                return False
            dt.datetime.fromisoformat(v.upper().replace("Z", "+00:00"))
            return True
    except ValueError:
        return False
    raise AssertionError(f"unexpected format {fmt}")


KNOWN = {
    "$schema", "$id", "$ref", "$defs", "$comment", "title", "description", "default", "x-traza-mt",
    "x-traza-sv", "type", "enum", "const", "properties", "required", "additionalProperties", "items",
    "minItems", "maxItems", "uniqueItems", "minLength", "maxLength", "pattern", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "anyOf", "allOf", "not", "if", "then", "else", "contains",
    "format", "x-traza-admission",  # admission rules: checked by test_admission_rules_are_in_the_schema
}  # fmt: skip


def validate(schema: dict, root: dict, v: Any, path: str = "$") -> None:
    unknown = set(schema) - KNOWN
    assert not unknown, f"validator does not know {unknown}"
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        validate(root["$defs"][name], root, v, path)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_type_ok(t, v) for t in types):
            raise Invalid(f"{path}: type {types}")
    if "enum" in schema and v not in schema["enum"]:
        raise Invalid(f"{path}: enum")
    if "const" in schema and v != schema["const"]:
        raise Invalid(f"{path}: const")
    if isinstance(v, str):
        if len(v) < schema.get("minLength", 0) or len(v) > schema.get("maxLength", 1 << 60):
            raise Invalid(f"{path}: length")
        if "pattern" in schema and not re.search(schema["pattern"], v):
            raise Invalid(f"{path}: pattern")
        if "format" in schema and not _format_ok(schema["format"], v):
            raise Invalid(f"{path}: format")
    if _type_ok("number", v):
        if "minimum" in schema and v < schema["minimum"]:
            raise Invalid(f"{path}: minimum")
        if "maximum" in schema and v > schema["maximum"]:
            raise Invalid(f"{path}: maximum")
        if "exclusiveMinimum" in schema and v <= schema["exclusiveMinimum"]:
            raise Invalid(f"{path}: exclusiveMinimum")
        if "exclusiveMaximum" in schema and v >= schema["exclusiveMaximum"]:
            raise Invalid(f"{path}: exclusiveMaximum")
    if isinstance(v, list):
        if len(v) < schema.get("minItems", 0) or len(v) > schema.get("maxItems", 1 << 60):
            raise Invalid(f"{path}: items count")
        if schema.get("uniqueItems") and len({json.dumps(x, sort_keys=True) for x in v}) != len(v):
            raise Invalid(f"{path}: uniqueItems")
        if "items" in schema:
            for i, x in enumerate(v):
                validate(schema["items"], root, x, f"{path}[{i}]")
        if "contains" in schema and not any(_valid(schema["contains"], root, x) for x in v):
            raise Invalid(f"{path}: contains")
    if isinstance(v, dict):
        props = schema.get("properties", {})
        for k in schema.get("required", []):
            if k not in v:
                raise Invalid(f"{path}.{k}: required")
        for k, x in v.items():
            if k in props:
                validate(props[k], root, x, f"{path}.{k}")
            elif schema.get("additionalProperties") is False:
                raise Invalid(f"{path}.{k}: additional")
    for sub in schema.get("allOf", []):
        validate(sub, root, v, path)
    if "anyOf" in schema and not any(_valid(s, root, v) for s in schema["anyOf"]):
        raise Invalid(f"{path}: anyOf")
    if "not" in schema and _valid(schema["not"], root, v):
        raise Invalid(f"{path}: not")
    if "if" in schema:
        branch = "then" if _valid(schema["if"], root, v) else "else"
        if branch in schema:
            validate(schema[branch], root, v, path)


def _valid(schema: dict, root: dict, v: Any) -> bool:
    try:
        validate(schema, root, v)
    except Invalid:
        return False
    return True


def schema_valid(mt: str, body: Any) -> bool:
    return _valid(SCHEMAS[mt], SCHEMAS[mt], body)


SCHEMAS = m.json_schemas()


# --- the schemas themselves ----------------------------------------------------------------------------


def test_one_schema_per_type_naming_it():
    assert list(SCHEMAS) == list(m.MESSAGE_TYPES)
    ids = set()
    for mt, s in SCHEMAS.items():
        assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert s["$id"] == f"urn:traza:schema:{mt}:v1"
        assert s["title"].startswith(f"{mt} ")
        assert s["x-traza-mt"] == mt and s["x-traza-sv"] == 1
        assert s["type"] == "object" and s["additionalProperties"] is False
        assert set(s["required"]) <= set(s["properties"])
        ids.add(s["$id"])
        # Every $ref resolves, every nested object is closed.
        text = json.dumps(s)
        for ref in re.findall(r'"\$ref": "#/\$defs/([^"]+)"', text):
            assert ref in s["$defs"], (mt, ref)
        for name, d in s.get("$defs", {}).items():
            if d.get("type") == "object":
                assert d["additionalProperties"] is False, (mt, name)
    assert len(ids) == len(SCHEMAS)


def test_schemas_are_plain_json_and_stable():
    assert json.loads(json.dumps(SCHEMAS)) == SCHEMAS
    assert m.json_schemas() == SCHEMAS


def test_code_lists_appear_as_enums():
    s = SCHEMAS["trace.response"]
    assert set(s["properties"]["status"]["enum"]) == {
        "COMPLETED", "PARTIAL", "NOT_TRACEABLE", "DELAYED", "RESTRICTED", "REFUSED",
    }  # fmt: skip
    assert set(SCHEMAS["error"]["$defs"]["Code"]["enum"]) == {c.value for c in Code}
    assert "P" in SCHEMAS["trace.request"]["$defs"]["Firearm"]["properties"]["type"]["anyOf"][0]["enum"]


@pytest.mark.parametrize("mt", list(EXAMPLES))
def test_examples_are_valid_against_their_schema(mt):
    validate(SCHEMAS[mt], SCHEMAS[mt], EXAMPLES[mt])


def test_the_validator_can_fail():
    assert not schema_valid("notice", {"title": "x"})
    assert not schema_valid("notice", {**EXAMPLES["notice"], "extra": 1})


@pytest.mark.parametrize(("mt", "member", "value", "reason"), BAD_VALUES)
def test_bad_values_are_invalid_against_the_schema(mt, member, value, reason):
    assert not schema_valid(mt, set_path(example(mt), member, value))


# Rules JSON Schema cannot state (date order, exhibit pairs); they are named in "$comment" instead.
TEXT_ONLY = {"is before date_from", "is before date_of_issue", "contradicts barrel_length_mm 114"}


@pytest.mark.parametrize(("mt", "changes", "path", "reason"), RULES)
def test_conditional_rules_are_in_the_schema(mt, changes, path, reason):
    body = apply(example(mt), changes)
    if reason in TEXT_ONLY or (mt == "ballistic.hit" and path == "exhibits[1]"):
        assert "$comment" in json.dumps(SCHEMAS[mt])
        return
    assert not schema_valid(mt, body)


@pytest.mark.parametrize(("mt", "changes"), ACCEPTED)
def test_accepted_bodies_are_valid_against_the_schema(mt, changes):
    assert schema_valid(mt, apply(example(mt), changes))


# --- Hypothesis: mutate examples; the decoder either accepts (and then round-trips, and the schema agrees)
# --- or refuses with schema_invalid and a JSON path. It never raises anything else.


def _paths(v: Any, prefix: str = "") -> list[str]:
    out = []
    if isinstance(v, dict):
        for k, x in v.items():
            p = f"{prefix}.{k}" if prefix else k
            out += [p, *_paths(x, p)]
    elif isinstance(v, list):
        for i, x in enumerate(v):
            p = f"{prefix}[{i}]"
            out += [p, *_paths(x, p)]
    return out


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(
        ["", "P", "Z", "AT", "2026-02-29", "2026-11-27T09:14:03Z", "COMPLETED", "EXPORTED", "ZZZ"]
    ),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=6,
)


@st.composite
def mutated(draw):
    mt = draw(st.sampled_from(list(EXAMPLES)))
    body = example(mt)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(body)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["set", "set", "delete", "add"]))
        try:
            if action == "set":
                set_path(body, path, draw(json_values))
            elif action == "delete":
                apply(body, [(path, DELETE)])
            else:
                set_path(body, draw(st.text(min_size=1, max_size=8)), draw(json_values))
        except (TypeError, KeyError, IndexError, ValueError):
            pass  # the path no longer exists after an earlier mutation
    return mt, body


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_bodies(case):
    mt, body = case
    data = json.dumps(body).encode()
    try:
        out = m.decode_body(mt, data)
    except TrazaError as e:
        if e.code is Code.MALFORMED:  # SPEC §3.4: the only strict-JSON rule json.dumps can break here
            event("malformed")
            assert "outside ±2^53" in e.detail
            return
        event("rejected")
        assert e.code is Code.SCHEMA_INVALID
        assert isinstance(e, m.BodyInvalid) and e.path.startswith("$")
        with pytest.raises(m.BodyInvalid) as ei:
            m.validate_body(mt, body)
        assert ei.value.path == e.path
        return
    event("accepted")
    assert m.decode_body(mt, m.encode_body(out)) == out
    assert m.validate_body(mt, body) == out
    assert schema_valid(mt, body), body
