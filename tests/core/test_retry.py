from hypothesis import given
from hypothesis import strategies as st

from gateway.core.retry import CircuitBreaker, backoff, next_attempt_at


@given(attempt=st.integers(1, 100), rand=st.floats(0, 0.999999))
def test_backoff_within_bounds(attempt, rand):
    d = backoff(attempt, rand=rand, base=1.0, cap=300.0)
    nominal = min(300.0, 2.0 ** (attempt - 1))
    assert nominal / 2 <= d <= nominal
    assert 0.5 <= d <= 300.0


def test_backoff_grows_then_caps():
    assert [backoff(a, rand=0.0) for a in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff(30, rand=0.999) < 300.0


def test_no_retry_after_expiry():
    assert next_attempt_at(100.0, 1, 200.0, rand=0.0) == 100.5
    assert next_attempt_at(100.0, 10, 200.0, rand=0.0) is None


def test_circuit_breaker_opens_probes_and_closes():
    cb = CircuitBreaker(threshold=3, cooldown=10)
    for t in range(3):
        assert cb.allow(t)
        cb.failure(t)
    assert cb.state(3) == "open" and not cb.allow(5)
    assert cb.state(12.5) == "half_open"
    assert cb.allow(12.5) and not cb.allow(12.6)  # one probe at a time
    cb.failure(13)
    assert cb.state(14) == "open"
    assert cb.allow(23.5)
    cb.success()
    assert cb.state(24) == "closed" and cb.allow(24)


def test_a_peer_status_is_up_down_or_probing_for_a_person_and_the_breaker_state_stays_beside_it():
    from gateway.core.retry import peer_status

    b = CircuitBreaker(threshold=2, cooldown=10.0)
    assert peer_status("idle") == "unknown"
    assert peer_status(b.state(0.0)) == "up"
    b.failure(1.0)
    b.failure(2.0)
    assert peer_status(b.state(3.0)) == "down"
    assert peer_status(b.state(2.0 + b.cooldown)) == "probing"
    b.success()
    assert peer_status(b.state(100.0)) == "up"


def test_a_probe_that_sent_nothing_is_given_back_and_the_next_attempt_may_probe():
    """The forward loop took the half-open probe, then had nothing to send (every row of the batch had
    expired, or waited for its blobs): neither success nor failure was recorded, ``probing`` stayed set,
    and no exchange with that peer was ever allowed again (the queue stopped until a restart)."""
    cb = CircuitBreaker(threshold=1, cooldown=10)
    cb.failure(0.0)
    assert cb.allow(10.0) and not cb.allow(10.0)  # the one probe is taken
    cb.release()
    assert cb.state(10.0) == "half_open" and cb.allow(10.0)  # the next attempt probes


def test_a_clock_moved_back_does_not_hold_the_breaker_open_for_as_long():
    """The breaker opened at wall-clock t; the clock then stepped back an hour: ``now - opened_at`` was
    about -3600 s and the breaker stayed open that whole hour, every new batch to the peer held back."""
    cb = CircuitBreaker(threshold=1, cooldown=10)
    cb.failure(10_000.0)
    assert cb.state(10_005.0) == "open"
    assert cb.state(10_000.0 - 3600) == "half_open"  # the cooldown is taken as over: probe now
