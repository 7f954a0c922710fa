"""`python -m gateway.cli.main` (how tests and the demo start nodes) reports errors like `traza` does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_module_entry_reports_a_usage_error_without_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    proc = subprocess.run([sys.executable, "-m", "gateway.cli.main", "status", "--config", str(missing)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("traza: ") and str(missing) in proc.stderr
    assert "Traceback" not in proc.stderr
