"""Supervised long-running tasks (issue #11: a node that never gets stuck).

Every loop a node runs for its whole life (one forwarder per peer, checkpoints and witnessing, manifest
polling, blob purging, delivery) runs under :func:`supervised`: an exception is logged as one JSON record,
counted (``traza_task_restarts_total{task}``), reported to ``on_crash`` (the node audits it when it can)
and the loop starts again after a back-off with jitter that grows while it keeps failing (0.1 s to 5 s);
it never ends silently. Cancellation (the node stopping) ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.core.retry import backoff

# a loop that ran this long before failing starts again with the shortest back-off
HEALTHY_RUN_S = 30.0


async def supervised(name: str, factory: Callable[[], Awaitable[None]], *, log: Any,
                     stopping: asyncio.Event, on_crash: Callable[[str, BaseException], None],
                     base: float = 0.1, cap: float = 5.0) -> None:
    """Run ``factory()`` until it returns or ``stopping`` is set; restart it after every exception."""
    failures = 0
    while not stopping.is_set():
        started = time.monotonic()
        try:
            await factory()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures = 1 if time.monotonic() - started > HEALTHY_RUN_S else failures + 1
            delay = backoff(failures, rand=random.random(), base=base, cap=cap)
            log.error("task.crashed", task=name, error=f"{type(exc).__name__}: {exc}"[:500],
                      restart_in_s=round(delay, 3), exc_info=exc)
            try:
                on_crash(name, exc)
            except Exception as report_exc:  # reporting must not kill the supervisor
                log.error("task.crash_report_failed", task=name, error=repr(report_exc)[:300])
            await pause(stopping, delay)


async def pause(stopping: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``, or less if the node stops meanwhile; True when it is stopping (the loops of a
    node wait between passes with this, so that a stop ends them at once)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    return stopping.is_set()
