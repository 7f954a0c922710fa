"""The example bodies of docs/messages.md ("Examples") cannot go stale: one file per message type in
docs/examples/, each the body of the standard adapter's sample for that type, valid for its type as a
recipient node decodes it, linked from docs/messages.md; a body shown inline there is that file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.core.messages import MESSAGE_TYPES, validate_body

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
DOC = ROOT / "docs" / "messages.md"


@pytest.mark.parametrize("mt", MESSAGE_TYPES)
def test_every_message_type_has_a_valid_example_body_taken_from_the_adapters_sample(mt):
    path = EXAMPLES / f"{mt}.json"
    assert path.is_file(), f"{path} is missing"
    body = json.loads(path.read_text(encoding="utf-8"))
    validate_body(mt, body)  # raises naming the field at fault
    sample = json.loads((ROOT / "adapters" / "standard" / "samples" / f"{mt}.json").read_text(encoding="utf-8"))
    assert sample["type"] == mt and body == sample["body"], f"{path} differs from the standard adapter's sample"
    assert f"(examples/{mt}.json)" in DOC.read_text(encoding="utf-8"), f"docs/messages.md does not link {path.name}"


def test_no_example_file_without_its_message_type():
    assert sorted(p.name for p in EXAMPLES.iterdir()) == sorted(f"{mt}.json" for mt in MESSAGE_TYPES)


def test_bodies_shown_in_messages_md_are_the_example_files():
    text = DOC.read_text(encoding="utf-8")
    shown = re.findall(r"<!-- example: (\S+) -->\n```json\n(.*?)\n```", text, re.S)
    assert shown, "docs/messages.md shows no example body inline"
    for name, block in shown:
        assert json.loads(block) == json.loads((ROOT / "docs" / name).read_text(encoding="utf-8")), name
