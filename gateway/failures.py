"""The two failures a command reports to its user (the CLI, `traza demo`, `traza bench` and the local-API
client share them): a check that failed (exit status 1) and bad usage found after parsing (exit status 2).
Their text names the file, field or address and the reason."""

from __future__ import annotations


class CheckFailed(Exception):
    """A check failed: printed on stderr, exit status 1."""


class UsageError(Exception):
    """Bad usage found after parsing (a bad file, a missing option): exit status 2."""
