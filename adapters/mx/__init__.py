"""`mx`: the Mexican registry's JSON (Spanish field names, dates DD/MM/YYYY), format version 1.

One JSON object per message. ``tipo_mensaje`` names the type; envelope fields sit beside the body
fields at the top level; the firearm is the object ``arma``. See docs/adapters.md for every field.
"""

from __future__ import annotations

from typing import ClassVar

from adapters._engine import Row, Syntax
from adapters._national import JsonAdapter
from adapters._rows import CODES, KINDS, build, header
from adapters.standard import MEDIA_TYPE as STANDARD_MEDIA_TYPE

MT_WORDS = {
    "trace.request": "solicitud_rastreo",
    "trace.acknowledgement": "acuse_solicitud_rastreo",
    "trace.response": "respuesta_rastreo",
    "firearm.status.query": "consulta_estatus_arma",
    "firearm.status.answer": "respuesta_estatus_arma",
    "licence.verify.query": "consulta_licencia",
    "licence.verify.answer": "respuesta_licencia",
    "notice": "aviso",
    "receipt": "acuse_recibo",
    "error": "error_entrega",
}

GUN_TYPES = {
    "P": "pistola",
    "R": "rifle",
    "S": "escopeta",
    "M": "ametralladora",
    "B": "subametralladora",
    "C": "combinada",
    "Z": "otra",
}
GUN_DETAILS = {
    "I": "semiautomatica",
    "A": "automatica",
    "R": "revolver",
    "B": "cerrojo",
    "L": "palanca",
    "P": "corredera",
    "S": "tiro_unico",
    "E": "dos_canones_yuxtapuestos",
    "O": "dos_canones_superpuestos",
    "C": "carabina",
}

SYNTAX = Syntax(
    typed=True,
    date="dmy/",
    enums={"gun_type": GUN_TYPES, "gun_detail": GUN_DETAILS},
    codes=CODES,
)

HEADER = {
    "#version": "version_formato",
    "#type": "tipo_mensaje",
    "@to": "destino",
    "@handling": "codigo_manejo",
    "@handling_restrictions": "restricciones_manejo",
    "@onward_transfer": "transferencia_ulterior",
    "@classification": "clasificacion",
    "@purpose": "finalidad",
    "@reply_to": "en_respuesta_a",
    "@ttl_seconds": "vigencia_segundos",
    "@id": "folio",
    "@from": "origen",
    "@conversation": "conversacion",
    "@delivered_at": "fecha_entrega",
}

ARMA = {
    "serial_number": "numero_serie",
    "serial_obliterated": "serie_borrada",
    "make_name": "marca",
    "make_codes[].system": "claves_marca[].sistema",
    "make_codes[].code": "claves_marca[].clave",
    "model": "modelo",
    "type": "tipo",
    "type_detail": "mecanismo",
    "calibre": "calibre",
    "country_of_manufacture": "pais_fabricacion",
    "place_of_manufacture": "lugar_fabricacion",
    "year_of_manufacture": "anio_fabricacion",
    "import_marking.country_of_import": "marcaje_importacion.pais_importacion",
    "import_marking.year_of_import": "marcaje_importacion.anio_importacion",
    "importer.name": "importador.nombre",
    "importer.country": "importador.pais",
    "additional_markings[]": "otras_marcas[]",
    "barrel_length_mm": "longitud_canon_mm",
    "eu_category": "categoria_ue",
    "free_text": "observaciones",
    "marking_location": "ubicacion_marcaje",
    "essential_components[].component": "componentes_esenciales[].componente",
    "essential_components[].serial_or_marking": "componentes_esenciales[].marcaje",
    "state_stock_transfer_marking.country": "marcaje_transferencia_estatal.pais",
    "barrel_length.value": "longitud_canon.valor",
    "barrel_length.unit": "longitud_canon.unidad",
}

NAMES: dict[str, dict[str, str | tuple[str, dict[str, str]]]] = {
    "trace.request": {
        "request_kind": "tipo_solicitud",
        "firearm": "arma",
        "illicit_basis[]": "bases_ilicitud[]",
        "legal_basis": "fundamento_legal",
        "intended_use": "uso_previsto",
        "recovery.date": "fecha_aseguramiento",
        "recovery.location.city": "lugar_aseguramiento.municipio",
        "recovery.location.admin_area": "lugar_aseguramiento.entidad_federativa",
        "recovery.location.country": "lugar_aseguramiento.pais",
        "recovery.circumstances": "circunstancias_aseguramiento",
        "case_refs[].issuer": "carpetas_investigacion[].autoridad",
        "case_refs[].number": "carpetas_investigacion[].numero",
        "requested_info[]": "informacion_solicitada[]",
        "respond_by": "responder_antes_de",
        "requester.agency": "solicitante.dependencia",
        "requester.unit": "solicitante.unidad",
        "requester.officer": "solicitante.servidor_publico",
        "requester.email": "solicitante.correo",
        "priority": "prioridad",
        "priority_justification": "justificacion_prioridad",
        "crime_code.system": "clave_delito.sistema",
        "crime_code.code": "clave_delito.clave",
        "crime_code.text": "clave_delito.descripcion",
    },
    "trace.acknowledgement": {
        "received_at": "fecha_recepcion",
        "tracking_ref": "folio_seguimiento",
        "expected_response_by": "respuesta_estimada_para",
        "missing_information[]": "informacion_faltante[]",
    },
    "trace.response": {
        "status": "estatus",
        "status_reason.code": "motivo.clave",
        "status_reason.text": "motivo.descripcion",
        "firearm_as_recorded": "arma_registrada",
        "custody_chain[].event": "cadena_custodia[].evento",
        "custody_chain[].date": "cadena_custodia[].fecha",
        "custody_chain[].from_party": "cadena_custodia[].entrega",
        "custody_chain[].to_party": "cadena_custodia[].recibe",
        "custody_chain[].country": "cadena_custodia[].pais",
        "custody_chain[].document_ref": "cadena_custodia[].documento",
        "confidentiality_conditions": "condiciones_confidencialidad",
        "first_retail_purchaser.name": "primer_comprador.nombre",
        "first_retail_purchaser.date_of_birth": "primer_comprador.fecha_nacimiento",
        "first_retail_purchaser.address": "primer_comprador.domicilio",
        "first_retail_purchaser.country": "primer_comprador.pais",
        "selling_dealer.name": "armeria_vendedora.nombre",
        "selling_dealer.licence_no": "armeria_vendedora.licencia",
        "selling_dealer.address": "armeria_vendedora.domicilio",
        "selling_dealer.country": "armeria_vendedora.pais",
        "time_to_crime_days": "dias_venta_a_aseguramiento",
    },
    "firearm.status.query": {
        "serial_number": "numero_serie",
        "make_name": "marca",
        "model": "modelo",
        "calibre": "calibre",
        "type": "tipo",
        "context": "contexto",
    },
    "firearm.status.answer": {
        "result": "resultado",
        "hits[].record_ref": "coincidencias[].referencia_registro",
        "hits[].record_status": "coincidencias[].situacion",
        "hits[].owner.country": "coincidencias[].titular.pais",
        "hits[].owner.agency": "coincidencias[].titular.dependencia",
        "hits[].owner.case_no": "coincidencias[].titular.numero_caso",
        "hits[].date_of_theft_or_loss": "coincidencias[].fecha_robo_extravio",
        "hits[].firearm": "coincidencias[].arma",
        "hits[].match_quality": "coincidencias[].calidad_coincidencia",
        "hits[].date_of_recovery": "coincidencias[].fecha_recuperacion",
        "hit_confirmation_required": "requiere_confirmacion",
    },
    "licence.verify.query": {
        "licence_number": "numero_licencia",
        "issuing_state": "estado_emisor",
        "context": "contexto",
        "firearm_markings[]": "armas[]",
    },
    "licence.verify.answer": {
        "status": "estatus",
        "licence.place_of_issue": "licencia.lugar_expedicion",
        "licence.date_of_issue": "licencia.fecha_expedicion",
        "licence.date_of_expiry": "licencia.fecha_vencimiento",
        "licence.country_of_export": "licencia.pais_exportacion",
        "licence.country_of_import": "licencia.pais_importacion",
        "licence.transit_countries[]": "licencia.paises_transito[]",
        "licence.consignee": "licencia.consignatario",
        "licence.final_recipient": "licencia.destinatario_final",
        "licence.goods[].description": "licencia.mercancias[].descripcion",
        "licence.goods[].quantity": "licencia.mercancias[].cantidad",
        "licence.goods[].markings[]": "licencia.mercancias[].marcas[]",
        "licence.end_use": "licencia.uso_final",
        "licence.exporter.name": "licencia.exportador.nombre",
        "licence.exporter.business_name": "licencia.exportador.razon_social",
        "licence.exporter.address": "licencia.exportador.domicilio",
        "licence.exporter.country": "licencia.exportador.pais",
        "covers_firearm": "ampara_arma",
        "euc.number": "certificado_usuario_final.numero",
        "euc.issuing_authority": "certificado_usuario_final.autoridad_emisora",
        "euc.date_of_issue": "certificado_usuario_final.fecha_expedicion",
        "euc.end_user.name": "certificado_usuario_final.usuario_final.nombre",
        "euc.end_user.business_name": "certificado_usuario_final.usuario_final.razon_social",
        "euc.end_user.address": "certificado_usuario_final.usuario_final.domicilio",
        "euc.end_user.country": "certificado_usuario_final.usuario_final.pais",
        "euc.country_of_final_destination": "certificado_usuario_final.pais_destino_final",
        "euc.end_use_statement": "certificado_usuario_final.declaracion_uso_final",
        "euc.signatory_name": "certificado_usuario_final.firmante",
        "euc.signatory_position": "certificado_usuario_final.cargo_firmante",
        "euc.non_reexport_clause": "certificado_usuario_final.clausula_no_reexportacion",
        "euc.post_shipment_verification_consent": "certificado_usuario_final.consiente_verificacion_posterior",
        "euc.government_authenticated": "certificado_usuario_final.autenticado_gobierno",
    },
    "notice": {"title": "titulo", "text": "texto", "links[]": "mensajes_relacionados[]", "intelligence": "inteligencia", "source_reliability": "fiabilidad_fuente", "information_accuracy": "exactitud_informacion"},
    "receipt": {
        "for": "mensaje",
        "dig": "huella_digital",
        "status": "estatus",
        "at": "fecha",
        "detail": "detalle",
    },
    "error": {"for": "mensaje", "code": "clave_error", "at": "fecha", "by": "nodo", "detail": "detalle"},
}


class MxAdapter(JsonAdapter):
    name = "mx"
    content_types = ("application/vnd.traza.mx+json", "application/json", STANDARD_MEDIA_TYPE)
    output_content_type = "application/vnd.traza.mx+json"
    syntax = SYNTAX
    mt_words = MT_WORDS
    header_rows = header(HEADER)
    body_row = Row("#body", "contenido", "json")
    firearm_names = ARMA
    body_rows: ClassVar[dict[str, list[Row]]] = {
        mt: build(KINDS[mt], NAMES[mt], ARMA, ".") for mt in MT_WORDS
    }
