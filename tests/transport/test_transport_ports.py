"""Listening ports for nodes started here (gateway/ports.py): below the ephemeral range, where no outgoing
connection takes its local port, from a range of the process's own when TRAZA_LISTEN_PORTS names one, never
a port something already listens on, and not the same port twice in a row."""

from __future__ import annotations

import socket

import pytest

from gateway import ports


@pytest.fixture
def own_range(monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """Six consecutive ports free now, below the ephemeral range, as this process's range."""
    monkeypatch.delenv(ports.ENV, raising=False)
    for _ in range(50):
        lo = ports.listen_ports(1)[0]
        if lo + 5 < ports.ephemeral_range()[0] and all(ports._bindable(p) for p in range(lo, lo + 6)):
            monkeypatch.setenv(ports.ENV, f"{lo}-{lo + 5}")
            return lo, lo + 5
    pytest.fail("no six consecutive free ports")


def test_ports_are_below_the_ephemeral_range_where_connections_take_their_local_ports(monkeypatch):
    monkeypatch.delenv(ports.ENV, raising=False)
    got = ports.listen_ports(20)
    assert len(set(got)) == 20
    assert all(ports.LISTEN_BASE <= p < ports.ephemeral_range()[0] for p in got), got


def test_a_process_takes_ports_from_its_own_range_and_skips_one_in_use(own_range):
    lo, hi = own_range
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", lo + 2))
        taken.listen()
        got = ports.listen_ports(5)
        assert sorted(got) == [p for p in range(lo, hi + 1) if p != lo + 2]
        with pytest.raises(ports.NoFreePorts, match=f"only 5 free ports between {lo} and {hi}, 6 needed"):
            ports.listen_ports(6)


def test_the_same_port_is_not_handed_out_twice_in_a_row(own_range):
    lo, hi = own_range
    got = [ports.listen_ports(1)[0] for _ in range(6)]
    assert sorted(got) == list(range(lo, hi + 1))  # each once before any again


@pytest.mark.parametrize("raw", ["10000", "a-b", "20000-10000", "80-90", "10000-70000"])
def test_a_malformed_range_is_refused_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv(ports.ENV, raw)
    with pytest.raises(ValueError, match=f"TRAZA_LISTEN_PORTS={raw!r}"):
        ports.listen_ports(1)
