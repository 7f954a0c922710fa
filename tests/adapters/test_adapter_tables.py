"""The national row tables hold every member of the standard bodies, unambiguously, as documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec.inspect as mi
import pytest

from adapters._engine import Pattern, parse_path
from adapters.doc import NATIONAL, markdown
from gateway.core.messages import MESSAGE_TYPES

ROOT = Path(__file__).resolve().parents[2]


def leaf_patterns(t: Any, prefix: Pattern = ()) -> set[Pattern]:
    """Every scalar position of a msgspec type: ("firearm", "make_codes", None, "system") ..."""
    if isinstance(t, mi.Metadata):
        return leaf_patterns(t.type, prefix)
    if isinstance(t, mi.UnionType):
        out: set[Pattern] = set()
        for x in t.types:
            if not isinstance(x, mi.NoneType):
                out |= leaf_patterns(x, prefix)
        return out
    if isinstance(t, mi.StructType):
        out = set()
        for f in t.fields:
            out |= leaf_patterns(f.type, (*prefix, f.encode_name))
        return out
    if isinstance(t, mi.ListType):
        return leaf_patterns(t.item_type, (*prefix, None))
    return {prefix}


@pytest.mark.parametrize("name", list(NATIONAL))
def test_native_tables_cover_every_standard_member(name):
    a = NATIONAL[name]
    for mt in a.native_types():
        expected = leaf_patterns(mi.type_info(MESSAGE_TYPES[mt]))
        got = {parse_path(r.std) for r in a.body_rows[mt]}
        assert got == expected, (mt, sorted(map(str, expected ^ got)))


@pytest.mark.parametrize("name", list(NATIONAL))
def test_every_message_type_is_native_or_wrapped(name):
    a = NATIONAL[name]
    assert set(a.native_types()) | set(a.wrapped_types()) == set(MESSAGE_TYPES)
    assert len(set(a.mt_words.values())) == len(a.mt_words)
    assert not set(a.mt_words.values()) & set(MESSAGE_TYPES)


@pytest.mark.parametrize("name", list(NATIONAL))
def test_every_national_name_reads_back_to_its_own_row(name):
    """A CSV column name parses back to the row and list positions it was written for (so no two rows
    can write the same column); tree paths are checked by the table's trie at construction."""
    a = NATIONAL[name]
    for mt in MESSAGE_TYPES:
        table = a.table(mt)
        if not table.flat:
            continue
        for f in table.fields:
            n = f.std.count(None)
            for idx in ([0] * n, [1] * n, list(range(2, 2 + n)), list(range(11, 11 + n))):
                shown = table.show_nat(f, idx)
                assert table.column(shown) == (f, idx), (mt, shown)


@pytest.mark.parametrize("name", list(NATIONAL))
def test_docs_carry_the_generated_field_tables(name):
    docs = (ROOT / "docs" / "adapters.md").read_text(encoding="utf-8")
    assert markdown(NATIONAL[name]) in docs, (
        f"docs/adapters.md is stale: paste `python -m adapters.doc {name}`"
    )
