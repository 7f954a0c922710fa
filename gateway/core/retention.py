"""Retention (issue #15; SPEC §11 "payload retention per message type, with ``payload.purged`` entries"):
until when a node keeps the content of a message it holds, and which content is due to go now. Pure: the
rules, the facts of each message and ``now`` come in; no I/O.

Content is what can be read or decrypted: the plaintext body in the inbox, the envelope as it travelled
(token and payload ciphertext) and the blobs the message names (plaintext and ciphertext). What evidence
needs stays: the audit entries and the evidence records (token, hop records, acks, digests), so an
evidence bundle of the message still verifies after the purge.

A message's content is kept until the earliest of

- the node's own limit for its type (``[retention] types``, else ``[retention] days``), counted from
  its arrival at this node;
- the federation's limit for its type and this node's kind (manifest ``policy.<type>.retention_days``,
  e.g. ``{"national": 365, "hub": 0}``), counted the same way;
- the ``retention.delete_by`` date the origin gave it (the reference's field, token claim ``ret``);
- for a relaying node (neither origin nor recipient), the message's expiry: a transit copy is dropped
  as soon as the next hop acknowledged it (SPEC §11), and one that never left (a dead letter) goes when
  it can no longer be delivered.

Nothing is purged while the message still needs it: at the recipient before the national system has
taken it, at the origin and at a relay while it waits in the outbox. Such a message is reported
``waiting``. ``retention.review_by`` purges nothing: the report flags the message for review from that
date (LED Art 5, periodic review).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Literal

import msgspec

DAY = 86400.0

Role = Literal["origin", "recipient", "transit"]


class Rules(msgspec.Struct, frozen=True, kw_only=True):
    """The retention rules in force at one node."""

    kind: str  # this node's kind (national, hub, service)
    days: float | None = None  # the node's limit for every type ([retention] days); None: none
    types: Mapping[str, float] = {}  # the node's limit per message type ([retention] types)
    policy: Mapping[str, Mapping[str, float]] = {}  # manifest: type -> node kind -> days


class Held(msgspec.Struct, frozen=True, kw_only=True):
    """A message whose content this node still holds, as retention sees it."""

    jti: str
    mt: str
    role: Role
    since: float  # when it arrived at (or was sent from) this node
    exp: int  # the token's expiry
    needed: bool  # still needed for delivery (not taken by the national system, or in the outbox)
    review_by: float | None = None  # retention.review_by (start of that day, UTC)
    delete_by: float | None = None  # retention.delete_by (start of that day, UTC)


class Until(msgspec.Struct, frozen=True):
    """Until when a message's content is kept, and by which rule (None: no rule limits it)."""

    at: float | None
    rule: str


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """One held message at ``now``: until when it is kept, whether that has come (``due``: purge it now),
    whether it is past its date but still needed (``waiting``), and whether its review date has come."""

    jti: str
    mt: str
    role: Role
    until: float | None
    rule: str
    due: bool
    waiting: bool
    review_by: float | None
    review_due: bool


def keep_until(h: Held, rules: Rules) -> Until:
    """The earliest limit that applies to ``h`` under ``rules``."""
    limits: list[tuple[float, str]] = []
    local = rules.types.get(h.mt, rules.days)
    if local is not None:
        which = f"[retention] types.{h.mt}" if h.mt in rules.types else "[retention] days"
        limits.append((h.since + local * DAY, f"{which} = {_num(local)}"))
    fed = rules.policy.get(h.mt, {}).get(rules.kind)
    if fed is not None:
        limits.append((h.since + fed * DAY, f"manifest policy {h.mt}.retention_days.{rules.kind} = {_num(fed)}"))
    if h.delete_by is not None:
        limits.append((h.delete_by, "retention.delete_by"))
    if h.role == "transit":
        limits.append((float(h.exp), "transit copy: the message's expiry"))
    if not limits:
        return Until(None, "no rule: kept")
    at, rule = min(limits, key=lambda x: x[0])
    return Until(at, rule)


def judge(held: Iterable[Held], rules: Rules, now: float) -> list[Verdict]:
    """Every held message at ``now``, in the order given."""
    out = []
    for h in held:
        u = keep_until(h, rules)
        past = u.at is not None and now >= u.at
        out.append(Verdict(jti=h.jti, mt=h.mt, role=h.role, until=u.at, rule=u.rule, due=past and not h.needed,
                           waiting=past and h.needed, review_by=h.review_by,
                           review_due=h.review_by is not None and now >= h.review_by))
    return out


def due(held: Iterable[Held], rules: Rules, now: float) -> list[Verdict]:
    """The messages whose content is to be purged at ``now``."""
    return [v for v in judge(held, rules, now) if v.due]


def day_start(date: str) -> float:
    """``YYYY-MM-DD`` as the POSIX time of that day's start (UTC); ValueError naming the text if not a date."""
    try:
        d = dt.date.fromisoformat(date)
    except (TypeError, ValueError):
        raise ValueError(f"{date!r} is not a date (YYYY-MM-DD)") from None
    if len(date) != 10:
        raise ValueError(f"{date!r} is not a date (YYYY-MM-DD)")
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
