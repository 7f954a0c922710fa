"""Start a federation of real `traza run` processes on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from gateway.cli.node import local_request
from gateway.config import load_config
from gateway.localfed import LocalNode, NodeSpec, build

FOUR = [
    NodeSpec("latam-hub", "hub", "CO"),
    NodeSpec("eu-hub", "hub", "NL"),
    NodeSpec("mx", "national", "MX", hub="latam-hub"),
    NodeSpec("es", "national", "ES", hub="eu-hub"),
]


class Federation:
    def __init__(self, root: Path, specs: list[NodeSpec] = FOUR, **kw) -> None:
        self.root = root
        self.nodes: dict[str, LocalNode] = build(root, specs, **kw)
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, node_id: str) -> None:
        n = self.nodes[node_id]
        log = open(self.root / f"{node_id}.log", "ab")
        self.procs[node_id] = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli.main", "run", "--config", str(n.config)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.wait_ready(node_id)

    def wait_ready(self, node_id: str, timeout: float = 30.0) -> None:
        n = self.nodes[node_id]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.procs[node_id]
            if p.poll() is not None:
                raise RuntimeError(f"{node_id} exited {p.returncode}: {(self.root / f'{node_id}.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{n.ops_port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{node_id} not ready after {timeout} s")

    def start_all(self) -> None:
        for nid in self.nodes:
            self.start(nid)

    def stop(self, node_id: str, sig: int = signal.SIGTERM) -> None:
        p = self.procs.pop(node_id, None)
        if p is None:
            return
        p.send_signal(sig)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def stop_all(self) -> None:
        for nid in list(self.procs):
            self.stop(nid)

    def call(self, node_id: str, role: str, method: str, path: str, body: dict | bytes | None = None,
             content_type: str = "application/json"):
        cfg = load_config(self.nodes[node_id].config)
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        return local_request(cfg, role, method, path, data, content_type)

    def wait_for(self, what, timeout: float = 30.0, interval: float = 0.2):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = what()
            if last:
                return last
            time.sleep(interval)
        raise TimeoutError(f"condition not met within {timeout} s (last: {last!r})")
