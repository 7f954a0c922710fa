"""`traza pki` and `traza manifest` end to end in an empty folder, through the real command parser."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.crypto import pki

NODES = [
    ["latam-hub", "--kind", "hub", "--country", "MX", "--endpoint", "https://127.0.0.1:7201"],
    ["eu-hub", "--kind", "hub", "--country", "BE", "--endpoint", "https://127.0.0.1:7202", "--sig-alg", "ES256"],
    ["mx", "--kind", "national", "--country", "MX", "--hub", "latam-hub", "--endpoint", "https://127.0.0.1:7101"],
    ["es", "--kind", "national", "--country", "ES", "--hub", "eu-hub", "--endpoint", "https://127.0.0.1:7102",
     "--kem", "X25519", "--max-classification", "RESTREINT_UE"],
]


class Run:
    """Runs `traza` in-process and keeps every line it printed, to check for leaked secrets."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.transcript: list[str] = []

    def __call__(self, *argv: str | Path) -> tuple[int, str, str]:
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse usage errors
            rc = int(exc.code or 0)
        out, err = self.capsys.readouterr()
        self.transcript += [out, err]
        return rc, out, err


@pytest.fixture()
def run(capsys):
    return Run(capsys)


def _secrets(root: Path) -> list[bytes]:
    """Material that must never be printed: every private key file's content and its base64 secrets."""
    found: list[bytes] = []
    for p in root.rglob("*"):
        if p.is_file() and p.suffix == ".key":
            data = p.read_bytes()
            found.append(data)
            for m in re.finditer(rb"[A-Za-z0-9+/=]{40,}", data):
                found.append(m.group(0)[:40])
    return found


def test_federation_lifecycle_and_byte_flips(tmp_path, run):
    d = tmp_path / "fed"
    rc, out, err = run("pki", "init-federation", d, "--authorities", "eu,mx,ameripol", "--threshold", "2")
    assert rc == 0, err
    assert "auth/eu/1" in out

    rc, _, err = run("pki", "init-federation", d, "--authorities", "eu,mx", "--threshold", "1")
    assert rc == 1 and "refusing to overwrite" in err

    for node in NODES:
        rc, out, err = run("pki", "add-node", d, *node)
        assert rc == 0, err
    rc, _, err = run("pki", "add-node", d, *NODES[2])
    assert rc == 1 and "'mx' is already in the manifest" in err
    rc, _, err = run("pki", "add-node", d, "it", "--kind", "national", "--country", "IT", "--hub", "es",
                     "--endpoint", "https://127.0.0.1:7103")
    assert rc == 1 and "not a hub" in err
    rc, _, err = run("pki", "add-node", d, "Italy", "--kind", "national", "--country", "IT", "--hub", "eu-hub",
                     "--endpoint", "https://127.0.0.1:7103")
    assert rc == 2 and "does not match" in err
    rc, _, err = run("pki", "add-node", d, "it", "--kind", "nation", "--country", "IT", "--endpoint", "https://x:1")
    assert rc == 2

    rc, _, err = run("manifest", "verify", d)
    assert rc == 1 and "0 valid signature(s)" in err and "manifest sign" in err

    rc, out, err = run("manifest", "sign", d, "--authority", "eu")
    assert rc == 0 and "auth/eu/1 signed manifest version 1" in out
    rc, _, err = run("manifest", "verify", d)
    assert rc == 1 and "1 valid signature(s) from the trusted authorities, threshold is 2" in err
    rc, out, err = run("manifest", "sign", d, "--authority", "ameripol")
    assert rc == 0 and "published" in out
    rc, out, err = run("manifest", "sign", d, "--authority", "ameripol")  # idempotent
    assert rc == 0 and "had already signed" in out
    assert len(json.loads((d / "manifest.sig").read_bytes())["signatures"]) == 2

    rc, out, err = run("manifest", "verify", d)
    assert rc == 0, err
    assert "federation traza-demo, version 1" in out and "nodes: 4" in out
    assert "2 valid of threshold 2" in out and "expires" in out
    rc, out, err = run("manifest", "verify", d, "--anchor", d / "trust-anchor.json")
    assert rc == 0, err
    rc, out, err = run("manifest", "verify", d, "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert (doc["ok"], doc["federation"], doc["version"], doc["threshold"], doc["valid_signatures"]) == (
        True, "traza-demo", 1, 2, 2), doc
    assert sorted(n["id"] for n in doc["nodes"]) == ["es", "eu-hub", "latam-hub", "mx"]
    assert doc["expires_at"].endswith("Z") and doc["anchor"] == str(d / "trust-anchor.json"), doc

    # Flip bytes of manifest.json: every 97th byte plus the first and the last.
    good = (d / "manifest.json").read_bytes()
    positions = sorted({0, len(good) - 1, *range(0, len(good), 97)})
    outcomes: dict[str, int] = {"json": 0, "canonical": 0, "signature": 0}
    for i in positions:
        for mask in (0x01, 0x20):
            bad = bytearray(good)
            bad[i] ^= mask
            (d / "manifest.json").write_bytes(bytes(bad))
            rc, out, err = run("manifest", "verify", d)
            assert rc == 1, f"byte {i} ^ {mask:#x} was accepted: {out}"
            assert out == ""
            m = re.search(r"manifest\.json: not JSON at byte (\d+)|manifest\.json: not in canonical form"
                          r"|manifest\.sig: \d+ valid signature\(s\) from the trusted authorities, threshold is 2",
                          err)
            assert m, f"byte {i} ^ {mask:#x}: message does not name what failed: {err}"
            if m.group(1) is not None:
                outcomes["json"] += 1
                assert int(m.group(1)) >= i, err  # a parser cannot fail before the changed byte
            else:
                outcomes["canonical" if "canonical" in m.group(0) else "signature"] += 1
    assert outcomes["json"] and outcomes["signature"], outcomes
    (d / "manifest.json").write_bytes(good)
    assert run("manifest", "verify", d)[0] == 0

    # Key files are 0600; nothing printed contains private key material.
    files = [p for p in d.rglob("*") if p.is_file()]
    key_files = [p for p in files if p.suffix == ".key"]
    assert len(key_files) == 3 + 1 + 4 * (3 + 1 + 1 + 3)  # authorities, CA, per node: 3 keys, tls, local CA, 3 clients
    for p in key_files:
        assert p.stat().st_mode & 0o777 == 0o600, p
    for p in files:
        if p.suffix != ".key":
            assert b"PRIVATE" not in p.read_bytes() and b'"secret"' not in p.read_bytes(), p
    printed = "".join(run.transcript).encode()
    assert b"PRIVATE KEY" not in printed and b"secret" not in printed
    for s in _secrets(d):
        assert s not in printed

    # Certificates: SAN URI, P-256, at most 90 days.
    for node in ("latam-hub", "eu-hub", "mx", "es"):
        info = pki.cert_info((d / "nodes" / node / "tls" / "cert.pem").read_bytes())
        assert info.san_uris == (f"urn:traza:node:{node}",) and info.p256
        assert info.not_after - info.not_before <= dt.timedelta(days=90)
        for c in (d / "nodes" / node / "local" / "clients").glob("*.pem"):
            ci = pki.cert_info(c.read_bytes())
            assert ci.san_uris[0].startswith("urn:traza:local:") and ci.p256
            assert ci.not_after - ci.not_before <= dt.timedelta(days=90)


def test_revoke_rotate_and_bump(tmp_path, run):
    d = tmp_path / "fed"
    assert run("pki", "init-federation", d, "--authorities", "eu,mx,ameripol", "--threshold", "2",
               "--federation", "traza-x")[0] == 0
    for node in NODES:
        assert run("pki", "add-node", d, *node)[0] == 0
    assert run("manifest", "sign", d, "--authority", "eu")[0] == 0
    assert run("manifest", "sign", d, "--authority", "mx")[0] == 0

    serial = pki.cert_info((d / "nodes" / "es" / "tls" / "cert.pem").read_bytes()).serial_hex
    rc, out, err = run("pki", "revoke", d, "--cert-serial", serial.upper())
    assert rc == 0 and "started version 2" in out
    rc, out, _ = run("pki", "revoke", d, "--kid", "es/sig/1")
    assert rc == 0 and "draft version 2 (unsigned)" in out
    rc, _, err = run("pki", "revoke", d, "--kid", "es/sig/1", "--cert-serial", "ab")
    assert rc == 2
    rc, _, err = run("pki", "revoke", d, "--kid", "auth/eu/1")
    assert rc == 2 and "rotate-authorities" in err
    rc, _, err = run("manifest", "verify", d)
    assert rc == 1 and "0 valid signature(s)" in err

    rc, out, err = run("pki", "rotate-authorities", d, "--authorities", "eu,co,ameripol", "--threshold", "2")
    assert rc == 0, err
    assert "auth/co/1" in out
    # Old set {eu, mx, ameripol}, new set {eu, co, ameripol}: both thresholds (2) are needed.
    assert run("manifest", "sign", d, "--authority", "co")[0] == 0  # new set only
    rc, _, err = run("manifest", "verify", d)
    assert rc == 1 and "0 valid signature(s) from the trusted authorities, threshold is 2" in err
    assert run("manifest", "sign", d, "--authority", "mx")[0] == 0  # old set only
    rc, _, err = run("manifest", "verify", d)
    assert rc == 1 and "1 valid signature(s) from the trusted authorities, threshold is 2" in err
    # Without co's signature the new set would have 1; show that on a copy of manifest.sig.
    sig_path = d / "manifest.sig"
    full = sig_path.read_bytes()
    doc = json.loads(full)
    doc["signatures"] = [s for s in doc["signatures"] if s["kid"] != "auth/co/1"]
    sig_path.write_text(json.dumps(doc))
    rc, out, err = run("manifest", "sign", d, "--authority", "ameripol")  # both sets
    assert rc == 0 and "1 valid signature(s) from the NEW authorities, threshold is 2" in out
    rc, _, err = run("manifest", "verify", d)
    assert rc == 1 and "1 valid signature(s) from the NEW authorities, threshold is 2" in err
    rc, out, err = run("manifest", "sign", d, "--authority", "co")
    assert rc == 0 and "published" in out
    old_anchor = d / "history" / "trust-anchor-before-v2.json"
    rc, out, err = run("manifest", "verify", d, "--anchor", old_anchor)
    assert rc == 0, err
    assert "authority rotation: 2 valid of the new threshold 2" in out
    assert "revoked: 1 key id(s), 1 certificate serial(s)" in out

    rc, out, err = run("manifest", "bump", d, "--days", "30")
    assert rc == 0 and "version 3" in out
    rc, out, err = run("pki", "issue-local", d, "mx", "--role", "auditor", "--name", "ana")
    assert rc == 0 and "urn" not in err
    assert (d / "nodes" / "mx" / "local" / "clients" / "auditor-ana.key").stat().st_mode & 0o777 == 0o600
    rc, _, err = run("manifest", "sign", d, "--authority", "nobody")
    assert rc == 1 and "no private key of authority 'nobody'" in err
    rc, _, err = run("manifest", "verify", tmp_path / "empty")
    assert rc == 1 and "not a federation folder" in err


def test_rotate_key_sig_enc_audit(tmp_path, run):
    d = tmp_path / "fed"
    assert run("pki", "init-federation", d, "--authorities", "eu,mx", "--threshold", "2")[0] == 0
    for node in NODES[1:2] + NODES[3:]:
        assert run("pki", "add-node", d, *node)[0] == 0
    assert run("manifest", "sign", d, "--authority", "eu")[0] == 0
    assert run("manifest", "sign", d, "--authority", "mx")[0] == 0
    before = {p: p.read_bytes() for p in (d / "nodes" / "es" / "keys").iterdir()}
    for use in ("sig", "enc", "audit"):
        rc, out, err = run("pki", "rotate-key", d, "es", "--use", use, "--overlap", "10")
        assert rc == 0, err
        assert f"new key es/{use}/2" in out and f"es/{use}/1 keep(s) verifying until" in out
        f = d / "nodes" / "es" / "keys" / f"{use}-2.key"
        assert f.stat().st_mode & 0o777 == 0o600
    assert {p: p.read_bytes() for p in before} == before  # the old key files stay, unchanged
    info = json.loads((d / "nodes" / "es" / "node.json").read_bytes())
    assert info["sig"]["kid"] == "es/sig/2" and info["sig"]["alg"] == "EdDSA" and info["enc"]["kem"] == "X25519"
    assert [p["kid"] for p in info["previous"]] == ["es/sig/1", "es/enc/1", "es/audit/1"]
    m = json.loads((d / "manifest.json").read_bytes())
    assert m["version"] == 2
    keys = {k["kid"]: k for n in m["nodes"] if n["id"] == "es" for k in n["keys"]}
    assert set(keys) == {f"es/{u}/{n}" for u in ("sig", "enc", "audit") for n in (1, 2)}
    assert all(keys[f"es/{u}/2"]["not_before"] < keys[f"es/{u}/1"]["not_after"]
                                for u in ("sig", "enc", "audit"))
    when = dt.datetime.fromisoformat(keys["es/sig/1"]["not_after"].replace("Z", "+00:00"))
    assert abs((when - dt.datetime.now(dt.UTC)).total_seconds() - 10 * 86400) < 60
    # the draft is signed as today; revoked and replaced keys count on
    assert run("manifest", "sign", d, "--authority", "eu")[0] == 0
    rc, out, _ = run("manifest", "sign", d, "--authority", "mx")
    assert rc == 0 and "published" in out
    assert run("pki", "revoke", d, "--kid", "es/sig/2")[0] == 0
    rc, out, err = run("pki", "rotate-key", d, "es", "--use", "sig")
    assert rc == 0 and "new key es/sig/3" in out and "es/sig/2" not in out  # a revoked key needs no overlap
    rc, _, err = run("pki", "rotate-key", d, "nobody", "--use", "sig")
    assert rc == 1 and "node 'nobody' is not in the manifest" in err
    rc, _, err = run("pki", "rotate-key", d, "es", "--use", "tls")
    assert rc == 2
    rc, _, err = run("pki", "rotate-key", d, "es", "--use", "sig", "--overlap", "400")
    assert rc == 2 and "--overlap 400 is not within 0..365 days" in err
    (d / "nodes" / "es" / "keys" / "enc-3.key").write_bytes(b"stray")
    rc, _, err = run("pki", "rotate-key", d, "es", "--use", "enc")
    assert rc == 1 and "enc-3.key: already exists" in err
    assert not any(secret.decode("latin-1") in "".join(run.transcript) for secret in _secrets(d))


def test_console_script_help_and_exit_codes(tmp_path):
    exe = Path(sys.executable).with_name("traza")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "gateway.cli.main"]
    for verb in (["pki", "--help"], ["pki", "add-node", "--help"], ["manifest", "verify", "--help"]):
        r = subprocess.run([*cmd, *verb], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "usage:" in r.stdout
    r = subprocess.run([*cmd, "manifest", "verify", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "not a federation folder" in r.stderr
    r = subprocess.run([*cmd, "pki", "init-federation", str(tmp_path / "f")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2


def _published_federation(d: Path, run: Run) -> None:
    assert run("pki", "init-federation", d, "--authorities", "eu,mx,ameripol", "--threshold", "2")[0] == 0
    for node in NODES[:3]:
        rc, _, err = run("pki", "add-node", d, *node)
        assert rc == 0, err
    for who in ("eu", "ameripol"):
        rc, _, err = run("manifest", "sign", d, "--authority", who)
        assert rc == 0, err
    assert (d / "published" / "manifest.json").read_bytes() == (d / "manifest.json").read_bytes()


def test_manifest_verify_of_an_altered_published_manifest_says_its_signature_does_not_verify(tmp_path, run):
    """Not "rollback": the copy nodes fetch was altered after it was published; signing publishes it again."""
    d = tmp_path / "fed"
    _published_federation(d, run)
    published = d / "published" / "manifest.json"
    published.write_bytes(published.read_bytes().replace(b'"country":"MX"', b'"country":"ES"', 1))
    rc, out, err = run("manifest", "verify", d)
    assert rc == 1 and out == "", (rc, out, err)
    assert "rollback" not in err, err
    assert str(published) in err and "does not verify" in err and "manifest sign" in err, err
    rc, _, err = run("manifest", "sign", d, "--authority", "eu")  # already signed: publishes the good one again
    assert rc == 0, err
    assert run("manifest", "verify", d)[0] == 0


def test_manifest_verify_still_refuses_a_real_rollback(tmp_path, run):
    """A manifest older than the published one, both validly signed: that is a rollback."""
    d = tmp_path / "fed"
    _published_federation(d, run)
    v1 = {p.name: p.read_bytes() for p in (d / "manifest.json", d / "manifest.sig")}
    assert run("manifest", "bump", d)[0] == 0
    for who in ("eu", "ameripol"):
        assert run("manifest", "sign", d, "--authority", who)[0] == 0
    for name, data in v1.items():
        (d / name).write_bytes(data)
    rc, _, err = run("manifest", "verify", d)
    assert rc == 1 and "rollback" in err, err


@pytest.mark.parametrize("code", ["ZZ", "QQ", "EU"])
def test_add_node_with_a_country_not_in_iso_3166_1_is_refused(tmp_path, run, code):
    d = tmp_path / "fed"
    assert run("pki", "init-federation", d, "--authorities", "eu,mx", "--threshold", "1")[0] == 0
    rc, _, err = run("pki", "add-node", d, "mx", "--kind", "national", "--country", code,
                     "--endpoint", "https://127.0.0.1:7101")
    assert rc == 2 and f"--country {code!r}" in err and "ISO 3166-1" in err, (rc, err)
