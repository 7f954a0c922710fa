"""Listening ports for nodes started on this machine (tests, `traza bench`, the PostgreSQL test server).

A port found free by binding port 0 comes from the kernel's ephemeral range and is released before the
node listens on it: meanwhile it may become the local port of any outgoing connection, or another
process's "free" port, and the node then fails with "address already in use". So ports are taken below
the ephemeral range (from :data:`LISTEN_BASE`), where no outgoing connection lands, in turn from a
per-process cursor (a process does not hand the same port out twice in a row). Processes that allocate
at the same time (the test suite's pytest-xdist workers) each get a range of their own through
``TRAZA_LISTEN_PORTS=lo-hi``."""

from __future__ import annotations

import os
import random
import socket
import threading
from pathlib import Path

LISTEN_BASE = 10000
ENV = "TRAZA_LISTEN_PORTS"

_lock = threading.Lock()
_cursor: dict[tuple[int, int], int] = {}


class NoFreePorts(RuntimeError):
    pass


def ephemeral_range() -> tuple[int, int]:
    """This machine's ephemeral (local) port range (Linux), where connections take their local ports."""
    try:
        lo, hi = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        lo, hi = 32768, 60999  # Linux's default
    return lo, hi


def listen_range() -> tuple[int, int]:
    """The ports this process takes listening ports from: ``TRAZA_LISTEN_PORTS`` (``lo-hi``) if set, else
    from LISTEN_BASE to just below the ephemeral range. ValueError naming the variable if it is malformed."""
    raw = os.environ.get(ENV)
    if raw is None:
        return LISTEN_BASE, ephemeral_range()[0] - 1
    try:
        lo, hi = (int(x) for x in raw.split("-"))
    except ValueError:
        raise ValueError(f"{ENV}={raw!r}: expected lo-hi, two port numbers") from None
    if not 1024 <= lo <= hi <= 65535:
        raise ValueError(f"{ENV}={raw!r}: expected 1024 <= lo <= hi <= 65535")
    return lo, hi


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def listen_ports(n: int) -> list[int]:
    """``n`` distinct ports of :func:`listen_range` free on 127.0.0.1 now, the next ones after the cursor;
    NoFreePorts if the range does not hold that many."""
    lo, hi = listen_range()
    size = hi - lo + 1
    out: list[int] = []
    with _lock:
        cursor = _cursor.get((lo, hi), random.randrange(size))
        for _ in range(size):
            port = lo + cursor
            cursor = (cursor + 1) % size
            if _bindable(port):
                out.append(port)
                if len(out) == n:
                    break
        _cursor[(lo, hi)] = cursor
    if len(out) < n:
        raise NoFreePorts(f"only {len(out)} free ports between {lo} and {hi}, {n} needed")
    return out
