"""The audit search's SQL (gateway/audit/reader.py ``search``) on both engines: members of the stored JSON
entries and case-insensitive parts, spelled by the dialect (issue #16 on issue #13's two engines)."""

from __future__ import annotations

from gateway.audit.reader import AuditReader
from gateway.core.auditquery import parse_query


def test_search_by_member_and_part_of_a_text(make_node):
    node = make_node("mx")
    node.append(3)  # trace requests, mx -> es
    node.appender.append_sync([{"event": "envelope.accepted", "jti": "0197a6f0-0000-7000-8000-0000000000aa",
                                "mt": "notice", "iss": "mx", "aud": "it", "from": "local:system:sit", "to": "hub",
                                "dig": "x", "unit": "Unidad de Rastreo de Armas", "case": ["FGR:A/1"]}])
    with AuditReader(node.db) as reader:  # a SQLite file or a PostgreSQL URL

        def found(**q: str) -> list[str]:
            return [e.decode() for _, e in reader.search(parse_query(q))]

        assert len(found(type="trace.request")) == 3
        (only,) = found(unit="RASTREO")
        assert '"notice"' in only
        assert len(found(case="a/1", peer="it")) == 1 and found(unit="x' OR '1'='1") == []
        assert len(found(peer="es")) == 3
