"""The witness refresh schedule (SPEC §7.2 1.1, gateway/core/witnessing.py): every witness is asked again
every ``witness_refresh``, a failed request is retried with a jittered back-off capped at the refresh
period, and a witness whose newest cosignature is older than 3 x the refresh is stale once per episode."""

from __future__ import annotations

import random

from gateway.core.witnessing import WitnessSchedule

R = 60.0


def test_every_witness_is_due_at_once_then_every_refresh_period():
    s = WitnessSchedule(R)
    s.sync(["a", "b"], 1000.0)
    assert s.due(1000.0) == ["a", "b"]
    s.succeeded("a", 1000.0)
    s.succeeded("b", 1000.0)
    assert s.due(1059.0) == []
    assert s.due(1060.0) == ["a", "b"]


def test_a_failed_request_is_retried_with_jittered_backoff_capped_at_the_refresh_period():
    s = WitnessSchedule(R, base=1.0)
    s.sync(["a"], 0.0)
    now, delays = 0.0, []
    for _ in range(12):
        assert s.due(now) == ["a"]  # never dropped: always due again
        s.failed("a", now, rand=0.999, error="connection refused")
        nxt = s.next_at("a")
        delays.append(nxt - now)
        now = nxt
    assert delays[0] < 1.0 and delays[3] < 8.0  # grows from about one second
    assert max(delays) <= R and delays[-1] > R / 2  # capped at the refresh period
    lo = WitnessSchedule(R, base=1.0)
    lo.sync(["a"], 0.0)
    for _ in range(12):
        lo.failed("a", 0.0, rand=0.0, error="x")
    assert lo.next_at("a") == R / 2  # jittered over the upper half of the nominal delay
    s.succeeded("a", now)
    assert s.next_at("a") == now + R and s.state("a").failures == 0


def test_a_new_checkpoint_makes_healthy_witnesses_due_but_not_one_backing_off():
    s = WitnessSchedule(R)
    s.sync(["a", "b"], 0.0)
    s.succeeded("a", 0.0)
    s.failed("b", 0.0, rand=0.5, error="x")
    for _ in range(6):
        s.failed("b", 0.0, rand=0.5, error="x")
    s.checkpoint_signed(5.0)
    assert s.due(5.0) == ["a"]


def test_stale_once_per_episode_after_three_refresh_periods():
    s = WitnessSchedule(R)
    s.sync(["a"], 0.0)
    s.succeeded("a", 0.0)
    assert s.newly_stale(3 * R) == []  # not older than 3 x refresh yet
    rng = random.Random(1)
    now = 0.0
    stale = []
    while now < 10 * R:
        now += 5.0
        s.failed("a", now, rand=rng.random(), error="down")
        stale += s.newly_stale(now)
    assert [w for w, _ in stale] == ["a"]  # once, however long it lasts
    assert stale[0][1].cosigned_at == 0.0 and stale[0][1].last_error == "down"
    assert s.age("a", now) == now and s.state("a").stale
    s.succeeded("a", now)
    assert not s.state("a").stale and s.age("a", now) == 0.0
    for _ in range(4 * 12):  # a second outage is a second episode
        now += 5.0
        s.failed("a", now, rand=rng.random(), error="down again")
        stale += s.newly_stale(now)
    assert [w for w, _ in stale] == ["a", "a"]


def test_a_witness_that_never_cosigned_goes_stale_counting_from_when_it_was_first_asked():
    s = WitnessSchedule(R)
    s.sync(["a"], 100.0)
    assert s.age("a", 100.0) is None and s.newly_stale(10_000.0) == []  # nothing to cosign yet
    s.checkpoint_signed(200.0)
    assert s.age("a", 260.0) == 60.0
    assert [w for w, _ in s.newly_stale(200.0 + 3 * R + 1)] == ["a"]


def test_seeded_from_the_store_and_witnesses_follow_the_manifest():
    s = WitnessSchedule(R)
    s.sync(["a", "b"], 1000.0, cosigned={"a": 990.0})
    assert s.age("a", 1000.0) == 10.0
    s.sync(["b", "c"], 1010.0)
    assert s.witnesses() == ["b", "c"] and s.due(1010.0) == ["b", "c"]
