"""A validator anchored with ``$`` also accepts the same text followed by one newline (``$`` matches
before a final ``\\n``): a blob name ending in ``%0A`` passed ``^[A-Za-z0-9_-]{43}$`` and named a file with
a newline in it; a message id, a key id or a node name would pass the same way. Every full-match
validator in ``gateway/`` ends with ``\\Z``; this test finds any that does not (the class of the defect,
not only the blob name)."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.core.ids import UUID_RE
from gateway.core.manifest import KID

ROOT = Path(__file__).resolve().parents[2] / "gateway"
# a regular expression literal that starts with ^ and ends with $ (re.compile or re.match / fullmatch)
ANCHORED_WITH_DOLLAR = re.compile(r"""re\.(?:compile|match|fullmatch)\(r?["']\^[^"']*\$["']""")


def test_no_validator_in_the_gateway_is_anchored_with_dollar():
    found = [f"{p.relative_to(ROOT.parent)}:{i}: {line.strip()}"
             for p in sorted(ROOT.rglob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if ANCHORED_WITH_DOLLAR.search(line)]
    assert not found, "anchor full-match validators with \\Z, not $:\n" + "\n".join(found)


def test_a_trailing_newline_is_refused_by_the_id_validators():
    assert UUID_RE.match("01a24f37-804c-77d1-81bb-a40f52cbf745")
    assert not UUID_RE.match("01a24f37-804c-77d1-81bb-a40f52cbf745\n")
    assert KID.match("es/sig/1") and not KID.match("es/sig/1\n")
