"""Audit search (issue #16), pure: the query an auditor gives, parsed with every bad parameter named, and
who asked for a message as the origin records it.

Filters (all optional, combined with AND): ``since`` / ``until`` (RFC 3339, entry time ``ts``, until
exclusive), ``event``, ``type`` (message type), ``peer`` (a node the entry names as sender, recipient,
origin, destination or peer), ``outcome`` (a refusal ``code`` or an action's ``outcome``), ``unit`` and
``officer`` (case-insensitive parts of the requesting unit and officer), ``case`` (part of a case
reference ``issuer:number``); paging with ``from`` (entry index) and ``limit``.

The requesting unit, officer and case references are read from the body the national system submitted
(``requester``, ``case_refs``: trace requests today) and recorded in the origin's ``envelope.accepted``
entry, so that an auditor can answer "what did this unit ask, and under which case" (the Law Enforcement
Directive's logging of who consulted what) without the body itself entering the log.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from gateway.core.codes import NODE_ID
from gateway.core.errors import Code, TrazaError
from gateway.core.events import EVENTS
from gateway.core.messages import MESSAGE_TYPES
from gateway.core.params import int_param
from gateway.core.timeutil import parse_rfc3339, rfc3339

MAX_PAGE = 1000
MAX_TEXT = 200
PARAMS = ("since", "until", "event", "type", "peer", "outcome", "unit", "officer", "case", "from", "limit", "format")


class AuditQuery(msgspec.Struct, frozen=True, kw_only=True):
    since: str | None = None  # RFC 3339 UTC with microseconds (the form of an entry's ts), inclusive
    until: str | None = None  # exclusive
    event: str | None = None
    mt: str | None = None
    peer: str | None = None
    outcome: str | None = None
    unit: str | None = None
    officer: str | None = None
    case: str | None = None
    start: int = 0
    limit: int = 100


def _bad(detail: str) -> TrazaError:
    return TrazaError(Code.MALFORMED, detail)


def _time(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name) or None
    if value is None:
        return None
    try:
        return rfc3339(parse_rfc3339(value))
    except ValueError:
        raise _bad(f"{name}: {value!r} is not an RFC 3339 date-time with an offset (e.g. 2026-12-01T00:00:00Z)") from None


def _text(query: Mapping[str, str], name: str) -> str | None:
    value = (query.get(name) or "").strip() or None
    if value is not None and len(value) > MAX_TEXT:
        raise _bad(f"{name}: longer than {MAX_TEXT} characters")
    return value


def parse_query(query: Mapping[str, str]) -> AuditQuery:
    """The search of ``query`` (module docstring); TrazaError ``malformed`` naming the parameter."""
    for name in query:
        if name not in PARAMS:
            raise _bad(f"unknown parameter {name!r} (known: {', '.join(PARAMS)})")
    since, until = _time(query, "since"), _time(query, "until")
    if since and until and until < since:
        raise _bad(f"until is before since ({until} < {since})")
    event = query.get("event") or None
    if event is not None and event not in EVENTS:
        raise _bad(f"event: {event!r} is not an audit event ({', '.join(sorted(EVENTS))})")
    mt = query.get("type") or None
    if mt is not None and mt not in MESSAGE_TYPES:
        raise _bad(f"type: {mt!r} is not a message type ({', '.join(MESSAGE_TYPES)})")
    peer = query.get("peer") or None
    if peer is not None and not NODE_ID.match(peer):
        raise _bad(f"peer: {peer!r} is not a node id (lower case, e.g. `latam-hub`)")
    return AuditQuery(since=since, until=until, event=event, mt=mt, peer=peer, outcome=_text(query, "outcome"),
                      unit=_text(query, "unit"), officer=_text(query, "officer"), case=_text(query, "case"),
                      start=int_param(query.get("from"), "from", default=0),
                      limit=int_param(query.get("limit"), "limit", default=100, lo=1, hi=MAX_PAGE))


def _name(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def requesting(body: Any) -> dict[str, Any]:
    """``unit``, ``officer`` and ``case`` (``issuer:number`` of each case reference) of a submitted body,
    those it gives; {} for a body without them."""
    if not isinstance(body, dict):
        return {}
    out: dict[str, Any] = {}
    req = body.get("requester")
    if isinstance(req, dict):
        for key in ("unit", "officer"):
            if (v := _name(req.get(key))) is not None:
                out[key] = v
    refs = body.get("case_refs")
    if isinstance(refs, list):
        cases = [f"{r.get('issuer')}:{r.get('number')}" for r in refs
                 if isinstance(r, dict) and _name(r.get("issuer")) and _name(r.get("number"))]
        if cases:
            out["case"] = cases
    return out


CSV_COLUMNS = ("index", "ts", "event", "jti", "mt", "iss", "aud", "from", "to", "peer", "code", "outcome", "unit",
               "officer", "case", "detail")


def csv_cell(value: Any) -> str:
    """One CSV cell of an entry's field: lists joined with ``; ``; a text a spreadsheet would run as a
    formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return) gets a leading ``'``."""
    if value is None:
        return ""
    text = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_row(index: int, entry: Mapping[str, Any]) -> list[str]:
    """The CSV row of one entry (:data:`CSV_COLUMNS`)."""
    return [str(index), *(csv_cell(entry.get(k)) for k in CSV_COLUMNS[1:])]
