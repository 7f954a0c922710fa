"""Field tables of the national formats, in Markdown, generated from the adapters' own row tables.

``python -m adapters.doc`` prints them; docs/adapters.md carries the same text (a test keeps the two
equal), so the documentation cannot drift from the code.
"""

from __future__ import annotations

import sys

from adapters._engine import Row
from adapters._national import NationalAdapter
from adapters._rows import FIREARM
from adapters.de import DeAdapter
from adapters.es import EsAdapter
from adapters.it import ItAdapter
from adapters.mx import MxAdapter

HEADER_LABELS = {
    "#version": "format version (`1`)",
    "#type": "message type (words below)",
    "#body": "the standard body as JSON (wrapped types)",
}


def _kind(a: NationalAdapter, kind: str) -> str:
    s = a.syntax
    if kind == "date":
        return f"date `{s.date_pattern()}`"
    if kind == "datetime":
        return f"date-time `{s.datetime_pattern()}`"
    if kind == "bool":
        return "`true`/`false` (JSON)" if s.typed else f"`{s.bools[0]}`/`{s.bools[1]}`"
    if kind == "number":
        return "number" if s.typed or s.decimal == "." else f"number, decimal `{s.decimal}`"
    if kind == "int":
        return "integer"
    if kind == "gun_type":
        return "NCIC type (words above)"
    if kind == "gun_detail":
        return "NCIC type detail (words above)"
    if kind == "json":
        return "JSON object" if s.typed else "JSON text"
    return "text"


def _std(std: str) -> str:
    if std.startswith("@"):
        return f"envelope `{std[1:]}`"
    if std in HEADER_LABELS:
        return HEADER_LABELS[std]
    return f"`{std}`"


def _nat_prefix(nat: str, member: str) -> str:
    assert nat.endswith(member), (nat, member)
    return nat[: len(nat) - len(member)]


def _firearm_group(a: NationalAdapter, rows: list[Row], i: int) -> tuple[str, str] | None:
    """``(standard prefix, national prefix)`` when rows[i:] start a Firearm object."""
    first = FIREARM[0][0]
    if not rows[i].std.endswith(first) or i + len(FIREARM) > len(rows):
        return None
    std_prefix = rows[i].std[: -len(first)]
    for (member, _), r in zip(FIREARM, rows[i : i + len(FIREARM)], strict=True):
        if r.std != std_prefix + member:
            return None
    return std_prefix, _nat_prefix(rows[i].nat, a.firearm_names[first])


def markdown(a: NationalAdapter) -> str:
    lines = [f"<!-- generated: python -m adapters.doc {a.name} -->", ""]
    lines += ["| national field | standard | value |", "|---|---|---|"]
    for r in [*a.header_rows, a.body_row]:
        lines.append(f"| `{r.nat}` | {_std(r.std)} | {_kind(a, r.kind)} |")
    lines += ["", "Message types:", "", "| standard | national |", "|---|---|"]
    for mt in a.native_types():
        lines.append(f"| `{mt}` | `{a.mt_words[mt]}` |")
    for mt in a.wrapped_types():
        lines.append(f"| `{mt}` | `{mt}` (wrapped: body in `{a.body_row.nat}`) |")
    enums = a.syntax.enums or {}
    for kind, label in (
        ("gun_type", "NCIC gun type (`type`)"),
        ("gun_detail", "NCIC type detail (`type_detail`)"),
    ):
        words = enums.get(kind, {})
        lines += [
            "",
            f"{label}: "
            + ", ".join(f"`{code}` = `{w}`" for code, w in words.items())
            + "; any other code as its letter.",
        ]
    firearm_rows = a.body_rows["firearm.status.answer"]
    start = next(i for i, r in enumerate(firearm_rows) if r.std.endswith("." + FIREARM[0][0]))
    fprefix_std = firearm_rows[start].std[: -len(FIREARM[0][0])]
    fprefix_nat = _nat_prefix(firearm_rows[start].nat, a.firearm_names[FIREARM[0][0]])
    lines += ["", "Firearm object (SPEC §5), written below a prefix given in each table:", ""]
    lines += ["| national field | standard | value |", "|---|---|---|"]
    for r in firearm_rows[start : start + len(FIREARM)]:
        lines.append(
            f"| `{r.nat[len(fprefix_nat) :]}` | `{r.std[len(fprefix_std) :]}` | {_kind(a, r.kind)} |"
        )
    for mt in a.native_types():
        lines += [
            "",
            f"`{mt}` (`{a.mt_words[mt]}`):",
            "",
            "| national field | standard | value |",
            "|---|---|---|",
        ]
        rows = a.body_rows[mt]
        i = 0
        while i < len(rows):
            r = rows[i]
            group = _firearm_group(a, rows, i)
            if group is not None:
                std_prefix, nat_prefix = group
                nat = f"`{nat_prefix}` + Firearm field" if nat_prefix else "Firearm fields (no prefix)"
                lines.append(f"| {nat} | `{std_prefix}*` | Firearm object (table above) |")
                i += len(FIREARM)
                continue
            lines.append(f"| `{r.nat}` | `{r.std}` | {_kind(a, r.kind)} |")
            i += 1
    lines += ["", f"<!-- end generated {a.name} -->"]
    return "\n".join(lines)


NATIONAL: dict[str, NationalAdapter] = {
    a.name: a for a in (MxAdapter(), EsAdapter(), DeAdapter(), ItAdapter())
}


def main(argv: list[str]) -> int:
    names = argv or list(NATIONAL)
    for n in names:
        print(markdown(NATIONAL[n]))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
