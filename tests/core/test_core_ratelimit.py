"""The log budget of refusal lines (issue #10 item 5)."""

from __future__ import annotations

import pytest

from gateway.core.ratelimit import LogBudget


def test_budget_allows_lines_per_window_then_counts_the_rest():
    b = LogBudget(lines=3, window=10.0)
    assert [b.allow("peer", 100.0 + i * 0.1) for i in range(5)] == [(True, 0)] * 3 + [(False, 0)] * 2
    assert b.allow("local", 100.5) == (True, 0)  # each key has its own budget
    assert b.allow("peer", 109.9) == (False, 0)
    assert b.allow("peer", 110.0) == (True, 3)  # next window: the suppressed count comes with the line
    assert b.allow("peer", 110.1) == (True, 0)


def test_budget_parameters_are_checked():
    with pytest.raises(ValueError, match="lines >= 1"):
        LogBudget(lines=0)
    with pytest.raises(ValueError, match="window > 0"):
        LogBudget(window=0)
