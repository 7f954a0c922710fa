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
import sys
from collections.abc import MutableMapping
from typing import Any

import msgspec
import structlog

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
    """Last processor of the JSON chain: one compact JSON object per line."""
    try:
        return _encoder.encode(event).decode("utf-8")
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
        return json.dumps(event, default=_fallback)


def configure(fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    if use_json:
        processors += [structlog.processors.dict_tracebacks, render_json]
    else:
        processors += [structlog.dev.ConsoleRenderer(colors=stream.isatty())]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger().bind(**bound)
