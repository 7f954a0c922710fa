"""Start a federation of real `traza run` processes on 127.0.0.1 for end-to-end tests.

The process logic lives in gateway.demo.procs (shared with `traza demo`)."""

from __future__ import annotations

from gateway.demo.procs import FOUR, Federation

__all__ = ["FOUR", "Federation"]
