"""Start a federation of real `traza run` processes on 127.0.0.1 (used by `traza demo` and the e2e tests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from gateway.config import Config, load_config
from gateway.localfed import LocalNode, NodeSpec, build
from gateway.national.client import local_request

T = TypeVar("T")

FOUR = [
    NodeSpec("latam-hub", "hub", "CO"),
    NodeSpec("eu-hub", "hub", "NL"),
    NodeSpec("mx", "national", "MX", hub="latam-hub"),
    NodeSpec("es", "national", "ES", hub="eu-hub"),
]


def wait_ready(proc: subprocess.Popen[bytes], ops_port: int, log: Path, *, timeout: float = 30.0,
               name: str = "node") -> None:
    """Until the node process answers 200 on its ``/readyz``; RuntimeError with the end of ``log`` if it
    exits first, TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"node {name} exited with status {proc.returncode}; end of {log}:\n{tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"node {name} not ready on http://127.0.0.1:{ops_port}/readyz after {timeout} s (log: {log})")


class Federation:
    """Nodes built by :func:`gateway.localfed.build` in ``root``, each run as its own process
    (``python -m gateway.cli.main run --config ...``), logging to ``root/<id>.log``."""

    def __init__(self, root: Path, specs: list[NodeSpec] | None = None, **kw: Any) -> None:
        self.root = root
        self.nodes: dict[str, LocalNode] = build(root, specs if specs is not None else FOUR, **kw)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self._configs: dict[str, Config] = {}

    def log_path(self, node_id: str) -> Path:
        return self.root / f"{node_id}.log"

    def spawn(self, node_id: str, env: dict[str, str] | None = None, wrap: list[str] | None = None) -> None:
        """Start the node's process without waiting for it to be ready (``env``: extra variables; ``wrap``:
        a command that runs it, e.g. ``["fiu-run", "-x"]`` for fault injection)."""
        n = self.nodes[node_id]
        log = open(self.log_path(node_id), "ab")  # closed in stop()
        self._logs[node_id] = log
        self.procs[node_id] = subprocess.Popen(  # noqa: S603 - our own interpreter and config path
            [*(wrap or []), sys.executable, "-m", "gateway.cli.main", "run", "--config", str(n.config)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True,  # Ctrl-C in the terminal reaches the demo only; it stops the nodes itself
        )

    def start(self, node_id: str, env: dict[str, str] | None = None) -> None:
        """Start the node and wait until it is ready; if it is not, stop it and raise."""
        self.spawn(node_id, env)
        try:
            self.wait_ready(node_id)
        except BaseException:
            self.stop(node_id)
            raise

    def wait_ready(self, node_id: str, timeout: float = 30.0) -> None:
        wait_ready(self.procs[node_id], self.nodes[node_id].ops_port, self.log_path(node_id), timeout=timeout,
                   name=node_id)

    def start_all(self) -> None:
        """Start every node at once, then wait until each is ready. If one is not, every node this call
        started is stopped before the error is raised: the nodes run in sessions of their own, so one left
        running would outlive the command (and keep its ports)."""
        started = [nid for nid in self.nodes if nid not in self.procs]
        try:
            for nid in started:
                self.spawn(nid)
            for nid in self.nodes:
                self.wait_ready(nid)
        except BaseException:
            for nid in started:
                p = self.procs.get(nid)
                if p is not None and p.poll() is None:
                    p.send_signal(signal.SIGTERM)  # all first, so that they stop in parallel
            for nid in started:
                self.stop(nid)
            raise

    def stop(self, node_id: str, sig: int = signal.SIGTERM) -> None:
        p = self.procs.pop(node_id, None)
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log = self._logs.pop(node_id, None)
        if log is not None:
            log.close()

    def stop_all(self) -> None:
        for p in self.procs.values():  # signal all first so they stop in parallel
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for nid in list(self.procs):
            self.stop(nid)

    def config(self, node_id: str) -> Config:
        if node_id not in self._configs:
            self._configs[node_id] = load_config(self.nodes[node_id].config)
        return self._configs[node_id]

    def call(self, node_id: str, role: str, method: str, path: str, body: dict[str, Any] | bytes | None = None,
             content_type: str = "application/json") -> tuple[int, Any]:
        """Call ``node_id``'s local API with its ``role`` client certificate; returns (status, decoded body)."""
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        return local_request(self.config(node_id), role, method, path, data, content_type)

    def wait_for(self, what: Callable[[], T], timeout: float = 30.0, interval: float = 0.2) -> T:
        deadline = time.monotonic() + timeout
        last: T | None = None
        while time.monotonic() < deadline:
            last = what()
            if last:
                return last
            time.sleep(interval)
        raise TimeoutError(f"condition not met within {timeout} s (last: {last!r})")
