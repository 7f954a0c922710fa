"""`de`: German semicolon CSV, one message per file, format version 1.

UTF-8 (a byte-order mark is accepted on reading, none is written), ``;`` between fields, a header row of
German column names (ASCII: ae/oe/ue/ss) and one data row; CRLF line ends; fields quoted only when
needed. Dates ``DD.MM.YYYY``, date-times ``DD.MM.YYYY HH:MM:SS+01:00``, decimal comma, ``ja``/``nein``.
List members are numbered columns from 1 (``Aktenzeichen1_Nummer``, ``Aktenzeichen2_Nummer``). An
empty cell is an absent field. See docs/adapters.md for every column.
"""

from __future__ import annotations

from typing import ClassVar

from adapters._engine import Row, Syntax
from adapters._national import CsvAdapter
from adapters._rows import CODES, KINDS, build, header
from adapters.standard import MEDIA_TYPE as STANDARD_MEDIA_TYPE

MT_WORDS = {
    "trace.request": "Rueckverfolgungsersuchen",
    "trace.acknowledgement": "Eingangsbestaetigung",
    "trace.response": "Rueckverfolgungsantwort",
    "firearm.status.query": "Fahndungsabfrage",
    "firearm.status.answer": "Fahndungsantwort",
    "licence.verify.query": "Genehmigungsabfrage",
    "licence.verify.answer": "Genehmigungsauskunft",
    "notice": "Mitteilung",
    "receipt": "Empfangsbestaetigung",
    "error": "Zustellfehler",
}

GUN_TYPES = {
    "P": "Kurzwaffe",
    "R": "Buechse",
    "S": "Flinte",
    "M": "Maschinengewehr",
    "B": "Maschinenpistole",
    "C": "kombinierte Waffe",
    "Z": "sonstige",
}
GUN_DETAILS = {
    "I": "halbautomatisch",
    "A": "vollautomatisch",
    "R": "Revolver",
    "B": "Repetierer Zylinderverschluss",
    "L": "Unterhebelrepetierer",
    "P": "Vorderschaftrepetierer",
    "S": "Einzellader",
    "E": "Querflinte",
    "O": "Bockflinte",
    "C": "Karabiner",
}

SYNTAX = Syntax(
    typed=False,
    date="dmy.",
    bools=("ja", "nein"),
    decimal=",",
    enums={"gun_type": GUN_TYPES, "gun_detail": GUN_DETAILS},
    codes=CODES,
)

HEADER = {
    "#version": "Formatversion",
    "#type": "Nachrichtentyp",
    "@to": "Empfaenger",
    "@handling": "Handhabungscode",
    "@handling_restrictions": "Handhabungsbeschraenkungen",
    "@onward_transfer": "Weitergabe",
    "@classification": "Einstufung",
    "@purpose": "Zweck",
    "@reply_to": "AntwortAuf",
    "@ttl_seconds": "Gueltigkeit_Sekunden",
    "@id": "NachrichtenID",
    "@from": "Absender",
    "@conversation": "VorgangsID",
    "@delivered_at": "Zugestellt_am",
}

WAFFE = {
    "serial_number": "Seriennummer",
    "serial_obliterated": "Seriennummer_entfernt",
    "make_name": "Hersteller",
    "make_codes[].system": "Herstellercode{}_System",
    "make_codes[].code": "Herstellercode{}_Code",
    "model": "Modell",
    "type": "Waffenart",
    "type_detail": "Funktionsweise",
    "calibre": "Kaliber",
    "country_of_manufacture": "Herstellungsland",
    "place_of_manufacture": "Herstellungsort",
    "year_of_manufacture": "Herstellungsjahr",
    "import_marking.country_of_import": "Einfuhrland",
    "import_marking.year_of_import": "Einfuhrjahr",
    "importer.name": "Einfuehrer_Name",
    "importer.country": "Einfuehrer_Land",
    "additional_markings[]": "Zusatzkennzeichnung{}",
    "barrel_length_mm": "Lauflaenge_mm",
    "eu_category": "EU_Kategorie",
    "free_text": "Beschreibung",
    "marking_location": "Kennzeichnung_Ort",
    "essential_components[].component": "Wesentliches_Teil{}_Art",
    "essential_components[].serial_or_marking": "Wesentliches_Teil{}_Kennzeichnung",
    "state_stock_transfer_marking.country": "Abgabe_Staatsbestand_Staat",
    "barrel_length.value": "Lauflaenge_Wert",
    "barrel_length.unit": "Lauflaenge_Einheit",
}

NAMES: dict[str, dict[str, str | tuple[str, dict[str, str]]]] = {
    "trace.request": {
        "request_kind": "Ersuchensart",
        "firearm": "",
        "illicit_basis[]": "Illegalitaetsgrund{}",
        "legal_basis": "Rechtsgrundlage",
        "intended_use": "Verwendungszweck",
        "recovery.date": "Sicherstellungsdatum",
        "recovery.location.city": "Sicherstellungsort",
        "recovery.location.admin_area": "Sicherstellung_Region",
        "recovery.location.country": "Sicherstellung_Staat",
        "recovery.circumstances": "Sicherstellung_Umstaende",
        "case_refs[].issuer": "Aktenzeichen{}_Behoerde",
        "case_refs[].number": "Aktenzeichen{}_Nummer",
        "requested_info[]": "Angefragte_Auskunft{}",
        "respond_by": "Antwort_bis",
        "requester.agency": "Ersuchende_Behoerde",
        "requester.unit": "Ersuchende_Dienststelle",
        "requester.officer": "Sachbearbeiter",
        "requester.email": "Sachbearbeiter_EMail",
        "priority": "Dringlichkeit",
        "priority_justification": "Dringlichkeit_Begruendung",
        "crime_code.system": "Deliktschluessel_System",
        "crime_code.code": "Deliktschluessel_Code",
        "crime_code.text": "Deliktschluessel_Text",
    },
    "trace.acknowledgement": {
        "received_at": "Eingangszeitpunkt",
        "tracking_ref": "Bearbeitungsnummer",
        "expected_response_by": "Antwort_erwartet_bis",
        "missing_information[]": "Fehlende_Angabe{}",
    },
    "trace.response": {
        "status": "Ergebnis",
        "status_reason.code": "Ergebnisgrund_Code",
        "status_reason.text": "Ergebnisgrund_Text",
        "firearm_as_recorded": ("Registriert_", WAFFE),
        "custody_chain[].event": "Verbleib{}_Ereignis",
        "custody_chain[].date": "Verbleib{}_Datum",
        "custody_chain[].from_party": "Verbleib{}_Abgebender",
        "custody_chain[].to_party": "Verbleib{}_Empfangender",
        "custody_chain[].country": "Verbleib{}_Staat",
        "custody_chain[].document_ref": "Verbleib{}_Dokument",
        "confidentiality_conditions": "Vertraulichkeitsauflagen",
        "first_retail_purchaser.name": "Ersterwerber_Name",
        "first_retail_purchaser.date_of_birth": "Ersterwerber_Geburtsdatum",
        "first_retail_purchaser.address": "Ersterwerber_Anschrift",
        "first_retail_purchaser.country": "Ersterwerber_Staat",
        "selling_dealer.name": "Haendler_Name",
        "selling_dealer.licence_no": "Haendler_Erlaubnisnummer",
        "selling_dealer.address": "Haendler_Anschrift",
        "selling_dealer.country": "Haendler_Staat",
        "time_to_crime_days": "Tage_Verkauf_bis_Sicherstellung",
    },
    "firearm.status.query": {
        "serial_number": "Seriennummer",
        "make_name": "Hersteller",
        "model": "Modell",
        "calibre": "Kaliber",
        "type": "Waffenart",
        "context": "Anlass",
    },
    "firearm.status.answer": {
        "result": "Ergebnis",
        "hits[].record_ref": "Treffer{}_Referenz",
        "hits[].record_status": "Treffer{}_Fahndungsstatus",
        "hits[].owner.country": "Treffer{}_Halter_Staat",
        "hits[].owner.agency": "Treffer{}_Halter_Behoerde",
        "hits[].owner.case_no": "Treffer{}_Halter_Aktenzeichen",
        "hits[].date_of_theft_or_loss": "Treffer{}_Abhandenkommen_Datum",
        "hits[].firearm": ("Treffer{}_", WAFFE),
        "hits[].match_quality": "Treffer{}_Uebereinstimmung",
        "hits[].date_of_recovery": "Treffer{}_Wiederauffindung_Datum",
        "hit_confirmation_required": "Bestaetigung_erforderlich",
    },
    "licence.verify.query": {
        "licence_number": "Genehmigungsnummer",
        "issuing_state": "Ausstellungsstaat",
        "context": "Anlass",
        "firearm_markings[]": ("Waffe{}_", WAFFE),
    },
    "licence.verify.answer": {
        "status": "Genehmigungsstatus",
        "licence.place_of_issue": "Ausstellungsort",
        "licence.date_of_issue": "Ausstellungsdatum",
        "licence.date_of_expiry": "Ablaufdatum",
        "licence.country_of_export": "Ausfuhrstaat",
        "licence.country_of_import": "Einfuhrstaat",
        "licence.transit_countries[]": "Durchfuhrstaat{}",
        "licence.consignee": "Warenempfaenger",
        "licence.final_recipient": "Endempfaenger",
        "licence.goods[].description": "Ware{}_Beschreibung",
        "licence.goods[].quantity": "Ware{}_Menge",
        "licence.goods[].markings[]": "Ware{}_Kennzeichnung{}",
        "licence.end_use": "Endverwendung",
        "licence.exporter.name": "Ausfuehrer_Name",
        "licence.exporter.business_name": "Ausfuehrer_Firma",
        "licence.exporter.address": "Ausfuehrer_Anschrift",
        "licence.exporter.country": "Ausfuehrer_Staat",
        "covers_firearm": "Waffe_erfasst",
        "euc.number": "EVE_Nummer",
        "euc.issuing_authority": "EVE_Ausstellende_Behoerde",
        "euc.date_of_issue": "EVE_Ausstellungsdatum",
        "euc.end_user.name": "EVE_Endverwender_Name",
        "euc.end_user.business_name": "EVE_Endverwender_Firma",
        "euc.end_user.address": "EVE_Endverwender_Anschrift",
        "euc.end_user.country": "EVE_Endverwender_Staat",
        "euc.country_of_final_destination": "EVE_Endbestimmungsland",
        "euc.end_use_statement": "EVE_Endverwendungserklaerung",
        "euc.signatory_name": "EVE_Unterzeichner",
        "euc.signatory_position": "EVE_Unterzeichner_Funktion",
        "euc.non_reexport_clause": "EVE_Reexportverbot",
        "euc.post_shipment_verification_consent": "EVE_Vor_Ort_Kontrolle_Zustimmung",
        "euc.government_authenticated": "EVE_Behoerdlich_beglaubigt",
    },
    "notice": {"title": "Betreff", "text": "Text", "links[]": "Bezugsnachricht{}", "intelligence": "Erkenntnis", "source_reliability": "Quellenbewertung", "information_accuracy": "Informationsbewertung"},
    "receipt": {
        "for": "Bezugsnachricht",
        "dig": "Pruefwert",
        "status": "Zustellstatus",
        "at": "Zeitpunkt",
        "detail": "Hinweis",
    },
    "error": {
        "for": "Bezugsnachricht",
        "code": "Fehlercode",
        "at": "Zeitpunkt",
        "by": "Knoten",
        "detail": "Hinweis",
    },
}


class DeAdapter(CsvAdapter):
    name = "de"
    content_types = ("application/vnd.traza.de+csv", "text/csv", STANDARD_MEDIA_TYPE)
    output_content_type = "application/vnd.traza.de+csv"
    syntax = SYNTAX
    delimiter = ";"
    mt_words = MT_WORDS
    header_rows = header(HEADER)
    body_row = Row("#body", "Inhalt_JSON", "json")
    firearm_names = WAFFE
    body_rows: ClassVar[dict[str, list[Row]]] = {
        mt: build(KINDS[mt], NAMES[mt], WAFFE, "") for mt in MT_WORDS
    }
