"""Time helpers. The core never reads the clock: callers pass ``now`` (seconds since the epoch)."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(ts: float) -> str:
    """RFC 3339 UTC with microseconds, e.g. ``2026-11-26T12:00:00.000000Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339_seconds(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    """Parse an RFC 3339 timestamp with an offset (``Z`` allowed) to epoch seconds."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"timestamp without offset: {text!r}")
    return dt.timestamp()


def duration_text(seconds: float) -> str:
    """A short human duration: ``42 s``, ``12 min``, ``3.5 h``, ``18.2 days`` (negative: ``in the future``)."""
    if seconds < 0:
        return f"{duration_text(-seconds)} in the future"
    if seconds < 90:
        return f"{round(seconds)} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
