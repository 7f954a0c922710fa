"""Starting a local federation (`gateway.demo.procs.Federation`, used by `traza bench`, `make demo` and
the end-to-end tests) never leaves node processes behind when a node fails to start.

The nodes run in sessions of their own (Ctrl-C reaches the demo, not them), so a process left running
by a failed start outlives the command that started it and keeps its ports and CPU."""

from __future__ import annotations

import subprocess

import pytest

from gateway.demo.procs import FOUR, Federation


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    return Federation(tmp_path_factory.mktemp("fed"), FOUR)


def _record_spawns(fed, monkeypatch) -> list[subprocess.Popen[bytes]]:
    spawned: list[subprocess.Popen[bytes]] = []
    spawn = fed.spawn

    def recording(node_id, *a, **kw):
        spawn(node_id, *a, **kw)
        spawned.append(fed.procs[node_id])
    monkeypatch.setattr(fed, "spawn", recording)
    return spawned


def _break(fed, node_id: str) -> bytes:
    path = fed.nodes[node_id].config
    good = path.read_bytes()
    path.write_bytes(b"this is [not toml")
    return good


def test_a_node_that_fails_to_start_leaves_no_node_process_running(fed, monkeypatch):
    spawned = _record_spawns(fed, monkeypatch)
    last = list(fed.nodes)[-1]  # waited for last: the others are running and ready by then
    good = _break(fed, last)
    try:
        with pytest.raises(RuntimeError, match=f"node {last} exited"):
            fed.start_all()
    finally:
        fed.nodes[last].config.write_bytes(good)
    assert len(spawned) == len(fed.nodes)
    assert fed.procs == {}
    assert [p.poll() is not None for p in spawned] == [True] * len(spawned)


def test_starting_one_node_that_fails_leaves_no_process_running(fed, monkeypatch):
    spawned = _record_spawns(fed, monkeypatch)
    node = next(iter(fed.nodes))
    good = _break(fed, node)
    try:
        with pytest.raises(RuntimeError, match=f"node {node} exited"):
            fed.start(node)
    finally:
        fed.nodes[node].config.write_bytes(good)
    assert fed.procs == {}
    assert spawned[0].poll() is not None
