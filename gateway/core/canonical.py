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


def _plain(obj: Any) -> bool:
    """True when ``obj`` is made only of exact dicts with string keys, lists, tuples, strings, integers,
    booleans and None, which ``_check`` always passes. Each value costs one ``type()`` and no path is
    built; anything else (a float, a subclass, another type) is left to ``_check``, which names the
    path of a fault."""
    t = type(obj)
    if t is dict:
        for k, v in obj.items():
            tv = type(v)
            if type(k) is not str or not (tv is str or tv is int or v is None or tv is bool or _plain(v)):
                return False
        return True
    if t is list or t is tuple:
        for v in obj:
            tv = type(v)
            if not (tv is str or tv is int or v is None or tv is bool or _plain(v)):
                return False
        return True
    return t is str or t is int or obj is None or t is bool


def canonical_bytes(obj: Any) -> bytes:
    """Encode plain JSON data (dicts, lists, str, int, bool, None) or msgspec Structs canonically."""
    if isinstance(obj, msgspec.Struct):
        obj = msgspec.to_builtins(obj)
    if not _plain(obj):
        _check(obj, "$")
    return _encoder.encode(obj)
