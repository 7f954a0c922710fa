"""bench/cpu_by_library.py: the ``perf report`` text read into shares by library, and the bound it gives
(issue #17: the ratio the run would have had if the interpreter cost nothing). The perf run itself needs
Linux ``perf`` and is not part of the suite (docs/benchmark.md, "Session 13")."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "cpu_by_library.py"

# the head of a real `perf report --sort dso --stdio` of the four nodes (session 13), shortened
REPORT = """\
# To display the perf.data header info, please use --header/--header-only options.
#
# Samples: 3K of event 'cpu-clock:ppp'
#
# Overhead  Shared Object
# ........  ............................................
#
    44.70%  libpython3.11.so.1.0
    16.92%  [kernel.kallsyms]
    16.38%  _rust.abi3.so
     8.38%  libsqlite3.so.0.8.6
     6.04%  libc.so.6
     2.29%  libcrypto.so.3
     1.67%  _core.cpython-311-x86_64-linux-gnu.so
     0.49%  _sqlite3.cpython-311-x86_64-linux-gnu.so
     0.31%  libssl.so.3
     0.46%  _http_parser.cpython-311-x86_64-linux-gnu.so

"""


@pytest.fixture(scope="module")
def cbl():
    spec = importlib.util.spec_from_file_location("cpu_by_library", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_perf_report_is_read_into_shares_by_library(cbl):
    groups = cbl.grouped(cbl.dso_shares(REPORT))
    total = 44.70 + 16.92 + 16.38 + 8.38 + 6.04 + 2.29 + 1.67 + 0.49 + 0.31 + 0.46
    assert groups["python interpreter"] == pytest.approx(44.70 / total)
    assert groups["kernel"] == pytest.approx(16.92 / total)
    assert groups["SQLite"] == pytest.approx((8.38 + 0.49) / total)  # the library and its Python binding
    assert groups["OpenSSL (TLS records, hashlib)"] == pytest.approx((2.29 + 0.31) / total)
    assert groups["other"] == pytest.approx((1.67 + 0.46) / total)
    assert sum(groups.values()) == pytest.approx(1.0)
    assert next(iter(groups)) == "python interpreter"  # largest first


def test_the_bound_takes_only_the_interpreter_away(cbl):
    groups = {"python interpreter": 0.45, "kernel": 0.17, "other": 0.38}
    assert cbl.bound_without_python(2.5, groups) == pytest.approx(2.5 * 0.55)
    assert cbl.bound_without_python(2.5, {"kernel": 1.0}) == pytest.approx(2.5)


@pytest.mark.parametrize("text", ["", "# only comments\n#\n", "    44.70%  libpython3.11.so\n  garbage line\n"],
                         ids=["empty", "no-samples", "unknown-line"])
def test_a_perf_report_that_cannot_be_read_is_an_error_not_zeros(cbl, text):
    with pytest.raises(ValueError, match="perf report"):
        cbl.dso_shares(text)


def test_bad_arguments_are_refused_naming_them():
    r = subprocess.run([sys.executable, str(SCRIPT), "--messages", "0"], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "--messages" in r.stderr
