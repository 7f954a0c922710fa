"""Shared by every test module: the summary line for tests skipped because a system tool is missing."""

from kit.skipsummary import pytest_terminal_summary  # noqa: F401 - a hook, registered by being here
