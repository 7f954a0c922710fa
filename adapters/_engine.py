"""Table-driven translation between standard bodies and national formats (JSON, XML, CSV).

Each national format is a list of rows ``(standard path, national path, kind)``:

- the standard path names a body member (``firearm.make_codes[].system``; ``[]`` marks a list), an
  envelope field (``@to``, ``@handling`` ... ``@id``, ``@from``) or a format field (``#version``,
  ``#type``, ``#body`` - the JSON body of a generic wrapper);
- the national path names the national field: a tree path for JSON (``arma.claves_marca[].sistema``)
  or XML (``Cuerpo/Arma/CodigosMarca/CodigoMarca[]/Sistema``), or a column template for CSV
  (``Herstellercode{}_System``, list positions numbered from 1);
- the kind says how values are written: ``text``, ``date``, ``datetime``, ``int``, ``number``, ``bool``,
  ``json`` or an enumeration of the format (``gun_type`` ...).

List positions map in order, so every row has as many ``[]`` (or ``{}``) on both sides. Reading checks
every national field against the table (an unknown field is an error, never silently dropped);
writing refuses a standard member the format has no field for. Both directions are exact: a value is
never trimmed, rounded or re-cased.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from adapters.base import AdapterError
from gateway.core.forms import strictjson

Pattern = tuple[str | None, ...]
Path = tuple[str | int, ...]

KINDS = ("text", "date", "datetime", "int", "number", "bool", "json")


@dataclass(frozen=True)
class Row:
    std: str
    nat: str
    kind: str


def parse_path(path: str, sep: str = ".") -> Pattern:
    """``"a.b[].c"`` -> ``("a", "b", None, "c")``."""
    out: list[str | None] = []
    for seg in path.split(sep):
        if seg.endswith("[]"):
            out.extend((seg[:-2], None))
        else:
            out.append(seg)
    return tuple(out)


def pattern_of(path: Path) -> Pattern:
    return tuple(None if isinstance(p, int) else p for p in path)


def indices_of(path: Path) -> list[int]:
    return [p for p in path if isinstance(p, int)]


def fill(pattern: Pattern, idx: Iterable[int]) -> Path:
    it = iter(idx)
    return tuple(next(it) if p is None else p for p in pattern)


_JSON_PATH = re.compile(r'\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]')


def parse_json_path(text: str) -> Path:
    """``"$.hits[0].firearm.type"`` -> ``("hits", 0, "firearm", "type")``."""
    s = text[1:] if text.startswith("$") else text
    out: list[str | int] = []
    pos = 0
    while pos < len(s):
        m = _JSON_PATH.match(s, pos)
        if m is None:
            break
        if m.group(1) is not None:
            out.append(m.group(1))
        elif m.group(2) is not None:
            out.append(int(m.group(2)))
        else:
            out.append(json.loads(f'"{m.group(3)}"'))
        pos = m.end()
    return tuple(out)


def std_display(path: Path) -> str:
    out = "$"
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


# --- standard body <-> leaves -------------------------------------------------------------------------


def std_leaves(body: Mapping[str, Any], prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Scalar leaves of a JSON-ready body. Empty lists and objects carry no data and give no leaves."""
    for key, value in body.items():
        yield from _leaves(value, (*prefix, key))


def _leaves(value: Any, path: Path) -> Iterator[tuple[Path, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    elif value is not None:
        yield path, value


def prune(value: Any) -> Any:
    """Drop empty lists and objects (bottom-up): the national formats do not write them."""
    if isinstance(value, dict):
        out = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v != [] and v != {}}
    if isinstance(value, list):
        items = [prune(v) for v in value]
        return [v for v in items if v != [] and v != {}]
    return value


class Gap(Exception):
    """A list has a missing position (numbered CSV columns that skip a number)."""

    def __init__(self, path: Path) -> None:
        super().__init__(std_display(path))
        self.path = path


def unflatten(leaves: Iterable[tuple[Path, Any]]) -> dict[str, Any]:
    root: dict[Any, Any] = {}
    for path, value in leaves:
        node = root
        for step in path[:-1]:
            node = node.setdefault(step, {})
        node[path[-1]] = value
    out = _listify(root, ())
    assert isinstance(out, dict)
    return out


def _listify(node: Any, path: Path) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(isinstance(k, int) for k in node):
        n = max(node) + 1
        for i in range(n):
            if i not in node:
                raise Gap((*path, i))
        return [_listify(node[i], (*path, i)) for i in range(n)]
    return {k: _listify(v, (*path, k)) for k, v in node.items()}


# --- value syntax ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Syntax:
    """How one national format writes values.

    ``typed``: JSON (strings, numbers and booleans are JSON values) rather than text (XML, CSV).
    ``date``: ``"dmy/"`` (``DD/MM/YYYY``), ``"dmy."`` (``DD.MM.YYYY``) or ``"iso"`` (``YYYY-MM-DD``).
    Date-times follow the date: ``DD/MM/YYYY HH:MM:SS[.ffffff]+HH:MM`` (or RFC 3339 for ``iso``).
    ``bools``: the words for true and false in a text format. ``decimal``: the decimal separator.
    ``enums``: kind -> (code -> national word); codes without a word are written as the code.
    ``codes``: kind -> every valid code of that enumeration.
    """

    typed: bool
    date: str
    bools: tuple[str, str] = ("true", "false")
    decimal: str = "."
    enums: Mapping[str, Mapping[str, str]] | None = None
    codes: Mapping[str, tuple[str, ...]] | None = None

    # -- dates --

    def date_to_nat(self, value: str) -> str:
        d = dt.date.fromisoformat(value)
        if self.date == "iso":
            return d.isoformat()
        sep = self.date[-1]
        return f"{d.day:02d}{sep}{d.month:02d}{sep}{d.year:04d}"

    def date_pattern(self) -> str:
        return "YYYY-MM-DD" if self.date == "iso" else f"DD{self.date[-1]}MM{self.date[-1]}YYYY"

    def date_to_std(self, raw: str, where: str) -> str:
        if self.date == "iso":
            m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", raw)
            parts = (m.group(1), m.group(2), m.group(3)) if m else None
        else:
            sep = re.escape(self.date[-1])
            m = re.fullmatch(rf"(\d{{2}}){sep}(\d{{2}}){sep}(\d{{4}})", raw)
            parts = (m.group(3), m.group(2), m.group(1)) if m else None
        if parts is None:
            raise AdapterError(where, f"{raw!r} is not a date {self.date_pattern()}")
        try:
            return dt.date(int(parts[0]), int(parts[1]), int(parts[2])).isoformat()
        except ValueError as exc:
            raise AdapterError(where, f"{raw!r} is not a valid date ({exc})") from None

    def datetime_pattern(self) -> str:
        if self.date == "iso":
            return "YYYY-MM-DDTHH:MM:SS[.ffffff]+HH:MM (RFC 3339)"
        return f"{self.date_pattern()} HH:MM:SS[.ffffff]+HH:MM"

    def datetime_to_nat(self, value: str) -> str:
        d = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if self.date == "iso":
            return value
        off = d.utcoffset()
        assert off is not None
        total = int(off.total_seconds())
        sign = "-" if total < 0 else "+"
        total = abs(total)
        frac = f".{d.microsecond:06d}" if d.microsecond else ""
        return f"{self.date_to_nat(d.date().isoformat())} {d:%H:%M:%S}{frac}{sign}{total // 3600:02d}:{total % 3600 // 60:02d}"

    def datetime_to_std(self, raw: str, where: str) -> str:
        if self.date == "iso":
            try:
                d = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                d = None
            if d is None or d.tzinfo is None or "T" not in raw:
                raise AdapterError(where, f"{raw!r} is not a date-time {self.datetime_pattern()}")
            return raw
        m = re.fullmatch(r"(\S+) (\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?([+-])(\d{2}):(\d{2})", raw)
        if m is None:
            raise AdapterError(where, f"{raw!r} is not a date-time {self.datetime_pattern()}")
        day = self.date_to_std(m.group(1), where)
        frac = (m.group(5) or "")[1:].ljust(6, "0") if m.group(5) else ""
        try:
            d = dt.datetime.fromisoformat(
                f"{day}T{m.group(2)}:{m.group(3)}:{m.group(4)}{'.' + frac if frac else ''}{m.group(6)}{m.group(7)}:{m.group(8)}"
            )
        except ValueError as exc:
            raise AdapterError(where, f"{raw!r} is not a valid date-time ({exc})") from None
        return d.isoformat()

    # -- all kinds --

    def to_nat(self, kind: str, value: Any) -> Any:
        if kind == "text":
            return value
        if kind == "date":
            return self.date_to_nat(value)
        if kind == "datetime":
            return self.datetime_to_nat(value)
        if kind == "int":
            return value if self.typed else str(value)
        if kind == "number":
            if self.typed:
                return value
            text = repr(value) if isinstance(value, float) else str(value)
            return text.replace(".", self.decimal)
        if kind == "bool":
            return value if self.typed else self.bools[0 if value else 1]
        if kind == "json":
            return value if self.typed else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        words = (self.enums or {}).get(kind, {})
        return words.get(value, value)

    def to_std(self, kind: str, raw: Any, where: str) -> Any:
        if kind == "json":
            if self.typed:
                return raw
            try:
                return strictjson.loads(raw, where)
            except strictjson.StrictJSONError as exc:
                raise AdapterError(where, exc.reason) from None
        if self.typed:
            if kind == "int":
                if isinstance(raw, bool) or not isinstance(raw, int):
                    raise AdapterError(
                        where, f"expected an integer, got {json.dumps(raw, ensure_ascii=False)}"
                    )
                return raw
            if kind == "number":
                if isinstance(raw, bool) or not isinstance(raw, int | float):
                    raise AdapterError(where, f"expected a number, got {json.dumps(raw, ensure_ascii=False)}")
                return raw
            if kind == "bool":
                if not isinstance(raw, bool):
                    raise AdapterError(
                        where, f"expected true or false, got {json.dumps(raw, ensure_ascii=False)}"
                    )
                return raw
            if not isinstance(raw, str):
                raise AdapterError(where, f"expected a string, got {json.dumps(raw, ensure_ascii=False)}")
        if raw == "":
            raise AdapterError(where, "empty")
        if kind == "text":
            return raw
        if kind == "date":
            return self.date_to_std(raw, where)
        if kind == "datetime":
            return self.datetime_to_std(raw, where)
        if kind == "int":
            if not re.fullmatch(r"-?[0-9]+", raw):
                raise AdapterError(where, f"{raw!r} is not an integer")
            return _in_json_range(raw, where)
        if kind == "number":
            d = re.escape(self.decimal)
            if not re.fullmatch(rf"-?[0-9]+(?:{d}[0-9]+)?(?:[eE][+-]?[0-9]+)?", raw):
                raise AdapterError(where, f"{raw!r} is not a number (decimal separator {self.decimal!r})")
            if self.decimal in raw or "e" in raw or "E" in raw:
                value = float(raw.replace(self.decimal, "."))
                if not math.isfinite(value):
                    raise AdapterError(where, f"{raw!r} is not a finite number")
                return value
            return _in_json_range(raw, where)
        if kind == "bool":
            low = raw.lower()
            if low == self.bools[0]:
                return True
            if low == self.bools[1]:
                return False
            raise AdapterError(where, f"{raw!r} is neither {self.bools[0]!r} nor {self.bools[1]!r}")
        words = (self.enums or {}).get(kind, {})
        for code, word in words.items():
            if raw == word:
                return code
        codes = (self.codes or {}).get(kind, ())
        if raw in codes:
            return raw
        listed = ", ".join(words.values())
        others = [c for c in codes if c not in words]
        raise AdapterError(
            where,
            f"{raw!r} is not one of: {listed}" + (f" (or a code: {', '.join(others)})" if others else ""),
        )



def _in_json_range(digits: str, where: str) -> int:
    """An integer written in a text format, refused here, naming its field, when strict JSON (SPEC §3.4)
    could not carry it: outside ±2^53 (the standard body's check would only say ``at $``)."""
    if len(digits.lstrip("-").lstrip("0")) > len(str(strictjson.MAX_INT)):
        raise AdapterError(where, f"integer {digits} is outside ±2^53")  # before int(): no digit-limit error
    value = int(digits)
    if abs(value) > strictjson.MAX_INT:
        raise AdapterError(where, f"integer {digits} is outside ±2^53")
    return value

# --- tables ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    order: int
    std: Pattern
    nat: Pattern  # tree formats; for flat formats the template split at "{}"
    template: str
    kind: str


class _Trie:
    __slots__ = ("children", "field")

    def __init__(self) -> None:
        self.children: dict[str | None, _Trie] = {}
        self.field: Field | None = None


class Table:
    """The rows of one message type (plus envelope and format rows) of one national format."""

    def __init__(self, rows: Iterable[Row], *, flat: bool, sep: str = ".") -> None:
        self.flat = flat
        self.sep = sep
        self.fields: list[Field] = []
        self.by_std: dict[Pattern, Field] = {}
        self.trie = _Trie()
        self.by_column: dict[str, Field] = {}
        self.regexes: list[tuple[re.Pattern[str], Field]] = []
        # standard list prefix -> order of its first row (to keep the members of one item together)
        self.first_order: dict[Pattern, int] = {}
        for i, r in enumerate(rows):
            std = parse_path(r.std)
            if flat:
                nat: Pattern = tuple(r.nat.split("{}"))
                n_nat = len(nat) - 1
            else:
                nat = parse_path(r.nat, sep)
                n_nat = nat.count(None)
            if std.count(None) != n_nat:
                raise ValueError(
                    f"row {r}: {std.count(None)} list positions in the standard path, {n_nat} in the national one"
                )
            if std in self.by_std:
                raise ValueError(f"row {r}: standard path given twice")
            f = Field(i, std, nat, r.nat, r.kind)
            self.fields.append(f)
            self.by_std[std] = f
            for k, seg in enumerate(std):
                if seg is None:
                    self.first_order.setdefault(std[:k], i)
            if flat:
                if n_nat == 0:
                    if r.nat in self.by_column:
                        raise ValueError(f"row {r}: national column given twice")
                    self.by_column[r.nat] = f
                else:
                    rx = re.compile("([1-9][0-9]*)".join(re.escape(p or "") for p in nat))
                    self.regexes.append((rx, f))
            else:
                node = self.trie
                for seg in nat:
                    node = node.children.setdefault(seg, _Trie())
                if node.field is not None or node.children:
                    raise ValueError(f"row {r}: national path clashes with another row")
                node.field = f

    # -- names --

    def show_nat(self, f: Field, idx: list[int] | None) -> str:
        """The national name of ``f`` at list positions ``idx`` (``None``: positions unknown)."""
        if self.flat:
            parts = [p or "" for p in f.nat]
            nums = [str(i + 1) for i in (idx or [])]
            nums += ["1"] * (len(parts) - 1 - len(nums))
            out = parts[0]
            for n, part in zip(nums, parts[1:], strict=True):
                out += n + part
            return out
        return show_tree(f.nat, idx or [], self.sep, truncate=idx is None or len(idx) < f.nat.count(None))

    def nat_name_for_std(self, path: Path) -> str | None:
        """National name of the field at a standard path (or of the first field below it)."""
        pat = pattern_of(path)
        idx = indices_of(path)
        f = self.by_std.get(pat)
        if f is not None:
            return self.show_nat(f, idx)
        below = [f for f in self.fields if f.std[: len(pat)] == pat]
        if not below:
            return None
        if not self.flat:
            common: list[str | None] = []
            for segs in zip(*(f.nat for f in below), strict=False):
                if any(s != segs[0] for s in segs):
                    break
                common.append(segs[0])
            while common and common[-1] is None:
                common.pop()
            if common:
                return show_tree(tuple(common), idx, self.sep, truncate=True)
        return self.show_nat(below[0], idx)

    def field_for_std(self, path: Path) -> Field | None:
        return self.by_std.get(pattern_of(path))

    # -- flat columns --

    def column(self, name: str) -> tuple[Field, list[int]] | None:
        f = self.by_column.get(name)
        if f is not None:
            return f, []
        for rx, f in self.regexes:
            m = rx.fullmatch(name)
            if m:
                return f, [int(g) - 1 for g in m.groups()]
        return None

    # -- tree walking --

    def tree_leaves(self, doc: Any, show: Any) -> Iterator[tuple[Field, Path, Any]]:
        """Leaves of a national tree (dicts, lists, scalars) checked against the table."""
        yield from self._walk(doc, self.trie, (), show)

    def _walk(self, value: Any, node: _Trie, path: Path, show: Any) -> Iterator[tuple[Field, Path, Any]]:
        if value is None:
            return
        if node.field is not None:
            if node.field.kind != "json" and isinstance(value, dict | list):
                raise AdapterError(
                    show(path),
                    f"expected a value, found {'an object' if isinstance(value, dict) else 'a list'}",
                )
            yield node.field, path, value
            return
        if None in node.children:
            if not isinstance(value, list):
                raise AdapterError(show(path), "expected a list")
            for i, item in enumerate(value):
                yield from self._walk(item, node.children[None], (*path, i), show)
            return
        if not isinstance(value, dict):
            raise AdapterError(show(path), "expected an object")
        for key, child in value.items():
            sub = node.children.get(key)
            if sub is None:
                raise AdapterError(
                    show((*path, key)), "unknown field (not in this message type of the format)"
                )
            yield from self._walk(child, sub, (*path, key), show)

    def flat_key(self, f: Field, idx: list[int]) -> tuple[int, ...]:
        """Column order: fields in table order, the members of one list item together."""
        key: list[int] = []
        k = 0
        for pos, seg in enumerate(f.std):
            if seg is None:
                key += [self.first_order[f.std[:pos]], idx[k]]
                k += 1
        return (*key, f.order)

    def order_key(self, nat_path: Path) -> tuple[int, ...]:
        key: list[int] = []
        node = self.trie
        for seg in nat_path:
            if isinstance(seg, int):
                key.append(seg)
                node = node.children[None]
            else:
                key.append(list(node.children).index(seg))
                node = node.children[seg]
        return tuple(key)


def show_tree(nat: Pattern | Path, idx: list[int], sep: str, truncate: bool = False) -> str:
    """Render a national tree path: JSON ``a.b[0].c`` (0-based), XML ``A/B[1]/C`` (1-based, XPath)."""
    base = 1 if sep == "/" else 0
    out = ""
    it = iter(idx)
    for seg in nat:
        if seg is None or isinstance(seg, int):
            if isinstance(seg, int):
                out += f"[{seg + base}]"
                continue
            nxt = next(it, None)
            if nxt is None:
                if truncate:
                    break
                nxt = 0
            out += f"[{nxt + base}]"
        else:
            out += (sep if out else "") + seg
    return out


# --- CSV ---------------------------------------------------------------------------------------------


def read_csv_record(data: bytes, delimiter: str) -> tuple[dict[str, str], set[str]]:
    """A one-message CSV file: a header row and one data row. Returns the non-empty cells by column,
    and the columns present but empty."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AdapterError("(file)", f"not UTF-8 (byte {exc.start})") from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        raise AdapterError("(file)", f"not a CSV file with {delimiter!r} separators ({exc})") from None
    while rows and not rows[-1]:
        rows.pop()
    if len(rows) < 2:
        raise AdapterError("(file)", f"expected a header row and one data row, found {len(rows)} row(s)")
    if len(rows) > 2:
        raise AdapterError("(file)", f"one message per file: row 3 of {len(rows)} is a second record")
    header, values = rows
    if len(header) != len(values):
        raise AdapterError(
            "(file)", f"the header has {len(header)} columns, the data row {len(values)} values"
        )
    cells: dict[str, str] = {}
    empty: set[str] = set()
    seen: set[str] = set()
    for name, value in zip(header, values, strict=True):
        if name in seen:
            raise AdapterError(name, "column appears twice")
        if name == "":
            raise AdapterError("(file)", "a header cell is empty")
        seen.add(name)
        if value == "":
            empty.add(name)
        else:
            cells[name] = value
    return cells, empty


def write_csv_record(columns: list[tuple[str, str]], delimiter: str) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    w.writerow([c for c, _ in columns])
    w.writerow([v for _, v in columns])
    return buf.getvalue().encode("utf-8")
