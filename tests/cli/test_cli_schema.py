"""`traza schema export DIR` and `traza schema check TYPE FILE` (SPEC §10)."""

from __future__ import annotations

import json

import pytest
from core.message_examples import EXAMPLES, example, set_path

from gateway.cli.main import main
from gateway.core.messages import MESSAGE_TYPES, json_schemas


def test_export_writes_one_schema_per_type(tmp_path, capsys):
    out = tmp_path / "schemas" / "v1"  # parents are created
    assert main(["schema", "export", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(f"{mt}.schema.json" for mt in MESSAGE_TYPES)
    expected = json_schemas()
    for mt in MESSAGE_TYPES:
        path = out / f"{mt}.schema.json"
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert schema == expected[mt]
        assert schema["$schema"].startswith("https://json-schema.org/")
        assert schema["$id"].endswith(f":{mt}:v1")
        assert schema["type"] == "object"
        assert isinstance(schema["properties"], dict) and schema["properties"]
        assert isinstance(schema["required"], list) and schema["required"]
        assert schema["additionalProperties"] is False
    printed = capsys.readouterr().out
    for mt in MESSAGE_TYPES:
        assert f"{mt}.schema.json" in printed
    assert "12 message types" in printed


def test_export_replaces_existing_files(tmp_path):
    (tmp_path / "notice.schema.json").write_text("stale")
    (tmp_path / "README").write_text("kept")
    assert main(["schema", "export", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "notice.schema.json").read_text())["x-traza-mt"] == "notice"
    assert (tmp_path / "README").read_text() == "kept"
    assert not list(tmp_path.glob("*.tmp"))


def test_export_into_a_file_is_bad_usage(tmp_path, capsys):
    target = tmp_path / "not-a-dir"
    target.write_text("x")
    assert main(["schema", "export", str(target)]) == 2
    err = capsys.readouterr().err
    assert str(target) in err and "not a directory" in err
    assert target.read_text() == "x"


def test_export_needs_a_directory_argument(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["schema", "export"])
    assert ei.value.code == 2
    assert "DIR" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["schema", "--help"], ["schema", "export", "--help"], ["schema", "check", "--help"]]
)
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as ei:
        main(argv)
    assert ei.value.code == 0
    assert "usage: traza schema" in capsys.readouterr().out


def test_schema_without_verb_is_bad_usage(capsys):
    assert main(["schema"]) == 2
    assert "export" in capsys.readouterr().err


def test_check_valid_body(tmp_path, capsys):
    f = tmp_path / "request.json"
    f.write_text(json.dumps(EXAMPLES["trace.request"]), encoding="utf-8")
    assert main(["schema", "check", "trace.request", str(f)]) == 0
    assert "valid trace.request" in capsys.readouterr().out


def test_check_invalid_body_names_the_path(tmp_path, capsys):
    f = tmp_path / "answer.json"
    f.write_text(json.dumps(set_path(example("firearm.status.answer"), "hits[0].record_status", "WANTED")))
    assert main(["schema", "check", "firearm.status.answer", str(f)]) == 1
    err = capsys.readouterr().err
    assert "schema_invalid" in err and "`$.hits[0].record_status`" in err and str(f) in err


def test_check_unknown_type_or_missing_file(tmp_path, capsys):
    f = tmp_path / "x.json"
    f.write_text("{}")
    assert main(["schema", "check", "trace.request.v2", str(f)]) == 2
    assert "unknown message type" in capsys.readouterr().err
    assert main(["schema", "check", "notice", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err


def test_check_json_reports_the_result(tmp_path, capsys):
    f = tmp_path / "request.json"
    f.write_text(json.dumps(EXAMPLES["trace.request"]), encoding="utf-8")
    assert main(["schema", "check", "--json", "trace.request", str(f)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {"file": str(f), "type": "trace.request", "valid": True, "schema_version": doc["schema_version"]}
    bad = tmp_path / "answer.json"
    bad.write_text(json.dumps(set_path(example("firearm.status.answer"), "hits[0].record_status", "WANTED")))
    assert main(["schema", "check", "firearm.status.answer", str(bad), "--json"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "`$.hits[0].record_status`" in err  # a failed check: one line on stderr, exit 1
