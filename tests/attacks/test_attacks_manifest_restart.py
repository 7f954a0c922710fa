"""A restart must not roll the manifest back (SPEC §2: no rollback; docs/trust.md: a node whose saved
manifest expired waits for a fresh one). A node trusted v3 (which revokes es/sig/1); while it was down v3
expired, and the configured file holds an older v2 that expires later. Before the fix the restart took v2
and the revocation was gone; now it refuses to start, naming both versions.

A real node in-process on 127.0.0.1, a real PKI folder (FederationDir), the clock moved 100 days on."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.localfed import NodeSpec, build
from gateway.node import Node, NodeError
from gateway.trust.pki import FederationDir

SPECS = [NodeSpec("eu-hub", "hub", "NL"), NodeSpec("es", "national", "ES", hub="eu-hub")]


async def test_restart_after_the_saved_manifest_expired_does_not_fall_back_to_an_older_one(tmp_path: Path):
    nodes = build(tmp_path, SPECS, manifest_poll_seconds=3600, limits={"checkpoint_interval": 3600})
    pub, old = tmp_path / "pki" / "published", tmp_path / "v2"
    old.mkdir()
    fd, now = FederationDir(tmp_path / "pki"), time.time()
    fd.bump(now=now, days=366)  # v2, valid for a year
    fd.sign("eu", now=now)
    fd.sign("ameripol", now=now)
    for name in ("manifest.json", "manifest.sig"):
        shutil.copy(pub / name, old / name)
    fd.revoke(kid="es/sig/1", now=now)  # v3 (90 days) revokes es/sig/1
    fd.sign("eu", now=now)
    fd.sign("ameripol", now=now)
    cfg = nodes["eu-hub"].config
    node = Node(load_config(cfg))
    await node.start()
    assert node.fed.version == 3 and "es/sig/1" in node.fed.revoked_kids
    await node.stop()
    for name in ("manifest.json", "manifest.sig"):  # the configured file: an older copy
        shutil.copy(old / name, pub / name)
    with pytest.raises(NodeError) as e:
        Node(load_config(cfg), clock=lambda: time.time() + 100 * 86400)
    assert "version 2 is older than version 3, which this node trusted before it restarted" in str(e.value)
    assert "expired" in str(e.value)  # and why v3 itself is not taken
