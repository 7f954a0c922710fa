"""The crypto floor of `traza bench` over its measured phase (issue #17): timed before and after the
phase, and their mean cost per message taken, so that a machine whose speed drifts during the run (this
VM's did by a third within minutes on 7 December 2026) does not set the ratios by where the one timing fell."""

from __future__ import annotations

import os

import pytest

from gateway.benchmark import bracketed


def test_the_floor_is_the_mean_cost_per_message_of_the_timings_around_the_phase():
    cores = os.cpu_count() or 1
    eps, per = bracketed((cores / 0.002, 0.002), (cores / 0.004, 0.004))
    assert per == pytest.approx(0.003)
    assert eps == pytest.approx(cores / 0.003)
    # one timing alone is that timing
    assert bracketed((cores / 0.002, 0.002)) == (pytest.approx(cores / 0.002), pytest.approx(0.002))


def test_a_floor_needs_a_timing():
    with pytest.raises(ValueError, match="at least one"):
        bracketed()
