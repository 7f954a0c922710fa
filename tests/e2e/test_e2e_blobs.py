"""Blobs end to end with real node processes (SPEC §4.3): the four real X3P files of ../shared/vectors/x3p
sent from mx with `traza send`, relayed mx → latam-hub → eu-hub → es; es delivers each submission with its
attachment and serves the decrypted file, byte for byte; the hubs only ever held ciphertext."""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from fedproc import Federation, inbox, submit  # tests/e2e helper

from gateway.core.b64 import b64url_encode

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "x3p"
FILES = ["sample-land.x3p", "csafe-logo.x3p", "pyramid.x3p", "testing.x3p"]
SIDECAR = Path(__file__).resolve().parents[2] / "adapters" / "x3p" / "samples" / "mx-fgr-2026-1180-c3-breechface.json"


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    f = Federation(tmp_path_factory.mktemp("fed"))
    f.start_all()
    yield f
    f.stop_all()


def traza(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli.main", *args], capture_output=True, text=True,
                          timeout=60)


def fetch(fed: Federation, node: str, path: str) -> tuple[int, bytes]:
    """GET on ``node``'s local API as its national system, raw bytes."""
    cfg = fed.config(node)
    manifest = json.loads(cfg.resolve(cfg.trust.manifest).read_text())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata="\n".join(manifest["tls_ca"]))
    assert cfg.client.system_cert and cfg.client.system_key
    ctx.load_cert_chain(str(cfg.resolve(cfg.client.system_cert)), str(cfg.resolve(cfg.client.system_key)))
    try:
        with urllib.request.urlopen(f"https://{cfg.listen.local}{path}", context=ctx, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def digest(data: bytes) -> str:
    return b64url_encode(hashlib.sha256(data).digest())


def test_four_x3p_files_relayed_through_two_hubs(fed, tmp_path):
    config = str(fed.nodes["mx"].config)
    blob_dir = fed.nodes["mx"].data_dir / "blobs"
    earlier = set(blob_dir.iterdir()) if blob_dir.exists() else set()  # other tests' blobs (shared federation)
    sent: dict[str, str] = {}  # message id -> file
    for i, fname in enumerate(FILES):
        side = json.loads(SIDECAR.read_text())
        side["body"]["exhibit_id"] = f"MX-FGR-2026-1180-C{i + 10}"
        sc = tmp_path / f"{fname}.json"
        sc.write_text(json.dumps(side))
        r = traza("send", "--config", config, "--to", "es", "--type", "ballistic.submission", "--sidecar", str(sc),
                  "--json", "--no-progress", str(VECTORS / fname))
        assert r.returncode == 0, r.stdout + r.stderr
        sent[json.loads(r.stdout)["id"]] = fname
    # a JSON body with --attach: any file, any message type
    extra = tmp_path / "photo.bin"
    extra.write_bytes(os.urandom(700_000))
    body = tmp_path / "notice.json"
    body.write_text(json.dumps({"title": "photo of the markings", "text": "see the attachment"}))
    r = traza("send", "--config", config, "--to", "es", "--type", "notice", "--attach", str(extra), "--json",
              "--no-progress", str(body))
    assert r.returncode == 0, r.stdout + r.stderr
    notice_id = json.loads(r.stdout)["id"]

    want = {*sent, notice_id}
    msgs = fed.wait_for(lambda: (got := {m["id"]: m for m in inbox(fed, "es") if m["id"] in want}) and
                        len(got) == len(want) and got, timeout=45)
    for jti, fname in sent.items():
        m = msgs[jti]
        assert m["type"] == "ballistic.submission" and m["from"] == "mx"
        original = (VECTORS / fname).read_bytes()
        (att,) = m["attachments"]
        assert att["name"] == fname and att["ct"] == "application/x-x3p" and att["len"] == len(original)
        assert att["sha256"] == digest(original)
        content = json.loads(m["content"])
        assert content["body"]["topography"][0]["sha256"] == digest(original)
        status, data = fetch(fed, "es", att["url"])
        assert status == 200 and data == original, fname
    (att,) = msgs[notice_id]["attachments"]
    status, data = fetch(fed, "es", att["url"])
    assert status == 200 and data == extra.read_bytes() and att["name"] == "photo.bin"

    # what travelled (the blobs the origin sent, by the names the hubs stored them under) is ciphertext
    # only: no plaintext file (nor a slice of one) is in it
    plain = [(VECTORS / f).read_bytes() for f in FILES] + [extra.read_bytes()]
    sent = [p.read_bytes() for p in blob_dir.iterdir() if p.is_file() and p not in earlier]
    assert len(sent) == len(plain)
    for b in sent:
        assert b[:4] == b"TZB1"
        for p in plain:
            assert p[:512] not in b and p[len(p) // 2 : len(p) // 2 + 256] not in b
    # the hubs held them only until the next hop acknowledged the message (transit copies, SPEC §11, 1.1)
    for hub in ("latam-hub", "eu-hub"):
        root = fed.nodes[hub].data_dir
        assert [p.name for p in (root / "blobs").iterdir() if p.is_file()] == [], hub
        local = root / "local-blobs"
        assert not local.exists() or not [p for p in local.iterdir() if p.is_file()]
    # the origin kept the plaintext it was given and the ciphertext it sent
    assert {digest(p) for p in plain} <= set(os.listdir(fed.nodes["mx"].data_dir / "local-blobs"))


def test_submission_naming_a_blob_never_uploaded_is_refused(fed, tmp_path):
    msg = {"type": "notice", "to": "es", "handling": "H1", "classification": "BASIC_PROTECTION_LEVEL",
           "purpose": "INVESTIGATION", "body": {"title": "t", "text": "x"},
           "attachments": [{"sha256": digest(b"never uploaded"), "len": 14, "ct": "text/plain", "name": "a.txt"}]}
    status, doc = fed.call("mx", "system", "POST", "/local/v1/messages", json.dumps(msg).encode(),
                           "application/vnd.traza.message+json")
    assert status == 422 and doc["code"] == "blob_missing" and "attachments[0]" in doc["detail"]
    status, _data = fetch(fed, "es", f"/local/v1/blobs/{digest(b'never uploaded')}")
    assert status == 404
    # an X3P file without its submission fields: refused before anything is uploaded, naming the way out
    r = traza("send", "--config", str(fed.nodes["mx"].config), "--to", "es", "--no-progress", str(VECTORS / "pyramid.x3p"))
    assert r.returncode == 1 and "--sidecar" in r.stderr and "body" in r.stderr


def test_small_message_is_not_held_up_behind_a_large_upload(fed, tmp_path):
    """Blob uploads run beside the envelope queue: a notice sent just after a 64 MiB attachment reaches es
    first, although both take the same route."""
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        for _ in range(64):
            f.write(os.urandom(1024 * 1024))
    body = tmp_path / "notice.json"
    body.write_text(json.dumps({"title": "large", "text": "with a 64 MiB file"}))
    r = traza("send", "--config", str(fed.nodes["mx"].config), "--to", "es", "--type", "notice", "--attach", str(big),
              "--json", "--no-progress", str(body))
    assert r.returncode == 0, r.stdout + r.stderr
    large = json.loads(r.stdout)["id"]
    small = submit(fed, "mx", "es", "notice", {"title": "small", "text": "no attachment"})
    msgs = fed.wait_for(lambda: (ids := [m["id"] for m in inbox(fed, "es")]) and large in ids and small in ids and ids,
                        timeout=60)
    assert msgs.index(small) < msgs.index(large)


def test_upload_to_a_hub_killed_midway_resumes_after_its_restart(fed, tmp_path):
    """kill -9 latam-hub while mx streams a blob to it; the bytes it wrote survive the restart and mx's
    forwarder resumes from there, sending only the rest (its log says how much it sent)."""
    import signal
    import time

    big = tmp_path / "big.bin"
    size = 96 * 1024 * 1024
    with big.open("wb") as f:
        for _ in range(size // (1024 * 1024)):
            f.write(os.urandom(1024 * 1024))
    body = tmp_path / "notice.json"
    body.write_text(json.dumps({"title": "large file", "text": "resumed after a hub crash"}))
    r = traza("send", "--config", str(fed.nodes["mx"].config), "--to", "es", "--type", "notice", "--attach", str(big),
              "--json", "--no-progress", str(body))
    assert r.returncode == 0, r.stdout + r.stderr
    jti = json.loads(r.stdout)["id"]
    parts = fed.nodes["latam-hub"].data_dir / "blobs"
    deadline = time.monotonic() + 30
    partial = 0
    while time.monotonic() < deadline:
        partial = max([p.stat().st_size for p in parts.glob("*.part")] or [0])
        if partial > 8 * 1024 * 1024:
            break
        time.sleep(0.005)
    fed.stop("latam-hub", signal.SIGKILL)
    kept = max([p.stat().st_size for p in parts.glob("*.part")] or [0])
    assert kept >= partial > 0
    fed.start("latam-hub")
    msgs = fed.wait_for(lambda: [m for m in inbox(fed, "es") if m["id"] == jti and m.get("attachments")], timeout=60)
    status, data = fetch(fed, "es", msgs[0]["attachments"][0]["url"])
    assert status == 200 and digest(data) == digest(big.read_bytes())
    ups = [json.loads(line) for line in fed.log_path("mx").read_text().splitlines() if '"blob.uploaded"' in line]
    to_latam = [u for u in ups if u["peer"] == "latam-hub" and u["len"] > size]
    assert to_latam and to_latam[-1]["sent"] <= to_latam[-1]["len"] - kept  # only what the hub did not hold
