"""Bounded waiting for in-process async tests: poll a condition (plain or coroutine) until it holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def eventually(what: Callable[[], Any], timeout: float = 15.0) -> Any:
    """The first truthy value of ``what()`` (awaited when it is a coroutine); TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        await asyncio.sleep(0.05)
    raise TimeoutError(f"not met within {timeout} s")
