"""`traza adapter check NAME FILE [--reverse] [--type MT]` (SPEC §10) for every adapter and sample."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from adapters import get_adapter
from gateway.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT.parent / "shared" / "vectors" / "x3p"
NATIONAL = ["mx", "es", "de", "it", "standard"]
SAMPLES = [(n, p) for n in NATIONAL for p in sorted((ROOT / "adapters" / n / "samples").iterdir())]
X3P_SAMPLE = ROOT / "adapters" / "x3p" / "samples" / "mx-fgr-2026-1180-c3-breechface.x3p"


@pytest.mark.parametrize(("name", "path"), SAMPLES, ids=[f"{n}/{p.name}" for n, p in SAMPLES])
def test_check_prints_the_standard_message_and_reverse_gives_the_national_form(name, path, capsys, tmp_path):
    assert main(["adapter", "check", name, str(path)]) == 0
    out, err = capsys.readouterr()
    printed = json.loads(out)
    a = get_adapter(name)
    t = a.to_standard(path.read_bytes(), a.content_types[0])
    assert printed == t.standard_form()
    assert err == ""  # samples carry every envelope field: no warnings
    std = tmp_path / "standard.json"
    std.write_text(out, encoding="utf-8")
    assert main(["adapter", "check", name, str(std), "--reverse", "--type", t.mt]) == 0
    national, _ = capsys.readouterr()
    back = a.to_standard(national.encode(), a.content_types[0])
    assert back.standard_form() == t.standard_form()


def test_check_x3p_with_the_sidecar_beside_the_file(capsys):
    assert main(["adapter", "check", "x3p", str(X3P_SAMPLE)]) == 0
    out, err = capsys.readouterr()
    msg = json.loads(out)
    assert msg["type"] == "ballistic.submission"
    assert msg["body"]["topography"][0]["region"] == "BreechFace"
    assert "attachment: mx-fgr-2026-1180-c3-breechface.x3p (application/x-x3p" in err


@pytest.mark.parametrize("vector", ["sample-land", "csafe-logo", "pyramid", "testing"])
def test_check_x3p_vectors_prints_warnings_and_succeeds(vector, capsys):
    sidecar = ROOT / "adapters" / "x3p" / "samples" / "sample-land.json"
    assert main(["adapter", "check", "x3p", str(VECTORS / f"{vector}.x3p"), "--sidecar", str(sidecar)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["body"]["topography"][0]["region"] == "LEA"
    assert f"warning: {vector}.x3p: " in err


def test_check_x3p_without_a_sidecar_fails_naming_it(tmp_path, capsys):
    bare = tmp_path / "case.x3p"
    shutil.copyfile(X3P_SAMPLE, bare)
    assert main(["adapter", "check", "x3p", str(bare)]) == 1
    assert "sidecar case.json: missing: a bare X3P file needs" in capsys.readouterr().err


def test_check_x3p_unreadable_file_fails(tmp_path, capsys):
    bad = tmp_path / "bad.x3p"
    bad.write_bytes(b"PK not really")
    assert main(["adapter", "check", "x3p", str(bad), "--sidecar", str(X3P_SAMPLE.with_suffix(".json"))]) == 1
    assert "(archive): not a zip archive" in capsys.readouterr().err


def test_check_fails_naming_the_national_field(tmp_path, capsys):
    doc = json.loads((ROOT / "adapters/mx/samples/firearm.status.query.json").read_text())
    del doc["numero_serie"]
    bad = tmp_path / "consulta.json"
    bad.write_text(json.dumps(doc))
    assert main(["adapter", "check", "mx", str(bad)]) == 1
    assert (
        capsys.readouterr().err.strip() == f"traza: {bad}: numero_serie: missing (standard $.serial_number)"
    )
    csv = (
        (ROOT / "adapters/de/samples/firearm.status.query.csv")
        .read_text()
        .replace(";FAK", ";")
        .replace(";386298124;", ";;")
    )
    bad_de = tmp_path / "abfrage.csv"
    bad_de.write_text(csv)
    assert main(["adapter", "check", "de", str(bad_de)]) == 1
    assert "Seriennummer: empty" in capsys.readouterr().err


def test_check_type_mismatch_fails(capsys):
    assert (
        main(["adapter", "check", "mx", str(ROOT / "adapters/mx/samples/notice.json"), "--type", "receipt"])
        == 1
    )
    assert "type: the file holds a notice, not a receipt" in capsys.readouterr().err


def test_reverse_takes_a_bare_body_with_type(tmp_path, capsys):
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"title": "Prueba", "text": "Mensaje de prueba"}))
    assert main(["adapter", "check", "es", str(body), "--reverse", "--type", "notice"]) == 0
    xml = capsys.readouterr().out
    assert "<TipoMensaje>Aviso</TipoMensaje>" in xml and "<Titulo>Prueba</Titulo>" in xml
    assert main(["adapter", "check", "es", str(body), "--reverse"]) == 1  # no type: not a standard message
    assert "type: missing" in capsys.readouterr().err


def test_warnings_go_to_stderr(tmp_path, capsys):
    f = tmp_path / "aviso.json"
    f.write_text(json.dumps({"tipo_mensaje": "aviso", "titulo": "t", "texto": "x"}))
    assert main(["adapter", "check", "mx", str(f)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"type": "notice", "body": {"title": "t", "text": "x"}}
    assert "warning: destino: not given" in err


def test_unknown_adapter_is_bad_usage_listing_the_known_ones(capsys):
    assert main(["adapter", "check", "fr", "x.csv"]) == 2
    assert "unknown adapter 'fr' (known: de, es, it, mx, standard, x3p)" in capsys.readouterr().err


def test_unreadable_file_and_unknown_type_are_bad_usage(tmp_path, capsys):
    assert main(["adapter", "check", "mx", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["adapter", "check", "mx", str(tmp_path), "--type", "trace.requests"]) == 2


def test_list(capsys):
    assert main(["adapter", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["mx", "es", "de", "it", "standard", "x3p"]


def test_the_installed_command_runs():
    """The `traza` entry point, as an integrator runs it."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli.main",
            "adapter",
            "check",
            "it",
            str(ROOT / "adapters/it/samples/trace.response.csv"),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["type"] == "trace.response"
    r = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "adapter", "check", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0 and "--reverse" in r.stdout


def traza(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli.main", *args], capture_output=True, text=True,
                          check=False, cwd=ROOT, timeout=120)


def test_check_of_deeply_nested_xml_exits_1_naming_file_path_and_limit_not_a_traceback(tmp_path):
    """5000 nested elements: `traza adapter check es` printed a RecursionError traceback."""
    xml = (ROOT / "adapters/es/samples/notice.xml").read_text(encoding="utf-8")
    f = tmp_path / "deep.xml"
    f.write_text(xml.replace("<Cuerpo>", "<Cuerpo>" + "<A>" * 5000 + "x" + "</A>" * 5000, 1), encoding="utf-8")
    r = traza("adapter", "check", "es", str(f))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith(f"traza: {f}: Cuerpo/A/A/.../A: nested deeper than 32 elements"), r.stderr
