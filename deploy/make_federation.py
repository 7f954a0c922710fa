#!/usr/bin/env python3
"""Make the four-node federation of deploy/compose.yaml: PKI, a manifest signed by 2 of 3 authorities,
and one self-contained config folder per node, to mount read-only at /etc/traza in its container.

    .venv/bin/python deploy/make_federation.py [--ha] [OUT]        (OUT defaults to deploy/federation)

It runs the same `traza pki` / `traza manifest` verbs an operator would (in-process), with the container
host names as endpoints (https://mx:8443, ...), then copies each node's own files beside its node.toml:

    OUT/pki/                 the federation folder: authority keys, TLS CA key -- NOT mounted anywhere
    OUT/<node>/node.toml     listen 0.0.0.0:8443 (peer), :8444 (local), :8080 (ops); data in /var/lib/traza
    OUT/<node>/trust-anchor.json, manifest.json, manifest.sig
    OUT/<node>/keys/{sig-1,enc-1,audit-1}.key   tls/{cert.pem,cert.key,ca.pem}   local/ca.pem
    OUT/<node>/clients/<role>-default.{pem,key}  for `traza send/status/peers/queue` inside the container

With ``--ha`` (deploy/compose-ha.yaml, docs/ha.md) latam-hub is two replicas: the manifest names both
addresses (https://latam-hub:8443, https://latam-hub-b:8443) and its node.toml, which both replicas
mount, puts its store on the PostgreSQL primary and standby (:data:`HA_STORE`).

Private keys keep mode 0600 in 0700 folders: the container user must have the uid of whoever runs
this script (deploy/README.md, TRAZA_UID). Exit status: 0 done, 1 a step failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from gateway.cli.main import main as traza
from gateway.localfed import write_config
from gateway.trust.pki import FederationDir, NodeFiles

FEDERATION = "traza-compose"
AUTHORITIES = ("eu", "mx", "ameripol")
SIGNERS = ("eu", "ameripol")  # 2 of 3
PEER_PORT, LOCAL_PORT, OPS_PORT = 8443, 8444, 8080
DATA_DIR = "/var/lib/traza"
# id, kind, country, hub, adapter -- hubs first (a national node's hub must already be in the manifest)
NODES: tuple[tuple[str, str, str, str | None, str], ...] = (
    ("latam-hub", "hub", "CO", None, "standard"),
    ("eu-hub", "hub", "NL", None, "standard"),
    ("mx", "national", "MX", "latam-hub", "mx"),
    ("es", "national", "ES", "eu-hub", "es"),
)
# the host port compose.yaml maps to each node's local listener: the origin browsers use for its dashboard
# --ha: the replicated hub, its second replica's host name and its store (password: PGPASSWORD)
HA_HUB, HA_REPLICA = "latam-hub", "latam-hub-b"
HA_STORE = {"url": "postgresql://traza@pg-primary:5432,pg-standby:5432/traza_latam?target_session_attrs=read-write",
            "blob_dir": "/var/lib/traza-shared"}
HOST_LOCAL_PORTS = {"latam-hub": 7201, "eu-hub": 7202, "mx": 7203, "es": 7204}
HEADER = """\
# Node config for the container {node} of deploy/compose.yaml, written by deploy/make_federation.py.
# Mounted read-only at /etc/traza; relative paths are resolved against this file's folder.
# Keys and their meaning: config/mx.toml (commented line by line) and the README's Configuration.

"""


def run(*argv: str) -> None:
    rc = traza(list(argv))
    if rc != 0:
        print(f"make_federation: `traza {' '.join(argv)}` failed (exit {rc})", file=sys.stderr)
        sys.exit(rc)


def bundle(fd: FederationDir, out: Path, node: str, adapter: str, store: dict[str, str] | None = None) -> Path:
    """OUT/<node>/: only this node's files and its node.toml."""
    f: NodeFiles = fd.node_files(node)
    d = out / node
    d.mkdir(mode=0o700)
    rel: dict[str, str] = {}

    def put(key: str, src: Path, name: str) -> None:
        dst = d / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix == ".key":
            dst.parent.chmod(0o700)
        shutil.copy2(src, dst)
        rel[key] = name

    put("anchor", fd.anchor_path, "trust-anchor.json")
    put("manifest", fd.published_dir / "manifest.json", "manifest.json")
    put("manifest.sig", fd.published_dir / "manifest.sig", "manifest.sig")
    put("sig", f.sig_key, f"keys/{f.sig_key.name}")
    put("enc", f.enc_key, f"keys/{f.enc_key.name}")
    put("audit", f.audit_key, f"keys/{f.audit_key.name}")
    put("tls_cert", f.tls_cert, "tls/cert.pem")
    put("tls_key", f.tls_key, "tls/cert.key")
    put("tls_ca", f.tls_ca, "tls/ca.pem")
    put("local_ca", f.local_ca, "local/ca.pem")
    client: dict[str, str] = {}
    for role in ("system", "operator", "auditor"):
        cert, key = f.clients[f"{role}:default"]
        put(f"{role}_cert", cert, f"clients/{cert.name}")
        put(f"{role}_key", key, f"clients/{key.name}")
        client[f"{role}_cert"], client[f"{role}_key"] = rel[f"{role}_cert"], rel[f"{role}_key"]
    cfg = d / "node.toml"
    write_config(cfg, {
        "node": {"id": node, "data_dir": DATA_DIR},
        "trust": {"anchor": rel["anchor"], "manifest": rel["manifest"], "manifest_poll_seconds": 30},
        "keys": {k: rel[k] for k in ("sig", "enc", "audit", "tls_cert", "tls_key", "local_ca")},
        "listen": {"peer": f"0.0.0.0:{PEER_PORT}", "local": f"0.0.0.0:{LOCAL_PORT}", "ops": f"0.0.0.0:{OPS_PORT}",
                   "local_origins": [f"https://{h}:{HOST_LOCAL_PORTS[node]}" for h in ("127.0.0.1", "localhost")]},
        "delivery": {"mode": "inbox"},
        "adapter": {"name": adapter},
        "log": {"format": "json", "level": "info"},
        "client": client,
        **({"store": store} if store else {}),
    })
    cfg.write_text(HEADER.format(node=node) + cfg.read_text(encoding="utf-8"), encoding="utf-8")
    return cfg


def make(out: Path, ha: bool = False) -> list[Path]:
    if out.exists() and any(out.iterdir()):
        print(f"make_federation: {out} is not empty; remove it first (it holds keys: `rm -r {out}`)",
              file=sys.stderr)
        sys.exit(1)
    out.mkdir(parents=True, exist_ok=True)
    pki = out / "pki"
    run("pki", "init-federation", str(pki), "--federation", FEDERATION,
        "--authorities", ",".join(AUTHORITIES), "--threshold", "2")
    for node, kind, country, hub, _adapter in NODES:
        run("pki", "add-node", str(pki), node, "--kind", kind, "--country", country,
            "--endpoint", f"https://{node}:{PEER_PORT}", *(["--hub", hub] if hub else []))
    if ha:
        FederationDir(pki).set_endpoints(HA_HUB, [f"https://{HA_HUB}:{PEER_PORT}", f"https://{HA_REPLICA}:{PEER_PORT}"],
                                         now=time.time())
    for authority in SIGNERS:
        run("manifest", "sign", str(pki), "--authority", authority)
    run("manifest", "verify", str(pki))
    fd = FederationDir(pki)
    configs = [bundle(fd, out, node, adapter, HA_STORE if ha and node == HA_HUB else None)
               for node, _k, _c, _h, adapter in NODES]
    print(f"\nnode folders (mount each at /etc/traza): {', '.join(str(c.parent) for c in configs)}")
    print(f"keep {pki} (authority keys, CA key) off the nodes")
    return configs


def cli(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make_federation.py", description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", type=Path, default=Path(__file__).resolve().parent / "federation",
                   help="output folder (default deploy/federation)")
    p.add_argument("--ha", action="store_true",
                   help="latam-hub as two replicas on PostgreSQL with a standby (deploy/compose-ha.yaml)")
    args = p.parse_args(argv)
    make(args.out, ha=args.ha)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
