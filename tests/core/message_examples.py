"""One realistic, valid v1 body per message type (SPEC §5), for reuse by every test suite.

``EXAMPLES[mt]`` is the body as JSON-ready Python data (dates and times as strings). The story: Mexico's
FGR recovers an Austrian Glock 17 in Culiacán and asks Austria to trace it; Austria traces it to an
export licence; an Italian Beretta 92FS stopped at a border is checked against the lost/stolen registry;
Spanish and Mexican ballistic exhibits are linked. Treat the dicts as read-only (use ``example(mt)`` for a
private copy to mutate).

Import as ``from core.message_examples import EXAMPLES, example`` (``tests/`` is on ``pythonpath``).
"""

from __future__ import annotations

import copy
import re
from typing import Any

# Message ids (UUIDv7) and digests used across the examples.
TRACE_REQUEST_ID = "019a7c3e-52d1-7a4b-8c6e-2f9d1b3a4c5e"
TRACE_RESPONSE_ID = "019ab1f0-0c2e-7d11-9a3b-6e4f5a2b1c0d"
# SHA-256 (base64url) of ../shared/vectors/x3p/sample-land.x3p, a real bullet land scan (918 x 256).
SAMPLE_LAND_SHA256 = "mD1xaKh5gm_E4k-YplcJOTS2IritLmB9-MqNT4-VOXo"
TOKEN_DIGEST = "q1Kc9m0wXh2vYt7ZpR3sLf8uN4bJ6dEaGi5oMkWyTxA"

GLOCK_17: dict[str, Any] = {
    "serial_number": "BKRW537",
    "serial_obliterated": False,
    "make_name": "Glock",
    "make_codes": [{"system": "NCIC_MAK", "code": "GLC"}],
    "model": "17 Gen4",
    "type": "P",
    "type_detail": "I",
    "calibre": "9x19mm",
    "country_of_manufacture": "AT",
    "place_of_manufacture": "Deutsch-Wagram",
    "year_of_manufacture": 2019,
    "import_marking": {"country_of_import": "US", "year_of_import": 2020},
    "importer": {"name": "Glock Inc., Smyrna GA", "country": "US"},
    "additional_markings": ["Austrian proof mark (Vienna eagle)", "GLOCK INC. SMYRNA GA"],
    "barrel_length_mm": 114,
    "eu_category": "B1",
}

BERETTA_92: dict[str, Any] = {
    "serial_number": "D12345Z",
    "make_name": "Beretta",
    "make_codes": [{"system": "NCIC_MAK", "code": "BER"}],
    "model": "92FS",
    "type": "P",
    "type_detail": "I",
    "calibre": "9x19mm",
    "country_of_manufacture": "IT",
    "place_of_manufacture": "Gardone Val Trompia",
    "year_of_manufacture": 2011,
    "barrel_length_mm": 125,
    "eu_category": "B1",
}

EXAMPLES: dict[str, dict[str, Any]] = {
    "trace.request": {
        "request_kind": "TRACE",
        "firearm": GLOCK_17,
        "illicit_basis": ["ILLICIT_UNDER_NATIONAL_LAW", "UNLICENSED_TRANSFER"],
        "legal_basis": "Ley Federal de Armas de Fuego y Explosivos, art. 84; International Tracing Instrument §§14-17",
        "intended_use": "Criminal investigation into firearms trafficking (carpeta FED/SIN/CLN/0004512/2026)",
        "recovery": {
            "date": "2026-10-14",
            "location": {"city": "Culiacán", "admin_area": "Sinaloa", "country": "MX"},
            "circumstances": "Seized during a vehicle search at a federal checkpoint; magazine loaded with 15 rounds",
        },
        "case_refs": [{"issuer": "FGR", "number": "FED/SIN/CLN/0004512/2026"}],
        "requested_info": ["MANUFACTURE_RECORD", "EXPORT_RECORD", "DISTRIBUTION_CHAIN"],
        "respond_by": "2026-12-15",
        "requester": {
            "agency": "Fiscalía General de la República",
            "unit": "Unidad de Rastreo de Armas",
            "officer": "Lic. María Hernández Ruiz",
            "email": "rastreo.armas@fgr.example.mx",
        },
    },
    "trace.acknowledgement": {
        "received_at": "2026-11-27T09:14:03+01:00",
        "tracking_ref": "BK-WT-2026-01873",
        "expected_response_by": "2027-01-15",
        "missing_information": ["close-up photograph of the frame serial plate"],
    },
    "trace.response": {
        "status": "PARTIAL",
        "status_reason": {
            "code": "RECORDS_HELD_BY_IMPORTER",
            "text": "Distribution after import is recorded by the US importer; ask the ATF National Tracing Center",
        },
        "firearm_as_recorded": GLOCK_17,
        "custody_chain": [
            {"event": "MANUFACTURED", "date": "2019-06-03", "to_party": "Glock GmbH", "country": "AT"},
            {
                "event": "EXPORTED",
                "date": "2019-08-21",
                "from_party": "Glock GmbH",
                "to_party": "Glock Inc., Smyrna GA",
                "country": "AT",
                "document_ref": "AT-BMAW-AUSF-2019-04417",
            },
            {"event": "IMPORTED", "date": "2020-01-10", "to_party": "Glock Inc., Smyrna GA", "country": "US"},
        ],
        "confidentiality_conditions": "H2: not to be disseminated without the consent of BK Wien",
    },
    "firearm.status.query": {
        "serial_number": "D12345Z",
        "make_name": "Beretta",
        "model": "92FS",
        "calibre": "9x19mm",
        "type": "P",
        "context": "BORDER_OR_CUSTOMS_CHECK",
    },
    "firearm.status.answer": {
        "result": "HIT",
        "hits": [
            {
                "record_ref": "IT-SDI-2024-0081337",
                "record_status": "STOLEN",
                "owner": {
                    "country": "IT",
                    "agency": "Arma dei Carabinieri, Stazione di Brescia",
                    "case_no": "BS-2024-11873",
                },
                "date_of_theft_or_loss": "2024-03-02",
                "firearm": BERETTA_92,
                "match_quality": "EXACT",
            }
        ],
        "hit_confirmation_required": True,
    },
    "ballistic.submission": {
        "exhibit_id": "ES-CGPC-2026-0457-P2",
        "exhibit_kind": "BULLET",
        "origin": "CRIME_SCENE_EVIDENCE",
        "calibre": "9x19mm",
        "occurrence_date": "2026-09-30",
        "admin": {
            "agency_id": "ES-CGPC",
            "agency_case_no": "DP-2026-4471",
            "lab_id": "ES-CGPC-BAL",
            "lab_case_no": "BAL-2026-0457",
        },
        "bullet": {
            "brand": "Sellier & Bellot",
            "diameter_mm": 9.02,
            "rifling_type": "Conventional",
            "number_of_lands": 6,
            "twist": "Right",
            "unfired_weight_g": 8.0,
            "surface_material": "Copper",
        },
        "topography": [
            {
                "sha256": SAMPLE_LAND_SHA256,
                "region": "LEA",
                "size_x": 918,
                "size_y": 256,
                "increment_x_m": 2.58e-06,
                "increment_y_m": 2.58e-06,
                "instrument": "Sensofar S neox",
            }
        ],
        "correlation": {"countries": ["ES", "MX", "IT"], "date_from": "2025-01-01", "date_to": "2026-11-01"},
    },
    "ballistic.hit": {
        "hit_id": "IBIN-EU-2026-000311",
        "status": "CONFIRMED_HIT",
        "exhibits": [
            {"exhibit_id": "ES-CGPC-2026-0457-P2", "owner_country": "ES", "agency_case_no": "DP-2026-4471"},
            {
                "exhibit_id": "MX-FGR-2026-1180-P1",
                "owner_country": "MX",
                "agency_case_no": "FED/SIN/CLN/0004512/2026",
            },
        ],
        "correlation": {"rank": 1, "score": 0.873, "algorithm": "IBIS BULLETTRAX 3D"},
        "confirmation": {
            "examiner": "Dra. Lucía Ortega",
            "lab_id": "ES-CGPC-BAL",
            "method": "COMPARISON_MICROSCOPE",
            "date": "2026-11-20",
        },
        "next_steps": ["INITIATE_TRACE", "REQUEST_CASTS"],
    },
    "licence.verify.query": {
        "licence_number": "AT-BMAW-AUSF-2019-04417",
        "issuing_state": "AT",
        "context": "TRACE_FOLLOW_UP",
        "firearm_markings": [
            {
                "serial_number": "BKRW537",
                "make_name": "Glock",
                "model": "17 Gen4",
                "calibre": "9x19mm",
                "type": "P",
            }
        ],
    },
    "licence.verify.answer": {
        "status": "EXPIRED",
        "licence": {
            "place_of_issue": "Wien",
            "date_of_issue": "2019-07-30",
            "date_of_expiry": "2020-07-29",
            "country_of_export": "AT",
            "country_of_import": "US",
            "transit_countries": ["DE"],
            "consignee": "Glock Inc., Smyrna GA",
            "final_recipient": "Glock Inc., Smyrna GA",
            "goods": [
                {
                    "description": "Pistols, Glock 17 Gen4, 9x19mm",
                    "quantity": 1200,
                    "markings": ["BKRW001 to BKRW999", "BKRX001 to BKRX201"],
                }
            ],
            "end_use": "Commercial resale to federally licensed dealers in the United States",
        },
        "covers_firearm": True,
    },
    "notice": {
        "title": "Trace request FED/SIN/CLN/0004512/2026 forwarded to ATF",
        "text": "The firearm was imported into the United States in 2020; the Austrian answer is attached by reference.",
        "links": [TRACE_REQUEST_ID, TRACE_RESPONSE_ID],
    },
    "receipt": {
        "for": TRACE_REQUEST_ID,
        "dig": TOKEN_DIGEST,
        "status": "DELIVERED",
        "at": "2026-11-27T08:14:05.120000Z",
        "detail": "taken by BK Waffenregister",
    },
    "error": {
        "for": TRACE_REQUEST_ID,
        "code": "expired",
        "at": "2026-12-04T08:14:03Z",
        "by": "latam-hub",
        "detail": "no valid ack from eu-hub before exp; gave up after 212 attempts",
    },
}


def example(mt: str) -> dict[str, Any]:
    """A deep copy of the example body of ``mt``, safe to mutate."""
    return copy.deepcopy(EXAMPLES[mt])


_STEP = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _steps(path: str) -> list[str | int]:
    """``"custody_chain[1].event"`` (an optional leading ``$`` allowed) -> ``["custody_chain", 1, "event"]``."""
    text = path[1:] if path.startswith("$") else path
    out: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = _STEP.match(text, pos)
        if m is None:
            raise ValueError(f"bad path {path!r} at {pos}")
        out.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    return out


def set_path(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set the member at ``path`` (e.g. ``"hits[0].firearm.type"``) in ``body``; returns ``body``."""
    *head, last = _steps(path)
    node: Any = body
    for s in head:
        node = node[s]
    node[last] = value
    return body


def del_path(body: dict[str, Any], path: str) -> dict[str, Any]:
    """Delete the member at ``path`` from ``body``; returns ``body``."""
    *head, last = _steps(path)
    node: Any = body
    for s in head:
        node = node[s]
    del node[last]
    return body
