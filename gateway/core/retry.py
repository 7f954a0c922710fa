"""Retry schedule and circuit breaker: pure state machines, time and randomness passed in."""

from __future__ import annotations

from typing import Literal


def backoff(attempt: int, *, rand: float, base: float = 1.0, cap: float = 300.0) -> float:
    """Delay before retry number ``attempt`` (1-based): exponential from ``base`` to ``cap`` with full
    jitter over the upper half ("equal jitter"), so retries spread out but never come sooner than half
    the nominal delay. ``rand`` is uniform in [0, 1)."""
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    nominal: float = min(cap, base * float(2 ** min(attempt - 1, 62)))
    return nominal / 2 + rand * nominal / 2


def next_attempt_at(now: float, attempt: int, exp: float, *, rand: float, base: float = 1.0, cap: float = 300.0) -> float | None:
    """When to try again, or None when the next try would come after the message expires."""
    at = now + backoff(attempt, rand=rand, base=base, cap=cap)
    return at if at < exp else None


State = Literal["closed", "open", "half_open"]

# what the breaker's state means to a person reading `traza peers`: the peer answers (up), is left alone
# after failures until its cooldown ends (down), or gets one trial exchange (probing); "idle" is a peer
# this node has not exchanged with since it started
PEER_STATUS: dict[str, str] = {"closed": "up", "open": "down", "half_open": "probing", "idle": "unknown"}


def peer_status(state: str) -> str:
    """``up``, ``down``, ``probing`` or ``unknown`` for a breaker state (or ``idle``)."""
    return PEER_STATUS.get(state, state)


class CircuitBreaker:
    """Per-peer breaker: opens after ``threshold`` consecutive failures, lets one probe through after its
    cooldown (half-open), closes on success. The cooldown grows with each failed probe, exponentially
    with jitter from ``cooldown`` to ``max_cooldown`` (issue #11, F6: a peer that stays down is probed
    less and less often, and nodes do not probe it in step); without ``max_cooldown`` it is fixed."""

    def __init__(self, threshold: int = 5, cooldown: float = 10.0, max_cooldown: float | None = None) -> None:
        self.threshold = threshold
        self.base_cooldown = cooldown
        self.max_cooldown = cooldown if max_cooldown is None else max(cooldown, max_cooldown)
        self.cooldown = cooldown
        self.failures = 0
        self.opens = 0  # times opened (or re-opened by a failed probe) since the last success
        self.opened_at: float | None = None
        self.probing = False

    def state(self, now: float) -> State:
        if self.opened_at is None:
            return "closed"
        # (a clock moved back puts ``opened_at`` in the future: the cooldown is taken as over, not as an hour)
        if now - self.opened_at >= self.cooldown or now < self.opened_at:
            return "half_open"
        return "open"

    def allow(self, now: float) -> bool:
        st = self.state(now)
        if st == "closed":
            return True
        if st == "half_open" and not self.probing:
            self.probing = True
            return True
        return False

    def release(self) -> None:
        """The probe :meth:`allow` gave was not used (nothing was sent): the next attempt may probe."""
        self.probing = False

    def success(self) -> None:
        self.failures = 0
        self.opens = 0
        self.cooldown = self.base_cooldown
        self.opened_at = None
        self.probing = False

    def failure(self, now: float, *, rand: float = 1.0) -> None:
        """A failed exchange at ``now``; ``rand`` (uniform in [0, 1)) jitters the next cooldown."""
        self.failures += 1
        self.probing = False
        if self.failures >= self.threshold or self.opened_at is not None:
            self.opens += 1
            self.cooldown = backoff(self.opens, rand=rand, base=self.base_cooldown, cap=self.max_cooldown)
            self.opened_at = now
