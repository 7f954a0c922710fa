"""Deterministic crash points for the reliability tests (issue #11, ``tests/reliability/``).

A node started with ``TRAZA_CRASH_AT=<point>[:<n>]`` (comma-separated for several) dies with
``os._exit(CRASH_STATUS)`` the ``n``-th time (default 1) it reaches ``<point>``: no cleanup, no flush,
no atexit, like ``kill -9`` at exactly that step. Without the variable every hook is one dictionary
look-up. The points, in the order a message meets them:

| point | where |
|---|---|
| ``receive.before_commit`` | a received batch is checked and staged, its transaction not yet committed |
| ``receive.after_commit`` | the batch is durable, its acks not yet sent to the peer |
| ``forward.before_send`` | an acked envelope is about to be sent to the next hop |
| ``forward.before_settle`` | the next hop answered (acks in hand), nothing of it stored yet |
| ``checkpoint.before_commit`` | a checkpoint is signed, its transaction not yet committed |
"""

from __future__ import annotations

import os

CRASH_STATUS = 86
POINTS = ("receive.before_commit", "receive.after_commit", "forward.before_send", "forward.before_settle",
          "checkpoint.before_commit")


def _parse(spec: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, n = item.partition(":")
        if name not in POINTS:
            raise ValueError(f"TRAZA_CRASH_AT: unknown crash point {name!r} (known: {', '.join(POINTS)})")
        out[name] = int(n) if n else 1
    return out


_armed: dict[str, int] = _parse(os.environ.get("TRAZA_CRASH_AT", ""))


def crash_point(name: str) -> None:
    """Die here if this process was told to (see the module docstring)."""
    if not _armed or name not in _armed:
        return
    _armed[name] -= 1
    if _armed[name] <= 0:
        os.write(2, f"traza: crash point {name} reached: exiting with status {CRASH_STATUS}\n".encode())
        os._exit(CRASH_STATUS)
