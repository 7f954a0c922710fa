"""structlog chain: JSON lines in production, readable lines on a terminal, with redaction.

Keys, tokens and payload content are never logged: the ``redact`` processor drops any event field whose
name suggests secret or content material, whatever the caller passed.

JSON lines are rendered with msgspec (a node writes one line per envelope decision, so the renderer is on
the hot path); a value msgspec cannot encode is shown by its ``__structlog__()`` or ``repr``, as
structlog's own renderer does, and an event msgspec refuses as a whole goes through ``json.dumps``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any

import msgspec
import structlog
from structlog.tracebacks import ExceptionDictTransformer

from gateway.core.printable import escape_controls, json_safe

# Field names that must never reach a log line.
REDACTED_FIELDS = frozenset(
    {"token", "payload", "body", "content", "plaintext", "key", "private_key", "secret", "jwk_d", "hops",
     "envelope", "password", "authorization", "ack_token"}
)


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for k in list(event):
        if k in REDACTED_FIELDS:
            event[k] = "[redacted]"
    return event


def _fallback(obj: Any) -> Any:
    show = getattr(obj, "__structlog__", None)
    return show() if callable(show) else repr(obj)


_encoder = msgspec.json.Encoder(enc_hook=_fallback)

def render_json(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> str:
    """Last processor of the JSON chain: one compact JSON object per line, all in printable form."""
    try:
        line = _encoder.encode(event).decode("utf-8")
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
        return json.dumps(event, default=_fallback)  # ensure_ascii: nothing but ASCII
    return json_safe(line)  # U+2028, U+2029, U+0085 and the like escaped too


def escape_console(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Console chain: control characters of text values (and of rendered exceptions) as visible escapes."""
    for k, v in event.items():
        if isinstance(v, str):
            event[k] = escape_controls(v)
    return event


# tracebacks as a list of frames inside the record, without local variables (they may hold keys or
# plaintext); exception messages come from outside as often as not, so they are escaped like any field
_dict_tracebacks = structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))


def _console_exception(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Console chain: a traceback rendered as text, each of its lines escaped, kept under ``exception``
    so that the renderer prints it after the record (one record, its own indented lines)."""
    exc = event.pop("exc_info", None)
    if exc:
        if exc is True:
            exc = sys.exc_info()
        elif isinstance(exc, BaseException):
            exc = (type(exc), exc, exc.__traceback__)
        text = "".join(traceback.format_exception(*exc))
        event["exception"] = "\n".join(escape_controls(line) for line in text.splitlines())
    return event


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler ``configure`` installs (marked so that a second ``configure`` replaces it)."""

    _traza = True


def configure(fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    """Configure structlog and route the standard library's logging (aiohttp, asyncio, warnings) through
    the same chain, so that every line written is rendered alike: one JSON object per line, or one
    escaped console line per record."""
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    if use_json:
        tail: list[Any] = [_dict_tracebacks, render_json]
    else:
        # colour on a terminal, unless NO_COLOR is set to anything but "" (https://no-color.org)
        colors = stream.isatty() and os.environ.get("NO_COLOR", "") == ""
        tail = [_console_exception, escape_console, structlog.dev.ConsoleRenderer(colors=colors)]
    structlog.configure(
        processors=shared + tail,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # the standard library's records: same processors, the logger's name as a field
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    )
    handler = _Handler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_traza", False):
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    logging.captureWarnings(False)  # (re)install: a no-op if an earlier configure() installed it
    logging.captureWarnings(True)


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger().bind(**bound)
