"""The story behind adapters/<name>/samples/: run ``python tests/adapters/adapter_sample_story.py`` from
the project root to (re)write every sample file from the standard messages below.

Mexico's FGR recovers firearms and asks the countries of manufacture to trace them: a Glock 17 (Austria),
a Beretta 92FS (Italy), a Cugir Carpati Md. 1974 (Romania), a Walther P99 (Germany), an FN Five-seveN
(Belgium) and a Star Model BM and a Llama Max-I (Spain). Each national system speaks its own format:
Mexico `mx` JSON, Spain `es` XML, Germany `de` CSV, Italy `it` CSV; Romania and Belgium use the
`standard` form; ballistics labs hand over X3P files (`x3p`). A file a national system SENDS has the
envelope fields it sets (to, handling, classification, purpose, reply_to); a file its node DELIVERS
also has id, from, conversation and delivered_at.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def dig(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()


def sent(
    to: str,
    handling: str = "H2",
    cls: str = "BASIC_PROTECTION_LEVEL",
    purpose: str = "INVESTIGATION",
    **kw: Any,
) -> dict[str, Any]:
    return {"to": to, "handling": handling, "classification": cls, "purpose": purpose, **kw}


def delivered(
    mid: str,
    frm: str,
    to: str,
    conv: str,
    at: str,
    *,
    reply_to: str | None = None,
    handling: str = "H2",
    cls: str = "BASIC_PROTECTION_LEVEL",
    purpose: str = "INVESTIGATION",
) -> dict[str, Any]:
    out = {
        "id": mid,
        "from": frm,
        "to": to,
        "conversation": conv,
        "delivered_at": at,
        "handling": handling,
        "classification": cls,
        "purpose": purpose,
    }
    if reply_to:
        out["reply_to"] = reply_to
    return out


# --- firearms -----------------------------------------------------------------------------------------

GLOCK = {
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
BERETTA = {
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
    "additional_markings": ["PSF (Banco Nazionale di Prova, Gardone V.T.)"],
}
CARPATI = {
    "serial_number": "CX 04417",
    "make_name": "Cugir",
    "make_codes": [{"system": "NATIONAL", "code": "RO-UMC"}],
    "model": "Carpati Md. 1974",
    "type": "P",
    "type_detail": "I",
    "calibre": "7.65x17mm Browning",
    "country_of_manufacture": "RO",
    "place_of_manufacture": "Cugir",
    "year_of_manufacture": 1988,
    "additional_markings": ["Fabricat in Romania"],
    "barrel_length_mm": 97,
    "free_text": "Steel frame, black bakelite grips with the Cugir logo; slide refinished",
}
WALTHER = {
    "serial_number": "FAK4721",
    "make_name": "Walther",
    "make_codes": [{"system": "NCIC_MAK", "code": "WAL"}],
    "model": "P99 AS",
    "type": "P",
    "type_detail": "I",
    "calibre": "9x19mm",
    "country_of_manufacture": "DE",
    "place_of_manufacture": "Ulm",
    "year_of_manufacture": 2008,
    "barrel_length_mm": 102,
    "eu_category": "B1",
    "additional_markings": ["Beschusszeichen Ulm (Hirschstange)"],
}
FN = {
    "serial_number": "386298124",
    "make_name": "FN Herstal",
    "make_codes": [{"system": "NCIC_MAK", "code": "FN"}],
    "model": "Five-seveN MK2",
    "type": "P",
    "type_detail": "I",
    "calibre": "5.7x28mm",
    "country_of_manufacture": "BE",
    "place_of_manufacture": "Herstal",
    "year_of_manufacture": 2016,
    "import_marking": {"country_of_import": "US", "year_of_import": 2017},
    "importer": {"name": "FN America LLC, Fredericksburg VA", "country": "US"},
    "barrel_length_mm": 122,
    "eu_category": "A7",
}
STAR = {
    "serial_number": "1874025",
    "make_name": "Star Bonifacio Echeverría",
    "make_codes": [{"system": "NCIC_MAK", "code": "STR"}],
    "model": "BM",
    "type": "P",
    "type_detail": "I",
    "calibre": "9x19mm",
    "country_of_manufacture": "ES",
    "place_of_manufacture": "Eibar",
    "year_of_manufacture": 1984,
    "additional_markings": ["Banco Oficial de Pruebas de Eibar (crowned shield)"],
    "barrel_length_mm": 99,
}
LLAMA = {
    "serial_number": "07-04-27193-98",
    "make_name": "Llama (Gabilondo y Cía)",
    "model": "Max-I",
    "type": "P",
    "type_detail": "I",
    "calibre": ".45 ACP",
    "country_of_manufacture": "ES",
    "place_of_manufacture": "Vitoria",
    "year_of_manufacture": 1998,
    "barrel_length_mm": 127,
}
OBLITERATED = {
    "serial_obliterated": True,
    "make_name": "Glock",
    "model": "19",
    "type": "P",
    "type_detail": "I",
    "calibre": "9x19mm",
    "country_of_manufacture": "AT",
    "free_text": "Frame serial ground off; slide serial partially legible: BN?2?8",
}

FGR = {
    "agency": "Fiscalía General de la República",
    "unit": "Unidad de Rastreo de Armas",
    "officer": "Lic. María Hernández Ruiz",
    "email": "rastreo.armas@fgr.example.mx",
}


def trace_request(
    firearm: dict[str, Any], city: str, state: str, date: str, carpeta: str, **extra: Any
) -> dict[str, Any]:
    return {
        "request_kind": "TRACE",
        "firearm": firearm,
        "illicit_basis": ["ILLICIT_UNDER_NATIONAL_LAW", "UNLICENSED_TRANSFER"],
        "legal_basis": "Ley Federal de Armas de Fuego y Explosivos, art. 84; International Tracing Instrument §§14-17",
        "intended_use": f"Criminal investigation into firearms trafficking (carpeta {carpeta})",
        "recovery": {
            "date": date,
            "location": {"city": city, "admin_area": state, "country": "MX"},
            "circumstances": extra.pop("circumstances", "Seized during a search under a judicial warrant"),
        },
        "case_refs": [{"issuer": "FGR", "number": carpeta}],
        "requested_info": ["MANUFACTURE_RECORD", "EXPORT_RECORD", "DISTRIBUTION_CHAIN"],
        "respond_by": extra.pop("respond_by", "2026-12-15"),
        "requester": FGR,
        **extra,
    }


# ids: UUIDv7 (2026-10/11), one conversation per trace
ID = {
    "mx-at": "019a7c3e-52d1-7a4b-8c6e-2f9d1b3a4c5e",
    "at-ack": "019a8a10-0b3c-7e21-9f40-1a2b3c4d5e6f",
    "at-resp": "019ab1f0-0c2e-7d11-9a3b-6e4f5a2b1c0d",
    "mx-reg": "019a9d02-77aa-7c10-8b21-0f0e0d0c0b0a",
    "reg-ans": "019a9d02-8101-7f33-a4c2-5b6a79881726",
    "mx-lic": "019ab2c4-1f00-7a55-b0e1-3c2d1e0f9a8b",
    "at-lic": "019ab9e7-4d21-7b08-8f7e-6d5c4b3a2918",
    "mx-es": "019a7d11-2a3b-7c4d-8e5f-60718293a4b5",
    "es-ack": "019a8b55-3c4d-7e5f-9071-82a3b4c5d6e7",
    "es-resp": "019ac0d9-5e6f-7081-a2b3-c4d5e6f70819",
    "mx-de": "019a7d40-6a7b-7c8d-9eaf-b0c1d2e3f405",
    "de-ack": "019a8c01-7b8c-7d9e-afb0-c1d2e3f40516",
    "de-resp": "019abd33-8c9d-7eaf-b0c1-d2e3f4051627",
    "mx-it": "019a7d66-9dae-7fb0-81c2-d3e4f5061728",
    "it-ack": "019a8c77-aebf-70c1-92d3-e4f506172839",
    "it-resp": "019ab4a8-bfc0-71d2-a3e4-f5061728394a",
    "mx-ro": "019a7d88-c0d1-72e3-b4f5-06172839a4b5",
    "ro-resp": "019ab7ff-d1e2-73f4-85a6-1728394a5b6c",
    "mx-be": "019a7e02-e2f3-7405-96b7-28394a5b6c7d",
    "be-resp": "019ab801-f304-7516-a7c8-394a5b6c7d8e",
    "es-bal": "019ac5e1-0415-7627-b8d9-4a5b6c7d8e9f",
    "hub-hit": "019ad3f2-1526-7738-89ea-5b6c7d8e9fa0",
    "x-notice": "019ad6a3-2637-7849-9afb-6c7d8e9fa0b1",
    "rcpt": "019a7c3f-3748-795a-ab0c-7d8e9fa0b1c2",
    "err": "019ae100-4859-7a6b-bc1d-8e9fa0b1c2d3",
    "es-reg": "019a9e10-596a-7b7c-8d2e-9fa0b1c2d3e4",
    "de-reg": "019a9e44-6a7b-7c8d-9e3f-a0b1c2d3e4f5",
    "it-reg": "019a9e71-7b8c-7d9e-af40-b1c2d3e4f506",
    "mx-es-lic": "019ab301-8c9d-7eaf-b051-c2d3e4f50617",
    "es-lic": "019abb90-9dae-7fb0-8162-d3e4f5061728",
    "de-lic": "019ab402-aebf-70c1-9273-e4f506172839",
    "it-lic": "019ab5c3-bfc0-71d2-a384-f5061728394a",
}


def receipt(for_id: str, at: str, detail: str) -> dict[str, Any]:
    return {"for": for_id, "dig": dig(for_id), "status": "DELIVERED", "at": at, "detail": detail}


def error(for_id: str, at: str, by: str, detail: str, code: str = "expired") -> dict[str, Any]:
    return {"for": for_id, "code": code, "at": at, "by": by, "detail": detail}


def ballistic_hit(exhibits: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "hit_id": "IBIN-LATAM-2026-000147",
        "status": "LEAD",
        "exhibits": exhibits,
        "correlation": {"rank": 1, "score": 0.912, "algorithm": "IBIS BRASSTRAX 3D"},
        "next_steps": ["REQUEST_CASTS", "INITIATE_TRACE"],
    }


def ballistic_submission(
    exhibit_id: str, case_no: str, lab: str, date: str, sha: str, countries: list[str]
) -> dict[str, Any]:
    return {
        "exhibit_id": exhibit_id,
        "exhibit_kind": "CARTRIDGE_CASE",
        "origin": "CRIME_SCENE_EVIDENCE",
        "calibre": "9x19mm",
        "occurrence_date": date,
        "admin": {
            "agency_id": lab.split("-BAL")[0],
            "agency_case_no": case_no,
            "lab_id": lab,
            "lab_case_no": "BAL-" + exhibit_id.split("-", 2)[2],
        },
        "cartridge_case": {
            "brand": "Sellier & Bellot",
            "headstamp": "S&B 9mm Luger",
            "firing_pin_type": "Centerfire",
            "firing_pin_class": "Rectangular",
            "breech_face_class": ["Parallel"],
            "primer_material": "Brass",
            "case_material": "Brass",
        },
        "topography": [
            {
                "sha256": sha,
                "region": "BreechFace",
                "size_x": 64,
                "size_y": 64,
                "increment_x_m": 3.125e-06,
                "increment_y_m": 3.125e-06,
                "instrument": "Cadre Forensics TopMatch-3D s/n TM-2207",
            }
        ],
        "correlation": {"countries": countries, "date_from": "2025-01-01", "date_to": "2026-11-30"},
    }


def status_answer(
    firearm: dict[str, Any], ref: str, owner: dict[str, Any], date: str, status: str = "STOLEN"
) -> dict[str, Any]:
    return {
        "result": "HIT",
        "hit_confirmation_required": True,
        "hits": [
            {
                "record_ref": ref,
                "record_status": status,
                "owner": owner,
                "date_of_theft_or_loss": date,
                "firearm": firearm,
                "match_quality": "EXACT",
            }
        ],
    }


def licence_answer(**lic: Any) -> dict[str, Any]:
    covers = lic.pop("covers", True)
    status = lic.pop("status", "VALID")
    return {"status": status, "licence": lic, "covers_firearm": covers}


def marks(f: dict[str, Any]) -> dict[str, Any]:
    return {k: f[k] for k in ("serial_number", "make_name", "model", "calibre", "type") if k in f}


def story(sha_bf: str) -> dict[str, dict[str, tuple[dict[str, Any], dict[str, Any]]]]:
    """adapter -> mt -> (meta, body)."""
    S: dict[str, dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {}

    # Mexico: sends trace requests, status and licence queries; receives answers.
    S["mx"] = {
        "trace.request": (
            sent("at", ttl_seconds=1209600),
            trace_request(
                GLOCK,
                "Culiacán",
                "Sinaloa",
                "2026-10-14",
                "FED/SIN/CLN/0004512/2026",
                circumstances="Seized during a vehicle search at a federal checkpoint; magazine loaded with 15 rounds",
            ),
        ),
        "trace.acknowledgement": (
            delivered(
                ID["at-ack"], "at", "mx", ID["mx-at"], "2026-10-15T09:14:07.250000Z", reply_to=ID["mx-at"]
            ),
            {
                "received_at": "2026-10-15T09:14:03+02:00",
                "tracking_ref": "BK-WT-2026-01873",
                "expected_response_by": "2026-11-30",
                "missing_information": ["close-up photograph of the frame serial plate"],
            },
        ),
        "trace.response": (
            delivered(ID["at-resp"], "at", "mx", ID["mx-at"], "2026-11-27T08:14:05Z", reply_to=ID["mx-at"]),
            {
                "status": "PARTIAL",
                "status_reason": {
                    "code": "RECORDS_HELD_BY_IMPORTER",
                    "text": "Distribution after import is recorded by the US importer; ask the ATF National Tracing Center",
                },
                "firearm_as_recorded": GLOCK,
                "custody_chain": [
                    {
                        "event": "MANUFACTURED",
                        "date": "2019-06-03",
                        "to_party": "Glock GmbH",
                        "country": "AT",
                    },
                    {
                        "event": "EXPORTED",
                        "date": "2019-08-21",
                        "from_party": "Glock GmbH",
                        "to_party": "Glock Inc., Smyrna GA",
                        "country": "AT",
                        "document_ref": "AT-BMAW-AUSF-2019-04417",
                    },
                    {
                        "event": "IMPORTED",
                        "date": "2020-01-10",
                        "to_party": "Glock Inc., Smyrna GA",
                        "country": "US",
                    },
                ],
                "confidentiality_conditions": "H2: not to be disseminated without the consent of BK Wien",
            },
        ),
        "firearm.status.query": (
            sent("arms-registry", purpose="DETECTION"),
            {**marks(BERETTA), "context": "RECOVERY"},
        ),
        "firearm.status.answer": (
            delivered(
                ID["reg-ans"],
                "arms-registry",
                "mx",
                ID["mx-reg"],
                "2026-11-03T17:40:12Z",
                reply_to=ID["mx-reg"],
                purpose="DETECTION",
            ),
            status_answer(
                BERETTA,
                "IT-SDI-2024-0081337",
                {
                    "country": "IT",
                    "agency": "Arma dei Carabinieri, Stazione di Brescia",
                    "case_no": "BS-2024-11873",
                },
                "2024-03-02",
            ),
        ),
        "licence.verify.query": (
            sent("at", reply_to=ID["at-resp"]),
            {
                "licence_number": "AT-BMAW-AUSF-2019-04417",
                "issuing_state": "AT",
                "context": "TRACE_FOLLOW_UP",
                "firearm_markings": [marks(GLOCK)],
            },
        ),
        "licence.verify.answer": (
            delivered(ID["at-lic"], "at", "mx", ID["at-resp"], "2026-11-30T10:02:44Z", reply_to=ID["mx-lic"]),
            licence_answer(
                status="EXPIRED",
                place_of_issue="Wien",
                date_of_issue="2019-07-30",
                date_of_expiry="2020-07-29",
                country_of_export="AT",
                country_of_import="US",
                transit_countries=["DE"],
                consignee="Glock Inc., Smyrna GA",
                final_recipient="Glock Inc., Smyrna GA",
                goods=[
                    {
                        "description": "Pistols, Glock 17 Gen4, 9x19mm",
                        "quantity": 1200,
                        "markings": ["BKRW001 to BKRW999", "BKRX001 to BKRX201"],
                    }
                ],
                end_use="Commercial resale to federally licensed dealers in the United States",
            ),
        ),
        "notice": (
            sent("latam-hub", handling="H1", cls="UNCLASSIFIED"),
            {
                "title": "Trace FED/SIN/CLN/0004512/2026 forwarded to ATF",
                "text": "The Glock 17 was imported into the United States in 2020; Mexico has asked the ATF National Tracing Center for the retail chain.",
                "links": [ID["mx-at"], ID["at-resp"]],
            },
        ),
        "receipt": (
            delivered(
                ID["rcpt"],
                "at",
                "mx",
                ID["mx-at"],
                "2026-10-14T16:20:01Z",
                reply_to=ID["mx-at"],
                handling="H1",
                cls="UNCLASSIFIED",
            ),
            receipt(ID["mx-at"], "2026-10-14T18:19:58.731000+02:00", "taken by BK Waffenregister"),
        ),
        "error": (
            delivered(
                ID["err"],
                "latam-hub",
                "mx",
                ID["mx-ro"],
                "2026-11-04T12:00:03Z",
                reply_to=ID["mx-ro"],
                handling="H1",
                cls="UNCLASSIFIED",
            ),
            error(
                ID["mx-ro"],
                "2026-11-04T12:00:00Z",
                "latam-hub",
                "no valid ack from eu-hub before exp; gave up after 212 attempts",
            ),
        ),
        "ballistic.hit": (
            delivered(
                ID["hub-hit"], "latam-hub", "mx", ID["es-bal"], "2026-11-21T08:30:00Z", reply_to=ID["es-bal"]
            ),
            ballistic_hit(
                [
                    {
                        "exhibit_id": "ES-CGPC-2026-0457-C1",
                        "owner_country": "ES",
                        "agency_case_no": "DP-2026-4471",
                    },
                    {
                        "exhibit_id": "MX-FGR-2026-1180-C3",
                        "owner_country": "MX",
                        "agency_case_no": "FED/SIN/CLN/0004512/2026",
                    },
                ]
            ),
        ),
        "ballistic.submission": (
            sent("latam-hub"),
            ballistic_submission(
                "MX-FGR-2026-1180-C3",
                "FED/SIN/CLN/0004512/2026",
                "MX-FGR-BAL",
                "2026-10-14",
                sha_bf,
                ["MX", "CO", "ES"],
            ),
        ),
    }

    # Spain: receives trace requests for Star and Llama pistols; answers; checks its export licences.
    S["es"] = {
        "trace.request": (
            delivered(ID["mx-es"], "mx", "es", ID["mx-es"], "2026-10-16T11:02:33Z"),
            trace_request(
                STAR,
                "Tijuana",
                "Baja California",
                "2026-10-09",
                "FED/BC/TIJ/0002207/2026",
                circumstances="Found with two other pistols in a vehicle abandoned near the San Ysidro crossing",
            ),
        ),
        "trace.acknowledgement": (
            sent("mx", reply_to=ID["mx-es"]),
            {
                "received_at": "2026-10-16T13:05:00+02:00",
                "tracking_ref": "ICAE-RAS-2026/0933",
                "expected_response_by": "2026-11-20",
            },
        ),
        "trace.response": (
            sent("mx", reply_to=ID["mx-es"]),
            {
                "status": "COMPLETED",
                "firearm_as_recorded": STAR,
                "custody_chain": [
                    {
                        "event": "MANUFACTURED",
                        "date": "1984-05-17",
                        "to_party": "Star Bonifacio Echeverría S.A.",
                        "country": "ES",
                    },
                    {
                        "event": "EXPORTED",
                        "date": "1985-02-11",
                        "from_party": "Star Bonifacio Echeverría S.A.",
                        "to_party": "Dirección de Comercialización de Armamento y Municiones (SEDENA)",
                        "country": "ES",
                        "document_ref": "ES-JIMDDU-1985-0117",
                    },
                    {
                        "event": "IMPORTED",
                        "date": "1985-03-29",
                        "to_party": "Dirección de Comercialización de Armamento y Municiones (SEDENA)",
                        "country": "MX",
                    },
                ],
                "confidentiality_conditions": "H2: uso exclusivo en la carpeta FED/BC/TIJ/0002207/2026",
            },
        ),
        "firearm.status.query": (
            sent("arms-registry", purpose="DETECTION"),
            {**marks(LLAMA), "context": "BORDER_OR_CUSTOMS_CHECK"},
        ),
        "firearm.status.answer": (
            delivered(
                ID["es-reg"], "arms-registry", "es", ID["es-reg"], "2026-10-20T09:12:00Z", purpose="DETECTION"
            ),
            {"result": "NO_HIT", "hit_confirmation_required": False},
        ),
        "licence.verify.query": (
            delivered(
                ID["mx-es-lic"], "mx", "es", ID["es-resp"], "2026-11-21T15:40:00Z", reply_to=ID["es-resp"]
            ),
            {
                "licence_number": "ES-JIMDDU-1985-0117",
                "issuing_state": "ES",
                "context": "TRACE_FOLLOW_UP",
                "firearm_markings": [marks(STAR)],
            },
        ),
        "licence.verify.answer": (
            sent("mx", reply_to=ID["mx-es-lic"]),
            licence_answer(
                status="EXPIRED",
                place_of_issue="Madrid",
                date_of_issue="1984-12-03",
                date_of_expiry="1985-12-03",
                country_of_export="ES",
                country_of_import="MX",
                consignee="Dirección de Comercialización de Armamento y Municiones (SEDENA)",
                final_recipient="Secretaría de la Defensa Nacional",
                goods=[
                    {
                        "description": "Pistolas Star modelo BM, 9x19mm",
                        "quantity": 500,
                        "markings": ["1873800 a 1874299"],
                    }
                ],
                end_use="Venta a particulares y corporaciones policiales a través de la DCAM",
            ),
        ),
        "notice": (
            sent("mx", handling="H1"),
            {
                "title": "Rastreo ICAE-RAS-2026/0933: pistola Llama Max-I",
                "text": "La pistola Llama Max-I .45 ACP n.º 07-04-27193-98 no consta en el registro de exportaciones; se consulta el archivo de Gabilondo y Cía.",
                "links": [ID["mx-es"]],
            },
        ),
        "receipt": (
            delivered(
                ID["rcpt"],
                "mx",
                "es",
                ID["es-resp"],
                "2026-11-20T19:01:00Z",
                reply_to=ID["es-resp"],
                handling="H1",
                cls="UNCLASSIFIED",
            ),
            receipt(
                ID["es-resp"], "2026-11-20T12:00:58-06:00", "recibido por el Sistema de Rastreo de la FGR"
            ),
        ),
        "error": (
            delivered(
                ID["err"],
                "eu-hub",
                "es",
                ID["es-ack"],
                "2026-10-23T13:05:02Z",
                reply_to=ID["es-ack"],
                handling="H1",
                cls="UNCLASSIFIED",
            ),
            error(
                ID["es-ack"],
                "2026-10-23T13:05:00Z",
                "eu-hub",
                "peer latam-hub unreachable until exp",
                code="expired",
            ),
        ),
        "ballistic.submission": (
            sent("eu-hub"),
            ballistic_submission(
                "ES-CGPC-2026-0457-C1",
                "DP-2026-4471",
                "ES-CGPC-BAL",
                "2026-09-30",
                sha_bf,
                ["ES", "MX", "IT"],
            ),
        ),
        "ballistic.hit": (
            delivered(
                ID["hub-hit"], "latam-hub", "es", ID["es-bal"], "2026-11-21T08:30:00Z", reply_to=ID["es-bal"]
            ),
            ballistic_hit(
                [
                    {
                        "exhibit_id": "ES-CGPC-2026-0457-C1",
                        "owner_country": "ES",
                        "agency_case_no": "DP-2026-4471",
                    },
                    {
                        "exhibit_id": "MX-FGR-2026-1180-C3",
                        "owner_country": "MX",
                        "agency_case_no": "FED/SIN/CLN/0004512/2026",
                    },
                ]
            ),
        ),
    }

    # Germany: receives the Walther trace request; answers; verifies its own export licences.
    S["de"] = {
        "trace.request": (
            delivered(ID["mx-de"], "mx", "de", ID["mx-de"], "2026-10-17T08:45:10Z"),
            trace_request(
                WALTHER,
                "Chilpancingo",
                "Guerrero",
                "2026-10-02",
                "FED/GRO/CHI/0001377/2026",
                circumstances="Recovered after an armed confrontation; registered to a state police corporation",
            ),
        ),
        "trace.acknowledgement": (
            sent("mx", reply_to=ID["mx-de"]),
            {"received_at": "2026-10-17T10:50:41.500000+02:00", "tracking_ref": "BKA-SO51-2026-4471"},
        ),
        "trace.response": (
            sent("mx", reply_to=ID["mx-de"], handling="H3"),
            {
                "status": "COMPLETED",
                "firearm_as_recorded": WALTHER,
                "custody_chain": [
                    {
                        "event": "MANUFACTURED",
                        "date": "2008-03-12",
                        "to_party": "Carl Walther GmbH",
                        "country": "DE",
                    },
                    {
                        "event": "EXPORTED",
                        "date": "2008-09-30",
                        "from_party": "Carl Walther GmbH",
                        "to_party": "Dirección de Comercialización de Armamento y Municiones (SEDENA)",
                        "country": "DE",
                        "document_ref": "DE-BAFA-AG-2008-117342",
                    },
                    {
                        "event": "IMPORTED",
                        "date": "2008-10-21",
                        "to_party": "Secretaría de Seguridad Pública del Estado de Guerrero",
                        "country": "MX",
                    },
                ],
                "confidentiality_conditions": "Endverbleibserklärung: Weitergabe an Guerrero war nicht genehmigt; nur für das Ermittlungsverfahren",
            },
        ),
        "firearm.status.query": (
            sent("arms-registry", purpose="PREVENTION"),
            {**marks(FN), "context": "REGISTRATION"},
        ),
        "firearm.status.answer": (
            delivered(
                ID["de-reg"],
                "arms-registry",
                "de",
                ID["de-reg"],
                "2026-10-25T14:31:09Z",
                purpose="PREVENTION",
            ),
            {
                "result": "MULTIPLE_HITS",
                "hit_confirmation_required": True,
                "hits": [
                    {
                        "record_ref": "US-NCIC-G-2019-551823",
                        "record_status": "STOLEN",
                        "owner": {
                            "country": "US",
                            "agency": "Houston Police Department",
                            "case_no": "HPD-19-118802",
                        },
                        "date_of_theft_or_loss": "2019-05-04",
                        "firearm": FN,
                        "match_quality": "EXACT",
                    },
                    {
                        "record_ref": "MX-RFAFE-2023-00912",
                        "record_status": "TRAFFICKED",
                        "owner": {"country": "MX", "agency": "SEDENA, Registro Federal de Armas de Fuego"},
                        "firearm": marks(FN),
                        "match_quality": "SERIAL_ONLY",
                    },
                ],
            },
        ),
        "licence.verify.query": (
            delivered(
                ID["de-lic"], "mx", "de", ID["de-resp"], "2026-11-18T16:00:00Z", reply_to=ID["de-resp"]
            ),
            {
                "licence_number": "DE-BAFA-AG-2008-117342",
                "issuing_state": "DE",
                "context": "EUC_VERIFICATION",
                "firearm_markings": [
                    marks(WALTHER),
                    {"serial_number": "FAK4722", "make_name": "Walther", "model": "P99 AS"},
                ],
            },
        ),
        "licence.verify.answer": (
            sent("mx", reply_to=ID["de-lic"], handling="H3"),
            licence_answer(
                status="EXPIRED",
                place_of_issue="Eschborn",
                date_of_issue="2008-07-14",
                date_of_expiry="2009-07-13",
                country_of_export="DE",
                country_of_import="MX",
                consignee="Dirección de Comercialización de Armamento y Municiones (SEDENA)",
                final_recipient="Secretaría de Seguridad Pública del Estado de Jalisco",
                goods=[
                    {
                        "description": "Pistolen Walther P99 AS, 9x19mm",
                        "quantity": 2500,
                        "markings": ["FAK0001 bis FAK2500"],
                    },
                    {"description": "Magazine 15 Patronen", "quantity": 5000},
                ],
                end_use="Nur Polizeibehörden der Bundesstaaten Jalisco, Chihuahua und Mexiko-Stadt; nicht Guerrero",
            ),
        ),
        "notice": (
            sent("mx", handling="H3"),
            {
                "title": "Genehmigung DE-BAFA-AG-2008-117342",
                "text": "Die Waffe FAK4721 war nicht für Guerrero genehmigt. Das BAFA prüft Maßnahmen.",
                "links": [ID["de-resp"]],
            },
        ),
        "receipt": (
            delivered(
                ID["rcpt"],
                "mx",
                "de",
                ID["de-resp"],
                "2026-11-12T07:00:03Z",
                reply_to=ID["de-resp"],
                handling="H1",
                cls="UNCLASSIFIED",
            ),
            receipt(ID["de-resp"], "2026-11-12T01:00:00-06:00", "entregado al Sistema de Rastreo de la FGR"),
        ),
        "error": (
            delivered(
                ID["err"],
                "de",
                "de",
                ID["de-ack"],
                "2026-10-24T10:50:45Z",
                reply_to=ID["de-ack"],
                handling="H1",
                cls="UNCLASSIFIED",
            ),
            error(
                ID["de-ack"], "2026-10-24T10:50:41Z", "de", "message expired in the outbox (mx unreachable)"
            ),
        ),
        "ballistic.submission": (
            sent("eu-hub"),
            ballistic_submission(
                "DE-BKA-2026-0311-C2", "ST 51-2026-0311", "DE-BKA-KT21", "2026-08-12", sha_bf, ["DE", "MX"]
            ),
        ),
        "ballistic.hit": (
            delivered(ID["hub-hit"], "eu-hub", "de", ID["hub-hit"], "2026-11-22T09:00:00Z"),
            ballistic_hit(
                [
                    {"exhibit_id": "DE-BKA-2026-0311-C2", "owner_country": "DE"},
                    {"exhibit_id": "MX-FGR-2026-1180-C3", "owner_country": "MX"},
                ]
            ),
        ),
    }

    # Italy: receives the Beretta trace request; answers; keeps the SDI lost/stolen records.
    S["it"] = {
        "trace.request": (
            delivered(ID["mx-it"], "mx", "it", ID["mx-it"], "2026-10-18T10:00:00Z"),
            trace_request(
                BERETTA,
                "Tijuana",
                "Baja California",
                "2026-10-30",
                "FED/BC/TIJ/0002311/2026",
                circumstances="Seized at the Garita de Otay during a customs inspection",
            ),
        ),
        "trace.acknowledgement": (
            sent("mx", reply_to=ID["mx-it"]),
            {
                "received_at": "2026-10-18T12:00:05+02:00",
                "tracking_ref": "SCIP-2026-RT-00417",
                "expected_response_by": "2026-11-15",
                "missing_information": ["foto della matricola sul carrello", "foto del fusto"],
            },
        ),
        "trace.response": (
            sent("mx", reply_to=ID["mx-it"]),
            {
                "status": "COMPLETED",
                "firearm_as_recorded": BERETTA,
                "custody_chain": [
                    {
                        "event": "MANUFACTURED",
                        "date": "2011-02-08",
                        "to_party": "Fabbrica d'Armi Pietro Beretta S.p.A.",
                        "country": "IT",
                    },
                    {
                        "event": "TRANSFERRED_TO_DEALER",
                        "date": "2011-04-19",
                        "from_party": "Fabbrica d'Armi Pietro Beretta S.p.A.",
                        "to_party": "Armeria Bresciana S.r.l., Brescia",
                        "country": "IT",
                    },
                    {
                        "event": "RETAIL_SALE",
                        "date": "2012-06-30",
                        "from_party": "Armeria Bresciana S.r.l., Brescia",
                        "country": "IT",
                        "document_ref": "Licenza porto d'armi BS-2012-4471",
                    },
                    {
                        "event": "REPORTED_STOLEN",
                        "date": "2024-03-02",
                        "country": "IT",
                        "document_ref": "BS-2024-11873",
                    },
                ],
                "confidentiality_conditions": "Dati personali del legittimo detentore omessi (D.Lgs. 51/2018)",
            },
        ),
        "firearm.status.query": (
            sent("arms-registry", purpose="DETECTION"),
            {
                "serial_number": "CX 04417",
                "make_name": "Cugir",
                "calibre": "7.65x17mm Browning",
                "type": "P",
                "context": "TRACE_PRECHECK",
            },
        ),
        "firearm.status.answer": (
            delivered(
                ID["it-reg"], "arms-registry", "it", ID["it-reg"], "2026-10-21T08:00:00Z", purpose="DETECTION"
            ),
            status_answer(
                CARPATI,
                "RO-IGPR-2015-00312",
                {
                    "country": "RO",
                    "agency": "Inspectoratul General al Poliției Române",
                    "case_no": "IGPR-DA-312/2015",
                },
                "2015-11-17",
                status="LOST",
            ),
        ),
        "licence.verify.query": (
            delivered(
                ID["it-lic"], "mx", "it", ID["it-resp"], "2026-11-16T12:00:00Z", reply_to=ID["it-resp"]
            ),
            {"licence_number": "IT-UAMA-2019-0033871", "issuing_state": "IT", "context": "CUSTOMS_CHECK"},
        ),
        "licence.verify.answer": (sent("mx", reply_to=ID["it-lic"]), {"status": "NOT_FOUND"}),
        "notice": (
            sent("mx", handling="H1"),
            {
                "title": "Pratica SCIP-2026-RT-00417",
                "text": "L'arma risulta rubata a Brescia il 2 marzo 2024; la denuncia è allegata alla risposta.",
            },
        ),
        "receipt": (
            delivered(
                ID["rcpt"],
                "mx",
                "it",
                ID["it-resp"],
                "2026-11-06T15:00:00Z",
                reply_to=ID["it-resp"],
                handling="H1",
                cls="UNCLASSIFIED",
            ),
            {
                "for": ID["it-resp"],
                "dig": dig(ID["it-resp"]),
                "status": "REFUSED_BY_SYSTEM",
                "at": "2026-11-06T08:59:59-06:00",
                "detail": "carpeta FED/BC/TIJ/0002311/2026 closed; forwarded to the archive",
            },
        ),
        "error": (
            delivered(
                ID["err"],
                "eu-hub",
                "it",
                ID["it-ack"],
                "2026-10-25T12:00:09Z",
                reply_to=ID["it-ack"],
                handling="H1",
                cls="UNCLASSIFIED",
            ),
            error(
                ID["it-ack"],
                "2026-10-25T12:00:05Z",
                "eu-hub",
                "latam-hub refused the envelope",
                code="policy_denied",
            ),
        ),
        "ballistic.submission": (
            sent("eu-hub"),
            ballistic_submission(
                "IT-RIS-2026-0099-C1",
                "RGNR 4471/2026",
                "IT-RIS-ROMA",
                "2026-07-22",
                sha_bf,
                ["IT", "MX", "ES"],
            ),
        ),
        "ballistic.hit": (
            delivered(ID["hub-hit"], "eu-hub", "it", ID["hub-hit"], "2026-11-22T09:00:00Z"),
            ballistic_hit(
                [
                    {"exhibit_id": "IT-RIS-2026-0099-C1", "owner_country": "IT"},
                    {"exhibit_id": "MX-FGR-2026-1180-C3", "owner_country": "MX"},
                ]
            ),
        ),
    }

    # Romania and Belgium use the standard form.
    S["standard"] = {
        "trace.request": (
            delivered(ID["mx-ro"], "mx", "ro", ID["mx-ro"], "2026-10-19T09:30:00Z"),
            trace_request(CARPATI, "Ciudad Juárez", "Chihuahua", "2026-10-05", "FED/CHIH/JRZ/0003090/2026"),
        ),
        "trace.acknowledgement": (
            sent("mx", reply_to=ID["mx-be"]),
            {"received_at": "2026-10-20T09:00:00+02:00", "tracking_ref": "PJF-DJSOC-ARMES-2026-118"},
        ),
        "trace.response": (
            sent("mx", reply_to=ID["mx-be"]),
            {
                "status": "DELAYED",
                "status_reason": {
                    "code": "AWAITING_MANUFACTURER",
                    "text": "FN Herstal archive query pending",
                },
                "firearm_as_recorded": FN,
                "custody_chain": [
                    {
                        "event": "MANUFACTURED",
                        "date": "2016-11-02",
                        "to_party": "FN Herstal S.A.",
                        "country": "BE",
                    },
                    {
                        "event": "EXPORTED",
                        "date": "2017-01-20",
                        "from_party": "FN Herstal S.A.",
                        "to_party": "FN America LLC",
                        "country": "BE",
                        "document_ref": "BE-WAL-LIC-2016-8873",
                    },
                ],
            },
        ),
        "firearm.status.query": (
            sent("arms-registry", purpose="DETECTION"),
            {
                "serial_number": "BN?2?8",
                "make_name": "Glock",
                "model": "19",
                "calibre": "9x19mm",
                "type": "P",
                "context": "TRACE_PRECHECK",
            },
        ),
        "firearm.status.answer": (
            delivered(
                ID["reg-ans"],
                "arms-registry",
                "ro",
                ID["mx-reg"],
                "2026-11-03T17:40:12Z",
                purpose="DETECTION",
            ),
            {"result": "NO_HIT", "hits": [], "hit_confirmation_required": False},
        ),
        "licence.verify.query": (
            sent("be", reply_to=ID["be-resp"]),
            {
                "licence_number": "BE-WAL-LIC-2016-8873",
                "issuing_state": "BE",
                "context": "DELIVERY_VERIFICATION",
                "firearm_markings": [marks(FN)],
            },
        ),
        "licence.verify.answer": (sent("mx", reply_to=ID["mx-ro"]), {"status": "NOT_DISCLOSABLE"}),
        "notice": (
            sent("mx", ttl_seconds=604800),
            {
                "title": "Obliterated serial referral",
                "text": "Romania has no record of the partial serial BN?2?8.",
            },
        ),
        "receipt": (
            delivered(ID["rcpt"], "mx", "be", ID["be-resp"], "2026-11-10T10:10:10Z", reply_to=ID["be-resp"]),
            receipt(ID["be-resp"], "2026-11-10T04:10:08-06:00", "taken"),
        ),
        "error": (
            delivered(
                ID["err"], "latam-hub", "ro", ID["ro-resp"], "2026-11-04T12:00:03Z", reply_to=ID["ro-resp"]
            ),
            error(
                ID["ro-resp"],
                "2026-11-04T12:00:00Z",
                "latam-hub",
                "schema check failed at mx",
                code="schema_invalid",
            ),
        ),
        "ballistic.submission": (
            sent("latam-hub"),
            ballistic_submission(
                "MX-FGR-2026-1180-C3",
                "FED/SIN/CLN/0004512/2026",
                "MX-FGR-BAL",
                "2026-10-14",
                sha_bf,
                ["MX", "CO"],
            ),
        ),
        "ballistic.hit": (
            delivered(ID["hub-hit"], "latam-hub", "be", ID["hub-hit"], "2026-11-21T08:30:00Z"),
            {
                **ballistic_hit(
                    [
                        {"exhibit_id": "BE-DJF-2026-0018-C1", "owner_country": "BE"},
                        {"exhibit_id": "MX-FGR-2026-1180-C3", "owner_country": "MX"},
                    ]
                ),
                "status": "CONFIRMED_HIT",
                "confirmation": {
                    "examiner": "Ir. Sofie Claes",
                    "lab_id": "BE-NICC-BAL",
                    "method": "VIRTUAL_3D",
                    "date": "2026-11-20",
                },
            },
        ),
    }
    # an obliterated-serial referral from Mexico, in the mx format too
    S["mx"]["trace.request.obliterated"] = (
        sent("at", handling="H3", cls="RESTREINT_UE"),
        {
            **trace_request(OBLITERATED, "Reynosa", "Tamaulipas", "2026-09-21", "FED/TAMPS/REY/0000815/2026"),
            "request_kind": "OBLITERATED_SERIAL_REFERRAL",
            "illicit_basis": ["NOT_MARKED_PER_ITI"],
            "requested_info": ["MANUFACTURE_RECORD"],
        },
    )
    S["es"]["trace.request.llama"] = (
        delivered(ID["mx-es"], "mx", "es", ID["mx-es"], "2026-10-16T11:02:33Z"),
        trace_request(LLAMA, "Nogales", "Sonora", "2026-10-11", "FED/SON/NOG/0001102/2026"),
    )
    S["standard"]["trace.request.fn"] = (
        sent("be", ttl_seconds=2592000),
        trace_request(FN, "Monterrey", "Nuevo León", "2026-10-12", "FED/NL/MTY/0006001/2026"),
    )
    domain_fields(S)
    return copy.deepcopy(S)


# --- issue #15: the standards' fields, added to the story above -------------------------------------------

# adapter: where the marks are, the unit its barrel length is given in, the justification of an urgent trace
DOMAIN: dict[str, tuple[str, str, str]] = {
    "mx": ("AT", "in", "Suspect in pre-trial detention; the charging deadline is 2026-10-17"),
    "es": ("ES", "cm", "Detenido a disposición judicial; plazo de 72 horas"),
    "de": ("DE", "mm", "Tatverdächtiger in Untersuchungshaft; Haftprüfung am 2026-10-09"),
    "it": ("IT", "in", "Indagato in custodia cautelare; udienza di convalida entro 48 ore"),
    "standard": ("RO", "cm", "Suspect in custody; the judge reviews the detention in 72 hours"),
}
CRIME_CODE = {"system": "NATIONAL", "code": "LFAFE-84",
              "text": "Introducción clandestina de armas de fuego al territorio nacional"}
EVALUATION = {"mx": ("B", 2), "es": ("A", 3), "de": ("B", 3), "it": ("B", 2), "standard": ("C", 4)}
EUC_SEDENA = {
    "number": "SEDENA-DCAM-CUF-2008-0419", "issuing_authority": "Secretaría de la Defensa Nacional (SEDENA)",
    "date_of_issue": "2008-05-20",
    "end_user": {"name": "Secretaría de Seguridad Pública del Estado de Jalisco", "country": "MX"},
    "country_of_final_destination": "MX",
    "end_use_statement": "Armamento de cargo para la policía estatal; no se transferirá a terceros",
    "signatory_name": "Gral. Bgda. D.E.M. Luis Ortega Ruiz", "signatory_position": "Director de la DCAM",
    "non_reexport_clause": True, "post_shipment_verification_consent": True, "government_authenticated": True,
}


def domain_fields(S: dict[str, dict[str, tuple[dict[str, Any], dict[str, Any]]]]) -> None:
    """Marking location, essential components, state-stock marking, barrel length with unit, priority and
    crime code in every trace request; the retail end of a trace (first purchaser, selling dealer,
    time-to-crime) in the Italian answer and, as ``trace.response.retail``, in every other format; a
    recovery date on status hits, the exporter and end-user certificate in licence answers, and the
    Europol evaluation codes on every notice. Formats whose own answers lack the case get an extra sample."""
    for name, msgs in S.items():
        ss, unit, why = DOMAIN[name]
        for mt_name, (_, body) in msgs.items():
            if not mt_name.startswith("trace.request"):
                continue
            fa = body["firearm"]
            fa["marking_location"] = "FRAME"
            serial = fa.get("serial_number") or "not legible"
            fa["essential_components"] = [{"component": c, "serial_or_marking": serial} for c in ("SLIDE", "BARREL")]
            fa["state_stock_transfer_marking"] = {"country": ss}
            mm = fa.get("barrel_length_mm")
            fa["barrel_length"] = ({"value": 102, "unit": "mm"} if mm is None else
                                   {"value": {"mm": mm, "cm": mm / 10, "in": round(mm / 25.4, 2)}[unit], "unit": unit})
            body["priority"] = "URGENT"
            body["priority_justification"] = why
            body["crime_code"] = dict(CRIME_CODE)
        sr, ia = EVALUATION[name]
        msgs["notice"][1].update(intelligence=True, source_reliability=sr, information_accuracy=ia)
    # the retail end of the Italian trace: a private sale, the first purchaser, the dealer, time-to-crime
    it = S["it"]["trace.response"][1]
    it["custody_chain"].insert(3, {"event": "PRIVATE_TRANSFER", "date": "2018-09-14", "from_party": "Marco Bianchi",
                                   "to_party": "Luca Ferri", "country": "IT"})
    it["first_retail_purchaser"] = {"name": "Marco Bianchi", "date_of_birth": "1971-04-09",
                                    "address": "Via Cremona 14, 25124 Brescia", "country": "IT"}
    it["selling_dealer"] = {"name": "Armeria Bresciana S.r.l.", "licence_no": "BS-PS-ARM-1997-0112",
                            "address": "Via Milano 88, 25126 Brescia", "country": "IT"}
    sale = next(e["date"] for e in it["custody_chain"] if e["event"] == "RETAIL_SALE")
    recovered = S["it"]["trace.request"][1]["recovery"]["date"]
    it["time_to_crime_days"] = (dt.date.fromisoformat(recovered) - dt.date.fromisoformat(sale)).days
    for name in ("mx", "es", "de", "standard"):
        S[name]["trace.response.retail"] = (S[name]["trace.response"][0], copy.deepcopy(it))
    # status hits: the date of recovery (NCIC DOR); es and standard answered NO_HIT: a pawned hit besides
    for name in ("mx", "de", "it"):
        S[name]["firearm.status.answer"][1]["hits"][0]["date_of_recovery"] = "2026-10-21"
    pawned = copy.deepcopy(S["mx"]["firearm.status.answer"][1])
    pawned["hits"][0]["record_status"] = "PAWNED"
    for name in ("es", "standard"):
        S[name]["firearm.status.answer.recovered"] = (S[name]["firearm.status.answer"][0], copy.deepcopy(pawned))
    # licence answers: the exporter and the end-user certificate the licence was granted on
    de = S["de"]["licence.verify.answer"][1]
    de["licence"]["exporter"] = {"name": "Carl Walther GmbH", "business_name": "Walther",
                                 "address": "Im Lehrer Feld 1, 89081 Ulm", "country": "DE"}
    de["euc"] = dict(EUC_SEDENA)
    mx = S["mx"]["licence.verify.answer"][1]
    mx["licence"]["exporter"] = {"name": "Glock GmbH", "business_name": "GLOCK",
                                 "address": "Glock-Park 1, 2232 Deutsch-Wagram", "country": "AT"}
    mx["euc"] = {"number": "US-BIS-711-2019-0388", "issuing_authority": "Glock Inc. (importer's statement, BIS-711)",
                 "date_of_issue": "2019-06-18", "end_user": {"name": "Glock Inc., Smyrna GA", "country": "US"},
                 "country_of_final_destination": "US",
                 "end_use_statement": "Resale to federally licensed dealers in the United States",
                 "signatory_name": "J. Miller", "signatory_position": "Compliance Officer",
                 "non_reexport_clause": True, "government_authenticated": False}
    es = S["es"]["licence.verify.answer"][1]
    es["licence"]["exporter"] = {"name": "Star Bonifacio Echeverría S.A.", "business_name": "Star",
                                 "address": "Eibar (Gipuzkoa)", "country": "ES"}
    es["euc"] = {**EUC_SEDENA, "number": "SEDENA-DCAM-CUF-1984-0112", "date_of_issue": "1984-10-02",
                 "end_user": {"name": "Policía Judicial Federal", "country": "MX"},
                 "signatory_name": "Gral. Div. D.E.M. J. Ramírez Soto"}
    for name in ("it", "standard"):  # their own answers are NOT_FOUND / NOT_DISCLOSABLE
        S[name]["licence.verify.answer.valid"] = (S[name]["licence.verify.answer"][0], copy.deepcopy(de))


EXT = {"mx": "json", "es": "xml", "de": "csv", "it": "csv", "standard": "json"}


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from adapters import get_adapter
    from adapters.x3p.reader import read_x3p
    from adapters.x3p.writer import X3pMeta, breech_face, write_x3p
    from gateway.core.messages import MESSAGE_TYPES

    x3p_dir = ROOT / "adapters" / "x3p" / "samples"
    x3p_dir.mkdir(parents=True, exist_ok=True)
    x3p = write_x3p(
        breech_face(64),
        64,
        64,
        increment_x=3.125e-06,
        increment_y=3.125e-06,
        data_type="F",
        meta=X3pMeta(
            date="2026-10-20T11:02:00-06:00",
            creator="Perito Luis Ortega Vázquez, FGR Laboratorio de Balística",
            manufacturer="Cadre Forensics",
            model="TopMatch-3D",
            serial="TM-2207",
            version="4.2",
            calibration_date="2026-06-01T09:00:00-06:00",
            probing_type="NonContacting",
            probing_identification="GelSight elastomer 6 mm",
            comment="Breech face impression, cartridge case C3 (synthetic sample)",
        ),
    )
    (x3p_dir / "mx-fgr-2026-1180-c3-breechface.x3p").write_bytes(x3p)
    sha = read_x3p(x3p).sha256
    S = story(sha)
    for name, msgs in S.items():
        a = get_adapter(name)
        d = ROOT / "adapters" / name / "samples"
        d.mkdir(parents=True, exist_ok=True)
        for mt_name, (meta, body) in msgs.items():
            parts = mt_name.split(".")
            mt = next(".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in MESSAGE_TYPES)
            out = a.from_standard(mt, body, meta)
            (d / f"{mt_name}.{EXT[name]}").write_bytes(out)
    # x3p sidecars: the synthetic breech face and the four shared vectors
    sub = S["mx"]["ballistic.submission"]
    body = {k: v for k, v in sub[1].items() if k != "topography"}
    sidecars = {
        "mx-fgr-2026-1180-c3-breechface": {**sub[0], "region": "BreechFace", "body": body},
        "sample-land": {
            **sent("eu-hub"),
            "region": "LEA",
            "body": {
                "exhibit_id": "US-CSAFE-HAMBY-B1-L1",
                "exhibit_kind": "BULLET",
                "origin": "TEST_FIRE",
                "calibre": "9x19mm",
                "occurrence_date": "2018-09-15",
                "firearm": {
                    "make_name": "Ruger",
                    "model": "P85",
                    "type": "P",
                    "type_detail": "I",
                    "calibre": "9x19mm",
                },
                "bullet": {"rifling_type": "Conventional", "number_of_lands": 6, "twist": "Right"},
            },
        },
    }
    for stem, sc in sidecars.items():
        (x3p_dir / f"{stem}.json").write_text(
            json.dumps(sc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
