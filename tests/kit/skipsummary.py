"""A pytest plugin (loaded by tests/conftest.py): tests skipped because a system tool is missing (Debian's
chromium for the dashboard tests) end the report with one line per tool saying what to install, so that
`make test` never skips them silently among the other skips."""

from __future__ import annotations

from collections import Counter
from typing import Any

MISSING = "is not installed"  # the phrase of every skip reason about a missing tool (kit/browser.py)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
            reason = str(report.longrepr[2]).removeprefix("Skipped: ")
            if MISSING in reason:
                reasons[reason] += 1
    for reason, n in sorted(reasons.items()):
        terminalreporter.write_line(f"{n} test{'s' if n != 1 else ''} skipped: {reason}; "
                                    ".ci/run installs what the tests need", yellow=True, bold=True)
