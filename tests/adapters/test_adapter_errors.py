"""Errors name the NATIONAL field at fault (and, for schema faults, the standard path too)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from adapters import AdapterError, get_adapter
from adapters.base import check_meta

ROOT = Path(__file__).resolve().parents[2]


def sample(name: str, file: str) -> bytes:
    return (ROOT / "adapters" / name / "samples" / file).read_bytes()


def fails(name: str, data: bytes | str, field: str, reason: str, ct: str | None = None) -> AdapterError:
    a = get_adapter(name)
    raw = data.encode() if isinstance(data, str) else data
    with pytest.raises(AdapterError) as info:
        a.to_standard(raw, ct or a.content_types[0])
    assert info.value.field == field, str(info.value)
    assert re.search(reason, info.value.reason), str(info.value)
    assert str(info.value).startswith(f"{field}: ")
    return info.value


def edit_json(name: str, file: str, **changes: object) -> bytes:
    doc = json.loads(sample(name, file))
    for k, v in changes.items():
        if v is None:
            del doc[k]
        else:
            doc[k] = v
    return json.dumps(doc, ensure_ascii=False).encode()


# --- mx (JSON) -----------------------------------------------------------------------------------------


def test_mx_missing_required_field():
    fails(
        "mx",
        edit_json("mx", "firearm.status.query.json", numero_serie=None),
        "numero_serie",
        r"^missing \(standard \$\.serial_number\)",
    )


def test_mx_missing_required_object_names_the_object():
    fails(
        "mx", edit_json("mx", "trace.request.json", arma=None), "arma", r"^missing \(standard \$\.firearm\)"
    )


def test_mx_empty_string():
    fails("mx", edit_json("mx", "firearm.status.query.json", numero_serie=""), "numero_serie", "^empty$")


def test_mx_nested_field_and_list_position():
    doc = json.loads(sample("mx", "trace.response.json"))
    doc["cadena_custodia"][1]["fecha"] = "2019-08-21"
    fails("mx", json.dumps(doc), "cadena_custodia[1].fecha", r"'2019-08-21' is not a date DD/MM/YYYY")
    doc["cadena_custodia"][1]["fecha"] = "31/02/2019"
    fails("mx", json.dumps(doc), "cadena_custodia[1].fecha", "not a valid date")
    doc["cadena_custodia"][1]["fecha"] = "21/08/2019"
    del doc["cadena_custodia"][1]["documento"]
    fails("mx", json.dumps(doc), "cadena_custodia[1].documento", r"required for an `EXPORTED` event")


def test_mx_wrong_json_types():
    doc = json.loads(sample("mx", "trace.request.json"))
    doc["arma"]["anio_fabricacion"] = "2019"
    fails("mx", json.dumps(doc), "arma.anio_fabricacion", 'expected an integer, got "2019"')
    doc["arma"]["anio_fabricacion"] = 2019
    doc["arma"]["serie_borrada"] = "no"
    fails("mx", json.dumps(doc), "arma.serie_borrada", "expected true or false")
    doc["arma"]["serie_borrada"] = False
    doc["arma"]["claves_marca"] = {"sistema": "NCIC_MAK"}
    fails("mx", json.dumps(doc), "arma.claves_marca", "expected a list")
    doc["arma"] = "Glock"
    fails("mx", json.dumps(doc), "arma", "expected an object")


def test_mx_unknown_field_and_code_values():
    fails("mx", edit_json("mx", "trace.request.json", color="negro"), "color", "unknown field")
    doc = json.loads(sample("mx", "trace.request.json"))
    doc["arma"]["tipo"] = "pistolita"
    fails("mx", json.dumps(doc), "arma.tipo", r"'pistolita' is not one of: pistola, rifle")
    doc["arma"]["tipo"] = "P"  # the NCIC letter is read too
    assert (
        get_adapter("mx").to_standard(json.dumps(doc).encode(), "application/json").body["firearm"]["type"]
        == "P"
    )
    doc["bases_ilicitud"] = ["CONTRABANDO"]
    fails(
        "mx",
        json.dumps(doc),
        "bases_ilicitud[0]",
        r"Invalid enum value 'CONTRABANDO' for illicit_basis; allowed: .*UNLICENSED_TRANSFER.* "
        r"\(standard \$\.illicit_basis\[0\]\)",
    )


def test_mx_message_type_and_version():
    fails("mx", edit_json("mx", "notice.json", tipo_mensaje=None), "tipo_mensaje", "^missing$")
    fails(
        "mx",
        edit_json("mx", "notice.json", tipo_mensaje="memorandum"),
        "tipo_mensaje",
        "not a message type of the mx format",
    )
    fails(
        "mx",
        edit_json("mx", "notice.json", tipo_mensaje="notice"),
        "tipo_mensaje",
        "is written 'aviso' in the mx format",
    )
    fails("mx", edit_json("mx", "notice.json", version_formato="2"), "version_formato", "reads version 1")


def test_mx_envelope_values():
    fails("mx", edit_json("mx", "notice.json", destino="MX"), "destino", "not a node id")
    fails("mx", edit_json("mx", "notice.json", codigo_manejo="H9"), "codigo_manejo", "not a handling code")
    fails("mx", edit_json("mx", "notice.json", vigencia_segundos=0), "vigencia_segundos", "outside")
    fails(
        "mx",
        edit_json("mx", "trace.response.json", fecha_entrega="27/11/2026 08:14"),
        "fecha_entrega",
        "not a date-time",
    )


def test_mx_file_level_faults():
    fails("mx", b"[]", "(file)", "expected a JSON object")
    fails("mx", b"{", "(file)", "not valid JSON")
    fails("mx", b'{"tipo_mensaje": "aviso", "tipo_mensaje": "aviso"}', "tipo_mensaje", "appears twice")
    fails("mx", b"\xff{}", "(file)", "not UTF-8")
    fails("mx", sample("mx", "notice.json"), "Content-Type", "not read by adapter mx", ct="text/csv")


def test_mx_wrapped_type_body_errors_name_the_wrapper():
    doc = json.loads(sample("mx", "ballistic.hit.json"))
    del doc["contenido"]["hit_id"]
    fails("mx", json.dumps(doc), "contenido", r"missing at \$\.hit_id")


# --- es (XML) ------------------------------------------------------------------------------------------


def test_es_missing_and_empty_elements():
    xml = sample("es", "firearm.status.query.xml").decode()
    no_serial = re.sub(r"\s*<NumeroSerie>[^<]*</NumeroSerie>", "", xml)
    fails("es", no_serial, "Cuerpo/NumeroSerie", r"^missing \(standard \$\.serial_number\)")
    fails(
        "es",
        re.sub(r"<NumeroSerie>[^<]*</NumeroSerie>", "<NumeroSerie/>", xml),
        "Cuerpo/NumeroSerie",
        "^empty$",
    )


def test_es_structure_faults():
    xml = sample("es", "trace.response.xml").decode()
    fails(
        "es",
        xml.replace("<Cedente>", "<Vendedor>").replace("</Cedente>", "</Vendedor>"),
        "Cuerpo/CadenaCustodia/Evento[2]/Vendedor",
        "unknown element",
    )
    twice = xml.replace("<Estado>COMPLETED</Estado>", "<Estado>COMPLETED</Estado><Estado>PARTIAL</Estado>")
    fails("es", twice, "Cuerpo/Estado", "appears twice")
    fails(
        "es",
        xml.replace("<Fecha>1984-05-17", "<Fecha>17/05/1984"),
        "Cuerpo/CadenaCustodia/Evento[1]/Fecha",
        "not a date YYYY-MM-DD",
    )
    fails(
        "es",
        xml.replace("<SerieBorrada>", "<SerieBorrada>x")
        if "<SerieBorrada>" in xml
        else xml.replace("<Modelo>", "<SerieBorrada>quizas</SerieBorrada><Modelo>", 1),
        "Cuerpo/ArmaRegistrada/SerieBorrada",
        "neither 'true' nor 'false'",
    )
    fails(
        "es", xml.replace("<Cuerpo>", '<Cuerpo prioridad="alta">'), "Cuerpo/@prioridad", "unknown attribute"
    )
    fails("es", xml.replace('version="1"', 'version="2"'), "MensajeTraza/@version", "reads version 1")


def test_es_document_faults():
    fails("es", b"<Mensaje/>", "Mensaje", "root element must be <MensajeTraza>")
    fails("es", b"<MensajeTraza", "(file)", "not well-formed XML")
    bomb = b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaa">]><MensajeTraza>&a;</MensajeTraza>'
    fails("es", bomb, "(file)", "DOCTYPE declarations are forbidden: entities, DTDs and external references")
    fails("es", b'<MensajeTraza xmlns="urn:other"/>', "MensajeTraza", "namespace 'urn:other'")


def _es_nested(depth: int) -> bytes:
    """The es notice sample with ``depth`` elements nested inside ``Cuerpo`` (the root is depth 1)."""
    xml = sample("es", "notice.xml").decode()
    inner = "<Anidado>" * depth + "x" + "</Anidado>" * depth
    return xml.replace("<Cuerpo>", f"<Cuerpo>{inner}", 1).encode()


@pytest.mark.parametrize("depth", [31, 5000])
def test_es_deep_nesting_is_refused_naming_the_element_path_not_a_recursion_error(depth):
    """~5000 nested elements ran the namespace check into RecursionError (a traceback, a 500 from the
    local API); nesting deeper than 32 elements, the JSON limit of SPEC §11, is refused by name."""
    err = fails("es", _es_nested(depth), "Cuerpo/Anidado/Anidado/.../Anidado", r"^nested deeper than 32 elements")
    assert "element 33 levels deep" in err.reason


def test_es_nesting_within_the_limit_reaches_the_element_check():
    """The control: 30 elements deep (32 with the root and Cuerpo) is not refused for depth."""
    fails("es", _es_nested(30), "Cuerpo/Anidado", "unknown element")


def test_es_control_characters_cannot_be_written():
    a = get_adapter("es")
    with pytest.raises(AdapterError, match=r"^Cuerpo/Texto: character U\+0007 cannot be written in XML"):
        a.from_standard("notice", {"title": "t", "text": "bell \x07"}, {})


# --- de (semicolon CSV) --------------------------------------------------------------------------------


def csv_edit(name: str, file: str, column: str, value: str | None, delim: str) -> bytes:
    cols, vals = list(csv.reader(io.StringIO(sample(name, file).decode(), newline=""), delimiter=delim))
    assert column in cols, column
    i = cols.index(column)
    if value is None:
        del cols[i], vals[i]
    else:
        vals[i] = value
    out = io.StringIO(newline="")
    w = csv.writer(out, delimiter=delim, lineterminator="\r\n")
    w.writerow(cols)
    w.writerow(vals)
    return out.getvalue().encode()


def test_de_empty_and_missing_columns():
    fails(
        "de",
        csv_edit("de", "firearm.status.query.csv", "Seriennummer", "", ";"),
        "Seriennummer",
        r"^empty \(standard \$\.serial_number\)",
    )
    fails(
        "de",
        csv_edit("de", "firearm.status.query.csv", "Seriennummer", None, ";"),
        "Seriennummer",
        "^missing",
    )


def test_de_values():
    fails(
        "de",
        csv_edit("de", "trace.request.csv", "Sicherstellungsdatum", "2026-10-02", ";"),
        "Sicherstellungsdatum",
        r"not a date DD\.MM\.YYYY",
    )
    fails(
        "de",
        csv_edit("de", "trace.request.csv", "Lauflaenge_mm", "102.5", ";"),
        "Lauflaenge_mm",
        "decimal separator ','",
    )
    fails(
        "de",
        csv_edit("de", "trace.request.csv", "Herstellungsjahr", "zweitausendacht", ";"),
        "Herstellungsjahr",
        "not an integer",
    )
    fails(
        "de",
        csv_edit("de", "firearm.status.answer.csv", "Bestaetigung_erforderlich", "yes", ";"),
        "Bestaetigung_erforderlich",
        "neither 'ja' nor 'nein'",
    )
    fails(
        "de",
        csv_edit("de", "trace.request.csv", "Waffenart", "Pistole", ";"),
        "Waffenart",
        "not one of: Kurzwaffe",
    )


@pytest.mark.parametrize(
    ("name", "data", "field"),
    [
        ("de", lambda: csv_edit("de", "notice.csv", "Informationsbewertung", "99999999999999999999", ";"),
         "Informationsbewertung"),
        ("de", lambda: csv_edit("de", "trace.request.csv", "Lauflaenge_mm", "-99999999999999999999", ";"),
         "Lauflaenge_mm"),
        ("it", lambda: csv_edit("it", "notice.csv", "attendibilita_informazione", "99999999999999999999", ","),
         "attendibilita_informazione"),
        ("es", lambda: re.sub(rb"<ExactitudInformacion>[0-9]+<", b"<ExactitudInformacion>99999999999999999999999<",
                              sample("es", "notice.xml")),
         "Cuerpo/ExactitudInformacion"),
    ],
    ids=["de-int", "de-number", "it-int", "es-int"],
)
def test_integer_beyond_2_53_is_reported_against_its_own_field_not_the_message_type(name, data, field):
    """It was `Nachrichtentyp` / `tipo_messaggio` / `Cabecera/TipoMensaje: integer ... outside ±2^53 at $`."""
    fails(name, data(), field, r"^integer -?99999999999999999999+ is outside ±2\^53$")


def test_number_overflowing_a_double_is_refused_naming_its_field():
    """`1e400` was read as infinity (which JSON cannot carry: encoded as null) and accepted."""
    fails("de", csv_edit("de", "trace.request.csv", "Lauflaenge_mm", "1e400", ";"), "Lauflaenge_mm",
          r"^'1e400' is not a finite number$")


def test_integer_at_2_53_is_left_to_the_schema():
    """The control: 2^53 itself is inside the strict JSON range (SPEC §3.4): the schema's bound refuses it."""
    fails("de", csv_edit("de", "trace.request.csv", "Lauflaenge_mm", str(2**53), ";"), "Lauflaenge_mm",
          r"<= 10000 \(standard \$\.firearm\.barrel_length_mm\)")


def test_de_numbered_columns_must_not_skip():
    data = sample("de", "trace.response.csv").decode().replace("Verbleib2_", "Verbleib4_")
    fails("de", data, "Verbleib2_Ereignis", "numbered fields must run 1, 2, 3")


def test_de_file_shape():
    data = sample("de", "notice.csv").decode()
    header, row = data.split("\r\n")[:2]
    fails("de", header + "\r\n", "(file)", "expected a header row and one data row")
    fails("de", data + row + "\r\n", "(file)", "one message per file")
    fails("de", header + "\r\n" + row + ";x\r\n", "(file)", "columns")
    fails("de", header + ";Farbe\r\n" + row + ";schwarz\r\n", "Farbe", "unknown column")
    fails("de", header + ";Betreff\r\n" + row + ";x\r\n", "Betreff", "column appears twice")


# --- it (comma CSV) ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "column", "delim"), [("de", "Betreff", ";"), ("it", "oggetto", ",")])
def test_csv_refuses_on_reading_the_nul_it_cannot_write_back(name, column, delim):
    """de/it read U+0000 in a cell (to_standard accepted it) but refused to write it back: each adapter
    now reads only what it can write, and says so in the same words."""
    data = csv_edit(name, "notice.csv", column, "Pra\x00tica", delim)
    fails(name, data, column, r"^character U\+0000 cannot be written in CSV")
    a = get_adapter(name)
    t = a.to_standard(sample(name, "notice.csv"), a.content_types[0])
    with pytest.raises(AdapterError, match=rf"^{column}: character U\+0000 cannot be written in CSV"):
        a.from_standard(t.mt, {**t.body, "title": "Pra\x00tica"}, t.meta())


def test_it_errors_name_italian_columns():
    fails("it", csv_edit("it", "firearm.status.query.csv", "matricola", "", ","), "matricola", "^empty")
    fails(
        "it",
        csv_edit("it", "trace.request.csv", "data_sequestro", "30.10.2026", ","),
        "data_sequestro",
        "not a date DD/MM/YYYY",
    )
    fails(
        "it",
        csv_edit("it", "licence.verify.answer.csv", "tipo_messaggio", "risposta", ","),
        "tipo_messaggio",
        "not a message type of the it format",
    )
    fails(
        "it",
        csv_edit("it", "trace.acknowledgement.csv", "ricevuta_il", "18/10/2026 12:00", ","),
        "ricevuta_il",
        r"not a date-time DD/MM/YYYY HH:MM:SS\[\.ffffff\]\+HH:MM",
    )


# --- standard ------------------------------------------------------------------------------------------


def test_standard_errors_name_the_member():
    doc = json.loads(sample("standard", "trace.request.json"))
    del doc["body"]["recovery"]["date"]
    fails("standard", json.dumps(doc), "body.recovery.date", "^missing$")
    fails("standard", json.dumps({**doc, "priority": 1}), "priority", "unknown member")
    fails("standard", json.dumps({"body": {}}), "type", "^missing$")
    fails("standard", json.dumps({"type": "trace.requests", "body": {}}), "type", "not a message type")


# --- from_standard -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mx", "es", "de", "it", "standard", "x3p"])
def test_from_standard_refuses_bad_bodies_and_meta(name):
    a = get_adapter(name)
    with pytest.raises(AdapterError, match=r"^\$\.title: missing"):
        a.from_standard("notice", {"text": "x"}, {})
    with pytest.raises(AdapterError, match=r"^meta: unknown key 'content_type'"):
        a.from_standard("notice", {"title": "t", "text": "x"}, {"content_type": "x"})
    with pytest.raises(AdapterError, match=r"^meta\.from: 'MX' is not a node id"):
        a.from_standard("notice", {"title": "t", "text": "x"}, {"from": "MX"})


def test_from_standard_refuses_what_would_not_read_back():
    """An empty Firearm is valid in the standard but no national format can write it: refused, not lost."""
    body = json.loads(sample("standard", "trace.request.json"))["body"]
    body["firearm"] = {}
    for name in ("mx", "es", "de", "it"):
        with pytest.raises(AdapterError, match="does not read back"):
            get_adapter(name).from_standard("trace.request", body, {})
    assert (
        json.loads(get_adapter("standard").from_standard("trace.request", body, {}))["body"]["firearm"] == {}
    )


def test_check_meta_normalises_delivery_time():
    assert check_meta({"delivered_at": "2026-11-27T08:14:05+00:00", "id": None}) == {
        "delivered_at": "2026-11-27T08:14:05Z"
    }


def test_x3p_errors_name_the_sidecar_or_file_part():
    a = get_adapter("x3p")
    x3p = sample("x3p", "mx-fgr-2026-1180-c3-breechface.x3p")
    sidecar = json.loads(sample("x3p", "mx-fgr-2026-1180-c3-breechface.json"))
    with pytest.raises(AdapterError, match=r"^sidecar: missing: a bare X3P file needs"):
        a.to_standard(x3p, "application/x-x3p")
    no_region = {k: v for k, v in sidecar.items() if k != "region"}
    with pytest.raises(AdapterError, match=r"^sidecar region: missing"):
        a.translate(x3p, no_region)  # type: ignore[attr-defined]
    no_id = {**sidecar, "body": {k: v for k, v in sidecar["body"].items() if k != "exhibit_id"}}
    with pytest.raises(AdapterError, match=r"^sidecar body\.exhibit_id: missing"):
        a.translate(x3p, no_id)  # type: ignore[attr-defined]
    with pytest.raises(
        AdapterError, match=r"^sidecar body\.topography\[0\]\.region: Invalid enum value 'Breechface'"
    ):
        a.translate(x3p, {**sidecar, "region": "Breechface"})  # type: ignore[attr-defined]
    t = a.translate(x3p, sidecar)  # type: ignore[attr-defined]
    written = json.loads(a.from_standard(t.mt, t.body, t.meta()))
    with pytest.raises(
        AdapterError, match=r"^sidecar region: 'LEA' differs from body\.topography\[0\]\.region 'BreechFace'"
    ):
        a.translate(x3p, {**written, "region": "LEA"})  # type: ignore[attr-defined]
    with pytest.raises(
        AdapterError, match=r"^sidecar type: 'notice': an X3P file is sent as ballistic.submission"
    ):
        a.translate(x3p, {**sidecar, "type": "notice"})  # type: ignore[attr-defined]
    with pytest.raises(AdapterError, match=r"^\(archive\): not a zip archive"):
        a.translate(b"not a zip", sidecar)  # type: ignore[attr-defined]


# --- configuration and the standard form through any adapter -----------------------------------------


def test_every_adapter_also_reads_the_standard_form():
    data = sample("standard", "trace.request.fn.json")
    expected = get_adapter("standard").to_standard(data, "application/vnd.traza.message+json")
    for name in ("mx", "es", "de", "it", "x3p"):
        a = get_adapter(name)
        assert "application/vnd.traza.message+json" in a.content_types
        t = a.to_standard(data, "application/vnd.traza.message+json; charset=utf-8")
        assert t.standard_form() == expected.standard_form()


def test_make_adapter_configures_x3p_only():
    from adapters import UnknownAdapter, make_adapter
    from adapters.x3p import X3pAdapter

    sidecar = json.loads(sample("x3p", "mx-fgr-2026-1180-c3-breechface.json"))
    a = make_adapter("x3p", {"defaults": sidecar})
    assert isinstance(a, X3pAdapter) and a is not get_adapter("x3p")
    t = a.to_standard(sample("x3p", "mx-fgr-2026-1180-c3-breechface.x3p"), "application/x-x3p")
    assert t.body["exhibit_id"] == "MX-FGR-2026-1180-C3"
    assert make_adapter("mx").name == "mx"
    with pytest.raises(AdapterError, match="adapter mx takes no options"):
        make_adapter("mx", {"defaults": {}})
    with pytest.raises(AdapterError, match=r"unknown option\(s\) for adapter x3p: sidecar"):
        make_adapter("x3p", {"sidecar": {}})
    with pytest.raises(UnknownAdapter, match="known: de, es, it, mx, standard, x3p"):
        make_adapter("fr")
