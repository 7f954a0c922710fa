"""A pytest plugin for `make order`: every test file's tests run in the reverse of their order in the file.

A test that passes only after the tests above it (a federation those tests filled, a checkpoint their
time let the node sign) fails here; `make test` would only catch it when its workers happen to split
that file. Files whose tests are steps through one shared scene say so in their docstring and are left
out by the Makefile."""

from __future__ import annotations

from itertools import groupby
from typing import Any


def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    by_file = [list(group) for _, group in groupby(items, key=lambda item: item.path)]
    items[:] = [item for group in by_file for item in reversed(group)]
