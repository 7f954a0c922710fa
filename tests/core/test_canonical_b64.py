import base64
import binascii
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.core.b64 import b64_decode, b64url_decode, b64url_encode
from gateway.core.canonical import CanonicalError, canonical_bytes


def test_canonical_sorts_keys_and_strips_whitespace():
    assert canonical_bytes({"b": 1, "a": {"d": [1, "x"], "c": None}}) == b'{"a":{"c":null,"d":[1,"x"]},"b":1}'


def test_canonical_keeps_utf8():
    assert canonical_bytes({"n": "México"}) == '{"n":"México"}'.encode()


def test_canonical_refuses_floats_naming_the_path():
    with pytest.raises(CanonicalError, match=r"\$\.a\[1\]"):
        canonical_bytes({"a": [1, 2.5]})


def test_b64url_round_trip_and_strictness():
    assert b64url_decode(b64url_encode(b"\xff\xfe")) == b"\xff\xfe"
    for bad in ["//8", "__8=", "_x", "a"]:
        with pytest.raises(ValueError):
            b64url_decode(bad)


def test_b64_standard_strict():
    assert b64_decode("AAE=") == b"\x00\x01"
    for bad in ["AAE", "AA E=", "AAF="]:
        with pytest.raises(ValueError):
            b64_decode(bad)


# --- the canonical check without re-encoding behaves exactly as re-encoding did ---------------------

def _reencoding_b64url_decode(text: str) -> bytes:
    """b64url_decode as it was: canonical iff re-encoding the result gives the text back."""
    if not re.match(r"^[A-Za-z0-9_-]*\Z", text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != text:
        raise ValueError("non-canonical base64url")
    return raw


def _reencoding_b64_decode(text: str) -> bytes:
    """b64_decode by re-encoding (anchored with \\Z, as the validators are: tests/core/test_regex_anchors.py)."""
    if not re.match(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\Z", text):
        raise ValueError("not standard base64")
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not standard base64: {exc}") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("non-canonical base64")
    return raw


def _outcome(fn, text):
    try:
        return ("ok", fn(text))
    except ValueError as exc:
        return ("error", type(exc), str(exc))


_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=\n "


def _flip_last(data: bytes, url: bool, bits: int) -> str:
    """The encoding of ``data`` with ``bits`` xored into the 6-bit value of its last data character."""
    enc = (base64.urlsafe_b64encode(data).rstrip(b"=") if url else base64.b64encode(data)).decode()
    alphabet = (
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789" + ("-_" if url else "+/")
    )
    body = enc.rstrip("=")
    if not body:
        return enc
    last = alphabet[alphabet.index(body[-1]) ^ bits]
    return body[:-1] + last + enc[len(body) :]


_texts = st.one_of(
    st.text(alphabet=_CHARS, max_size=12),  # mostly invalid
    st.tuples(st.binary(max_size=10), st.integers(0, 63)).map(lambda t: _flip_last(t[0], True, t[1])),
    # token-sized texts: the fast path for base64url characters only (gateway.core.b64)
    st.tuples(st.binary(min_size=11, max_size=3000), st.integers(0, 63)).map(lambda t: _flip_last(t[0], True, t[1])),
    st.tuples(st.binary(max_size=10), st.integers(0, 63)).map(lambda t: _flip_last(t[0], False, t[1])),
    st.binary(max_size=10).map(lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode() + "\n"),
    st.binary(max_size=10).map(lambda b: base64.b64encode(b).decode() + "\n"),
)


@settings(max_examples=200, deadline=None)
@given(_texts)
def test_canonical_check_matches_reencoding(text):
    assert _outcome(b64url_decode, text) == _outcome(_reencoding_b64url_decode, text)
    assert _outcome(b64_decode, text) == _outcome(_reencoding_b64_decode, text)
    assert _outcome(b64url_decode, text.encode()) == _outcome(_reencoding_b64url_decode, text)
    assert _outcome(b64_decode, text.encode()) == _outcome(_reencoding_b64_decode, text)


def test_canonical_check_edge_cases_match_reencoding():
    cases = ["", "\n", "AA", "AB", "AAA", "AAB", "AAC", "AAE=", "AAF=", "AA==", "AB==", "_w", "_x", "__8",
             "__9", "AA\n", "AAA\n", "AAAA\n", "AQ==\n", "Zm9v\n", "Zm8\n", "Zg\n"]
    for text in cases:
        assert _outcome(b64url_decode, text) == _outcome(_reencoding_b64url_decode, text), text
        assert _outcome(b64_decode, text) == _outcome(_reencoding_b64_decode, text), text
    assert _outcome(b64url_decode, "_x")[0] == "error" and _outcome(b64_decode, "AAF=")[0] == "error"



# --- canonical_bytes' type walk without paths agrees with the walk that names them -------------------

class _Str(str):
    pass


class _Dict(dict):  # type: ignore[type-arg]
    pass


_leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=8),
                    st.floats(allow_nan=False, allow_infinity=False), st.builds(_Str, st.text(max_size=4)))
# mostly plain string keys, so that a float or a subclass deeper in is what decides the outcome
_keys = st.one_of(st.text(max_size=6), st.text(max_size=6), st.text(max_size=6), st.text(max_size=6),
                  st.builds(_Str, st.text(max_size=4)), st.integers(0, 9))
_values = st.recursive(
    _leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.lists(inner, max_size=3).map(tuple),
                            st.dictionaries(_keys, inner, max_size=4), st.dictionaries(st.text(max_size=4), inner,
                                                                                       max_size=3).map(_Dict)),
    max_leaves=20,
)


def _by_path_walk(obj):
    """canonical_bytes as it was: every value checked by the walk that builds its path."""
    from gateway.core import canonical

    canonical._check(obj, "$")
    return canonical._encoder.encode(obj)


def _canonical_outcome(fn, obj):
    try:
        return ("ok", fn(obj))
    except CanonicalError as exc:
        return ("refused", str(exc))
    except (TypeError, ValueError) as exc:  # what the encoder itself refuses (e.g. non-string keys it met)
        return ("encoder", type(exc).__name__)


@settings(max_examples=400, deadline=None)
@given(_values)
@example({"a": 1.5})
@example([1, 1.5])
@example(("x", 1.5))
@example({"a": [{"b": (None, True, 2.0)}]})
@example({1: "x"})
@example({"a": {_Str("k"): 1}})
@example({"a": _Str("x")})
@example([_Dict(a=1)])
@example(1.5)
@example({"a": [1, "x", None, True, {"b": ()}]})
def test_canonical_fast_walk_refuses_and_accepts_exactly_what_the_path_walk_does(obj):
    assert _canonical_outcome(canonical_bytes, obj) == _canonical_outcome(_by_path_walk, obj)


def test_canonical_fast_walk_still_names_the_path_of_a_nested_float_and_a_non_string_key():
    with pytest.raises(CanonicalError, match=r"\$\.a\.b\[2\]: floats"):
        canonical_bytes({"a": {"b": [1, "x", 0.5]}})
    with pytest.raises(CanonicalError, match=r"\$\.a: object keys must be strings"):
        canonical_bytes({"a": {1: "x"}})
