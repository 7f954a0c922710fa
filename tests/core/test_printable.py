"""gateway.core.printable: text from outside made safe for a terminal or a log line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.printable import escape_controls, json_safe, printable

UNSAFE = ["\x00", "\x07", "\x08", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029", "\u202e",
          "\u2066", "\u200f"]


@pytest.mark.parametrize("c", UNSAFE)
def test_unsafe_characters_are_removed(c):
    assert printable(f"a{c}b") == "ab"


def test_screen_clearing_sequence_loses_its_escape():
    assert printable("es\x1b[2J\x1b]0;owned\x07") == "es[2J]0;owned"


def test_newlines_kept_only_when_asked():
    assert printable("a\nb\r\n", newlines=True) == "a\nb\n"
    assert printable("a\nb") == "ab"


def test_ordinary_text_is_unchanged():
    for text in ("eu-hub", "Policía Nacional – España", "東京", "tab\there", "emoji 🙂"):
        assert printable(text) == text
        assert escape_controls(text) == text


def test_escape_controls_shows_what_was_there():
    assert escape_controls("a\x1bb\u2028c\x00") == "a\\x1bb\\u2028c\\x00"


@given(st.text())
def test_printable_output_has_no_control_characters(text):
    out = printable(text)
    assert not any(c in out for c in UNSAFE)
    assert all(c.isprintable() or c == "\t" or not (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F) for c in out)


@given(st.text())
def test_escape_controls_leaves_nothing_raw(text):
    out = escape_controls(text)
    assert not any(c in out for c in UNSAFE)


def test_json_safe_escapes_del_in_ascii_text():
    # found by the property below: DEL is ASCII, and an all-ASCII text used to be returned as it was
    import json

    assert json_safe(json.dumps({"\x7f": "a\x7fb"})) == '{"\\u007f": "a\\u007fb"}'


@given(st.recursive(st.text() | st.integers() | st.none(),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3), max_leaves=8))
def test_json_safe_reads_back_the_same_and_leaves_nothing_raw(value):
    import json

    text = json_safe(json.dumps(value, ensure_ascii=False))
    assert json.loads(text) == value
    assert not any(c in text for c in ("\x7f", "\x85", "\x9b", "\u2028", "\u2029", "\u202e"))
