"""A node re-reads its configured manifest file when it changes (SPEC §2: newer manifests are applied
without restart; docs/operations.md: operators copy ``published/manifest.{json,sig}`` there). The pair is
two files: a poll that falls between the copy of ``manifest.json`` and the copy of ``manifest.sig``
rejects the mismatched pair; the ``manifest.sig`` that arrives next must still be picked up (it was
ignored: only ``manifest.json``'s mtime was watched, so a hub stayed on the old version for good).

A real node in-process, a real PKI folder (FederationDir)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from kit.nodes import started

from gateway.localfed import NodeSpec, build
from gateway.trust.pki import FederationDir

SPECS = [NodeSpec("eu-hub", "hub", "NL"), NodeSpec("es", "national", "ES", hub="eu-hub")]


async def test_a_manifest_sig_copied_after_a_poll_of_its_manifest_json_is_still_applied(tmp_path: Path):
    nodes = build(tmp_path, SPECS, manifest_poll_seconds=3600, limits={"checkpoint_interval": 3600})
    pub, own = tmp_path / "pki" / "published", tmp_path / "hub-manifest"
    own.mkdir()
    for name in ("manifest.json", "manifest.sig"):
        shutil.copy(pub / name, own / name)
    cfg = nodes["eu-hub"].config
    cfg.write_text(cfg.read_text().replace(str(pub / "manifest.json"), str(own / "manifest.json")))
    async with started(cfg) as hub:
        await hub.poll_manifest()
        assert hub.fed.version == 1
        fd, now = FederationDir(tmp_path / "pki"), time.time()
        fd.bump(now=now)
        fd.sign("eu", now=now)
        fd.sign("ameripol", now=now)
        shutil.copy(pub / "manifest.json", own / "manifest.json")  # the operator's copy, a poll in between
        await hub.poll_manifest()
        assert hub.fed.version == 1  # v2's json with v1's signatures: refused, as it must be
        shutil.copy(pub / "manifest.sig", own / "manifest.sig")
        await hub.poll_manifest()
        assert hub.fed.version == 2
