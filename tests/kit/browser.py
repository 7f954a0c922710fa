"""Debian's chromium for the dashboard tests (tests/ui): where it is, how it starts, where screenshots go."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(os.environ.get("TRAZA_ARTIFACTS") or Path(__file__).resolve().parents[1] / "ui" / "artifacts")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def chromium_path(what: str = "dashboard browser test") -> str:
    """Debian's chromium, or skip (fail under CI: the dashboard tests must never be skipped silently)."""
    path = os.environ.get("TRAZA_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        path, why = None, "the playwright package is not installed (pip install -e '.[test]')"
    else:
        why = "Debian's chromium is not installed (apt-get install chromium)"
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{what} cannot run under CI: {why}")
        pytest.skip(why)
    return path


def launched_chromium() -> Iterator[Any]:
    """A headless Debian chromium driven by Playwright, for a module-scoped ``browser`` fixture to yield
    from (skipped, or failed under CI, without it); screenshots go to :data:`ARTIFACTS`."""
    exe = chromium_path()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
