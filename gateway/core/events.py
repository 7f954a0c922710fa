"""Typed audit events of the relay (SPEC §7.1): one msgspec tagged union, tagged by ``event``.

The relay's decisions (:mod:`gateway.core.relay`) name what goes into the audit log with these types
instead of dict literals, so that a misspelt field or a missing one is a type error, not an entry that
an auditor cannot query. :func:`as_entry` turns one into the mapping the audit log stores (fields left
at their default ``None`` are left out; ``from``/``to``/``for`` keep their wire names).
"""

from __future__ import annotations

from typing import Any

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="event"):
    """Base of every typed audit event."""


class MessageEvent(Event, frozen=True, kw_only=True):
    """An event about one message: its id, type, origin, recipient and token digest."""

    jti: str
    mt: str
    iss: str
    aud: str
    dig: str


class EnvelopeAccepted(MessageEvent, frozen=True, kw_only=True, tag="envelope.accepted"):
    from_: str = msgspec.field(name="from")
    to: str


class EnvelopeRejected(Event, frozen=True, kw_only=True, tag="envelope.rejected"):
    """A refused envelope or batch. ``jti`` only when the envelope verifiably names it; an id read from one
    that did not verify is ``claimed_jti`` (issue #10)."""

    jti: str | None = None
    claimed_jti: str | None = None
    mt: str | None = None
    iss: str | None = None
    aud: str | None = None
    dig: str | None = None
    from_: str = msgspec.field(name="from")
    to: str
    for_: str | None = msgspec.field(default=None, name="for")
    code: str
    detail: str
    envelopes: int | None = None


class EnvelopeDuplicate(MessageEvent, frozen=True, kw_only=True, tag="envelope.duplicate"):
    from_: str = msgspec.field(name="from")
    to: str


class EnvelopeForwarded(MessageEvent, frozen=True, kw_only=True, tag="envelope.forwarded"):
    from_: str = msgspec.field(name="from")
    to: str
    ack_idx: int


class EnvelopeExpired(MessageEvent, frozen=True, kw_only=True, tag="envelope.expired"):
    from_: str = msgspec.field(name="from")
    to: str


class EnvelopeDeadLettered(MessageEvent, frozen=True, kw_only=True, tag="envelope.dead_lettered"):
    code: str
    to: str


class EnvelopeDelivered(MessageEvent, frozen=True, kw_only=True, tag="envelope.delivered"):
    from_: str = msgspec.field(name="from")
    to: str


class ReceiptReceived(MessageEvent, frozen=True, kw_only=True, tag="receipt.received"):
    """Recorded under the message the receipt is for (``jti``), so that its evidence includes it."""

    receipt: str
    status: str


class ReceiptOverdue(MessageEvent, frozen=True, kw_only=True, tag="receipt.overdue"):
    to: str | None = None
    forwarded_at: str
    after_s: int


class OperatorAction(Event, frozen=True, kw_only=True, tag="operator.action"):
    action: str
    operator: str
    jti: str
    mt: str | None = None
    iss: str | None = None
    aud: str | None = None
    dig: str | None = None
    to: str | None = None
    outcome: str | None = None
    reason: str | None = None


AuditEvent = (EnvelopeAccepted | EnvelopeRejected | EnvelopeDuplicate | EnvelopeForwarded | EnvelopeExpired
              | EnvelopeDeadLettered | EnvelopeDelivered | ReceiptReceived | ReceiptOverdue | OperatorAction)


def as_entry(event: Event) -> dict[str, Any]:
    """The mapping the audit log stores for ``event`` (``event`` is its tag)."""
    out: dict[str, Any] = msgspec.to_builtins(event)
    return out


def decode_entry(entry: bytes) -> AuditEvent:
    """Read a stored entry's JSON back as its typed event (extra fields the log adds are ignored)."""
    event: AuditEvent = msgspec.json.decode(entry, type=AuditEvent)
    return event
