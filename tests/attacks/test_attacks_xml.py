"""XML attacks on every reader of XML (the es adapter, the X3P reader's main.xml): the whole class of
DTD tricks - internal entity expansion, billion laughs, external entity (SYSTEM file://), external DTD -
in every encoding a parser could be handed (UTF-8, UTF-16 LE/BE with BOM, UTF-32 LE/BE with BOM). Each is
refused with an error naming the file and the reason; nothing is ever expanded."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest

from adapters import AdapterError, get_adapter
from adapters.x3p.reader import X3pError, read_x3p

ROOT = Path(__file__).resolve().parents[2]
ES_SAMPLE = ROOT / "adapters" / "es" / "samples" / "trace.request.xml"
X3P_SAMPLE = ROOT / "adapters" / "x3p" / "samples" / "mx-fgr-2026-1180-c3-breechface.x3p"
MARK = "EXPANDED-BY-THE-PARSER"
SECRET = "SECRET-FROM-THE-FILE-SYSTEM"

# codec, the name in the XML declaration
ENCODINGS = {
    "utf-8": ("utf-8", "UTF-8"),
    "utf-16-le-bom": ("utf-16-le", "UTF-16"),
    "utf-16-be-bom": ("utf-16-be", "UTF-16"),
    "utf-32-le-bom": ("utf-32-le", "UTF-32"),
    "utf-32-be-bom": ("utf-32-be", "UTF-32"),
}
BOMS = {"utf-8": b"", "utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff",
        "utf-32-le": b"\xff\xfe\x00\x00", "utf-32-be": b"\x00\x00\xfe\xff"}


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("xxe")
    (d / "secret.txt").write_text(SECRET)
    (d / "evil.dtd").write_text(f'<!ENTITY x "{MARK}"><!ENTITY s SYSTEM "{(d / "secret.txt").as_uri()}">')
    return d


def attacks(root: str, d: Path) -> dict[str, tuple[str, str]]:
    """name -> (DOCTYPE declaration, the reference put into a text field)."""
    laughs = "".join(f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    return {
        "internal-entity": (f'<!DOCTYPE {root} [<!ENTITY x "{MARK}">]>', "&x;"),
        "billion-laughs": (f'<!DOCTYPE {root} [<!ENTITY l0 "{MARK}">{laughs}]>', "&l9;"),
        "external-entity": (f'<!DOCTYPE {root} [<!ENTITY s SYSTEM "{(d / "secret.txt").as_uri()}">]>', "&s;"),
        "external-dtd": (f'<!DOCTYPE {root} SYSTEM "{(d / "evil.dtd").as_uri()}">', "&x;&s;"),
    }


CASES = [(a, e) for a in ("internal-entity", "billion-laughs", "external-entity", "external-dtd")
         for e in ENCODINGS]


def hostile(xml_utf8: str, root: str, field_open: str, doctype: str, ref: str, enc: str) -> bytes:
    """The document with the DOCTYPE after its declaration and ``ref`` inside ``field_open``'s text,
    re-encoded (with a BOM) and its declaration naming the encoding."""
    codec, name = ENCODINGS[enc]
    decl, _, rest = xml_utf8.partition("?>")
    assert decl.startswith("<?xml"), "the sample starts with an XML declaration"
    decl = decl.replace('encoding="UTF-8"', f'encoding="{name}"')
    rest = rest.replace(field_open, field_open + ref, 1)
    text = f"{decl}?>{doctype}{rest}"
    return BOMS[codec] + text.encode(codec)


def refused_clearly(exc: Exception, field: str) -> None:
    msg = str(exc)
    assert msg.startswith(f"{field}: "), msg
    assert MARK not in msg and SECRET not in msg, msg
    assert re.search(r"DOCTYPE.*(forbidden|not allowed)|UTF-32", msg), msg


# --- es adapter ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("attack", "enc"), CASES)
def test_xml_entity_attacks_on_es_adapter_are_refused(attack, enc, secret_file):
    es = get_adapter("es")
    doctype, ref = attacks("MensajeTraza", secret_file)[attack]
    data = hostile(ES_SAMPLE.read_text("utf-8"), "MensajeTraza", "<Marca>", doctype, ref, enc)
    with pytest.raises(AdapterError) as info:
        es.to_standard(data, es.content_types[0])
    refused_clearly(info.value, "(file)")


def test_xml_entity_attack_on_es_adapter_names_the_reason():
    es = get_adapter("es")
    data = hostile(ES_SAMPLE.read_text("utf-8"), "MensajeTraza", "<Marca>",
                   f'<!DOCTYPE MensajeTraza [<!ENTITY x "{MARK}">]>', "&x;", "utf-16-le-bom")
    with pytest.raises(AdapterError) as info:
        es.to_standard(data, es.content_types[0])
    assert "entities" in info.value.reason and "forbidden" in info.value.reason, info.value.reason


def test_xml_es_adapter_still_reads_its_sample_in_utf16():
    """The defence refuses DTDs, not encodings expat understands: the sample re-encoded as UTF-16 reads."""
    es = get_adapter("es")
    plain = ES_SAMPLE.read_bytes()
    text = plain.decode("utf-8").replace('encoding="UTF-8"', 'encoding="UTF-16"')
    for codec in ("utf-16-le", "utf-16-be"):
        assert es.to_standard(BOMS[codec] + text.encode(codec), es.content_types[0]).body == \
            es.to_standard(plain, es.content_types[0]).body


# --- X3P reader (main.xml inside the .x3p zip) ---------------------------------------------------------

def _with_main(x3p: bytes, main: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(x3p)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, main if info.filename == "main.xml" else src.read(info))
    return out.getvalue()


@pytest.mark.parametrize(("attack", "enc"), CASES)
def test_xml_entity_attacks_on_x3p_main_xml_are_refused(attack, enc, secret_file):
    x3p = X3P_SAMPLE.read_bytes()
    with zipfile.ZipFile(io.BytesIO(x3p)) as z:
        main = z.read("main.xml").decode("utf-8")
    doctype, ref = attacks("p:ISO5436_2", secret_file)[attack]
    data = _with_main(x3p, hostile(main, "p:ISO5436_2", "<Creator>", doctype, ref, enc))
    with pytest.raises(X3pError) as info:
        read_x3p(data)
    refused_clearly(info.value, "main.xml")


def test_xml_x3p_sample_still_reads():
    info = read_x3p(X3P_SAMPLE.read_bytes())
    assert info.creator and "FGR" in info.creator
