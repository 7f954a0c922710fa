"""The demo's cast and message bodies (SPEC §5 v1 bodies), independent of the test suite.

Mexico's FGR seizes 20 pistols in Sinaloa. Their makers' countries follow the public shares of EU-made
pistols among firearms recovered in Mexico: Spain 23 %, Italy 20 %, Romania 14 %, Germany 12 %, Austria
12 %, Belgium 8 %, others the rest. Mexico asks each producer country to trace its pistols; each answers
with a custody chain ending in an export, under licence, to a US importer.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.localfed import NodeSpec

SEIZED = 20
SHARES: tuple[tuple[str, int], ...] = (("ES", 23), ("IT", 20), ("RO", 14), ("DE", 12), ("AT", 12), ("BE", 8),
                                        ("other", 11))
COUNTRY_NAMES = {"ES": "Spain", "IT": "Italy", "RO": "Romania", "DE": "Germany", "AT": "Austria", "BE": "Belgium",
                 "MX": "Mexico", "CO": "Colombia", "NL": "Netherlands", "other": "other countries"}
CAPITALS = {"ES": "Madrid", "IT": "Roma", "RO": "București", "DE": "Eschborn", "AT": "Wien", "BE": "Bruxelles"}
PRODUCERS = ("es", "it", "ro", "de", "at", "be")
# the manifest's recipient groups (SPEC §2, 1.1): mx asks every EU register at once (a fan-out)
GROUPS = {"eu-registries": ["es", "it", "ro", "de", "at", "be", "arms-registry"]}

NODES: list[NodeSpec] = [
    NodeSpec("eu-hub", "hub", "NL", name="EU hub (Europol, The Hague)"),
    NodeSpec("latam-hub", "hub", "CO", name="Latin-American hub (AMERIPOL, Bogotá)"),
    NodeSpec("mx", "national", "MX", hub="latam-hub", name="Fiscalía General de la República"),
    # accredited for BASIC_PROTECTION_LEVEL only (the story sends nothing above it): latam-hub refuses to
    # relay anything higher to co, so an operator can see a policy rejection and retry it
    NodeSpec("co", "national", "CO", hub="latam-hub", name="Policía Nacional de Colombia",
             max_classification="BASIC_PROTECTION_LEVEL"),
    NodeSpec("es", "national", "ES", hub="eu-hub", name="Guardia Civil, Intervención Central de Armas"),
    NodeSpec("it", "national", "IT", hub="eu-hub", name="Polizia di Stato, Servizio Armi"),
    NodeSpec("de", "national", "DE", hub="eu-hub", name="Bundeskriminalamt"),
    NodeSpec("at", "national", "AT", hub="eu-hub", name="Bundeskriminalamt Wien"),
    NodeSpec("be", "national", "BE", hub="eu-hub", name="Police fédérale, Service armes"),
    NodeSpec("ro", "national", "RO", hub="eu-hub", name="Poliția Română, Serviciul Arme"),
    NodeSpec("arms-registry", "service", "NL", hub="eu-hub", name="Lost and stolen firearms registry"),
]


@dataclass(frozen=True)
class Maker:
    make: str
    model: str
    place: str
    exporter: str
    importer: str
    prefix: str
    ncic: str


MAKERS: dict[str, Maker] = {
    "ES": Maker("Star", "Model 30M", "Eibar", "Star Bonifacio Echeverría S.A.", "Interarms, Alexandria VA", "ST", "STR"),
    "IT": Maker("Beretta", "92FS", "Gardone Val Trompia", "Fabbrica d'Armi Pietro Beretta S.p.A.",
                "Beretta U.S.A. Corp., Accokeek MD", "BR", "BER"),
    "RO": Maker("Cugir", "Md. 1995", "Cugir", "Uzina Mecanică Cugir S.A.", "Century Arms, Delray Beach FL", "CG", "CUG"),
    "DE": Maker("Walther", "PPQ M2", "Ulm", "Carl Walther GmbH", "Walther Arms Inc., Fort Smith AR", "WA", "WAL"),
    "AT": Maker("Glock", "17 Gen4", "Deutsch-Wagram", "Glock GmbH", "Glock Inc., Smyrna GA", "BK", "GLC"),
    "BE": Maker("FN Herstal", "FN 509", "Herstal", "FN Herstal S.A.", "FN America LLC, McLean VA", "GKS", "FN"),
}


def distribute(total: int = SEIZED) -> dict[str, int]:
    """Split ``total`` pistols by SHARES with the largest-remainder method (ties: the order of SHARES)."""
    whole = sum(p for _, p in SHARES)
    counts = {c: total * p // whole for c, p in SHARES}
    rest = total - sum(counts.values())
    order = sorted(SHARES, key=lambda cp: -((total * cp[1]) % whole))
    for c, _ in order[:rest]:
        counts[c] += 1
    return counts


def seized_pistols(total: int = SEIZED) -> list[dict[str, Any]]:
    """The seized pistols, deterministic: ``[{"country": "ES", "firearm": {...}}, ...]`` (others have country
    ``"other"`` and no Firearm record to trace within the federation)."""
    out: list[dict[str, Any]] = []
    for country, n in distribute(total).items():
        for i in range(n):
            if country == "other":
                out.append({"country": "other", "firearm": None})
                continue
            m = MAKERS[country]
            year = 2016 + (len(out) % 5)
            serial = f"{m.prefix}{4817 + 131 * len(out):05d}"
            out.append({"country": country, "firearm": {
                "serial_number": serial,
                "serial_obliterated": False,
                "make_name": m.make,
                "make_codes": [{"system": "NCIC_MAK", "code": m.ncic}],
                "model": m.model,
                "type": "P",
                "type_detail": "I",
                "calibre": "9x19mm",
                "country_of_manufacture": country,
                "place_of_manufacture": m.place,
                "year_of_manufacture": year,
                "import_marking": {"country_of_import": "US", "year_of_import": year + 1},
                "importer": {"name": m.importer, "country": "US"},
                # where the marks are and which essential component carries which (Dir 2021/555)
                "marking_location": "FRAME",
                "essential_components": [{"component": "SLIDE", "serial_or_marking": serial},
                                         {"component": "BARREL", "serial_or_marking": serial}],
            }})
            del i
    return out


def export_licence(country: str, serial: str, year: int) -> str:
    """The (fictional, deterministic) export licence number of a pistol exported in ``year``."""
    return f"{country}-EXP-{year}-{sum(map(ord, serial)) % 100000:05d}"


def trace_request(firearm: dict[str, Any], n: int) -> dict[str, Any]:
    return {
        "request_kind": "TRACE",
        "firearm": copy.deepcopy(firearm),
        "illicit_basis": ["ILLICIT_UNDER_NATIONAL_LAW", "UNLICENSED_TRANSFER"],
        "legal_basis": "Ley Federal de Armas de Fuego y Explosivos, art. 84; International Tracing Instrument §§14-17",
        "intended_use": "Criminal investigation into firearms trafficking (carpeta FED/SIN/CLN/0004512/2026)",
        "recovery": {
            "date": "2026-10-14",
            "location": {"city": "Culiacán", "admin_area": "Sinaloa", "country": "MX"},
            "circumstances": f"Seized pistol {n} of {SEIZED} in a warehouse search",
        },
        "case_refs": [{"issuer": "FGR", "number": "FED/SIN/CLN/0004512/2026"}],
        "requested_info": ["MANUFACTURE_RECORD", "EXPORT_RECORD", "DISTRIBUTION_CHAIN"],
        "respond_by": "2026-12-15",
        "requester": {"agency": "Fiscalía General de la República", "unit": "Unidad de Rastreo de Armas",
                      "officer": "Lic. María Hernández Ruiz", "email": "rastreo.armas@fgr.example.mx"},
        "priority": "ROUTINE",
        "crime_code": {"system": "NATIONAL", "code": "LFAFE-84",
                       "text": "Introducción clandestina de armas de fuego al territorio nacional"},
    }


def trace_response(request: dict[str, Any]) -> dict[str, Any]:
    """What a producer country's national system answers: made here, exported under licence to the US."""
    fa = request["firearm"]
    country = fa["country_of_manufacture"]
    m = MAKERS[country]
    year = fa["year_of_manufacture"]
    return {
        "status": "PARTIAL",
        "status_reason": {"code": "RECORDS_HELD_BY_IMPORTER",
                          "text": "Distribution after import is recorded by the US importer; ask the ATF National Tracing Center"},
        "firearm_as_recorded": copy.deepcopy(fa),
        "custody_chain": [
            {"event": "MANUFACTURED", "date": f"{year}-03-11", "to_party": m.exporter, "country": country},
            {"event": "EXPORTED", "date": f"{year}-09-02", "from_party": m.exporter, "to_party": m.importer,
             "country": country, "document_ref": export_licence(country, fa["serial_number"], year)},
            {"event": "IMPORTED", "date": f"{year + 1}-01-20", "to_party": m.importer, "country": "US"},
        ],
        "confidentiality_conditions": "H2: not to be disseminated without the consent of the answering agency",
    }


def status_query(firearm: dict[str, Any]) -> dict[str, Any]:
    return {"serial_number": firearm["serial_number"], "make_name": firearm["make_name"], "model": firearm["model"],
            "calibre": firearm["calibre"], "type": "P", "context": "TRACE_PRECHECK"}


def status_answer(query: dict[str, Any], firearm: dict[str, Any]) -> dict[str, Any]:
    return {
        "result": "HIT",
        "hits": [{
            "record_ref": "IT-SDI-2024-0081337",
            "record_status": "STOLEN",
            "owner": {"country": "IT", "agency": "Arma dei Carabinieri, Stazione di Brescia", "case_no": "BS-2024-11873"},
            "date_of_theft_or_loss": "2024-03-02",
            "firearm": copy.deepcopy(firearm),
            "match_quality": "EXACT",
        }],
        "hit_confirmation_required": True,
    }


def status_no_hit() -> dict[str, Any]:
    """What a national register answers for a serial it does not hold."""
    return {"result": "NO_HIT", "hit_confirmation_required": False}


def x3p_scans() -> list[Path]:
    """The cartridge-case scans mx's ballistics lab submits: the project's own X3P sample (a breech-face
    scan of cartridge case C3, 64 x 64 points; its submission fields in the ``.json`` sidecar beside it),
    so the demo runs from a fresh clone."""
    import adapters.x3p

    scan = Path(adapters.x3p.__file__).resolve().parent / "samples" / "mx-fgr-2026-1180-c3-breechface.x3p"
    return [scan]


def ballistic_hit(submission: dict[str, Any]) -> dict[str, Any]:
    return {
        "hit_id": "IBIN-EU-2026-000311",
        "status": "CONFIRMED_HIT",
        "exhibits": [
            {"exhibit_id": "ES-CGPC-2026-0457-C2", "owner_country": "ES", "agency_case_no": "DP-2026-4471"},
            {"exhibit_id": submission["exhibit_id"], "owner_country": "MX",
             "agency_case_no": submission["admin"]["agency_case_no"]},
        ],
        "correlation": {"rank": 1, "score": 0.873, "algorithm": "IBIS BRASSTRAX 3D"},
        "confirmation": {"examiner": "Dra. Lucía Ortega", "lab_id": "ES-CGPC-BAL", "method": "COMPARISON_MICROSCOPE",
                         "date": "2026-11-20"},
        "next_steps": ["INITIATE_TRACE", "REQUEST_CASTS"],
    }


def licence_query(licence: str, firearm: dict[str, Any]) -> dict[str, Any]:
    return {"licence_number": licence, "issuing_state": firearm["country_of_manufacture"], "context": "TRACE_FOLLOW_UP",
            "firearm_markings": [{k: firearm[k] for k in ("serial_number", "make_name", "model", "calibre", "type")}]}


def licence_answer(query: dict[str, Any]) -> dict[str, Any]:
    fa = query["firearm_markings"][0]
    m = next(mk for mk in MAKERS.values() if mk.make == fa["make_name"])
    parts = query["licence_number"].split("-")
    year = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 2019
    return {
        "status": "EXPIRED",
        "licence": {"place_of_issue": CAPITALS.get(query["issuing_state"], query["issuing_state"]),
                    "date_of_issue": f"{year}-07-30", "date_of_expiry": f"{year + 1}-07-29",
                    "country_of_export": query["issuing_state"], "country_of_import": "US", "transit_countries": [],
                    "consignee": m.importer, "final_recipient": m.importer,
                    "goods": [{"description": f"Pistols, {m.make} {m.model}, 9x19mm", "quantity": 2400,
                               "markings": [fa["serial_number"]]}],
                    "end_use": "Commercial resale to federally licensed dealers in the United States"},
        "covers_firearm": True,
    }


def notice_after_outage() -> dict[str, Any]:
    return {"title": "Consolidated trace report FED/SIN/CLN/0004512/2026",
            "text": "All EU-made pistols traced to exports under licence to US importers; referral to ATF follows."}
