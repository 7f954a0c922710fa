"""`it`: Italian CSV, one message per file, format version 1.

RFC 4180 CSV: UTF-8 (a byte-order mark is accepted on reading, none is written), ``,`` between fields,
``"`` quoting when needed, CRLF line ends, a header row of Italian column names (lower case, ASCII) and
one data row. Dates ``DD/MM/YYYY``, date-times ``DD/MM/YYYY HH:MM:SS+01:00``, decimal point,
``si``/``no``. List members are numbered columns from 1 (``procedimento1_numero``). An empty cell is an
absent field. See docs/adapters.md for every column.
"""

from __future__ import annotations

from typing import ClassVar

from adapters._engine import Row, Syntax
from adapters._national import CsvAdapter
from adapters._rows import CODES, KINDS, build, header
from adapters.standard import MEDIA_TYPE as STANDARD_MEDIA_TYPE

MT_WORDS = {
    "trace.request": "richiesta_rintracciamento",
    "trace.acknowledgement": "conferma_ricezione_richiesta",
    "trace.response": "esito_rintracciamento",
    "firearm.status.query": "interrogazione_stato_arma",
    "firearm.status.answer": "risposta_stato_arma",
    "licence.verify.query": "verifica_licenza",
    "licence.verify.answer": "esito_verifica_licenza",
    "notice": "comunicazione",
    "receipt": "ricevuta_consegna",
    "error": "errore_consegna",
}

GUN_TYPES = {
    "P": "pistola",
    "R": "carabina",
    "S": "fucile",
    "M": "mitragliatrice",
    "B": "pistola mitragliatrice",
    "C": "arma combinata",
    "Z": "altra",
}
GUN_DETAILS = {
    "I": "semiautomatica",
    "A": "automatica",
    "R": "rivoltella",
    "B": "otturatore girevole-scorrevole",
    "L": "leva",
    "P": "pompa",
    "S": "colpo singolo",
    "E": "doppietta",
    "O": "sovrapposto",
    "C": "moschetto",
}

SYNTAX = Syntax(
    typed=False,
    date="dmy/",
    bools=("si", "no"),
    decimal=".",
    enums={"gun_type": GUN_TYPES, "gun_detail": GUN_DETAILS},
    codes=CODES,
)

HEADER = {
    "#version": "versione_tracciato",
    "#type": "tipo_messaggio",
    "@to": "destinatario",
    "@handling": "codice_trattamento",
    "@handling_restrictions": "restrizioni_trattamento",
    "@onward_transfer": "trasmissione_ulteriore",
    "@classification": "classifica",
    "@purpose": "finalita",
    "@reply_to": "in_risposta_a",
    "@ttl_seconds": "validita_secondi",
    "@id": "id_messaggio",
    "@from": "mittente",
    "@conversation": "id_conversazione",
    "@delivered_at": "consegnato_il",
}

ARMA = {
    "serial_number": "matricola",
    "serial_obliterated": "matricola_abrasa",
    "make_name": "marca",
    "make_codes[].system": "codice_marca{}_sistema",
    "make_codes[].code": "codice_marca{}_codice",
    "model": "modello",
    "type": "tipo_arma",
    "type_detail": "funzionamento",
    "calibre": "calibro",
    "country_of_manufacture": "paese_fabbricazione",
    "place_of_manufacture": "luogo_fabbricazione",
    "year_of_manufacture": "anno_fabbricazione",
    "import_marking.country_of_import": "paese_importazione",
    "import_marking.year_of_import": "anno_importazione",
    "importer.name": "importatore_nome",
    "importer.country": "importatore_paese",
    "additional_markings[]": "marcatura_aggiuntiva{}",
    "barrel_length_mm": "lunghezza_canna_mm",
    "eu_category": "categoria_ue",
    "free_text": "descrizione",
    "marking_location": "posizione_marcatura",
    "essential_components[].component": "parte_essenziale{}_tipo",
    "essential_components[].serial_or_marking": "parte_essenziale{}_marcatura",
    "state_stock_transfer_marking.country": "marcatura_cessione_scorte_statali_paese",
    "barrel_length.value": "lunghezza_canna_valore",
    "barrel_length.unit": "lunghezza_canna_unita",
}

NAMES: dict[str, dict[str, str | tuple[str, dict[str, str]]]] = {
    "trace.request": {
        "request_kind": "tipo_richiesta",
        "firearm": "",
        "illicit_basis[]": "motivo_illiceita{}",
        "legal_basis": "base_giuridica",
        "intended_use": "uso_previsto",
        "recovery.date": "data_sequestro",
        "recovery.location.city": "sequestro_comune",
        "recovery.location.admin_area": "sequestro_provincia",
        "recovery.location.country": "sequestro_stato",
        "recovery.circumstances": "sequestro_circostanze",
        "case_refs[].issuer": "procedimento{}_autorita",
        "case_refs[].number": "procedimento{}_numero",
        "requested_info[]": "informazione_richiesta{}",
        "respond_by": "rispondere_entro",
        "requester.agency": "richiedente_ente",
        "requester.unit": "richiedente_reparto",
        "requester.officer": "richiedente_operatore",
        "requester.email": "richiedente_email",
        "priority": "priorita",
        "priority_justification": "priorita_motivazione",
        "crime_code.system": "codice_reato_sistema",
        "crime_code.code": "codice_reato",
        "crime_code.text": "codice_reato_descrizione",
    },
    "trace.acknowledgement": {
        "received_at": "ricevuta_il",
        "tracking_ref": "numero_pratica",
        "expected_response_by": "risposta_prevista_entro",
        "missing_information[]": "informazione_mancante{}",
    },
    "trace.response": {
        "status": "esito",
        "status_reason.code": "motivo_codice",
        "status_reason.text": "motivo_testo",
        "firearm_as_recorded": ("registrata_", ARMA),
        "custody_chain[].event": "passaggio{}_evento",
        "custody_chain[].date": "passaggio{}_data",
        "custody_chain[].from_party": "passaggio{}_cedente",
        "custody_chain[].to_party": "passaggio{}_cessionario",
        "custody_chain[].country": "passaggio{}_paese",
        "custody_chain[].document_ref": "passaggio{}_documento",
        "confidentiality_conditions": "condizioni_riservatezza",
        "first_retail_purchaser.name": "primo_acquirente_nome",
        "first_retail_purchaser.date_of_birth": "primo_acquirente_data_nascita",
        "first_retail_purchaser.address": "primo_acquirente_indirizzo",
        "first_retail_purchaser.country": "primo_acquirente_paese",
        "selling_dealer.name": "armeria_nome",
        "selling_dealer.licence_no": "armeria_licenza",
        "selling_dealer.address": "armeria_indirizzo",
        "selling_dealer.country": "armeria_paese",
        "time_to_crime_days": "giorni_vendita_sequestro",
    },
    "firearm.status.query": {
        "serial_number": "matricola",
        "make_name": "marca",
        "model": "modello",
        "calibre": "calibro",
        "type": "tipo_arma",
        "context": "contesto",
    },
    "firearm.status.answer": {
        "result": "risultato",
        "hits[].record_ref": "riscontro{}_riferimento",
        "hits[].record_status": "riscontro{}_stato",
        "hits[].owner.country": "riscontro{}_titolare_paese",
        "hits[].owner.agency": "riscontro{}_titolare_ente",
        "hits[].owner.case_no": "riscontro{}_titolare_pratica",
        "hits[].date_of_theft_or_loss": "riscontro{}_data_furto_smarrimento",
        "hits[].firearm": ("riscontro{}_", ARMA),
        "hits[].match_quality": "riscontro{}_qualita",
        "hits[].date_of_recovery": "riscontro{}_data_ritrovamento",
        "hit_confirmation_required": "conferma_necessaria",
    },
    "licence.verify.query": {
        "licence_number": "numero_licenza",
        "issuing_state": "stato_rilascio",
        "context": "contesto",
        "firearm_markings[]": ("arma{}_", ARMA),
    },
    "licence.verify.answer": {
        "status": "stato_licenza",
        "licence.place_of_issue": "licenza_luogo_rilascio",
        "licence.date_of_issue": "licenza_data_rilascio",
        "licence.date_of_expiry": "licenza_data_scadenza",
        "licence.country_of_export": "licenza_paese_esportazione",
        "licence.country_of_import": "licenza_paese_importazione",
        "licence.transit_countries[]": "licenza_paese_transito{}",
        "licence.consignee": "licenza_destinatario",
        "licence.final_recipient": "licenza_destinatario_finale",
        "licence.goods[].description": "merce{}_descrizione",
        "licence.goods[].quantity": "merce{}_quantita",
        "licence.goods[].markings[]": "merce{}_marcatura{}",
        "licence.end_use": "licenza_uso_finale",
        "licence.exporter.name": "licenza_esportatore_nome",
        "licence.exporter.business_name": "licenza_esportatore_ragione_sociale",
        "licence.exporter.address": "licenza_esportatore_indirizzo",
        "licence.exporter.country": "licenza_esportatore_paese",
        "covers_firearm": "arma_coperta",
        "euc.number": "cuf_numero",
        "euc.issuing_authority": "cuf_autorita",
        "euc.date_of_issue": "cuf_data",
        "euc.end_user.name": "cuf_utilizzatore_nome",
        "euc.end_user.business_name": "cuf_utilizzatore_ragione_sociale",
        "euc.end_user.address": "cuf_utilizzatore_indirizzo",
        "euc.end_user.country": "cuf_utilizzatore_paese",
        "euc.country_of_final_destination": "cuf_paese_destinazione_finale",
        "euc.end_use_statement": "cuf_dichiarazione_uso_finale",
        "euc.signatory_name": "cuf_firmatario",
        "euc.signatory_position": "cuf_firmatario_qualifica",
        "euc.non_reexport_clause": "cuf_clausola_non_riesportazione",
        "euc.post_shipment_verification_consent": "cuf_consenso_verifica_post_spedizione",
        "euc.government_authenticated": "cuf_autenticato_governo",
    },
    "notice": {"title": "oggetto", "text": "testo", "links[]": "messaggio_collegato{}", "intelligence": "informazione_intelligence", "source_reliability": "affidabilita_fonte", "information_accuracy": "attendibilita_informazione"},
    "receipt": {
        "for": "messaggio_riferito",
        "dig": "impronta",
        "status": "stato_consegna",
        "at": "data_ora",
        "detail": "annotazioni",
    },
    "error": {
        "for": "messaggio_riferito",
        "code": "codice_errore",
        "at": "data_ora",
        "by": "nodo",
        "detail": "annotazioni",
    },
}


class ItAdapter(CsvAdapter):
    name = "it"
    content_types = ("application/vnd.traza.it+csv", "text/csv", STANDARD_MEDIA_TYPE)
    output_content_type = "application/vnd.traza.it+csv"
    syntax = SYNTAX
    delimiter = ","
    mt_words = MT_WORDS
    header_rows = header(HEADER)
    body_row = Row("#body", "contenuto_json", "json")
    firearm_names = ARMA
    firearm_names = ARMA
    body_rows: ClassVar[dict[str, list[Row]]] = {mt: build(KINDS[mt], NAMES[mt], ARMA, "") for mt in MT_WORDS}
