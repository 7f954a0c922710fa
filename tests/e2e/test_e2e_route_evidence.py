"""The auditor at the origin downloads one file with every hop's evidence (issue #16, done-when), with
real `traza run` processes mx -> latam-hub -> eu-hub -> es and the real CLI: `traza audit export --route`
against mx's local API gathers mx's, latam-hub's, eu-hub's and es's bundles; `traza audit verify-bundle`
verifies it hop by hop; one changed character in any hop's part fails, naming that hop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fedproc import FOUR, Federation, inbox, submit

from gateway.trust.pki import FederationDir

sys.path.insert(0, "tests")
from core.message_examples import example


def traza(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_the_auditor_at_mx_verifies_every_hops_evidence_of_a_message_to_es(tmp_path: Path) -> None:
    fed = Federation(tmp_path / "fed", FOUR, limits={"checkpoint_interval": 0.5, "retry_min": 0.1, "retry_max": 0.5})
    fed.start_all()
    try:
        jti = submit(fed, "mx", "es", "trace.request", example("trace.request"))
        fed.wait_for(lambda: any(m["id"] == jti for m in inbox(fed, "es")))
        fd = FederationDir(tmp_path / "fed" / "pki")
        cert, key = fd.node_files("mx").clients["auditor:default"]
        out = tmp_path / "route.json"
        cli = ["audit", "export", "--url", f"https://127.0.0.1:{fed.nodes['mx'].local_port}", "--cert", str(cert),
               "--key", str(key), "--ca", str(fd.ca_cert_path), "--route", "--jti", jti, "-o", str(out)]

        def exported() -> bool:  # every node checkpoints within a second; until then a hop is "missing"
            r = traza(*cli)
            return r.returncode == 0 and "evidence of 4 of 4 nodes" in r.stdout

        fed.wait_for(exported, timeout=60.0, interval=1.0)
    finally:
        fed.stop_all()
    r = traza("audit", "verify-bundle", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "along mx -> latam-hub -> eu-hub -> es" in r.stdout
    for i, node in enumerate(("mx", "latam-hub", "eu-hub", "es"), 1):
        assert f"hop {i} ({node}): verified" in r.stdout, r.stdout
    doc = json.loads(out.read_text())
    for i, hop in enumerate(doc["hops"], 1):
        bad = json.loads(out.read_text())
        cp = bad["hops"][i - 1]["bundle"]["checkpoint"]
        at = cp.rindex(" ") + 5  # inside the base64 of the last signature line
        bad["hops"][i - 1]["bundle"]["checkpoint"] = cp[:at] + ("A" if cp[at] != "A" else "B") + cp[at + 1:]
        tampered = tmp_path / f"tampered-{i}.json"
        tampered.write_text(json.dumps(bad))
        r = traza("audit", "verify-bundle", str(tampered))
        assert r.returncode == 1 and f"hop {i} ({hop['node']}):" in r.stderr, (i, r.stdout, r.stderr)
