"""Strict JSON (SPEC §3.4): properties of gateway.core.strictjson against the plain decoders."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.core import strictjson
from gateway.core.errors import Code, TrazaError

MAX = 2**53

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX, max_value=MAX)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)


def json_values(max_leaves: int = 30) -> st.SearchStrategy[object]:
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=max_leaves,
    )


def depth(v: object) -> int:
    if isinstance(v, dict):
        return 1 + max((depth(x) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((depth(x) for x in v), default=0)
    return 0


def refused(data: bytes | str, *words: str) -> TrazaError:
    with pytest.raises(TrazaError) as e:
        strictjson.loads(data, "doc")
    assert e.value.code is Code.MALFORMED
    assert e.value.detail.startswith("doc: "), e.value.detail
    for w in words:
        assert w in e.value.detail, e.value.detail
    return e.value


# --- agreement with the plain decoders on valid input ---------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values())
def test_agrees_with_json_and_msgspec_on_valid_input(value):
    assume(depth(value) <= strictjson.MAX_DEPTH)
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False).encode(), msgspec.json.encode(value)):
        assert strictjson.loads(text) == json.loads(text) == msgspec.json.decode(text)


@given(json_values())
def test_typed_decode_agrees_with_msgspec(value):
    assume(depth(value) <= strictjson.MAX_DEPTH)
    dec = msgspec.json.Decoder()
    data = msgspec.json.encode(value)
    assert strictjson.decode(data, dec) == dec.decode(data)


# --- repeated member names -------------------------------------------------------------------------------


def nest(inner: str, path: list[str]) -> str:
    """``inner`` put at ``path``: each step is ``"o"`` (an object member) or ``"a"`` (an array item)."""
    for step in reversed(path):
        inner = '{"k":' + inner + "}" if step == "o" else "[1," + inner + "]"
    return inner


@given(st.lists(st.sampled_from("oa"), max_size=30), st.text(max_size=10), json_values(5), json_values(5))
def test_repeated_member_is_refused_at_any_depth(path, name, a, b):
    assume(depth(a) + depth(b) < 20)
    key = json.dumps(name)
    dup = "{" + f"{key}:{json.dumps(a)},\"other\":0,{key}:{json.dumps(b)}" + "}"
    text = nest(dup, path)
    err = refused(text, "repeats the member name")
    assert json.dumps(name) in err.detail


def test_same_name_in_sibling_objects_is_fine():
    assert strictjson.loads('[{"a":1},{"a":2}]') == [{"a": 1}, {"a": 2}]


def test_names_equal_only_after_unescaping_are_repeats():
    refused('{"alg":"EdDSA","\\u0061lg":"none"}', '"alg"')


# --- depth ------------------------------------------------------------------------------------------------


@given(st.lists(st.sampled_from("oa"), min_size=32, max_size=32))
def test_depth_32_is_accepted(path):
    text = nest("0", path[1:])  # 31 containers around a leaf ...
    text = nest(text, path[:1])  # ... and one more: 32
    assert strictjson.loads(text) == json.loads(text)


@given(st.lists(st.sampled_from("oa"), min_size=33, max_size=33))
def test_depth_33_is_refused(path):
    refused(nest("0", path), "deeper than 32")


def test_empty_containers_count_as_a_level():
    assert strictjson.loads("[" * 32 + "]" * 32) is not None
    refused("[" * 33 + "]" * 33, "deeper than 32")
    refused('{"a":' * 32 + "{}" + "}" * 32, "deeper than 32")


@pytest.mark.parametrize("n", [1_000, 100_000])
def test_nesting_past_the_recursion_limit_is_malformed_not_recursion_error(n):
    refused("[" * n + "]" * n, "deeper than 32")
    refused(b'{"a":' * n + b"1" + b"}" * n, "deeper than 32")


# --- numbers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [MAX, -MAX, MAX - 1, 0, -1])
def test_integers_within_2_53_are_accepted(n):
    assert strictjson.loads(f'{{"n":{n}}}') == {"n": n}


@given(st.integers(min_value=MAX + 1) | st.integers(max_value=-MAX - 1))
def test_integers_outside_2_53_are_refused(n):
    refused(f"[{n}]", "outside ±2^53")


def test_integer_of_thousands_of_digits_is_refused_quickly():
    refused("1" * 100_000, "outside ±2^53")


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "[1e400]", "-1e400", '{"x":' + "9" * 400 + ".0}"])
def test_non_finite_numbers_are_refused(text):
    refused(text)


def test_floats_and_exponents_that_fit_are_accepted():
    assert strictjson.loads("[1.5, -2e10, 1e308, 9007199254740993.0]") == [1.5, -2e10, 1e308, 9007199254740993.0]


# --- UTF-8 ------------------------------------------------------------------------------------------------


@given(st.binary(min_size=1))
def test_bytes_that_are_not_utf8_are_refused(data):
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        refused(data, "not UTF-8")
    else:
        assume(False)


@pytest.mark.parametrize("data", [
    b'{"a":"\xff"}',
    b'"\xc0\xaf"',  # overlong "/"
    b'"\xed\xa0\x80"',  # an encoded surrogate
    '{"a":"é"}'.encode("utf-16"),
    '{"a":1}'.encode("utf-32"),
])
def test_encodings_other_than_utf8_are_refused(data):
    refused(data, "not UTF-8")


@pytest.mark.parametrize("text", ['"\\ud800"', '{"\\udc00":1}', '["a\\udbffb"]'])
def test_lone_surrogate_escapes_are_refused(text):
    refused(text, "surrogate")


def test_escaped_surrogate_pair_is_fine():
    assert strictjson.loads('"\\ud83d\\ude00"') == "\U0001F600"


def test_byte_order_mark_is_refused():
    refused(b'\xef\xbb\xbf{"a":1}')


# --- helpers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,kind", [("[]", "an array"), ('"x"', "a string"), ("1", "a number"),
                                       ("null", "null"), ("true", "a boolean")])
def test_object_of_names_what_it_got(text, kind):
    with pytest.raises(TrazaError, match=f"must be a JSON object, not {kind}"):
        strictjson.object_of(text, "ack body")


def test_syntax_errors_are_malformed_with_an_offset():
    err = refused('{"a":1,}', "not valid JSON")
    assert "offset" in err.detail


def test_control_characters_in_a_repeated_name_are_shown_escaped():
    err = refused('{"\\u001b[2J":1,"\\u001b[2J":2}')
    assert "\x1b" not in err.detail


# --- the walk is skipped only where it cannot find anything --------------------------------------------


def _outcome(data: bytes | str) -> tuple[str, object]:
    try:
        return ("ok", strictjson.loads(data, "doc"))
    except TrazaError as exc:
        return ("refused", exc.detail)


_surrogate_texts = st.sampled_from(["\ud800", "\udfff", "a\udc00b", "\ud83d\ude00", "é", "x"])


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(json_values(12), st.integers(0, 40), st.sampled_from("oa"), _surrogate_texts, st.booleans(),
       st.sampled_from(["bytes", "str", "str-ascii"]))
def test_skipping_the_walk_refuses_and_accepts_exactly_what_always_walking_does(value, levels, kind, s, escape,
                                                                                   form):
    """The depth and lone-surrogate rules are checked by a walk over the value; the walk is skipped when a
    few scans of the text show it cannot find anything. Around the depth limit, with surrogates escaped or
    given raw in a str, the outcome is the same as walking every time."""
    doc = {"v": value, "s": s}
    for _ in range(levels):
        doc = {"k": doc} if kind == "o" else [doc]
    text = json.dumps(doc, ensure_ascii=escape or form == "str-ascii")
    data: bytes | str
    if form == "bytes":
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # a raw lone surrogate cannot be UTF-8 bytes: refused before parsing
            return
    else:
        data = text
    fast = _outcome(data)
    real = strictjson._may_break_a_walked_rule
    strictjson._may_break_a_walked_rule = lambda _t, _b: True
    try:
        walked = _outcome(data)
    finally:
        strictjson._may_break_a_walked_rule = real
    assert fast == walked


def test_a_deep_text_with_few_brackets_per_level_is_still_refused():
    refused("[" * 33 + "]" * 33, "deeper than 32")
    refused('{"a":' * 33 + "1" + "}" * 33, "deeper than 32")
    assert strictjson.loads("[" * 32 + "]" * 32, "doc") is not None  # the limit itself, scanned then walked


def test_a_raw_lone_surrogate_in_a_str_is_still_refused_without_any_escape():
    refused('{"a": "\ud800"}', "lone surrogate")
