"""Batch signatures (protocol 1.1, docs/protocol.md) between real `traza run` processes mx -> latam-hub ->
eu-hub -> es: hop records and acks travel as batched elements where every node that reads them advertised
`"batch": true`; receipts come back; the route evidence still verifies offline. With es a version-1 node
(not advertising it), the hubs give version-1 hop records and es version-1 acks, and everything still
arrives and verifies."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from fedproc import FOUR, Federation, submit

from gateway.trust.pki import FederationDir

LIMITS = {"checkpoint_interval": 0.5, "retry_min": 0.1, "retry_max": 0.5}
N = 8


def rows(fed: Federation, node: str, sql: str) -> list[tuple]:
    con = sqlite3.connect(f"file:{fed.nodes[node].data_dir / 'node.db'}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def given_acks(fed: Federation, node: str, jtis: list[str]) -> dict[str, str]:
    """The ack ``node`` gave for each message, from its evidence (a relaying node keeps no other once the
    next hop has acked: issue #19)."""
    from gateway.audit.reader import AuditReader
    from gateway.core import batchsig
    from gateway.core.jws import parse_compact

    def iss(ack: str) -> str:
        claims = (json.loads(batchsig.parse_element(ack, "ack").leaf) if batchsig.is_batched(ack)
                  else parse_compact(ack, typ="traza-ack+jwt").claims)
        return str(claims["iss"])

    con = sqlite3.connect(f"file:{fed.nodes[node].data_dir / 'node.db'}?mode=ro", uri=True, timeout=10)
    try:
        return {j: v for j in jtis for k, v in AuditReader(con).evidence(j) if k == "ack" and iss(v) == node}
    finally:
        con.close()


def run_route(tmp_path: Path, batch: set[str]) -> tuple[Federation, list[str], dict]:
    """Start the four nodes (``batch``: those that advertise it), send N notices mx -> es, ack them at es,
    wait for every receipt at mx; returns the stopped federation, the ids and what each node stored."""
    specs = [dataclasses.replace(s, batch=s.id in batch) for s in FOUR]
    fed = Federation(tmp_path / "fed", specs, limits=LIMITS)
    fed.start_all()
    try:
        # submitted quickly, several share a batch when they queue together; the checks hold for any size
        jtis = [submit(fed, "mx", "es", "notice", {"title": f"n{i}", "text": "batch"}) for i in range(N)]

        def all_in() -> bool:
            got = {j for (j,) in rows(fed, "es", "SELECT jti FROM inbox")}
            return set(jtis) <= got
        fed.wait_for(all_in, timeout=60)
        for j in jtis:
            status, doc = fed.call("es", "system", "POST", f"/local/v1/inbox/{j}/ack")
            assert status == 200, doc
        fed.wait_for(lambda: {j for (j,) in rows(fed, "mx", "SELECT jti FROM messages WHERE state='delivered'")}
                     >= set(jtis), timeout=60)
        fd = FederationDir(tmp_path / "fed" / "pki")
        cert, key = fd.node_files("mx").clients["auditor:default"]
        out = tmp_path / "route.json"
        cli = [sys.executable, "-m", "gateway.cli.main", "audit", "export", "--url",
               f"https://127.0.0.1:{fed.nodes['mx'].local_port}", "--cert", str(cert), "--key", str(key), "--ca",
               str(fd.ca_cert_path), "--route", "--jti", jtis[0], "-o", str(out)]

        def exported() -> bool:
            r = subprocess.run(cli, capture_output=True, text=True, timeout=120)
            return r.returncode == 0 and "evidence of 4 of 4 nodes" in r.stdout
        fed.wait_for(exported, timeout=60.0, interval=1.0)
        stored = {node: dict(rows(fed, node, "SELECT jti, envelope FROM envelopes")) for node in fed.nodes}
        acks = {node: given_acks(fed, node, jtis) for node in fed.nodes}
    finally:
        fed.stop_all()
    r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "audit", "verify-bundle", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    for i, node in enumerate(("mx", "latam-hub", "eu-hub", "es"), 1):
        assert f"hop {i} ({node}): verified" in r.stdout, r.stdout
    return fed, jtis, {"envelopes": stored, "acks": acks, "route": json.loads(out.read_text())}


def test_batch_nodes_sign_batched_hop_records_and_acks_and_the_route_evidence_verifies(tmp_path: Path) -> None:
    _fed, jtis, got = run_route(tmp_path, {"mx", "latam-hub", "eu-hub", "es"})
    for j in jtis:
        hops = json.loads(got["envelopes"]["es"][j])["hops"]
        assert len(hops) == 2 and all(h.startswith("tzb1.") for h in hops), hops
        for node in ("latam-hub", "eu-hub", "es"):  # each ack given to the sender is a batched element
            assert got["acks"][node][j].startswith("tzb1."), (node, got["acks"][node][j][:40])
    # the bundles carry the batched elements (path and batch signature) and verified offline above
    bundle_hops = got["route"]["hops"][-1]["bundle"]["envelope"]["hops"]
    assert all(h.startswith("tzb1.") for h in bundle_hops)
    # the leaf moved to another place in its batch: the path no longer leads to the signed root, offline
    pre, leaf, index, path, jws = bundle_hops[0].split(".", 4)
    moved = "1" if index == "0" else "0"
    bad = json.loads(json.dumps(got["route"]))
    bad["hops"][-1]["bundle"]["envelope"]["hops"][0] = ".".join([pre, leaf, moved, path, jws])
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(bad))
    r = subprocess.run([sys.executable, "-m", "gateway.cli.main", "audit", "verify-bundle", str(tampered)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "hop 4 (es)" in r.stderr, r.stdout + r.stderr


def test_a_version_1_recipient_gets_version_1_hop_records_and_acks_and_still_everything_arrives(tmp_path: Path) -> None:
    _fed, jtis, got = run_route(tmp_path, {"mx", "latam-hub", "eu-hub"})  # es: a version-1 node
    for j in jtis:
        hops = json.loads(got["envelopes"]["es"][j])["hops"]
        assert len(hops) == 2 and not any(h.startswith("tzb1.") for h in hops), hops
        assert not got["acks"]["es"][j].startswith("tzb1.")  # es answers eu-hub with version-1 acks
        assert got["acks"]["latam-hub"][j].startswith("tzb1.")  # mx and latam-hub both negotiated it
