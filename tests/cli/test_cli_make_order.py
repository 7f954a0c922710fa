"""`make order` (tests/kit/reverse.py): each file's tests run in the reverse of their order in the file, the
files themselves in their usual order, so a test that passes only after those above it fails there."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_order_runs_each_files_tests_last_first(tmp_path):
    for name in ("test_a.py", "test_b.py"):
        (tmp_path / name).write_text("".join(
            f"def test_{i}():\n    print('ran', __name__[-1], {i})\n\n\n" for i in range(3)))
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "kit.reverse", "-p", "no:cacheprovider", "-s",
                        "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
                        str(tmp_path / "test_a.py"), str(tmp_path / "test_b.py")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    ran = [list(m) for m in re.findall(r"ran (\w) (\d)", r.stdout)]
    assert ran == [["a", "2"], ["a", "1"], ["a", "0"], ["b", "2"], ["b", "1"], ["b", "0"]], r.stdout
