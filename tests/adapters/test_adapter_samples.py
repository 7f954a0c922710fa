"""Every adapter round-trips every one of its sample files without loss (SPEC §8).

national -> standard -> national gives the same data, compared as parsed structures (JSON objects,
XML element trees, CSV column -> value maps), and the second translation equals the first.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from adapters import ADAPTERS, get_adapter
from adapters.base import Adapter, Translation
from adapters.x3p import X3pAdapter
from gateway.core.messages import MESSAGE_TYPES

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT.parent / "shared" / "vectors" / "x3p"
NATIONAL = ["mx", "es", "de", "it", "standard"]
SAMPLES = [(name, p) for name in NATIONAL for p in sorted((ROOT / "adapters" / name / "samples").iterdir())]


def parsed(name: str, data: bytes) -> Any:
    """A national file as a structure that ignores formatting (indentation, column order, quoting)."""
    if name in ("mx", "standard"):
        return json.loads(data)
    if name == "es":

        def tree(el: ET.Element) -> Any:
            kids = list(el)
            if not kids:
                return (el.tag, el.text or "")
            return (el.tag, sorted(el.attrib.items()), [tree(k) for k in kids])

        return tree(ET.fromstring(data))
    delim = ";" if name == "de" else ","
    header, row = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=delim))
    cells = {h: v for h, v in zip(header, row, strict=True) if v != ""}
    for k in ("Inhalt_JSON", "contenuto_json"):
        if k in cells:
            cells[k] = json.loads(cells[k])
    return cells


def drop_empty(obj: Any) -> Any:
    """National formats write an empty list as an absent member (it carries no data)."""
    if isinstance(obj, dict):
        return {k: drop_empty(v) for k, v in obj.items() if v != []}
    if isinstance(obj, list):
        return [drop_empty(v) for v in obj]
    return obj


def sample_mt(path: Path) -> str:
    """``trace.request.llama.xml`` -> ``trace.request``: the longest leading part that is a message type."""
    parts = path.name.rsplit(".", 1)[0].split(".")
    return next(".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in MESSAGE_TYPES)


def translate(a: Adapter, data: bytes) -> Translation:
    return a.to_standard(data, a.content_types[0])


@pytest.mark.parametrize(("name", "path"), SAMPLES, ids=[f"{n}/{p.name}" for n, p in SAMPLES])
def test_sample_round_trips_without_loss(name: str, path: Path) -> None:
    a = get_adapter(name)
    data = path.read_bytes()
    t = translate(a, data)
    assert t.mt == sample_mt(path)
    assert t.warnings == []
    again = a.from_standard(t.mt, t.body, t.meta())
    assert parsed(name, again) == parsed(name, data)
    t2 = translate(a, again)
    assert (t2.mt, t2.body, t2.meta()) == (t.mt, t.body, t.meta())


@pytest.mark.parametrize("name", NATIONAL)
def test_samples_cover_every_message_type(name: str) -> None:
    mts = {sample_mt(p) for n, p in SAMPLES if n == name}
    assert mts == set(MESSAGE_TYPES)


@pytest.mark.parametrize("name", NATIONAL)
def test_samples_translate_into_every_other_format(name: str) -> None:
    """A standard message read from one format reads back the same from every other format."""
    for _, path in [s for s in SAMPLES if s[0] == name]:
        t = translate(get_adapter(name), path.read_bytes())
        for other in NATIONAL:
            b = get_adapter(other)
            t2 = translate(b, b.from_standard(t.mt, t.body, t.meta()))
            assert (t2.mt, drop_empty(t2.body), t2.meta()) == (t.mt, drop_empty(t.body), t.meta()), (
                path.name,
                other,
            )


def test_story_is_what_the_samples_say() -> None:
    """Spot checks that the sample files carry the story they were written for."""
    mx = translate(get_adapter("mx"), (ROOT / "adapters/mx/samples/trace.request.json").read_bytes())
    assert (
        mx.to == "at"
        and mx.body["firearm"]["make_name"] == "Glock"
        and mx.body["recovery"]["date"] == "2026-10-14"
    )
    de = translate(get_adapter("de"), (ROOT / "adapters/de/samples/trace.request.csv").read_bytes())
    assert de.received["from"] == "mx" and de.body["firearm"]["make_name"] == "Walther"
    it = translate(get_adapter("it"), (ROOT / "adapters/it/samples/trace.request.csv").read_bytes())
    assert it.body["firearm"]["model"] == "92FS" and it.body["firearm"]["country_of_manufacture"] == "IT"
    es = translate(get_adapter("es"), (ROOT / "adapters/es/samples/trace.request.llama.xml").read_bytes())
    assert es.body["firearm"]["model"] == "Max-I"
    ro = translate(
        get_adapter("standard"), (ROOT / "adapters/standard/samples/trace.request.json").read_bytes()
    )
    assert ro.body["firearm"]["model"] == "Carpati Md. 1974" and ro.received["from"] == "mx"
    be = translate(
        get_adapter("standard"), (ROOT / "adapters/standard/samples/trace.request.fn.json").read_bytes()
    )
    assert be.to == "be" and be.body["firearm"]["make_name"] == "FN Herstal"


def test_every_adapter_is_registered() -> None:
    assert set(ADAPTERS) == {"mx", "es", "de", "it", "standard", "x3p"}
    for name, a in ADAPTERS.items():
        assert a.name == name
        assert a.output_content_type in a.content_types


# --- x3p -----------------------------------------------------------------------------------------------

X3P_SAMPLES = ROOT / "adapters" / "x3p" / "samples"


def test_x3p_sample_round_trips(tmp_path: Path) -> None:
    a = get_adapter("x3p")
    assert isinstance(a, X3pAdapter)
    x3p = X3P_SAMPLES / "mx-fgr-2026-1180-c3-breechface.x3p"
    t = a.translate_file(x3p)  # the sidecar beside it
    assert t.mt == "ballistic.submission" and t.warnings == []
    topo = t.body["topography"]
    assert topo[0]["region"] == "BreechFace" and (topo[0]["size_x"], topo[0]["size_y"]) == (64, 64)
    [att] = t.attachments
    assert att.sha256 == topo[0]["sha256"] and att.path == str(x3p) and att.length == x3p.stat().st_size
    sidecar = json.loads((X3P_SAMPLES / "mx-fgr-2026-1180-c3-breechface.json").read_text())
    # national -> standard -> national: the written form is the sidecar with the file's summary in place of `region`
    written = json.loads(a.from_standard(t.mt, t.body, t.meta()))
    expected = {k: v for k, v in sidecar.items() if k != "region"}
    expected["body"] = {**sidecar["body"], "topography": topo}
    assert {k: v for k, v in written.items() if k != "type"} == expected and written["type"] == t.mt
    # and the written form, as a sidecar of the same file, reads back to the same message
    again = a.translate(x3p.read_bytes(), json.dumps(written).encode(), name=x3p.name)
    assert (again.body, again.meta()) == (t.body, t.meta())
    assert again.attachments[0].data == x3p.read_bytes()
    # the national mx sample of the same submission names this very file
    mx = translate(get_adapter("mx"), (ROOT / "adapters/mx/samples/ballistic.submission.json").read_bytes())
    assert mx.body == t.body


@pytest.mark.parametrize(
    ("name", "size", "dtype"),
    [
        ("sample-land", (918, 256), "D"),
        ("csafe-logo", (741, 419), "D"),
        ("pyramid", (5, 5), "F"),
        ("testing", (30, 20), "D"),
    ],
)
def test_x3p_every_shared_vector_translates_with_warnings(
    tmp_path: Path, name: str, size: tuple[int, int], dtype: str
) -> None:
    """All four real files become a ballistic.submission; each deviation is a warning, none fatal."""
    x3p = tmp_path / f"{name}.x3p"
    shutil.copyfile(VECTORS / f"{name}.x3p", x3p)
    shutil.copyfile(X3P_SAMPLES / "sample-land.json", tmp_path / f"{name}.json")
    t = get_adapter("x3p").translate_file(x3p)  # type: ignore[attr-defined]
    topo = t.body["topography"][0]
    assert (topo["size_x"], topo["size_y"]) == size
    assert t.warnings and all(w.startswith(f"{name}.x3p: ") for w in t.warnings)
    assert t.attachments[0].sha256 == topo["sha256"]


def test_x3p_sidecar_topography_must_describe_the_file() -> None:
    from adapters.base import AdapterError

    a = X3pAdapter()
    x3p = (X3P_SAMPLES / "mx-fgr-2026-1180-c3-breechface.x3p").read_bytes()
    t = a.translate(x3p, (X3P_SAMPLES / "mx-fgr-2026-1180-c3-breechface.json").read_bytes())
    form = json.loads(a.from_standard(t.mt, t.body, t.meta()))
    form["body"]["topography"][0]["size_x"] = 65
    with pytest.raises(
        AdapterError, match=r"sidecar body\.topography\[0\]\.size_x: 65 does not match the file \(64\)"
    ):
        a.translate(x3p, form)
    other = (VECTORS / "pyramid.x3p").read_bytes()
    form["body"]["topography"][0]["size_x"] = 64
    with pytest.raises(AdapterError, match=r"topography\[0\]\.sha256: .* is not the SHA-256 of this file"):
        a.translate(other, form)


def test_x3p_defaults_and_sidecar_merge() -> None:
    sidecar = json.loads((X3P_SAMPLES / "mx-fgr-2026-1180-c3-breechface.json").read_text())
    defaults = {k: v for k, v in sidecar.items() if k != "body"}
    defaults["body"] = {k: v for k, v in sidecar["body"].items() if k in ("calibre", "admin", "correlation")}
    a = X3pAdapter(defaults=defaults)
    own = {"body": {k: v for k, v in sidecar["body"].items() if k not in ("calibre", "admin", "correlation")}}
    x3p = (X3P_SAMPLES / "mx-fgr-2026-1180-c3-breechface.x3p").read_bytes()
    merged = a.translate(x3p, own)
    whole = X3pAdapter().translate(x3p, sidecar)
    assert (merged.body, merged.meta()) == (whole.body, whole.meta())
    # a bare file with defaults only (content type application/x-x3p)
    bare = X3pAdapter(defaults=sidecar).to_standard(x3p, "application/x-x3p")
    assert bare.body == whole.body


# Issue #15: the standards' fields each adapter's samples must show (as standard paths, lists as []).
DOMAIN_FIELDS = {
    "trace.request": ["firearm.marking_location", "firearm.essential_components[].component",
                      "firearm.essential_components[].serial_or_marking",
                      "firearm.state_stock_transfer_marking.country", "firearm.barrel_length.value",
                      "firearm.barrel_length.unit", "priority", "priority_justification", "crime_code.system",
                      "crime_code.code", "crime_code.text"],
    "trace.response": ["first_retail_purchaser.name", "selling_dealer.name", "selling_dealer.licence_no",
                       "time_to_crime_days"],
    "firearm.status.answer": ["hits[].date_of_recovery"],
    "licence.verify.answer": ["licence.exporter.name", "euc.number", "euc.end_user.name",
                              "euc.non_reexport_clause"],
    "notice": ["intelligence", "source_reliability", "information_accuracy"],
}


def _paths(obj: Any, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{prefix}.{k}" if prefix else k
            out |= {p} | _paths(v, p)
    elif isinstance(obj, list):
        for v in obj:
            out |= {f"{prefix}[]"} | _paths(v, f"{prefix}[]")
    return out


@pytest.mark.parametrize("name", NATIONAL)
def test_samples_cover_the_domain_fields(name: str) -> None:
    shown: dict[str, set[str]] = {}
    for _, path in [s for s in SAMPLES if s[0] == name]:
        t = translate(get_adapter(name), path.read_bytes())
        shown.setdefault(t.mt, set()).update(_paths(t.body))
    for mt, fields in DOMAIN_FIELDS.items():
        missing = [f for f in fields if f not in shown.get(mt, set())]
        assert not missing, f"{name} samples of {mt} lack {missing}"
