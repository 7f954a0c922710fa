"""A small federation of real node processes for tests that attack a node over HTTP: any caller's raw
request on the peer listener (with a federation node's TLS certificate), the local listener (with the
system, operator or auditor client certificate) and the operations listener, and the node's log read
back line by line.

Import as ``from kit.livenode import Live`` (``tests/`` and ``tests/e2e`` are on ``pythonpath``).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from fedproc import Federation  # tests/e2e helper

from gateway.crypto.tls import client_context
from gateway.localfed import NodeSpec
from gateway.national.client import local_tls
from gateway.trust.pki import FederationDir

# the attacked node ``es`` and its hub ``eu-hub``, whose certificate the "peer" requests use
SPECS = [NodeSpec("eu-hub", "hub", "NL"), NodeSpec("es", "national", "ES", hub="eu-hub")]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip()

    def json(self) -> Any:
        return json.loads(self.body)


class Live:
    """``target`` (es) running as a process, with ``peer`` (eu-hub) as the caller of its peer API."""

    def __init__(self, root: Path, *, target: str = "es", peer: str = "eu-hub", specs: list[NodeSpec] | None = None,
                 **kw: Any) -> None:
        self.fed = Federation(root, specs or SPECS, **kw)
        self.target, self.peer = target, peer
        self.node = self.fed.nodes[target]
        f = FederationDir(root / "pki").node_files(peer)
        ca = [(root / "pki" / "ca" / "ca.pem").read_text()]
        self.peer_ctx = client_context(f.tls_cert, f.tls_key, ca)
        self.peer_ctx.check_hostname = False
        self._local: dict[str, ssl.SSLContext] = {}

    def start(self) -> Live:
        self.fed.start_all()
        return self

    def stop(self) -> None:
        self.fed.stop_all()

    # --- listeners ---------------------------------------------------------------------------------

    def base(self, listener: str) -> str:
        port = {"peer": self.node.peer_port, "local": self.node.local_port, "ops": self.node.ops_port}[listener]
        return f"{'http' if listener == 'ops' else 'https'}://127.0.0.1:{port}"

    def context(self, listener: str, role: str | None = None) -> ssl.SSLContext | None:
        """The TLS client context of a caller on ``listener``: the peer node's certificate on ``peer``,
        the local client certificate of ``role`` on ``local``, none on ``ops``."""
        if listener == "peer":
            return self.peer_ctx
        if listener == "local":
            role = role or "system"
            if role not in self._local:
                ctx = local_tls(self.fed.config(self.target), role)
                self._local[role] = ctx
            return self._local[role]
        return None

    def request(self, listener: str, method: str, path: str, body: bytes | None = None, *,
                role: str | None = None, content_type: str = "application/json",
                headers: dict[str, str] | None = None) -> Reply:
        h = {"Content-Type": content_type} if body is not None else {}
        if listener == "local":  # as the CLI and the dashboard do (the CSRF rule for operator/auditor actions)
            h["X-Traza-Request"] = "test"
        h.update(headers or {})
        req = urllib.request.Request(self.base(listener) + path, data=body, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, context=self.context(listener, role), timeout=30) as r:
                return Reply(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, dict(exc.headers), exc.read())

    def listener_of(self, path: str) -> str:
        """The listener that serves ``path``: /v1/ on the peer listener (its /v1/audit/checkpoint also on
        the local one, for auditors), /healthz, /readyz and /metrics on the ops one, the rest local."""
        if path.startswith("/v1/"):
            return "peer"
        if path in ("/healthz", "/readyz", "/metrics"):
            return "ops"
        return "local"

    def sessions(self) -> dict[str, requests.Session]:
        """One ``requests`` session per caller, as schemathesis wants them: ``peer`` (the peer node's
        certificate), ``system``, ``operator`` and ``auditor`` (the local client certificates) and ``ops``
        (no certificate). The caller closes them."""
        cfg = self.fed.config(self.target)
        peer = FederationDir(self.fed.root / "pki").node_files(self.peer)
        certs: dict[str, tuple[str, str] | None] = {"peer": (str(peer.tls_cert), str(peer.tls_key)), "ops": None}
        for role in ("system", "operator", "auditor"):
            certs[role] = (str(cfg.resolve(getattr(cfg.client, f"{role}_cert"))),
                           str(cfg.resolve(getattr(cfg.client, f"{role}_key"))))
        out: dict[str, requests.Session] = {}
        for name, cert in certs.items():
            s = requests.Session()
            s.verify = False  # the node's certificate names it by SAN URI only; the client certificate is what matters
            s.cert = cert
            out[name] = s
        return out

    def caller(self, path: str) -> tuple[str, str]:
        """(base URL, session name of :meth:`sessions`) of the caller that may call ``path``."""
        listener = self.listener_of(path)
        return self.base(listener), self.local_role(path) if listener == "local" else listener

    def local_role(self, path: str) -> str:
        """The role that may call a local-listener ``path``."""
        if path.startswith("/ops/"):
            return "operator"
        if path.startswith(("/audit/", "/v1/audit/")):
            return "auditor"
        if path.startswith("/ui"):
            return "operator"
        return "system"

    # --- the node's log ----------------------------------------------------------------------------

    def log_lines(self, node: str | None = None) -> list[bytes]:
        return self.fed.log_path(node or self.target).read_bytes().split(b"\n")[:-1]

    def lines_not_json(self, node: str | None = None) -> list[bytes]:
        """Every line of the node's log that is not exactly one JSON object in UTF-8 with no raw line
        or paragraph separator (U+2028, U+2029, U+0085: line breaks to some log readers) in it."""
        bad = []
        for line in self.log_lines(node):
            try:
                text = line.decode("utf-8")
                doc = json.loads(text)  # strict: a raw control character inside a string is refused
            except ValueError:
                bad.append(line)
                continue
            if not isinstance(doc, dict) or any(c in text for c in "\u2028\u2029\u0085"):
                bad.append(line)
        return bad
