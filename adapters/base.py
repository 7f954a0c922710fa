"""The Adapter protocol (SPEC §8): one national system's format <-> standard messages.

An adapter reads a national file (``to_standard``) into a :class:`Translation`: the message type, the
body in the standard form of SPEC §5 (validated with :mod:`gateway.core.messages`), the envelope fields
the national format carries, warnings and attachments. ``from_standard`` writes a standard body (and the
delivery metadata) in the national form. Errors raise :class:`AdapterError` naming the NATIONAL field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import msgspec

from gateway.core.forms import (
    CLASSIFICATIONS,
    HANDLING_CODES,
    MESSAGE_ID_PATTERN,
    NODE_ID_PATTERN,
    ONWARD_TRANSFERS,
    PURPOSES,
    HandlingRefused,
    TrazaError,
    check_restrictions,
    messages,
    parse_rfc3339,
)

FORMAT_VERSION = 1
MAX_TTL_SECONDS = 30 * 24 * 3600
# Envelope fields a national system may set when it submits (SPEC §6 standard form).
ENVELOPE_FIELDS = ("to", "handling", "handling_restrictions", "onward_transfer", "classification", "purpose", "reply_to",
                   "ttl_seconds")
# Delivery metadata the node gives when it delivers a message (SPEC §6 inbox).
RECEIVED_FIELDS = ("id", "from", "conversation", "delivered_at")
META_FIELDS = ENVELOPE_FIELDS + RECEIVED_FIELDS
# Fields the local API needs on submission (unless the node supplies defaults): a warning when absent.
SUBMISSION_FIELDS = ("to", "handling", "classification", "purpose")

_NODE_ID = re.compile(NODE_ID_PATTERN)
_MESSAGE_ID = re.compile(MESSAGE_ID_PATTERN)


class AdapterError(Exception):
    """A national file (or a standard message to write) is wrong. ``field`` names the national field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnknownAdapter(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown adapter {name!r} (known: {', '.join(known)})")
        self.name = name
        self.known = known


@dataclass(frozen=True)
class Attachment:
    """A file sent as a blob with the message (SPEC §4.3). Exactly one of ``data`` and ``path`` is set."""

    name: str
    media_type: str
    sha256: str  # base64url (no padding) of SHA-256 over the file bytes
    length: int
    data: bytes | None = None
    path: str | None = None

    def blob_ref(self) -> dict[str, Any]:
        """The entry of the origin token's ``blobs`` claim (SPEC §3.1)."""
        return {"sha256": self.sha256, "len": self.length, "ct": self.media_type, "name": self.name}


@dataclass
class Translation:
    """A national file read into a standard message.

    ``body`` is the validated body as JSON-ready data (dates as strings, absent members left out).
    Envelope fields are ``None`` when the national file does not give them. ``received`` holds delivery
    metadata found in the file (``id``, ``from``, ``conversation``, ``delivered_at``): it is kept so
    that a delivered message reads back without loss, and it is ignored when a message is submitted.
    """

    mt: str
    body: dict[str, Any]
    to: str | None = None
    handling: str | None = None
    handling_restrictions: str | None = None
    onward_transfer: str | None = None
    classification: str | None = None
    purpose: str | None = None
    reply_to: str | None = None
    ttl_seconds: int | None = None
    received: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)

    def envelope(self) -> dict[str, Any]:
        """The envelope fields that are set."""
        return {k: getattr(self, k) for k in ENVELOPE_FIELDS if getattr(self, k) is not None}

    def meta(self) -> dict[str, Any]:
        """Envelope fields and delivery metadata, as ``from_standard`` takes them back."""
        return {**self.envelope(), **self.received}

    def standard_form(self) -> dict[str, Any]:
        """The standard form of SPEC §6 (``application/vnd.traza.message+json``), with any delivery
        metadata the file carried."""
        return {"type": self.mt, **self.meta(), "body": self.body}


@runtime_checkable
class Adapter(Protocol):
    """One national format. ``content_types`` are the media types ``to_standard`` reads;
    ``output_content_type`` is the one ``from_standard`` writes."""

    @property
    def name(self) -> str: ...

    @property
    def content_types(self) -> tuple[str, ...]: ...

    @property
    def output_content_type(self) -> str: ...

    def to_standard(self, data: bytes, content_type: str) -> Translation: ...

    def from_standard(self, mt: str, body: dict[str, Any], meta: dict[str, Any]) -> bytes: ...


def media_type(content_type: str) -> str:
    """``"text/csv; charset=utf-8"`` -> ``"text/csv"``."""
    return content_type.split(";", 1)[0].strip().lower()


def check_content_type(adapter: Adapter, content_type: str) -> str:
    mt = media_type(content_type)
    if mt not in adapter.content_types:
        raise AdapterError(
            "Content-Type",
            f"{content_type!r} is not read by adapter {adapter.name} (it reads {', '.join(adapter.content_types)})",
        )
    return mt


def validated_body(mt: str, body: Any, *, admit: bool = False) -> tuple[msgspec.Struct, dict[str, Any]]:
    """Validate a body with gateway.core.messages; returns the Struct and its JSON-ready form.
    ``admit``: also the admission rules of a message being submitted (reading a national file), not
    those of one already held (writing a delivery). Raises ``TrazaError`` (``UNKNOWN_TYPE`` or
    ``SCHEMA_INVALID`` with a JSON path)."""
    if not isinstance(body, dict):
        raise messages.BodyInvalid(mt, "$", f"expected an object, got {type(body).__name__}")
    struct = messages.validate_body(mt, body, admit=admit)
    out: dict[str, Any] = msgspec.to_builtins(struct)
    return struct, out


def check_envelope_value(name: str, value: Any, national: str) -> Any:
    """Check one envelope or delivery field; ``national`` is the field's name in the national format."""
    if name == "ttl_seconds":
        if isinstance(value, bool) or not isinstance(value, int):
            raise AdapterError(national, f"expected an integer number of seconds, got {value!r}")
        if not 0 < value <= MAX_TTL_SECONDS:
            raise AdapterError(national, f"{value} is outside 1..{MAX_TTL_SECONDS} seconds (30 days)")
        return value
    if not isinstance(value, str):
        raise AdapterError(national, f"expected a string, got {value!r}")
    if name in ("to", "from"):
        if not _NODE_ID.match(value):
            raise AdapterError(national, f"{value!r} is not a node id (lower case, e.g. `mx`, `eu-hub`)")
    elif name in ("reply_to", "id", "conversation"):
        if not _MESSAGE_ID.match(value):
            raise AdapterError(national, f"{value!r} is not a message id (a lower-case UUIDv7)")
    elif name == "handling":
        if value not in HANDLING_CODES:
            raise AdapterError(national, f"{value!r} is not a handling code ({', '.join(HANDLING_CODES)})")
    elif name == "handling_restrictions":
        try:
            check_restrictions("H0", value)
        except HandlingRefused as exc:
            raise AdapterError(national, exc.detail.split(": ", 1)[1].split(" - at ", 1)[0]) from None
    elif name == "onward_transfer":
        if value not in ONWARD_TRANSFERS:
            raise AdapterError(national, f"{value!r} is not an onward-transfer marking ({', '.join(ONWARD_TRANSFERS)})")
    elif name == "classification":
        if value not in CLASSIFICATIONS:
            raise AdapterError(national, f"{value!r} is not a classification ({', '.join(CLASSIFICATIONS)})")
    elif name == "purpose":
        if value not in PURPOSES:
            raise AdapterError(national, f"{value!r} is not a purpose ({', '.join(PURPOSES)})")
    elif name == "delivered_at":
        try:
            parse_rfc3339(value)
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise AdapterError(national, f"{value!r} is not an RFC 3339 date-time with an offset") from None
        normal: str = msgspec.to_builtins(when)  # the form body date-times take: `Z` for UTC
        return normal
    else:
        raise AdapterError(national, f"unknown envelope field {name!r}")
    return value


def check_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """Check the ``meta`` given to ``from_standard``: only known keys, valid values; ``None`` values dropped."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if key not in META_FIELDS:
            raise AdapterError("meta", f"unknown key {key!r} (known: {', '.join(META_FIELDS)})")
        if value is None:
            continue
        out[key] = check_envelope_value(key, value, f"meta.{key}")
    return out


def missing_submission_warnings(t: Translation, names: dict[str, str]) -> list[str]:
    """Warnings for the envelope fields the local API needs but the national file left out."""
    if t.received:
        return []  # a delivered message read back: the envelope was set by its origin
    return [
        f"{names.get(k, k)}: not given; the local API refuses the message unless the node has a default for `{k}`"
        for k in SUBMISSION_FIELDS
        if getattr(t, k) is None
    ]


def schema_error_path(exc: TrazaError) -> str:
    """The JSON path of a body validation error (``$`` when there is none)."""
    path = getattr(exc, "path", None)
    return path if isinstance(path, str) else "$"


def schema_error_reason(exc: TrazaError) -> str:
    reason = getattr(exc, "reason", None)
    text = reason if isinstance(reason, str) else exc.detail
    if text.startswith("Object missing required field"):
        return "missing"
    return text
