"""Helpers to write the row tables of the national adapters, and the code lists they share."""

from __future__ import annotations

from typing import get_args

from adapters._engine import Row
from gateway.core.forms import NcicGunType, NcicGunTypeDetail

# Every code of the enumerations the national formats may write as words.
CODES: dict[str, tuple[str, ...]] = {
    "gun_type": tuple(get_args(NcicGunType)),
    "gun_detail": tuple(get_args(NcicGunTypeDetail)),
}

# Standard members of the Firearm object (SPEC §5), relative to the object, with their kinds.
FIREARM: list[tuple[str, str]] = [
    ("serial_number", "text"),
    ("serial_obliterated", "bool"),
    ("make_name", "text"),
    ("make_codes[].system", "text"),
    ("make_codes[].code", "text"),
    ("model", "text"),
    ("type", "gun_type"),
    ("type_detail", "gun_detail"),
    ("calibre", "text"),
    ("country_of_manufacture", "text"),
    ("place_of_manufacture", "text"),
    ("year_of_manufacture", "int"),
    ("import_marking.country_of_import", "text"),
    ("import_marking.year_of_import", "int"),
    ("importer.name", "text"),
    ("importer.country", "text"),
    ("additional_markings[]", "text"),
    ("barrel_length_mm", "number"),
    ("eu_category", "text"),
    ("free_text", "text"),
    ("marking_location", "text"),
    ("essential_components[].component", "text"),
    ("essential_components[].serial_or_marking", "text"),
    ("state_stock_transfer_marking.country", "text"),
    ("barrel_length.value", "number"),
    ("barrel_length.unit", "text"),
]

# Kinds of the standard members of every natively mapped body, relative to the body.
KINDS: dict[str, list[tuple[str, str]]] = {
    "trace.request": [
        ("request_kind", "text"),
        ("firearm", "firearm"),
        ("illicit_basis[]", "text"),
        ("legal_basis", "text"),
        ("intended_use", "text"),
        ("recovery.date", "date"),
        ("recovery.location.city", "text"),
        ("recovery.location.admin_area", "text"),
        ("recovery.location.country", "text"),
        ("recovery.circumstances", "text"),
        ("case_refs[].issuer", "text"),
        ("case_refs[].number", "text"),
        ("requested_info[]", "text"),
        ("respond_by", "date"),
        ("requester.agency", "text"),
        ("requester.unit", "text"),
        ("requester.officer", "text"),
        ("requester.email", "text"),
        ("priority", "text"),
        ("priority_justification", "text"),
        ("crime_code.system", "text"),
        ("crime_code.code", "text"),
        ("crime_code.text", "text"),
    ],
    "trace.acknowledgement": [
        ("received_at", "datetime"),
        ("tracking_ref", "text"),
        ("expected_response_by", "date"),
        ("missing_information[]", "text"),
    ],
    "trace.response": [
        ("status", "text"),
        ("status_reason.code", "text"),
        ("status_reason.text", "text"),
        ("firearm_as_recorded", "firearm"),
        ("custody_chain[].event", "text"),
        ("custody_chain[].date", "date"),
        ("custody_chain[].from_party", "text"),
        ("custody_chain[].to_party", "text"),
        ("custody_chain[].country", "text"),
        ("custody_chain[].document_ref", "text"),
        ("confidentiality_conditions", "text"),
        ("first_retail_purchaser.name", "text"),
        ("first_retail_purchaser.date_of_birth", "date"),
        ("first_retail_purchaser.address", "text"),
        ("first_retail_purchaser.country", "text"),
        ("selling_dealer.name", "text"),
        ("selling_dealer.licence_no", "text"),
        ("selling_dealer.address", "text"),
        ("selling_dealer.country", "text"),
        ("time_to_crime_days", "int"),
    ],
    "firearm.status.query": [
        ("serial_number", "text"),
        ("make_name", "text"),
        ("model", "text"),
        ("calibre", "text"),
        ("type", "gun_type"),
        ("context", "text"),
    ],
    "firearm.status.answer": [
        ("result", "text"),
        ("hits[].record_ref", "text"),
        ("hits[].record_status", "text"),
        ("hits[].owner.country", "text"),
        ("hits[].owner.agency", "text"),
        ("hits[].owner.case_no", "text"),
        ("hits[].date_of_theft_or_loss", "date"),
        ("hits[].firearm", "firearm"),
        ("hits[].match_quality", "text"),
        ("hits[].date_of_recovery", "date"),
        ("hit_confirmation_required", "bool"),
    ],
    "licence.verify.query": [
        ("licence_number", "text"),
        ("issuing_state", "text"),
        ("context", "text"),
        ("firearm_markings[]", "firearm"),
    ],
    "licence.verify.answer": [
        ("status", "text"),
        ("licence.place_of_issue", "text"),
        ("licence.date_of_issue", "date"),
        ("licence.date_of_expiry", "date"),
        ("licence.country_of_export", "text"),
        ("licence.country_of_import", "text"),
        ("licence.transit_countries[]", "text"),
        ("licence.consignee", "text"),
        ("licence.final_recipient", "text"),
        ("licence.goods[].description", "text"),
        ("licence.goods[].quantity", "int"),
        ("licence.goods[].markings[]", "text"),
        ("licence.end_use", "text"),
        ("covers_firearm", "bool"),
        ("licence.exporter.name", "text"),
        ("licence.exporter.business_name", "text"),
        ("licence.exporter.address", "text"),
        ("licence.exporter.country", "text"),
        ("euc.number", "text"),
        ("euc.issuing_authority", "text"),
        ("euc.date_of_issue", "date"),
        ("euc.end_user.name", "text"),
        ("euc.end_user.business_name", "text"),
        ("euc.end_user.address", "text"),
        ("euc.end_user.country", "text"),
        ("euc.country_of_final_destination", "text"),
        ("euc.end_use_statement", "text"),
        ("euc.signatory_name", "text"),
        ("euc.signatory_position", "text"),
        ("euc.non_reexport_clause", "bool"),
        ("euc.post_shipment_verification_consent", "bool"),
        ("euc.government_authenticated", "bool"),
    ],
    "notice": [
        ("title", "text"),
        ("text", "text"),
        ("links[]", "text"),
        ("intelligence", "bool"),
        ("source_reliability", "text"),
        ("information_accuracy", "int"),
    ],
    "receipt": [("for", "text"), ("dig", "text"), ("status", "text"), ("at", "datetime"), ("detail", "text")],
    "error": [("for", "text"), ("code", "text"), ("at", "datetime"), ("by", "text"), ("detail", "text")],
}

# Envelope and format fields (kinds); "#version" is left out by formats that carry it otherwise.
HEADER: list[tuple[str, str]] = [
    ("#version", "text"),
    ("#type", "text"),
    ("@to", "text"),
    ("@handling", "text"),
    ("@handling_restrictions", "text"),
    ("@onward_transfer", "text"),
    ("@classification", "text"),
    ("@purpose", "text"),
    ("@reply_to", "text"),
    ("@ttl_seconds", "int"),
    ("@id", "text"),
    ("@from", "text"),
    ("@conversation", "text"),
    ("@delivered_at", "datetime"),
]


def build(
    kinds: list[tuple[str, str]],
    names: dict[str, str | tuple[str, dict[str, str]]],
    firearm: dict[str, str],
    join: str,
    std_prefix: str = "",
) -> list[Row]:
    """Rows for one body. ``names`` maps each standard member to its national name; a Firearm member
    maps to ``(national prefix, firearm names)`` where the firearm names default to ``firearm``.
    ``join`` glues a national prefix to a member name (``"."``, ``"/"`` or ``""`` for CSV)."""
    rows: list[Row] = []
    for std, kind in kinds:
        if std not in names:
            raise KeyError(f"no national name for {std_prefix}{std}")
        nat = names[std]
        if kind == "firearm":
            prefix, fnames = nat if isinstance(nat, tuple) else (nat, firearm)
            for fstd, fkind in FIREARM:
                rows.append(
                    Row(
                        f"{std_prefix}{std}.{fstd}",
                        f"{prefix}{join}{fnames[fstd]}" if prefix else fnames[fstd],
                        fkind,
                    )
                )
        else:
            assert isinstance(nat, str)
            rows.append(Row(f"{std_prefix}{std}", nat, kind))
    return rows


def header(names: dict[str, str], kinds: list[tuple[str, str]] = HEADER) -> list[Row]:
    return [Row(std, names[std], kind) for std, kind in kinds if std in names]
