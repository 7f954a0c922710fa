"""Pure decisions of active-active replicas of one node (issue #13, docs/ha.md): outbox leases and
leadership. No I/O; the time is an argument.

Several ``traza run`` processes of one node share one PostgreSQL database. Each outbox row is sent by the
replica holding its lease (``outbox.lease_owner`` until ``outbox.lease_until``); a replica may claim a row
when :func:`claimable` says so, which is exactly the condition the claiming SQL of
:func:`gateway.store.relay.claim` writes. Checkpoints and witnessing are the work of one leader, the
replica holding a session advisory lock; :class:`Leadership` turns what the lock probe saw into the
change to log.
"""

from __future__ import annotations

from dataclasses import dataclass


def claimable(owner: str | None, until: float | None, me: str, now: float) -> bool:
    """May replica ``me`` claim a row leased to ``owner`` until ``until``? Yes when nobody holds it, when
    ``me`` does (it renews its own lease) or when the lease has ended (its holder died or stalled)."""
    return owner is None or owner == me or until is None or until <= now


def lease_end(now: float, lease: float) -> float:
    """When a lease taken at ``now`` for ``lease`` seconds ends."""
    if lease <= 0:
        raise ValueError(f"a lease lasts a positive number of seconds, not {lease}")
    return now + lease


def available_at(next_at: float, owner: str | None, until: float | None, me: str) -> float:
    """When replica ``me`` may send a row due at ``next_at``: then, or when another replica's lease ends."""
    if owner is not None and owner != me and until is not None:
        return max(next_at, until)
    return next_at


@dataclass(frozen=True)
class Leadership:
    """Is this replica the leader, since when; :meth:`step` with each probe of the leader lock."""

    leader: bool = False
    since: float | None = None

    def step(self, held: bool, now: float) -> tuple[Leadership, str | None]:
        """The new state after a probe that found the lock ``held`` by this replica (False also when the
        probe failed: a lost connection means a lost session lock), and the change: ``"elected"``,
        ``"lost"`` or None."""
        if held and not self.leader:
            return Leadership(True, now), "elected"
        if not held and self.leader:
            return Leadership(False, None), "lost"
        return self, None
