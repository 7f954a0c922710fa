"""The dashboard in English and Spanish (issue #14): every text of the page from one catalogue per
language (gateway/ops/static/i18n/<lang>.json), the same keys and placeholders in both, every key the page
uses present and every key present used, and the language chosen from Accept-Language."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from gateway.ops.dashboard import LANGUAGES, STATIC, choose_language

CATALOGUES = {lang: json.loads((STATIC / "i18n" / f"{lang}.json").read_text(encoding="utf-8")) for lang in LANGUAGES}
APP = (STATIC / "app.js").read_text(encoding="utf-8")
PAGE = (STATIC / "index.html").read_text(encoding="utf-8")
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def used_keys() -> set[str]:
    """Keys in app.js (t("…") and N_("…"), comments left out) and index.html (data-i18n, data-i18n-<attr>)."""
    code = re.sub(r"//[^\n]*", "", APP)
    return ({*re.findall(r'\b(?:t|N_)\("([^"]+)"', code), "lang.self"}
            | set(re.findall(r'data-i18n(?:-[a-z-]+)?="([^"]+)"', PAGE)))


def test_there_is_a_catalogue_per_language_and_spanish_is_one():
    assert set(LANGUAGES) == {p.stem for p in (STATIC / "i18n").glob("*.json")}
    assert "es" in LANGUAGES and LANGUAGES[0] == "en"


def test_the_catalogues_have_the_same_keys_and_placeholders():
    en, es = CATALOGUES["en"], CATALOGUES["es"]
    assert set(en) == set(es), f"only in en: {sorted(set(en) - set(es))}; only in es: {sorted(set(es) - set(en))}"
    for key in en:
        assert set(PLACEHOLDER.findall(en[key])) == set(PLACEHOLDER.findall(es[key])), key
        assert en[key].strip() and es[key].strip(), key


def test_every_key_the_page_uses_is_in_the_catalogues_and_every_key_is_used():
    used, known = used_keys(), set(CATALOGUES["en"])
    assert not used - known, f"used but in no catalogue: {sorted(used - known)}"
    assert not known - used, f"in the catalogues but never used: {sorted(known - used)}"


class _Texts(HTMLParser):
    """Text and human-readable attributes written in the page itself (not taken from a catalogue)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if name in ("title", "aria-label", "placeholder", "alt") and value:
                self.found.append(f"<{tag} {name}={value!r}>")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if data.strip() and not self._skip:
            self.found.append(data.strip())


def test_the_page_itself_holds_no_text():
    parser = _Texts()
    parser.feed(PAGE)
    assert parser.found == [], parser.found


@pytest.mark.parametrize(("header", "lang"), [
    ("es-MX,es;q=0.9,en;q=0.8", "es"),
    ("es", "es"),
    ("es-419", "es"),
    ("en-US,en;q=0.9", "en"),
    ("fr-FR,fr;q=0.9,es;q=0.5", "es"),
    ("fr-FR,de;q=0.9", "en"),
    ("en;q=0.3,es;q=0.7", "es"),
    ("es;q=0,en", "en"),
    ("", "en"),
    (None, "en"),
    ("*", "en"),
    ("es;q=abc,en;q=0.1", "en"),
])
def test_accept_language_chooses_the_dashboard_language(header, lang):
    assert choose_language(header) == lang


def test_english_texts_are_those_the_dashboard_tests_read():
    # the Playwright tests (tests/ui/test_ui_dashboard.py) read these English texts as the page shows them
    en = CATALOGUES["en"]
    assert en["whoami.signed_in"] == "signed in as {role} {name}"
    assert en["dl.retry"] == "Retry" and en["search.button"] == "Search"


def test_the_spanish_catalogue_is_spanish():
    es = CATALOGUES["es"]
    assert es["whoami.signed_in"].startswith("sesión iniciada como")
    assert es["peers.title"] == "Pares" and es["dl.retry"] == "Reintentar"
    same = [k for k in es if es[k] == CATALOGUES["en"][k]]
    # only names, units and formats stay the same in both languages
    assert set(same) <= {"app.name", "page.title.node", "header.node", "api.error", "unit.ms", "unit.s", "unit.min",
                         "unit.h", "dl.col.id"}, same
