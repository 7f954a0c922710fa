"""Without Debian's chromium the dashboard browser tests cannot run; `make test` must say so in one line
at the end of its report (not only count them among the skipped), naming what to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("workers", ["0", "2"])  # `make test` runs the suite on two xdist workers
def test_a_run_without_chromium_ends_with_one_line_saying_what_to_install(tmp_path, workers):
    probe = tmp_path / "test_probe.py"
    probe.write_text("from kit.browser import chromium_path\n\n\n"
                     "def test_one():\n    chromium_path()\n\n\ndef test_two():\n    chromium_path()\n")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TRAZA_CHROMIUM", "PYTEST_ADDOPTS")}
    env["PATH"] = str(Path(sys.executable).parent)  # no /usr/bin: no chromium to find
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "kit.skipsummary", "-p", "no:cacheprovider",
                        "-n", workers, "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"), str(probe)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [ln for ln in r.stdout.splitlines() if "chromium" in ln]
    assert len(lines) == 1, r.stdout
    assert "2 tests" in lines[0] and "apt-get install chromium" in lines[0], lines[0]
