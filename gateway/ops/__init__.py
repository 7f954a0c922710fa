"""Operations layer: what a running node offers its operators and auditors beyond the JSON API."""

from __future__ import annotations

from gateway.node import Node


def install(node: Node) -> None:
    """Add the operations features to ``node`` before it starts (called by `traza run`)."""
