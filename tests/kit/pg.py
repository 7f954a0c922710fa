"""A throw-away PostgreSQL cluster for the tests (gateway/store/pgserver.py, shared with `traza bench
--store postgresql`): one cluster per test session (the ``pg_cluster`` fixture), one database per test
(:meth:`Cluster.database`, dropped after). Without the binaries the tests that need them are skipped with
a reason saying what to install."""

from __future__ import annotations

import tomllib
from pathlib import Path

from gateway.localfed import write_config
from gateway.store.pgserver import PG_BIN_DIRS, Cluster, free_port, pg_bin
from kit.skipsummary import MISSING

# the phrase the skip summary (kit/skipsummary.py) picks up
NOT_INSTALLED = f"Debian's PostgreSQL 15 {MISSING} (apt-get install postgresql)"

__all__ = ["NOT_INSTALLED", "PG_BIN_DIRS", "Cluster", "free_port", "pg_bin", "with_store"]


def with_store(cfg: Path, url: str, **more: object) -> None:
    """Put a node's store in PostgreSQL: ``[store] url`` (and any other ``[store]`` key) in its config."""
    doc = tomllib.loads(cfg.read_text())
    doc["store"] = {"url": url, **more}
    write_config(cfg, doc)
