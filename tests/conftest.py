"""Shared by every test module: the summary line for tests skipped because a system tool is missing, and
the PostgreSQL fixtures (tests/kit/pg.py): ``pg_cluster`` (one server per session), ``pg_url`` (a fresh
database per test), ``ha_cluster`` (a primary with a synchronous hot standby, its own per test since a
failover uses it up) and ``store_target``, parametrised ``sqlite``/``postgresql``: what a store is opened
on (a SQLite file path, or a PostgreSQL URL)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.pg import Cluster
from kit.skipsummary import pytest_terminal_summary  # noqa: F401 - a hook, registered by being here

from gateway import ports


def _worker_ports() -> None:
    """Each pytest-xdist worker (and the nodes and tools its tests start) takes listening ports from a range
    of its own (gateway/ports.py): two workers never pick the same free port before either listens on it."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if worker is None or count is None or ports.ENV in os.environ:
        return
    lo, hi = ports.listen_range()
    share = (hi - lo + 1) // int(count)
    first = lo + int(worker.removeprefix("gw")) * share
    os.environ[ports.ENV] = f"{first}-{first + share - 1}"


_worker_ports()


def _cluster(*, standby: bool) -> Iterator[Cluster]:
    """A throw-away PostgreSQL server (skipped without the binaries), with a synchronous hot standby if
    asked; stopped and deleted after."""
    try:
        cluster = Cluster()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        if standby:
            cluster.add_standby()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    yield from _cluster(standby=False)


@pytest.fixture
def ha_cluster() -> Iterator[Cluster]:
    """A PostgreSQL primary with a synchronous hot standby (its own, since a failover uses it up)."""
    yield from _cluster(standby=True)


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> Iterator[str]:
    with pg_cluster.database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | str]:
    """Where a store lives: ``<tmp>/node.db`` (SQLite) or a fresh PostgreSQL database's URL."""
    if request.param == "sqlite":
        yield tmp_path / "node.db"
        return
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    with cluster.database() as url:
        yield url
