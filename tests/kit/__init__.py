"""Shared test helpers (importable as ``kit`` thanks to pytest's pythonpath)."""
