"""A log budget: how many lines of one kind may be written per time window. Pure, time passed in."""

from __future__ import annotations


class LogBudget:
    """At most ``lines`` log lines per ``window`` seconds for each key (e.g. a listener); the lines over the
    budget are only counted, and the count is handed to the next line that is allowed, so a flood of
    refusals costs a bounded number of lines while the total stays visible (and exact in the metrics)."""

    def __init__(self, lines: int = 20, window: float = 10.0) -> None:
        if lines < 1 or window <= 0:
            raise ValueError("a log budget needs lines >= 1 and window > 0")
        self.lines = lines
        self.window = window
        self._start: dict[str, float] = {}
        self._used: dict[str, int] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str, now: float) -> tuple[bool, int]:
        """(write this line?, lines suppressed since the last one written for ``key``)."""
        if now - self._start.get(key, now - self.window) >= self.window:
            self._start[key] = now
            self._used[key] = 0
        if self._used[key] >= self.lines:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False, 0
        self._used[key] += 1
        return True, self._suppressed.pop(key, 0)
