"""Canonical JSON bytes (SPEC §2): UTF-8, keys sorted, no insignificant whitespace, no floats."""

from __future__ import annotations

from typing import Any

import msgspec

_encoder = msgspec.json.Encoder(order="sorted")


class CanonicalError(ValueError):
    pass


def _check(obj: Any, path: str) -> None:
    if isinstance(obj, float):
        raise CanonicalError(f"{path}: floats are not allowed in canonical JSON")
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise CanonicalError(f"{path}: object keys must be strings")
            _check(v, f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check(v, f"{path}[{i}]")


def canonical_bytes(obj: Any) -> bytes:
    """Encode plain JSON data (dicts, lists, str, int, bool, None) or msgspec Structs canonically."""
    if isinstance(obj, msgspec.Struct):
        obj = msgspec.to_builtins(obj)
    _check(obj, "$")
    return _encoder.encode(obj)
