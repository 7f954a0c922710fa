"""Build a whole federation on this machine (127.0.0.1): PKI, signed manifest and one config per node.

Used by `traza demo`, the end-to-end tests and `traza bench`, so all three start nodes the same way an
operator would: with files made by `traza pki` and a TOML config each.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.ports import listen_ports
from gateway.trust.pki import FederationDir


@dataclass(frozen=True)
class NodeSpec:
    id: str
    kind: str
    country: str
    hub: str | None = None
    name: str | None = None
    max_classification: str = "RESTREINT_UE"
    sig_alg: str | None = None
    kem: str | None = None
    peers: tuple[str, ...] = ()
    delivery: dict[str, Any] = field(default_factory=dict)
    adapter: str = "standard"
    batch: bool = False  # advertises batch signatures (protocol 1.1, docs/protocol.md)


@dataclass
class LocalNode:
    spec: NodeSpec
    config: Path
    data_dir: Path
    peer_port: int
    local_port: int
    ops_port: int

    @property
    def id(self) -> str:
        return self.spec.id


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 to listen on (:func:`gateway.ports.listen_ports`)."""
    return listen_ports(n)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table, e.g. [retention] types
        return "{ " + ", ".join(f"{_toml_value(str(k))} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> None:
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def build(
    root: Path,
    specs: Iterable[NodeSpec],
    *,
    federation: str = "traza-demo",
    authorities: tuple[str, ...] = ("eu", "mx", "ameripol"),
    threshold: int = 2,
    signers: tuple[str, ...] = ("eu", "ameripol"),
    now: float | None = None,
    limits: dict[str, Any] | None = None,
    manifest_poll_seconds: float = 30.0,
    key_settle_seconds: float | None = None,
    log_format: str = "json",
    endpoints: dict[str, str | list[str]] | None = None,
    groups: dict[str, list[str]] | None = None,
    ports: list[int] | None = None,
) -> dict[str, LocalNode]:
    """Create the federation in ``root``: ``root/pki`` (the federation folder), ``root/nodes/<id>.toml``
    and ``root/data/<id>``. Hubs are added first. Returns the nodes by id.

    ``endpoints`` replaces the manifest endpoint (the address every other node dials) of the named nodes,
    e.g. ``{"latam-hub": "https://127.0.0.1:<proxy port>"}`` to put a proxy in front of latam-hub; the
    node still listens on its own peer port; a list gives the node several (manifest 1.1 ``endpoints``: its
    replicas, docs/ha.md). ``groups`` become the manifest's recipient groups (SPEC §2,
    1.1). ``ports``: three listening ports per node (peer, local, ops, in the order the nodes are built: hubs
    first, then by id); by default free ports from the ephemeral range."""
    now = time.time() if now is None else now
    specs = sorted(specs, key=lambda s: (s.kind != "hub", s.id))
    endpoints = endpoints or {}
    unknown = sorted(set(endpoints) - {s.id for s in specs})
    if unknown:
        raise ValueError(f"endpoints: {', '.join(unknown)} not among the nodes to build")
    pki = root / "pki"
    fd = FederationDir.init(pki, federation=federation, authorities=list(authorities), threshold=threshold, now=now)
    if ports is not None and len(ports) != 3 * len(specs):
        raise ValueError(f"ports: {len(ports)} given for {len(specs)} nodes (3 each)")
    ports = ports if ports is not None else free_ports(3 * len(specs))
    nodes: dict[str, LocalNode] = {}
    for i, s in enumerate(specs):
        p, lo, ops = ports[3 * i : 3 * i + 3]
        given = endpoints.get(s.id, f"https://127.0.0.1:{p}")
        endpoint = given if isinstance(given, str) else given[0]
        fd.add_node(s.id, kind=s.kind, country=s.country, endpoint=endpoint, now=now, hub=s.hub,
                    peers=s.peers, max_classification=s.max_classification, sig_alg=s.sig_alg, kem=s.kem,
                    name=s.name or s.id, batch=s.batch)
        nodes[s.id] = LocalNode(spec=s, config=root / "nodes" / f"{s.id}.toml", data_dir=root / "data" / s.id,
                                peer_port=p, local_port=lo, ops_port=ops)
    for node_id, given in endpoints.items():
        if not isinstance(given, str) and len(given) > 1:
            fd.set_endpoints(node_id, list(given), now=now)
    for name, members in (groups or {}).items():
        fd.set_group(name, members, now=now)
    for a in signers:
        fd.sign(a, now=now)
    (root / "nodes").mkdir(parents=True, exist_ok=True)
    for n in nodes.values():
        f = fd.node_files(n.id)
        clients: dict[str, Any] = {}
        for role in ("system", "operator", "auditor"):
            cert, key = f.clients[f"{role}:default"]
            clients[f"{role}_cert"], clients[f"{role}_key"] = str(cert), str(key)
        delivery = {"mode": "inbox", **n.spec.delivery}
        write_config(n.config, {
            "node": {"id": n.id, "data_dir": str(n.data_dir)},
            "trust": {"anchor": str(pki / "trust-anchor.json"), "manifest": str(pki / "published" / "manifest.json"),
                      "manifest_poll_seconds": manifest_poll_seconds,
                      **({} if key_settle_seconds is None else {"key_settle_seconds": key_settle_seconds})},
            "keys": {"sig": str(f.sig_key), "enc": str(f.enc_key), "audit": str(f.audit_key),
                     "tls_cert": str(f.tls_cert), "tls_key": str(f.tls_key), "local_ca": str(f.local_ca)},
            "listen": {"peer": f"127.0.0.1:{n.peer_port}", "local": f"127.0.0.1:{n.local_port}",
                       "ops": f"127.0.0.1:{n.ops_port}"},
            "delivery": delivery,
            "adapter": {"name": n.spec.adapter},
            "limits": limits or {},
            "log": {"format": log_format, "level": "info"},
            "client": clients,
        })
    return nodes


def set_store(node: LocalNode, store: dict[str, Any]) -> None:
    """Give ``node``'s config the ``[store]`` section ``store`` (e.g. ``{"url": "postgresql://..."}``)."""
    import tomllib

    doc = tomllib.loads(node.config.read_text(encoding="utf-8"))
    doc["store"] = dict(store)
    write_config(node.config, doc)


def add_replica(node: LocalNode, name: str, ports: list[int], store: dict[str, Any]) -> LocalNode:
    """Another replica of ``node`` (docs/ha.md): the same node id, keys and manifest, its own data_dir
    (``data/<name>``) and listening ports (peer, local, ops), and both configs given the ``[store]`` section
    ``store`` (a PostgreSQL ``url``, the shared ``blob_dir``, ...). Returns the new replica; its config is
    ``nodes/<name>.toml``."""
    import tomllib

    if len(ports) != 3:
        raise ValueError(f"ports: {len(ports)} given for one replica (3: peer, local, ops)")
    set_store(node, store)
    doc = tomllib.loads(node.config.read_text(encoding="utf-8"))
    data_dir = node.data_dir.parent / name
    p, lo, ops = ports
    doc["node"] = {**doc["node"], "data_dir": str(data_dir)}
    doc["listen"] = {"peer": f"127.0.0.1:{p}", "local": f"127.0.0.1:{lo}", "ops": f"127.0.0.1:{ops}"}
    config = node.config.parent / f"{name}.toml"
    write_config(config, doc)
    return LocalNode(spec=node.spec, config=config, data_dir=data_dir, peer_port=p, local_port=lo, ops_port=ops)
