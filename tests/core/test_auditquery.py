"""Audit search (issue #16): the query an auditor gives (time range, event, message type, peer, outcome,
requesting unit or officer, case reference) parsed purely, every bad parameter named; and who asked, as
the origin's ``envelope.accepted`` entry records it from the submitted body."""

from __future__ import annotations

import pytest

from gateway.core.auditquery import AuditQuery, parse_query, requesting
from gateway.core.errors import Code, TrazaError


def test_an_empty_query_matches_everything_from_the_start():
    assert parse_query({}) == AuditQuery()


def test_every_filter_is_read():
    q = parse_query({"since": "2026-12-01T00:00:00Z", "until": "2026-12-02T00:00:00+01:00", "event": "envelope.accepted",
                     "type": "trace.request", "peer": "latam-hub", "outcome": "expired", "unit": "armas",
                     "officer": "Pérez", "case": "FGR/2026/77", "from": "10", "limit": "50"})
    assert q == AuditQuery(since="2026-12-01T00:00:00.000000Z", until="2026-12-01T23:00:00.000000Z",
                           event="envelope.accepted", mt="trace.request", peer="latam-hub", outcome="expired",
                           unit="armas", officer="Pérez", case="FGR/2026/77", start=10, limit=50)


@pytest.mark.parametrize(("query", "fault"), [
    ({"since": "yesterday"}, "since: 'yesterday' is not an RFC 3339 date-time"),
    ({"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, "until is before since"),
    ({"event": "envelope.eaten"}, "event: 'envelope.eaten' is not an audit event"),
    ({"type": "trace.requests"}, "type: 'trace.requests' is not a message type"),
    ({"peer": "ES"}, "peer: 'ES' is not a node id"),
    ({"limit": "0"}, "limit"),
    ({"colour": "red"}, "unknown parameter 'colour'"),
    ({"unit": "x" * 201}, "unit: longer than 200 characters"),
])
def test_bad_parameters_are_named(query, fault):
    with pytest.raises(TrazaError) as info:
        parse_query(query)
    assert info.value.code is Code.MALFORMED and fault in info.value.detail, info.value.detail


def test_who_asked_comes_from_the_requester_and_case_references_of_the_body():
    body = {"requester": {"agency": "FGR", "unit": "Unidad de Armas", "officer": "Lic. Ana Pérez"},
            "case_refs": [{"issuer": "FGR", "number": "FGR/2026/77"}, {"issuer": "SEDENA", "number": "S-9"}]}
    assert requesting(body) == {"unit": "Unidad de Armas", "officer": "Lic. Ana Pérez",
                                "case": ["FGR:FGR/2026/77", "SEDENA:S-9"]}
    assert requesting({"firearm": {}}) == {}
    assert requesting({"requester": {"agency": "FGR"}}) == {}
    assert requesting(["not", "an", "object"]) == {}
