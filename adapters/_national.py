"""The shared machinery of the national adapters (mx JSON, es XML, de and it CSV).

A national adapter is a :class:`NationalAdapter` subclass that gives its syntax (dates, booleans,
decimal separator), its message-type words and one row table per message type it maps natively; every
other message type travels in a generic wrapper (the envelope fields plus the standard body as JSON in
one national field). The three file syntaxes are the subclasses :class:`JsonAdapter`,
:class:`XmlAdapter` and :class:`CsvAdapter`.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from adapters._engine import (
    Field,
    Gap,
    Path,
    Row,
    Syntax,
    Table,
    _Trie,
    fill,
    indices_of,
    parse_json_path,
    parse_path,
    prune,
    read_csv_record,
    show_tree,
    std_display,
    std_leaves,
    unflatten,
    write_csv_record,
)
from adapters._xml import XmlRefused, parse_xml
from adapters.base import (
    FORMAT_VERSION,
    RECEIVED_FIELDS,
    AdapterError,
    Translation,
    check_content_type,
    check_envelope_value,
    check_meta,
    missing_submission_warnings,
    schema_error_path,
    schema_error_reason,
    validated_body,
)
from adapters.standard import MEDIA_TYPE as STANDARD_MEDIA_TYPE
from adapters.standard import from_form, load_json_object
from gateway.core.forms import MESSAGE_TYPES, TrazaError

Leaf = tuple[Field, list[int], Any, str]  # field, list positions, national value, national name


class NationalAdapter:
    """Base of the table-driven national adapters. Subclasses set the class attributes below."""

    name: ClassVar[str]
    content_types: ClassVar[tuple[str, ...]]
    output_content_type: ClassVar[str]
    syntax: ClassVar[Syntax]
    flat: ClassVar[bool]
    sep: ClassVar[str] = "."
    # standard mt -> national word, for the natively mapped types
    mt_words: ClassVar[dict[str, str]]
    # rows of the envelope and format fields: "#version" (optional), "#type", "@to" ... "@delivered_at"
    header_rows: ClassVar[list[Row]]
    # the national field holding the standard body (JSON) of a generic wrapper
    body_row: ClassVar[Row]
    # standard mt -> rows of its body
    body_rows: ClassVar[dict[str, list[Row]]]
    # Firearm member -> national name below a Firearm's prefix (for the docs)
    firearm_names: ClassVar[dict[str, str]]

    def __init__(self) -> None:
        self._tables: dict[str, Table] = {}

    # -- tables --

    def table(self, mt: str) -> Table:
        t = self._tables.get(mt)
        if t is None:
            rows = self.header_rows + (self.body_rows[mt] if mt in self.body_rows else [self.body_row])
            t = Table(rows, flat=self.flat, sep=self.sep)
            self._tables[mt] = t
        return t

    def native_types(self) -> tuple[str, ...]:
        return tuple(self.body_rows)

    def wrapped_types(self) -> tuple[str, ...]:
        return tuple(mt for mt in MESSAGE_TYPES if mt not in self.body_rows)

    def _header_nat(self, std: str) -> str | None:
        for r in self.header_rows:
            if r.std == std:
                return r.nat
        return None

    def _show(self, nat: str) -> str:
        return nat

    # -- format hooks (overridden by the JSON, XML and CSV classes) --

    def parse(self, data: bytes) -> Any:
        raise NotImplementedError

    def peek(self, doc: Any, nat: str) -> Any:
        raise NotImplementedError

    def version_of(self, doc: Any) -> tuple[Any, str] | None:
        nat = self._header_nat("#version")
        if nat is None:
            return None
        return self.peek(doc, nat), self._show(nat)

    def leaves(self, doc: Any, table: Table) -> Iterator[Leaf]:
        raise NotImplementedError

    def empty_columns(self, doc: Any) -> set[str]:
        return set()

    def render(self, table: Table, leaves: list[Leaf]) -> bytes:
        raise NotImplementedError

    # -- national -> standard --

    def to_standard(self, data: bytes, content_type: str) -> Translation:
        return self.read(data, content_type, admit=True)

    def read(self, data: bytes, content_type: str, *, admit: bool) -> Translation:
        """A national file as a Translation; ``admit``: with the admission rules of a message being
        submitted (``to_standard``), without them when reading back a delivery of a held message."""
        if check_content_type(self, content_type) == STANDARD_MEDIA_TYPE:
            return from_form(load_json_object(data), admit=admit)
        doc = self.parse(data)
        version = self.version_of(doc)
        if version is not None and version[0] is not None and version[0] != str(FORMAT_VERSION):
            raise AdapterError(
                version[1],
                f"{version[0]!r}: this adapter reads version {FORMAT_VERSION} of the {self.name} format",
            )
        type_nat = self._header_nat("#type")
        assert type_nat is not None
        word = self.peek(doc, type_nat)
        where = self._show(type_nat)
        if word is None:
            raise AdapterError(where, "missing")
        mt = self._mt_from_word(word, where)
        table = self.table(mt)
        body_leaves: list[tuple[Path, Any]] = []
        body: Any = None
        t = Translation(mt=mt, body={})
        for field, idx, raw, name in self.leaves(doc, table):
            head = field.std[0]
            assert head is not None
            if head in ("#version", "#type"):
                continue
            value = self.syntax.to_std(field.kind, raw, name)
            if head == "#body":
                body = value
            elif head.startswith("@"):
                key = head[1:]
                value = check_envelope_value(key, value, name)
                if key in RECEIVED_FIELDS:
                    t.received[key] = value
                else:
                    setattr(t, key, value)
            else:
                body_leaves.append((fill(field.std, idx), value))
        if mt in self.body_rows:
            try:
                body = unflatten(body_leaves)
            except Gap as gap:
                name = table.nat_name_for_std(gap.path) or std_display(gap.path)
                raise AdapterError(
                    name, "missing: numbered fields must run 1, 2, 3 ... without a gap"
                ) from None
        elif body is None:
            raise AdapterError(
                self._show(self.body_row.nat), "missing: the standard body of a wrapped message"
            )
        try:
            _, t.body = validated_body(mt, body, admit=admit)
        except TrazaError as exc:
            raise self._schema_error(mt, table, doc, exc) from None
        t.warnings.extend(missing_submission_warnings(t, self._envelope_names()))
        return t

    def _envelope_names(self) -> dict[str, str]:
        return {r.std[1:]: self._show(r.nat) for r in self.header_rows if r.std.startswith("@")}

    def _mt_from_word(self, word: Any, where: str) -> str:
        for mt, w in self.mt_words.items():
            if word == w:
                return mt
        if isinstance(word, str) and word in MESSAGE_TYPES:
            if word in self.mt_words:
                raise AdapterError(
                    where, f"{word!r} is written {self.mt_words[word]!r} in the {self.name} format"
                )
            return word
        listed = ", ".join(self.mt_words.values())
        raise AdapterError(
            where,
            f"{word!r} is not a message type of the {self.name} format ({listed}; or one of {', '.join(self.wrapped_types())} with the body as JSON)",
        )

    def _schema_error(self, mt: str, table: Table, doc: Any, exc: TrazaError) -> AdapterError:
        path = parse_json_path(schema_error_path(exc))
        reason = schema_error_reason(exc)
        if mt not in self.body_rows:
            return AdapterError(self._show(self.body_row.nat), f"{reason} at {std_display(path)}")
        name = table.nat_name_for_std(path) if path else None
        if name is None:
            return AdapterError(
                self._show(self._header_nat("#type") or "?"), f"{reason} at {std_display(path)}"
            )
        if reason == "missing" and name in self.empty_columns(doc):
            reason = "empty"
        return AdapterError(name, f"{reason} (standard {std_display(path)})")

    # -- standard -> national --

    def from_standard(self, mt: str, body: dict[str, Any], meta: dict[str, Any]) -> bytes:
        meta = check_meta(meta)
        try:
            _, norm = validated_body(mt, body)
        except TrazaError as exc:
            raise AdapterError(schema_error_path(exc), schema_error_reason(exc)) from None
        table = self.table(mt)
        leaves: list[Leaf] = []
        for std, value in (("#version", str(FORMAT_VERSION)), ("#type", self.mt_words.get(mt, mt))):
            f = table.by_std.get((std,))
            if f is not None:
                leaves.append((f, [], value, table.show_nat(f, [])))
        for key, value in meta.items():
            f = table.by_std[("@" + key,)]
            leaves.append((f, [], self.syntax.to_nat(f.kind, value), table.show_nat(f, [])))
        if mt in self.body_rows:
            for path, value in std_leaves(norm):
                f = table.field_for_std(path)
                if f is None:
                    raise AdapterError(
                        std_display(path), f"the {self.name} format has no field for this member"
                    )
                idx = indices_of(path)
                leaves.append((f, idx, self.syntax.to_nat(f.kind, value), table.show_nat(f, idx)))
        else:
            f = table.by_std[("#body",)]
            leaves.append((f, [], self.syntax.to_nat("json", norm), table.show_nat(f, [])))
        out = self.render(table, leaves)
        self._check_reads_back(mt, out, prune(norm) if mt in self.body_rows else norm, meta)
        return out

    def _check_reads_back(self, mt: str, out: bytes, body: dict[str, Any], meta: dict[str, Any]) -> None:
        """The safety net against silent loss: what is written must read back to the same message
        (empty lists and objects aside, which no national format writes)."""
        try:
            t = self.read(out, self.output_content_type, admit=False)  # a delivery may be of a held body
        except AdapterError as exc:
            raise AdapterError(
                "$", f"the {self.name} form of this message does not read back: {exc}"
            ) from None
        if t.mt != mt or t.body != body or t.meta() != meta:
            for path, value in std_leaves(body):
                if value != _get(t.body, path):
                    raise AdapterError(
                        std_display(path), f"{value!r} does not survive the {self.name} format"
                    )
            raise AdapterError("$", f"the {self.name} form of this message does not read back the same")


def _get(obj: Any, path: Path) -> Any:
    for p in path:
        try:
            obj = obj[p]
        except (KeyError, IndexError, TypeError):
            return None
    return obj


# --- JSON -------------------------------------------------------------------------------------------


class JsonAdapter(NationalAdapter):
    flat = False
    sep = "."

    def parse(self, data: bytes) -> Any:
        return load_json_object(data)  # strict JSON (SPEC §3.4)

    def peek(self, doc: Any, nat: str) -> Any:
        node = doc
        for seg in parse_path(nat, self.sep):
            if not isinstance(node, dict) or seg is None:
                return None
            node = node.get(seg)
        return node

    def leaves(self, doc: Any, table: Table) -> Iterator[Leaf]:
        def show(path: Path) -> str:
            return show_tree(path, [], self.sep)

        for field, path, raw in table.tree_leaves(doc, show):
            yield field, indices_of(path), raw, show(path)

    def render(self, table: Table, leaves: list[Leaf]) -> bytes:
        items = sorted(
            ((fill(f.nat, idx), v) for f, idx, v, _ in leaves), key=lambda p: table.order_key(p[0])
        )
        return (json.dumps(unflatten(items), ensure_ascii=False, indent=2) + "\n").encode("utf-8")


# --- XML --------------------------------------------------------------------------------------------

# Elements nested deeper than this (the root is level 1) are refused: the JSON nesting limit of SPEC §11.
MAX_XML_DEPTH = 32
_XML_BAD = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _local(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return None, tag


def _xml_escape(text: str, where: str) -> str:
    bad = _XML_BAD.search(text)
    if bad:
        raise AdapterError(where, f"character U+{ord(bad.group()):04X} cannot be written in XML")
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


class XmlAdapter(NationalAdapter):
    """XML with one root element carrying ``version``; national paths start below the root."""

    flat = False
    sep = "/"
    root_tag: ClassVar[str]
    namespace: ClassVar[str]

    def parse(self, data: bytes) -> Any:
        try:
            root = parse_xml(data)
        except XmlRefused as exc:
            raise AdapterError("(file)", exc.reason) from None
        ns, name = _local(root.tag)
        if name != self.root_tag:
            raise AdapterError(name, f"the root element must be <{self.root_tag}>")
        if ns not in (None, self.namespace):
            raise AdapterError(self.root_tag, f"namespace {ns!r} is not {self.namespace!r}")
        for attr in root.attrib:
            if attr != "version":
                raise AdapterError(f"{self.root_tag}/@{attr}", "unknown attribute")
        self._check_ns(root, ns)
        return root

    def _check_ns(self, root: ET.Element, ns: str | None) -> None:
        """Every element in the root's namespace, and none nested deeper than :data:`MAX_XML_DEPTH`
        (the root is level 1). Iterative: a file of thousands of nested elements is refused by name,
        not by the interpreter's recursion limit (and nothing after this walks deeper than the limit)."""
        stack: list[tuple[ET.Element, tuple[str, ...]]] = [(root, ())]
        while stack:
            el, path = stack.pop()
            for child in el:
                if isinstance(child.tag, str):
                    cns, cname = _local(child.tag)
                    if cns != ns:
                        raise AdapterError(
                            cname, f"element in namespace {cns!r}, expected {ns!r} (that of the root)"
                        )
                    below = (*path, cname)
                    if len(below) >= MAX_XML_DEPTH:  # the root is not in the path: level len + 1
                        shown = "/".join(below) if len(below) <= 4 else "/".join((*below[:3], "...", below[-1]))
                        raise AdapterError(
                            shown,
                            f"nested deeper than {MAX_XML_DEPTH} elements (element {len(below) + 1} levels "
                            f"deep; the limit is that of JSON, SPEC §11)",
                        )
                    stack.append((child, below))

    def version_of(self, doc: Any) -> tuple[Any, str] | None:
        return doc.get("version"), f"{self.root_tag}/@version"

    def _show(self, nat: str) -> str:
        return nat

    def peek(self, doc: Any, nat: str) -> Any:
        node: ET.Element | None = doc
        for seg in nat.split("/"):
            assert node is not None
            node = next((c for c in node if isinstance(c.tag, str) and _local(c.tag)[1] == seg), None)
            if node is None:
                return None
        assert node is not None
        return node.text or ""

    def _shape(self, el: ET.Element, node: _Trie, path: Path) -> Any:
        show = show_tree(path, [], "/")
        if el.attrib and path:
            raise AdapterError(f"{show}/@{next(iter(el.attrib))}", "unknown attribute")
        kids = [c for c in el if isinstance(c.tag, str)]
        if node.field is not None:
            if kids:
                raise AdapterError(show, "expected text, found elements")
            return el.text or ""
        if (el.text or "").strip():
            raise AdapterError(show, "expected elements, found text")
        out: dict[str, Any] = {}
        for c in kids:
            tag = _local(c.tag)[1]
            if (c.tail or "").strip():
                raise AdapterError(show, "text between elements")
            sub = node.children.get(tag)
            if sub is None:
                raise AdapterError(
                    f"{show}/{tag}" if show else tag,
                    "unknown element (not in this message type of the format)",
                )
            if None in sub.children:
                lst = out.setdefault(tag, [])
                lst.append(self._shape(c, sub.children[None], (*path, tag, len(lst))))
            else:
                if tag in out:
                    raise AdapterError(f"{show}/{tag}" if show else tag, "appears twice")
                out[tag] = self._shape(c, sub, (*path, tag))
        return out

    def leaves(self, doc: Any, table: Table) -> Iterator[Leaf]:
        shape = self._shape(doc, table.trie, ())

        def show(path: Path) -> str:
            return show_tree(path, [], "/")

        for field, path, raw in table.tree_leaves(shape, show):
            yield field, indices_of(path), raw, show(path)

    def render(self, table: Table, leaves: list[Leaf]) -> bytes:
        items = []
        for f, idx, v, name in leaves:
            items.append((fill(f.nat, idx), _xml_escape(v, name)))
        items.sort(key=lambda p: table.order_key(p[0]))
        tree = unflatten(items)
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<{self.root_tag} xmlns="{self.namespace}" version="{FORMAT_VERSION}">',
        ]
        self._emit(tree, 1, lines)
        lines.append(f"</{self.root_tag}>")
        return ("\n".join(lines) + "\n").encode("utf-8")

    def _emit(self, tree: Mapping[str, Any], depth: int, lines: list[str]) -> None:
        pad = "  " * depth
        for tag, value in tree.items():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict):
                    lines.append(f"{pad}<{tag}>")
                    self._emit(item, depth + 1, lines)
                    lines.append(f"{pad}</{tag}>")
                else:
                    lines.append(f"{pad}<{tag}>{item}</{tag}>")


# --- CSV --------------------------------------------------------------------------------------------


_CSV_NUL = "character U+0000 cannot be written in CSV"


class CsvAdapter(NationalAdapter):
    """One message per file: a header row of national column names and one data row."""

    flat = True
    delimiter: ClassVar[str]

    def parse(self, data: bytes) -> Any:
        return read_csv_record(data, self.delimiter)

    def peek(self, doc: Any, nat: str) -> Any:
        cells, _ = doc
        return cells.get(nat)

    def empty_columns(self, doc: Any) -> set[str]:
        return set(doc[1])

    def leaves(self, doc: Any, table: Table) -> Iterator[Leaf]:
        cells, _ = doc
        for col, raw in cells.items():
            hit = table.column(col)
            if hit is None:
                raise AdapterError(col, "unknown column (not in this message type of the format)")
            if "\x00" in raw:  # what this adapter reads it must write back (render refuses U+0000)
                raise AdapterError(col, f"{_CSV_NUL} (refused on reading too: it could not be delivered back)")
            field, idx = hit
            yield field, idx, raw, col

    def render(self, table: Table, leaves: list[Leaf]) -> bytes:
        cols = []
        for _f, _idx, v, name in sorted(leaves, key=lambda x: table.flat_key(x[0], x[1])):
            if "\x00" in v:
                raise AdapterError(name, _CSV_NUL)
            cols.append((name, v))
        return write_csv_record(cols, self.delimiter)
