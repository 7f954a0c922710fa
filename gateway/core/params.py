"""Integers from outside that are not JSON: query parameters and path segments of the HTTP APIs.

One rule for all of them: optional sign and at most 19 decimal digits (no spaces, ``+``, ``_`` or
exponent, which ``int()`` would take), within bounds that default to SQLite's 64-bit integers, so a value
can never overflow when it is bound to a statement. Anything else is ``malformed`` naming the parameter.
"""

from __future__ import annotations

import re

from gateway.core.errors import Code, TrazaError

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

_INT = re.compile(r"-?[0-9]{1,19}")


def int_param(value: str | None, name: str, *, default: int | None = None, lo: int = 0, hi: int = INT64_MAX) -> int:
    """``value`` as an integer from ``lo`` to ``hi``; ``default`` when it is absent or empty (required
    when there is no default)."""
    if value is None or value == "":
        if default is None:
            raise TrazaError(Code.MALFORMED, f"{name}: required (an integer from {lo} to {hi})")
        return default
    n = int(value) if _INT.fullmatch(value) else None
    if n is None or not lo <= n <= hi:
        shown = value if len(value) <= 24 else f"{value[:24]}… ({len(value)} characters)"
        raise TrazaError(Code.MALFORMED, f"{name}: {shown!r} is not an integer from {lo} to {hi}")
    return n
