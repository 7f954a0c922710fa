"""How the reporting verbs print: a human table by default, the API's JSON with ``--json``.

Text that comes from a node or a peer (ids, details, message content) is printed as plain text: control
characters removed (:func:`gateway.core.printable.printable`) and never read as rich markup. Colour
only on a terminal, and never when ``NO_COLOR`` is set (https://no-color.org). Written to a pipe or a
file, tables are not wrapped at 80 columns (ids stay whole for ``grep`` and ``cut``)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gateway.core.printable import json_safe, printable

PIPE_WIDTH = 200  # columns of a table written to a pipe or a file


def no_color() -> bool:
    """``NO_COLOR`` set to anything but the empty string."""
    return os.environ.get("NO_COLOR", "") != ""


def console(*, stderr: bool = False) -> Console:
    """The console every verb prints through (created per call: tests capture ``sys.stdout``)."""
    c = Console(stderr=stderr, highlight=False, no_color=no_color() or None, emoji=False)
    if not c.is_terminal:
        c.width = PIPE_WIDTH
    return c


def print_json(doc: Any) -> None:
    """``doc`` as indented JSON on stdout; characters JSON leaves raw that terminals act on are escaped."""
    print(json_safe(json.dumps(doc, indent=2, ensure_ascii=False)))


def text(value: Any, style: str = "") -> Text:
    """One cell or value as plain text: ``-`` for None, no control characters, no markup."""
    if value is None or value == "":
        return Text("-", style="dim")
    if isinstance(value, bool):
        value = "yes" if value else "no"
    return Text(printable(str(value)), style=style)


# the styles of a peer's status (`traza peers`) and of a message's state
STYLES = {"up": "green", "down": "red", "probing": "yellow", "unknown": "dim",
          "delivered": "green", "failed": "red", "dead": "red", "discarded": "red", "overdue": "yellow",
          "queued": "yellow", "forwarded": "cyan", "received": "cyan"}


def styled(value: Any) -> Text:
    return text(value, STYLES.get(str(value), ""))


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None,
          ids: Sequence[str] = ()) -> Table:
    """A table of ``rows`` (values, or ready :class:`Text`); the columns named in ``ids`` never wrap."""
    t = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        t.add_column(c, no_wrap=c in ids, overflow="fold")
    for r in rows:
        t.add_row(*(v if isinstance(v, Text) else text(v) for v in r))
    return t


def fields(pairs: Iterable[tuple[str, Any]]) -> Table:
    """``name  value`` lines (a two-column grid); a dict value is shown as ``k v, k v``."""
    g = Table.grid(padding=(0, 2))
    g.add_column(style="bold", no_wrap=True)
    g.add_column(overflow="fold")
    for name, value in pairs:
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
        g.add_row(name, value if isinstance(value, Text) else text(value))
    return g


def rows_of(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    rows = doc.get(key)
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def dict_table(rows: list[dict[str, Any]], *, empty: str, title: str | None = None,
               ids: Sequence[str] = ("id", "jti")) -> Table | Text:
    """A table with one column per key of the rows (the keys of the first row, in order)."""
    if not rows:
        return Text(empty)
    cols = list(rows[0])
    return table(cols, ([styled(r.get(c)) if c in ("state", "status") else r.get(c) for c in cols] for r in rows),
                 title=title, ids=[c for c in cols if c in ids])
