"""The pure decisions of active-active replicas (gateway/core/replicas.py): who may claim an outbox row,
when it becomes sendable, and the leader's changes."""

from __future__ import annotations

import pytest

from gateway.core.replicas import Leadership, available_at, claimable, lease_end


def test_a_row_leased_to_another_replica_is_not_claimable_until_its_lease_ends():
    assert claimable(None, None, "a", 100.0)
    assert claimable("a", 160.0, "a", 100.0)  # its own lease: renewed
    assert not claimable("b", 160.0, "a", 100.0)
    assert not claimable("b", 160.0, "a", 159.999)
    assert claimable("b", 160.0, "a", 160.0)  # b died or stalled: taken over
    assert claimable("b", None, "a", 100.0)


def test_a_lease_ends_after_its_length_and_must_last():
    assert lease_end(100.0, 30.0) == 130.0
    with pytest.raises(ValueError, match="positive number of seconds"):
        lease_end(100.0, 0.0)


def test_a_row_leased_by_another_is_available_at_the_end_of_that_lease():
    assert available_at(10.0, None, None, "a") == 10.0
    assert available_at(10.0, "a", 50.0, "a") == 10.0
    assert available_at(10.0, "b", 50.0, "a") == 50.0
    assert available_at(90.0, "b", 50.0, "a") == 90.0


def test_leadership_changes_only_when_the_probe_changes():
    s = Leadership()
    s, change = s.step(False, 1.0)
    assert (s.leader, change) == (False, None)
    s, change = s.step(True, 2.0)
    assert (s.leader, s.since, change) == (True, 2.0, "elected")
    s, change = s.step(True, 3.0)
    assert (s.leader, s.since, change) == (True, 2.0, None)
    s, change = s.step(False, 4.0)  # the lock's session was lost
    assert (s.leader, s.since, change) == (False, None, "lost")
