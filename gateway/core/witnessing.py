"""When to ask each witness to cosign this node's latest checkpoint (SPEC §7.2, 1.1): a pure schedule,
time and randomness passed in.

- Every witness is asked every ``refresh`` seconds (``limits.witness_refresh``), even when the log did not
  grow (a C2SP tlog-witness request whose old size is the checkpoint's size, with an empty proof), and at
  once when a new checkpoint is signed, unless it is backing off.
- A failed request is retried, never dropped: exponential back-off from ``base`` with equal jitter
  (``gateway.core.retry.backoff``), capped at ``refresh``, per witness.
- A witness whose newest cosignature is older than ``3 x refresh`` is *stale*; :meth:`newly_stale` reports
  it once per episode (the node audits ``witness.stale``), and the episode ends with its next cosignature.
  A witness that never cosigned counts from when there first was a checkpoint to cosign.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway.core.retry import backoff

STALE_FACTOR = 3


@dataclass
class WitnessState:
    next_at: float  # when to ask next
    cosigned_at: float | None = None  # when the newest cosignature was received
    since: float | None = None  # when there was first something to cosign (for a witness that never did)
    failures: int = 0  # consecutive failed requests
    stale: bool = False  # in a stale episode (already reported)
    last_error: str | None = None


class WitnessSchedule:
    def __init__(self, refresh: float, *, base: float = 1.0) -> None:
        if refresh <= 0:
            raise ValueError("witness refresh must be positive")
        self.refresh = refresh
        self.base = min(base, refresh)
        self.stale_after = STALE_FACTOR * refresh
        self._w: dict[str, WitnessState] = {}

    def sync(self, witnesses: Iterable[str], now: float, *, cosigned: Mapping[str, float] | None = None) -> None:
        """The witnesses to ask (the linked peers in the manifest in force): new ones are due at ``now``
        (with their newest stored cosignature from ``cosigned``), gone ones are forgotten."""
        keep = set(witnesses)
        for w in list(self._w):
            if w not in keep:
                del self._w[w]
        for w in keep:
            if w not in self._w:
                at = (cosigned or {}).get(w)
                self._w[w] = WitnessState(next_at=now, cosigned_at=at)

    def witnesses(self) -> list[str]:
        return sorted(self._w)

    def state(self, witness: str) -> WitnessState:
        return self._w[witness]

    def next_at(self, witness: str) -> float:
        return self._w[witness].next_at

    def due(self, now: float) -> list[str]:
        return sorted(w for w, s in self._w.items() if s.next_at <= now)

    def next_due(self) -> float | None:
        return min((s.next_at for s in self._w.values()), default=None)

    def checkpoint_signed(self, now: float) -> None:
        """A checkpoint exists (a new one, or the first seen at start): witnesses that are not backing off
        are due now; a witness that never cosigned counts towards staleness from now."""
        for s in self._w.values():
            if s.failures == 0:
                s.next_at = min(s.next_at, now)
            if s.cosigned_at is None and s.since is None:
                s.since = now

    def succeeded(self, witness: str, now: float) -> bool:
        """The witness cosigned at ``now``; True if that ended a stale episode."""
        s = self._w[witness]
        was_stale = s.stale
        s.cosigned_at = now
        s.failures, s.stale, s.last_error = 0, False, None
        s.next_at = now + self.refresh
        return was_stale

    def failed(self, witness: str, now: float, *, rand: float, error: str) -> None:
        """The request failed (unreachable, refused, a bad answer); ``rand`` uniform in [0, 1)."""
        s = self._w[witness]
        s.failures += 1
        s.last_error = error
        if s.cosigned_at is None and s.since is None:
            s.since = now
        s.next_at = now + backoff(s.failures, rand=rand, base=self.base, cap=self.refresh)

    def idle(self, witness: str, now: float) -> None:
        """Nothing to cosign yet (no checkpoint): ask again after a refresh period (or a new checkpoint)."""
        self._w[witness].next_at = now + self.refresh

    def age(self, witness: str, now: float) -> float | None:
        """Seconds since the newest cosignature (or, if none, since there was something to cosign)."""
        s = self._w[witness]
        ref = s.cosigned_at if s.cosigned_at is not None else s.since
        return None if ref is None else max(0.0, now - ref)

    def newly_stale(self, now: float) -> list[tuple[str, WitnessState]]:
        """Witnesses that became stale since the last call: each episode is reported once."""
        out = []
        for w in sorted(self._w):
            s = self._w[w]
            age = self.age(w, now)
            if not s.stale and age is not None and age > self.stale_after:
                s.stale = True
                out.append((w, s))
        return out
