"""How the CLI prints: no colour when NO_COLOR is set (https://no-color.org), neither in the tables of the
reporting verbs nor in the console log of `traza run` on a terminal; colour on a terminal otherwise."""

from __future__ import annotations

import io
import logging
import re

import structlog

from gateway import logging as tlog
from gateway.cli.output import console, styled, table

COLOUR = re.compile(r"\x1b\[[0-9;]*3[0-7]m|\x1b\[[0-9;]*38;")  # a foreground colour (SGR 30-37 or 38;...)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def console_log(monkeypatch, no_color: str | None) -> str:
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    buf = Tty()
    tlog.configure("auto", "info", stream=buf)
    try:
        tlog.get_logger().warning("peer.failed", peer="es")
    finally:
        root = logging.getLogger()
        for h in list(root.handlers):
            if getattr(h, "_traza", False):
                root.removeHandler(h)
        structlog.reset_defaults()
    return buf.getvalue()


def test_console_log_on_a_terminal_has_no_colour_under_no_color(monkeypatch):
    assert COLOUR.search(console_log(monkeypatch, None))  # the test can fail: colour by default
    out = console_log(monkeypatch, "1")
    assert "peer.failed" in out and not COLOUR.search(out), repr(out)
    assert COLOUR.search(console_log(monkeypatch, ""))  # NO_COLOR set but empty: no effect (no-color.org)


def cli_table(monkeypatch, no_color: str | None, capsys) -> str:
    monkeypatch.setenv("FORCE_COLOR", "1")  # as on a terminal
    monkeypatch.delenv("TERM", raising=False)
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    capsys.readouterr()
    console().print(table(["peer", "status"], [["hub", styled("up")], ["es", styled("down")]]))
    return capsys.readouterr().out


def test_cli_tables_have_no_colour_under_no_color(monkeypatch, capsys):
    assert COLOUR.search(cli_table(monkeypatch, None, capsys))
    out = cli_table(monkeypatch, "1", capsys)
    assert "up" in out and "down" in out and not COLOUR.search(out), repr(out)
