"""Operations layer: what a running node offers its operators and auditors beyond the JSON API."""

from __future__ import annotations

from gateway.node import Node


def install(node: Node) -> None:
    """Add the operations features to ``node`` before it starts (called by `traza run`): the web
    dashboard at ``/ui/`` on the local listener (``gateway.ops.dashboard``)."""
    from gateway.ops.dashboard import install_dashboard

    install_dashboard(node)
