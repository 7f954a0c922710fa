"""Delivery of received messages to the national system (SPEC §6): inbox (pull), webhook (push) or a
drop folder. The inbox needs no task: the national system pulls ``/local/v1/inbox``."""

from __future__ import annotations

from typing import Any, Protocol


class Delivery(Protocol):
    async def run(self) -> None:
        """Deliver until cancelled."""


def make_delivery(node: Any, cfg: Any) -> Delivery | None:
    """The delivery task for ``cfg.delivery.mode``; None for the pull inbox."""
    mode = cfg.delivery.mode
    if mode == "inbox":
        return None
    raise ValueError(f"{cfg.path}: delivery.mode: {mode!r} is not available in this build")
