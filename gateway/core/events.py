"""Typed audit events (SPEC §7.1 and its 1.1 additions): one msgspec tagged union, tagged by ``event``.

Everything that goes into a node's audit log is one of these types instead of a dict literal, so that a
misspelt field or a missing one is a type error, not an entry that an auditor cannot query; the set of
event names the log accepts (:data:`EVENTS`) is the set of tags. :func:`as_entry` turns one into the mapping the audit log stores (fields left
at their default ``None`` are left out; ``from``/``to``/``for`` keep their wire names).
"""

from __future__ import annotations

from typing import Any

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="event"):
    """Base of every typed audit event."""


class MessageEvent(Event, frozen=True, kw_only=True):
    """An event about one message: its id, type, origin, recipient and token digest, and the link it is
    about: ``from`` the node it came from (or is leaving), ``to`` the node it went (or goes) to (SPEC §7.1:
    entries for messages carry ``jti``, ``mt``, ``iss``, ``aud``, ``from``, ``to``, ``dig``)."""

    jti: str
    mt: str
    iss: str
    aud: str
    dig: str
    from_: str = msgspec.field(name="from")
    to: str


class EnvelopeAccepted(MessageEvent, frozen=True, kw_only=True, tag="envelope.accepted"):
    """At the origin, from a national system's submission, also who asked (gateway/core/auditquery.py):
    the requesting ``unit`` and ``officer`` and the ``case`` references (``issuer:number``) the body names."""

    unit: str | None = None
    officer: str | None = None
    case: list[str] | None = None


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
    pass


class EnvelopeForwarded(MessageEvent, frozen=True, kw_only=True, tag="envelope.forwarded"):
    ack_idx: int


class EnvelopeExpired(MessageEvent, frozen=True, kw_only=True, tag="envelope.expired"):
    pass


class EnvelopeDeadLettered(MessageEvent, frozen=True, kw_only=True, tag="envelope.dead_lettered"):
    """``from`` this node, ``to`` the peer it could not be sent to."""

    code: str


class EnvelopeDelivered(MessageEvent, frozen=True, kw_only=True, tag="envelope.delivered"):
    pass


class ReceiptReceived(MessageEvent, frozen=True, kw_only=True, tag="receipt.received"):
    """Recorded under the message the receipt is for (``jti``), so that its evidence includes it; ``from``
    the peer the receipt arrived from, ``to`` this node."""

    receipt: str
    status: str


class ReceiptOverdue(MessageEvent, frozen=True, kw_only=True, tag="receipt.overdue"):
    """``from`` this node (the origin), ``to`` the node it forwarded the message to."""

    forwarded_at: str
    after_s: int


class OperatorAction(Event, frozen=True, kw_only=True, tag="operator.action"):
    """An operator's action on a message (a dead letter retried or discarded, a message resent): the
    message's fields, ``from`` this node and ``to`` the peer it was (or is again) queued for."""

    action: str
    operator: str
    jti: str
    mt: str | None = None
    iss: str | None = None
    aud: str | None = None
    dig: str | None = None
    from_: str | None = msgspec.field(default=None, name="from")
    to: str | None = None
    outcome: str | None = None
    reason: str | None = None


class AuthDenied(Event, frozen=True, kw_only=True, tag="auth.denied"):
    """A request refused before it reached the relay (peer or local listener)."""

    listener: str
    detail: str
    remote: str
    code: str | None = None
    path: str | None = None


class ManifestApplied(Event, frozen=True, kw_only=True, tag="manifest.applied"):
    version: int
    source: str


class KeyRotated(Event, frozen=True, kw_only=True, tag="key.rotated"):
    """The keys of one use this node holds changed: sig, enc, audit (newest first in ``keys``), or its TLS
    certificate (``serial``, ``previous_serial``, the ``file`` now used and its ``not_after``)."""

    use: str
    kid: str
    previous: list[str]
    reason: str
    keys: list[str] | None = None
    serial: str | None = None
    previous_serial: str | None = None
    file: str | None = None
    not_after: int | None = None


class PayloadPurged(Event, frozen=True, kw_only=True, tag="payload.purged"):
    """Content (a body, a blob, a ciphertext) removed after its retention; digests stay."""

    jti: str
    what: str
    sha256: str | None = None


class NodeStarted(Event, frozen=True, kw_only=True, tag="node.started"):
    manifest_version: int
    endpoint: str


class NodeStopped(Event, frozen=True, kw_only=True, tag="node.stopped"):
    pass


class WitnessForkDetected(Event, frozen=True, kw_only=True, tag="witness.fork_detected"):
    origin: str
    kind: str
    size: int
    root: str
    old_size: int | None = None


class WitnessStale(Event, frozen=True, kw_only=True, tag="witness.stale"):
    """A witness's newest cosignature of this node's checkpoints is older than 3 x ``witness_refresh``
    (SPEC §7.2, 1.1): recorded once per episode; the episode ends with its next cosignature."""

    witness: str  # node id
    name: str  # its cosigner key name, traza/<federation>/<node>
    cosigned_at: str | None = None  # RFC 3339 of its newest cosignature (None: it never cosigned)
    age_s: int
    refresh_s: int
    failures: int  # requests failed since its last cosignature
    last_error: str | None = None


class LocalRejected(Event, frozen=True, kw_only=True, tag="local.rejected"):
    """A file of the national system's drop folder refused before it became a message."""

    file: str
    code: str
    detail: str


class PolicyDenied(Event, frozen=True, kw_only=True, tag="policy.denied"):
    """A message refused at its origin's submission by a handling or purpose rule (issue #15,
    ``gateway.core.handling``): which ``rule``, what was asked (type, recipient, marking) and by whom. At
    the other nodes the same rules refuse an envelope as ``envelope.rejected`` with its code."""

    rule: str
    code: str
    detail: str
    mt: str
    to: str
    from_: str = msgspec.field(name="from")
    handling: str
    purpose: str
    linked: str | None = None  # the H2 message it linked to (rule h2_onward)


class NodeTaskFailed(Event, frozen=True, kw_only=True, tag="node.task_failed"):
    """A supervised loop of the node failed and was restarted (issue #11)."""

    task: str
    detail: str


class StoreCheckFailed(Event, frozen=True, kw_only=True, tag="store.check_failed"):
    """The start-up store check failed and an operator started the node anyway (``reason``)."""

    detail: str
    problems: int
    entries: int
    signed_size: int
    reason: str


class EvidenceRequested(Event, frozen=True, kw_only=True, tag="evidence.requested"):
    """``GET /v1/evidence/<jti>`` (SPEC §4.4, 1.1), audited on both sides: ``side`` ``served`` at the node
    asked (``peer`` asked it), ``asked`` at the node asking (``peer`` was asked); ``outcome`` ``ok``,
    ``refused`` (not on the message's route, or no such message) or ``failed`` (unreachable, not yet
    checkpointed)."""

    jti: str
    peer: str
    side: str
    outcome: str
    reason: str | None = None


AuditEvent = (EnvelopeAccepted | EnvelopeRejected | EnvelopeDuplicate | EnvelopeForwarded | EnvelopeExpired
              | EnvelopeDeadLettered | EnvelopeDelivered | ReceiptReceived | ReceiptOverdue | OperatorAction | AuthDenied
              | ManifestApplied | KeyRotated | PayloadPurged | NodeStarted | NodeStopped | WitnessForkDetected
              | WitnessStale | LocalRejected | PolicyDenied | NodeTaskFailed | StoreCheckFailed
              | EvidenceRequested)

# the event names an audit log accepts: the tags of the union
EVENTS: frozenset[str] = frozenset(str(t.__struct_config__.tag) for t in AuditEvent.__args__)


def as_entry(event: Event) -> dict[str, Any]:
    """The mapping the audit log stores for ``event`` (``event`` is its tag)."""
    out: dict[str, Any] = msgspec.to_builtins(event)
    return out


def decode_entry(entry: bytes) -> AuditEvent:
    """Read a stored entry's JSON back as its typed event (extra fields the log adds are ignored)."""
    event: AuditEvent = msgspec.json.decode(entry, type=AuditEvent)
    return event
