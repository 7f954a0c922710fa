"""Strict JSON (SPEC §3.4): the one gate every JSON text from outside passes before it is used.

A text is refused as ``malformed`` when an object repeats a member name, nesting is deeper than
:data:`MAX_DEPTH`, an integer is outside ±2^53 (:data:`MAX_INT`, both ends allowed), a number is not finite
(``NaN``, ``Infinity``, or one that overflows a double such as ``1e400``), the text is not UTF-8 (a UTF-8
byte order mark, UTF-16 or a lone surrogate escape such as ``"\\ud800"`` included), or it is not JSON.

How (measured, see docs/security.md "Strict JSON"): msgspec has no hook to see repeated members, so the
check is the standard library's C scanner (``json.JSONDecoder``) with an ``object_pairs_hook`` that
compares the number of members with the number of distinct names, ``parse_int``/``parse_float``/
``parse_constant`` hooks for the number rules (called only for numbers, so strings - most of the bytes of
a batch of tokens - cost nothing extra), and one walk over the containers for the depth and lone
surrogates, skipped when a few scans of the text show it cannot find anything (the small texts of
tokens). A text nested deeper than the interpreter's recursion limit stops the C scanner with
``RecursionError``, refused like any depth over 32. Typed decoding stays with msgspec (:func:`decode`), after the check.
"""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

import msgspec

from gateway.core.errors import Code, TrazaError

MAX_DEPTH = 32
MAX_INT = 2**53
# an integer literal of more digits than 2^53 has (16) is out of range whatever its digits
_MAX_INT_DIGITS = len(str(MAX_INT))

T = TypeVar("T")

Text = bytes | bytearray | memoryview | str


class StrictJSONError(TrazaError):
    """``TrazaError(MALFORMED)`` for a text refused here; ``rule`` says which rule it broke: ``syntax``
    (not JSON at all), ``utf8``, ``duplicate``, ``depth``, ``integer`` or ``number``."""

    def __init__(self, rule: str, what: str, reason: str, member: str | None = None) -> None:
        super().__init__(Code.MALFORMED, f"{what}: {reason}")
        self.rule = rule
        self.reason = reason
        self.member = member  # the repeated name, for ``duplicate``


class _Refused(ValueError):
    """Raised by the hooks with the rule and the reason (the scanner's own errors are ValueError too)."""

    def __init__(self, rule: str, reason: str, member: str | None = None) -> None:
        super().__init__(reason)
        self.rule = rule
        self.member = member


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _Refused("duplicate", f"an object repeats the member name {_show(name)}", name)
            seen.add(name)
    return obj


def _int(literal: str) -> int:
    digits = len(literal) - (literal[0] == "-")
    if digits > _MAX_INT_DIGITS:
        raise _Refused("integer", f"integer {_clip(literal)} is outside ±2^53")
    value = int(literal)
    if not -MAX_INT <= value <= MAX_INT:
        raise _Refused("integer", f"integer {literal} is outside ±2^53")
    return value


def _float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _Refused("number", f"number {_clip(literal)} is not finite")
    return value


def _constant(name: str) -> Any:
    raise _Refused("number", f"{name} is not a JSON number")


_decoder = json.JSONDecoder(object_pairs_hook=_pairs, parse_int=_int, parse_float=_float, parse_constant=_constant)


def _clip(text: str, n: int = 24) -> str:
    return text if len(text) <= n else f"{text[:n]}… ({len(text)} characters)"


def _show(name: str) -> str:
    return json.dumps(_clip(name, 64))  # escaped: control characters in a name do not reach a log raw


def _utf8(s: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise _Refused("utf8", "a string holds a lone surrogate escape (not UTF-8)") from None


def _walk(obj: dict[str, Any] | list[Any], depth: int) -> None:
    """Depth of the containers (the outermost is 1) and strings that are not UTF-8; a non-ASCII check
    is O(1) on CPython strings, so only non-ASCII strings are encoded."""
    if depth > MAX_DEPTH:
        raise _Refused("depth", f"nesting is deeper than {MAX_DEPTH}")
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not k.isascii():
                _utf8(k)
            t = type(v)
            if t is dict or t is list:
                _walk(v, depth + 1)
            elif t is str and not v.isascii():
                _utf8(v)
    else:
        for x in obj:
            t = type(x)
            if t is dict or t is list:
                _walk(x, depth + 1)
            elif t is str and not x.isascii():
                _utf8(x)


def _may_break_a_walked_rule(text: str, from_bytes: bool) -> bool:
    """False when the walk cannot find anything in the value of ``text``: it has no more opening brackets
    in all (strings included) than :data:`MAX_DEPTH` levels need, and it cannot hold a lone surrogate
    (it has no ``\\u`` escape, and it was decoded strictly from UTF-8 bytes or is ASCII). A few C-speed
    scans of the text instead of a Python walk over every value, for the small texts of tokens and
    claims."""
    return ("\\u" in text or (not from_bytes and not text.isascii())
            or text.count("{") + text.count("[") > MAX_DEPTH)


def loads(data: Text, what: str = "JSON text") -> Any:
    """Parse ``data`` strictly into Python data (dict, list, str, int, float, bool, None).

    Raises ``TrazaError(MALFORMED)`` whose detail starts with ``what`` and names the rule broken.
    """
    if isinstance(data, str):
        text, from_bytes = data, False
    else:
        from_bytes = True
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StrictJSONError(
                "utf8", what, f"not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
            ) from None
    try:
        obj = _decoder.decode(text)
        if (type(obj) is dict or type(obj) is list) and _may_break_a_walked_rule(text, from_bytes):
            _walk(obj, 1)
        elif type(obj) is str and not obj.isascii():
            _utf8(obj)
    except _Refused as exc:
        raise StrictJSONError(exc.rule, what, str(exc), exc.member) from None
    except RecursionError:
        raise StrictJSONError("depth", what, f"nesting is deeper than {MAX_DEPTH}") from None
    except json.JSONDecodeError as exc:
        rule = "utf8" if exc.msg.startswith("Unexpected UTF-8 BOM") else "syntax"
        raise StrictJSONError(rule, what, f"not valid JSON ({exc.msg} at offset {exc.pos})") from None
    except ValueError as exc:  # e.g. an integer literal past the interpreter's digit limit
        raise StrictJSONError("integer", what, f"not valid JSON ({_clip(str(exc), 80)})") from None
    return obj


def check(data: Text, what: str = "JSON text") -> None:
    """Refuse ``data`` as :func:`loads` would, keeping nothing."""
    loads(data, what)


def decode(data: Text, decoder: msgspec.json.Decoder[T], what: str = "JSON text") -> T:
    """:func:`check`, then decode with the typed msgspec ``decoder``. Its ``msgspec.ValidationError``
    (a type or constraint fault, with its JSON path) is left to the caller, which knows what it means."""
    check(data, what)
    return decoder.decode(data)


def object_of(data: Text, what: str = "JSON text") -> dict[str, Any]:
    """:func:`loads` of a text that must be a JSON object."""
    obj = loads(data, what)
    if not isinstance(obj, dict):
        raise StrictJSONError("syntax", what, f"must be a JSON object, not {_kind(obj)}")
    return obj


def _kind(obj: Any) -> str:
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "a boolean"
    if isinstance(obj, (int, float)):
        return "a number"
    if isinstance(obj, str):
        return "a string"
    return "an array"
