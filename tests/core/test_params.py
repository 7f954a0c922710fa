"""gateway.core.params: integers from query strings and paths."""

from __future__ import annotations

import pytest

from gateway.core.errors import Code, TrazaError
from gateway.core.params import INT64_MAX, int_param


@pytest.mark.parametrize("value,n", [("0", 0), ("42", 42), (str(INT64_MAX), INT64_MAX), ("007", 7)])
def test_integers_in_range_are_read(value, n):
    assert int_param(value, "after") == n


@pytest.mark.parametrize("value", [str(INT64_MAX + 1), "9" * 40, "-1", " 1", "1_000", "+1", "1e3", "0x10", "", "١"])
def test_anything_else_is_malformed_naming_the_parameter(value):
    if value == "":
        assert int_param(value, "after", default=5) == 5
        return
    with pytest.raises(TrazaError) as e:
        int_param(value, "after")
    assert e.value.code is Code.MALFORMED and e.value.detail.startswith("after: ")


def test_required_without_default():
    with pytest.raises(TrazaError, match="new: required"):
        int_param(None, "new", lo=1)


def test_bounds_are_the_callers():
    assert int_param("-3", "limit", lo=-10) == -3
    with pytest.raises(TrazaError, match="from 1 to 5"):
        int_param("6", "old", lo=1, hi=5)


def test_control_characters_in_the_value_are_not_echoed_raw():
    with pytest.raises(TrazaError) as e:
        int_param("1\x1b[2J", "after")
    assert "\x1b" not in e.value.detail
