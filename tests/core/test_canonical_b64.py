import pytest

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
