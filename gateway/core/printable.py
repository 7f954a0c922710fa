"""Text from outside made safe to show on a terminal or in a line-oriented log.

A peer chooses node names, error details, audit entry fields, exception messages; printed raw, an ESC
sequence could clear an operator's screen, retitle the window, hide or fake lines, and a CR, LF, U+2028,
U+2029 or U+0085 could forge log lines for readers that split on them. Bidirectional overrides reorder
what is shown (the "Trojan Source" trick).

:func:`printable` removes all of these (for terminal output); :func:`escape_controls` writes them as
``\\xNN`` / ``\\uNNNN`` (for console log lines, where the operator should see that they were there);
:func:`json_safe` writes them as ``\\uNNNN`` in a JSON text (JSON escapes C0 controls itself, but not these).
"""

from __future__ import annotations

import re

# C0 controls (but TAB), DEL, C1 controls (U+0085 NEL and U+009B CSI among them), the line and paragraph
# separators, and the bidirectional embeddings, overrides and isolates.
_OTHERS = r"\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE_RE = re.compile(r"[\x00-\x08\x0a-\x1f" + _OTHERS + "]")
_UNSAFE_KEEP_NL_RE = re.compile(r"[\x00-\x08\x0b-\x1f" + _OTHERS + "]")


def printable(text: str, *, newlines: bool = False) -> str:
    """``text`` without control characters, line/paragraph separators and bidi controls; ``newlines``
    keeps LF (for multi-line output). Tabs are kept."""
    return (_UNSAFE_KEEP_NL_RE if newlines else _UNSAFE_RE).sub("", text)


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every character :func:`printable` removes written as a visible escape instead."""
    return _UNSAFE_RE.sub(_escape, text) if not text.isprintable() else text


# What JSON leaves raw that a terminal or a log reader may act on: DEL, C1 controls, line and paragraph
# separators, bidi controls. Outside its strings a JSON text is ASCII, so escaping them anywhere in the
# text only rewrites string contents, and the value read back is the same.
_JSON_UNSAFE_RE = re.compile("[" + _OTHERS + "]")


def _json_escape(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group()):04x}"


def json_safe(text: str) -> str:
    """A JSON text (as written by any encoder) with the characters above written as ``\\uNNNN``."""
    # DEL is ASCII: the shortcut only holds for ASCII text without it
    return text if text.isascii() and "\x7f" not in text else _JSON_UNSAFE_RE.sub(_json_escape, text)
