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


class CircuitBreaker:
    """Per-peer breaker: opens after ``threshold`` consecutive failures, lets one probe through after
    ``cooldown`` seconds (half-open), closes on success."""

    def __init__(self, threshold: int = 5, cooldown: float = 10.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False

    def state(self, now: float) -> State:
        if self.opened_at is None:
            return "closed"
        if now - self.opened_at >= self.cooldown:
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

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.probing = False

    def failure(self, now: float) -> None:
        self.failures += 1
        self.probing = False
        if self.failures >= self.threshold or self.opened_at is not None:
            self.opened_at = now
