"""`es`: Spanish XML in the style of the Guardia Civil's arms registry (ICAE), format version 1.

``<MensajeTraza xmlns="urn:traza:es:mensaje:1" version="1">`` holds a ``<Cabecera>`` (message type and
envelope) and a ``<Cuerpo>`` (the body). Dates are ``xsd:date`` (``YYYY-MM-DD``), date-times
``xsd:dateTime`` with an offset, booleans ``true``/``false``, decimals with a point. See
docs/adapters.md for every element.
"""

from __future__ import annotations

from typing import ClassVar

from adapters._engine import Row, Syntax
from adapters._national import XmlAdapter
from adapters._rows import CODES, KINDS, build, header
from adapters.standard import MEDIA_TYPE as STANDARD_MEDIA_TYPE

MT_WORDS = {
    "trace.request": "SolicitudRastreo",
    "trace.acknowledgement": "AcuseSolicitudRastreo",
    "trace.response": "RespuestaRastreo",
    "firearm.status.query": "ConsultaSituacionArma",
    "firearm.status.answer": "RespuestaSituacionArma",
    "licence.verify.query": "ConsultaLicencia",
    "licence.verify.answer": "RespuestaLicencia",
    "notice": "Aviso",
    "receipt": "AcuseRecibo",
    "error": "ErrorEntrega",
}

GUN_TYPES = {
    "P": "Pistola",
    "R": "Fusil",
    "S": "Escopeta",
    "M": "Ametralladora",
    "B": "Subfusil",
    "C": "Combinada",
    "Z": "Otra",
}
GUN_DETAILS = {
    "I": "Semiautomatica",
    "A": "Automatica",
    "R": "Revolver",
    "B": "Cerrojo",
    "L": "Palanca",
    "P": "Corredera",
    "S": "TiroATiro",
    "E": "Yuxtapuesta",
    "O": "Superpuesta",
    "C": "Carabina",
}

SYNTAX = Syntax(
    typed=False, date="iso", enums={"gun_type": GUN_TYPES, "gun_detail": GUN_DETAILS}, codes=CODES
)

HEADER = {
    "#type": "Cabecera/TipoMensaje",
    "@to": "Cabecera/Destino",
    "@handling": "Cabecera/CodigoManejo",
    "@handling_restrictions": "Cabecera/RestriccionesManejo",
    "@onward_transfer": "Cabecera/TransferenciaUlterior",
    "@classification": "Cabecera/Clasificacion",
    "@purpose": "Cabecera/Finalidad",
    "@reply_to": "Cabecera/EnRespuestaA",
    "@ttl_seconds": "Cabecera/VigenciaSegundos",
    "@id": "Cabecera/Identificador",
    "@from": "Cabecera/Origen",
    "@conversation": "Cabecera/Conversacion",
    "@delivered_at": "Cabecera/FechaEntrega",
}

ARMA = {
    "serial_number": "NumeroSerie",
    "serial_obliterated": "SerieBorrada",
    "make_name": "Marca",
    "make_codes[].system": "CodigosMarca/CodigoMarca[]/Sistema",
    "make_codes[].code": "CodigosMarca/CodigoMarca[]/Codigo",
    "model": "Modelo",
    "type": "TipoArma",
    "type_detail": "Mecanismo",
    "calibre": "Calibre",
    "country_of_manufacture": "PaisFabricacion",
    "place_of_manufacture": "LugarFabricacion",
    "year_of_manufacture": "AnioFabricacion",
    "import_marking.country_of_import": "MarcajeImportacion/PaisImportacion",
    "import_marking.year_of_import": "MarcajeImportacion/AnioImportacion",
    "importer.name": "Importador/Nombre",
    "importer.country": "Importador/Pais",
    "additional_markings[]": "MarcajesAdicionales/Marcaje[]",
    "barrel_length_mm": "LongitudCanonMm",
    "eu_category": "CategoriaUE",
    "free_text": "Observaciones",
    "marking_location": "UbicacionMarcaje",
    "essential_components[].component": "ComponentesEsenciales/Componente[]/Tipo",
    "essential_components[].serial_or_marking": "ComponentesEsenciales/Componente[]/Marcaje",
    "state_stock_transfer_marking.country": "MarcajeTransferenciaEstatal/Pais",
    "barrel_length.value": "LongitudCanon/Valor",
    "barrel_length.unit": "LongitudCanon/Unidad",
}

B = "Cuerpo/"
NAMES: dict[str, dict[str, str | tuple[str, dict[str, str]]]] = {
    "trace.request": {
        "request_kind": B + "TipoSolicitud",
        "firearm": B + "Arma",
        "illicit_basis[]": B + "MotivosIlicitud/Motivo[]",
        "legal_basis": B + "BaseJuridica",
        "intended_use": B + "UsoPrevisto",
        "recovery.date": B + "Intervencion/Fecha",
        "recovery.location.city": B + "Intervencion/Lugar/Localidad",
        "recovery.location.admin_area": B + "Intervencion/Lugar/Provincia",
        "recovery.location.country": B + "Intervencion/Lugar/Pais",
        "recovery.circumstances": B + "Intervencion/Circunstancias",
        "case_refs[].issuer": B + "Diligencias/Diligencia[]/Organo",
        "case_refs[].number": B + "Diligencias/Diligencia[]/Numero",
        "requested_info[]": B + "InformacionSolicitada/Dato[]",
        "respond_by": B + "ResponderAntesDe",
        "requester.agency": B + "Solicitante/Organismo",
        "requester.unit": B + "Solicitante/Unidad",
        "requester.officer": B + "Solicitante/Agente",
        "requester.email": B + "Solicitante/CorreoElectronico",
        "priority": B + "Prioridad",
        "priority_justification": B + "JustificacionPrioridad",
        "crime_code.system": B + "ClaveDelito/Sistema",
        "crime_code.code": B + "ClaveDelito/Clave",
        "crime_code.text": B + "ClaveDelito/Descripcion",
    },
    "trace.acknowledgement": {
        "received_at": B + "FechaRecepcion",
        "tracking_ref": B + "ReferenciaSeguimiento",
        "expected_response_by": B + "RespuestaPrevistaAntesDe",
        "missing_information[]": B + "InformacionPendiente/Dato[]",
    },
    "trace.response": {
        "status": B + "Estado",
        "status_reason.code": B + "Motivo/Codigo",
        "status_reason.text": B + "Motivo/Texto",
        "firearm_as_recorded": B + "ArmaRegistrada",
        "custody_chain[].event": B + "CadenaCustodia/Evento[]/Tipo",
        "custody_chain[].date": B + "CadenaCustodia/Evento[]/Fecha",
        "custody_chain[].from_party": B + "CadenaCustodia/Evento[]/Cedente",
        "custody_chain[].to_party": B + "CadenaCustodia/Evento[]/Receptor",
        "custody_chain[].country": B + "CadenaCustodia/Evento[]/Pais",
        "custody_chain[].document_ref": B + "CadenaCustodia/Evento[]/Documento",
        "confidentiality_conditions": B + "CondicionesConfidencialidad",
        "first_retail_purchaser.name": B + "PrimerComprador/Nombre",
        "first_retail_purchaser.date_of_birth": B + "PrimerComprador/FechaNacimiento",
        "first_retail_purchaser.address": B + "PrimerComprador/Domicilio",
        "first_retail_purchaser.country": B + "PrimerComprador/Pais",
        "selling_dealer.name": B + "ArmeriaVendedora/Nombre",
        "selling_dealer.licence_no": B + "ArmeriaVendedora/Licencia",
        "selling_dealer.address": B + "ArmeriaVendedora/Domicilio",
        "selling_dealer.country": B + "ArmeriaVendedora/Pais",
        "time_to_crime_days": B + "DiasVentaAIntervencion",
    },
    "firearm.status.query": {
        "serial_number": B + "NumeroSerie",
        "make_name": B + "Marca",
        "model": B + "Modelo",
        "calibre": B + "Calibre",
        "type": B + "TipoArma",
        "context": B + "Contexto",
    },
    "firearm.status.answer": {
        "result": B + "Resultado",
        "hits[].record_ref": B + "Coincidencias/Coincidencia[]/ReferenciaRegistro",
        "hits[].record_status": B + "Coincidencias/Coincidencia[]/Situacion",
        "hits[].owner.country": B + "Coincidencias/Coincidencia[]/Titular/Pais",
        "hits[].owner.agency": B + "Coincidencias/Coincidencia[]/Titular/Organismo",
        "hits[].owner.case_no": B + "Coincidencias/Coincidencia[]/Titular/NumeroCaso",
        "hits[].date_of_theft_or_loss": B + "Coincidencias/Coincidencia[]/FechaSustraccionExtravio",
        "hits[].firearm": B + "Coincidencias/Coincidencia[]/Arma",
        "hits[].match_quality": B + "Coincidencias/Coincidencia[]/CalidadCoincidencia",
        "hits[].date_of_recovery": B + "Coincidencias/Coincidencia[]/FechaRecuperacion",
        "hit_confirmation_required": B + "RequiereConfirmacion",
    },
    "licence.verify.query": {
        "licence_number": B + "NumeroLicencia",
        "issuing_state": B + "EstadoEmisor",
        "context": B + "Contexto",
        "firearm_markings[]": B + "Armas/Arma[]",
    },
    "licence.verify.answer": {
        "status": B + "Estado",
        "licence.place_of_issue": B + "Licencia/LugarExpedicion",
        "licence.date_of_issue": B + "Licencia/FechaExpedicion",
        "licence.date_of_expiry": B + "Licencia/FechaCaducidad",
        "licence.country_of_export": B + "Licencia/PaisExportacion",
        "licence.country_of_import": B + "Licencia/PaisImportacion",
        "licence.transit_countries[]": B + "Licencia/PaisesTransito/Pais[]",
        "licence.consignee": B + "Licencia/Consignatario",
        "licence.final_recipient": B + "Licencia/DestinatarioFinal",
        "licence.goods[].description": B + "Licencia/Mercancias/Mercancia[]/Descripcion",
        "licence.goods[].quantity": B + "Licencia/Mercancias/Mercancia[]/Cantidad",
        "licence.goods[].markings[]": B + "Licencia/Mercancias/Mercancia[]/Marcajes/Marcaje[]",
        "licence.end_use": B + "Licencia/UsoFinal",
        "licence.exporter.name": B + "Licencia/Exportador/Nombre",
        "licence.exporter.business_name": B + "Licencia/Exportador/RazonSocial",
        "licence.exporter.address": B + "Licencia/Exportador/Domicilio",
        "licence.exporter.country": B + "Licencia/Exportador/Pais",
        "covers_firearm": B + "AmparaArma",
        "euc.number": B + "CertificadoUsuarioFinal/Numero",
        "euc.issuing_authority": B + "CertificadoUsuarioFinal/AutoridadEmisora",
        "euc.date_of_issue": B + "CertificadoUsuarioFinal/FechaExpedicion",
        "euc.end_user.name": B + "CertificadoUsuarioFinal/UsuarioFinal/Nombre",
        "euc.end_user.business_name": B + "CertificadoUsuarioFinal/UsuarioFinal/RazonSocial",
        "euc.end_user.address": B + "CertificadoUsuarioFinal/UsuarioFinal/Domicilio",
        "euc.end_user.country": B + "CertificadoUsuarioFinal/UsuarioFinal/Pais",
        "euc.country_of_final_destination": B + "CertificadoUsuarioFinal/PaisDestinoFinal",
        "euc.end_use_statement": B + "CertificadoUsuarioFinal/DeclaracionUsoFinal",
        "euc.signatory_name": B + "CertificadoUsuarioFinal/Firmante",
        "euc.signatory_position": B + "CertificadoUsuarioFinal/CargoFirmante",
        "euc.non_reexport_clause": B + "CertificadoUsuarioFinal/ClausulaNoReexportacion",
        "euc.post_shipment_verification_consent": B + "CertificadoUsuarioFinal/ConsienteVerificacionPosterior",
        "euc.government_authenticated": B + "CertificadoUsuarioFinal/AutenticadoGobierno",
    },
    "notice": {"title": B + "Titulo", "text": B + "Texto", "links[]": B + "MensajesRelacionados/Mensaje[]",
               "intelligence": B + "Inteligencia", "source_reliability": B + "FiabilidadFuente",
               "information_accuracy": B + "ExactitudInformacion"},
    "receipt": {
        "for": B + "MensajeReferido",
        "dig": B + "HuellaDigital",
        "status": B + "Estado",
        "at": B + "Fecha",
        "detail": B + "Detalle",
    },
    "error": {
        "for": B + "MensajeReferido",
        "code": B + "CodigoError",
        "at": B + "Fecha",
        "by": B + "Nodo",
        "detail": B + "Detalle",
    },
}


class EsAdapter(XmlAdapter):
    name = "es"
    content_types = ("application/vnd.traza.es+xml", "application/xml", "text/xml", STANDARD_MEDIA_TYPE)
    output_content_type = "application/vnd.traza.es+xml"
    syntax = SYNTAX
    root_tag = "MensajeTraza"
    namespace = "urn:traza:es:mensaje:1"
    mt_words = MT_WORDS
    header_rows = header(HEADER)
    body_row = Row("#body", "Cuerpo/ContenidoJSON", "json")
    firearm_names = ARMA
    body_rows: ClassVar[dict[str, list[Row]]] = {
        mt: build(KINDS[mt], NAMES[mt], ARMA, "/") for mt in MT_WORDS
    }
