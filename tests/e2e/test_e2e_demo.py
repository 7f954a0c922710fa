"""`traza demo --once --dir DIR --json`: eleven real node processes play the whole story; every message
sent is delivered with a receipt, and the evidence bundle it keeps verifies offline. The ballistic
submission carries the project's X3P sample as a blob: es's national system fetches it byte for byte,
and the two hubs that relayed it only ever held ciphertext."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from gateway.core.b64 import b64url_encode

SAMPLE = Path(__file__).resolve().parents[2] / "adapters" / "x3p" / "samples" / "mx-fgr-2026-1180-c3-breechface.x3p"


def traza(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_demo_once_delivers_everything_with_receipts_and_keeps_evidence(tmp_path: Path) -> None:
    root = tmp_path / "fed"
    r = traza("demo", "--once", "--dir", str(root), "--json", timeout=180)
    assert r.returncode == 0, r.stderr[-5000:]
    result = json.loads(r.stdout)  # stdout holds only the JSON summary; the story went to stderr
    assert "trace.request" in r.stderr and "Summary" in r.stderr

    assert result["rejected"] == 0
    assert result["sent"] > 0 and result["delivered"] == result["sent"]
    non_receipts = sum(t["sent"] for mt, t in result["by_type"].items() if mt != "receipt")
    assert result["receipts"] == non_receipts == result["sent"]
    by_type = result["by_type"]
    for mt in ("trace.request", "trace.response", "firearm.status.query", "firearm.status.answer",
               "ballistic.submission", "ballistic.hit", "licence.verify.query", "licence.verify.answer"):
        assert by_type[mt]["sent"] >= 1 and by_type[mt]["delivered"] == by_type[mt]["sent"], mt
        assert by_type[mt]["receipts"] == by_type[mt]["sent"], mt
    # 20 pistols by the public shares; the six EU producers each answered every trace request
    assert by_type["trace.request"]["sent"] == by_type["trace.response"]["sent"] == 18
    # the traced origins come from mx's own insights (traza stats): 5 Spanish pistols, each other country
    # under 5 and so suppressed
    assert result["origins"] == {"AT": "<5", "BE": "<5", "DE": "<5", "ES": 5, "IT": "<5", "RO": "<5",
                                 "other (not traced)": 2}
    # mx asked every EU register at once (group:eu-registries): seven answers, the registry's a hit
    check = result["status_check"]
    assert (check["recipients"], check["answered"], check["pending"], check["failed"]) == (7, 7, 0, 0), check
    assert check["hits"] == ["arms-registry"], check
    assert sorted(n["id"] for n in result["nodes"]) == sorted(
        ["mx", "es", "it", "de", "at", "be", "ro", "co", "eu-hub", "latam-hub", "arms-registry"])
    # the EU hub was stopped and restarted during the story
    assert "restarted" in r.stderr

    # the federation is kept, with the evidence bundle of the first trace request
    evidence = root / "evidence" / f"{result['first_trace_request']}.json"
    assert evidence.is_file()
    assert (root / "pki").is_dir() and (root / "nodes" / "mx.toml").is_file()
    bundle = json.loads(evidence.read_text())
    assert bundle["jti"] == result["first_trace_request"] and bundle["node"] == "es"
    v = traza("audit", "verify-bundle", str(evidence), timeout=60)
    assert v.returncode == 0, v.stdout + v.stderr

    # the cartridge-case scan: uploaded by mx's national system, fetched by es's, identical, digest verified
    sample = SAMPLE.read_bytes()
    sha = b64url_encode(hashlib.sha256(sample).digest())
    blobs = result["blobs"]
    assert (blobs["count"], blobs["bytes"], blobs["verified"]) == (1, len(sample), 1)
    (f,) = blobs["files"]
    assert (f["name"], f["sha256"], f["len"], f["from"], f["to"]) == (SAMPLE.name, sha, len(sample), "mx", "es")
    assert f["verified"] and Path(f["received"]).read_bytes() == sample
    # the demo looked itself: each hub held the file as ciphertext, or had already dropped its transit copy
    assert set(f["hubs"]) == {"latam-hub", "eu-hub"} and set(f["hubs"].values()) <= {"ciphertext", "dropped"}
    assert "SHA-256 digest verified" in r.stderr and "64 × 64 points at 3.125 µm" in r.stderr
    assert (root / "data" / "es" / "local-blobs" / sha).read_bytes() == sample
    # the hubs relayed it as ciphertext (TZB1 chunks): no slice of the file anywhere in their data folders
    slices = [sample[:512], sample[len(sample) // 2 : len(sample) // 2 + 256], sample[-256:]]
    for hub in ("latam-hub", "eu-hub"):
        data = root / "data" / hub
        stored = [p for p in (data / "blobs").iterdir() if p.is_file()]
        assert len(stored) <= 1, (hub, stored)  # none once the transit copy was dropped (SPEC §11, 1.1)
        assert all(p.read_bytes()[:4] == b"TZB1" and p.name != sha for p in stored)
        for p in data.rglob("*"):
            if p.is_file():
                content = p.read_bytes()
                assert not any(s in content for s in slices), p
        local = data / "local-blobs"
        assert not local.exists() or not [p for p in local.iterdir() if p.is_file()]

    # tampering with the bundle is detected
    bundle["jti"] = "019a7c3e-52d1-7a4b-8c6e-2f9d1b3a4c5e"
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(bundle))
    assert traza("audit", "verify-bundle", str(bad), timeout=60).returncode == 1


def test_demo_refuses_a_non_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("x")
    r = traza("demo", "--once", "--dir", str(tmp_path), timeout=60)
    assert r.returncode == 1 and str(tmp_path) in r.stderr and "empty" in r.stderr


def test_story_shares_and_bodies_are_valid() -> None:
    from gateway.core.messages import validate_body
    from gateway.demo import story

    assert story.distribute() == {"ES": 5, "IT": 4, "RO": 3, "DE": 2, "AT": 2, "BE": 2, "other": 2}
    assert sum(story.distribute(100).values()) == 100 and story.distribute(100)["ES"] == 23
    pistols = story.seized_pistols()
    assert pistols == story.seized_pistols()  # deterministic
    serials = [p["firearm"]["serial_number"] for p in pistols if p["firearm"]]
    assert len(serials) == len(set(serials)) == 18
    for n, p in enumerate(pistols, 1):
        if p["firearm"] is None:
            continue
        req = story.trace_request(p["firearm"], n)
        validate_body("trace.request", req, admit=True)  # the ITI §8(a) marking elements (issue #15)
        assert req["firearm"]["essential_components"] and req["priority"] == "ROUTINE"
        resp = story.trace_response(req)
        validate_body("trace.response", resp)
        export = next(e for e in resp["custody_chain"] if e["event"] == "EXPORTED")
        assert export["document_ref"].startswith(p["country"] + "-EXP-") and export["to_party"]
    fa = pistols[5]["firearm"]
    validate_body("firearm.status.query", story.status_query(fa))
    validate_body("firearm.status.answer", story.status_answer(story.status_query(fa), fa))
    from gateway.national.x3p import x3p_message

    (scan,) = story.x3p_scans()
    assert scan.is_file() and scan.with_suffix(".json").is_file()  # in the repository: no ../shared needed
    msg, files, warnings = x3p_message(scan, to="es")
    assert msg["to"] == "es" and files == [(scan, "application/x-x3p")] and warnings == []
    sub = msg["body"]
    validate_body("ballistic.submission", sub)
    (topo,) = sub["topography"]
    assert topo["sha256"] == b64url_encode(hashlib.sha256(scan.read_bytes()).digest())
    assert (topo["region"], topo["size_x"], topo["size_y"]) == ("BreechFace", 64, 64)
    validate_body("ballistic.hit", story.ballistic_hit(sub))
    q = story.licence_query("IT-EXP-2016-00406", fa)
    validate_body("licence.verify.query", q)
    validate_body("licence.verify.answer", story.licence_answer(q))
    validate_body("notice", story.notice_after_outage())


def test_plaintext_search_finds_a_slice_across_read_windows(tmp_path: Path) -> None:
    """The demo's look into a hub's blob store (`_contains_any`) finds a slice of the file wherever it lies,
    also across its 1 MiB read windows, and finds nothing in ciphertext of the file."""
    import os

    from gateway.demo.run import _contains_any

    sample = SAMPLE.read_bytes()
    needles = [sample[:512], sample[len(sample) // 2 : len(sample) // 2 + 256], sample[-256:]]
    f = tmp_path / "blob"
    for at in (0, 1024 * 1024 - 100, 1024 * 1024, 3 * 1024 * 1024 - 1):
        noise = os.urandom(at) + needles[1] + os.urandom(1000)
        f.write_bytes(noise)
        assert _contains_any(f, needles), at
    f.write_bytes(os.urandom(3 * 1024 * 1024))
    assert not _contains_any(f, needles)
