"""SPEC §10: `traza audit verify --url URL | --db FILE` checks every checkpoint signature, cosignature and
consistency. Audit finding: over --url a corrupted cosignature was only a warning ("unknown key"), exit 0.
Now the witness keys come from --manifest (or --witness) on both paths, a cosignature that does not verify
fails naming the witness, and the report says which cosignatures were verified and which could not be."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kit.federation import make_federation

from gateway.audit.reader import AuditReader
from gateway.cli.main import main
from gateway.core.canonical import canonical_bytes
from gateway.trust.trusted import encode_signatures, sign_manifest

CO, IT = "traza/traza-test/co", "traza/traza-test/it"


@pytest.fixture
def witnessed(make_node, tmp_path) -> Any:
    """mx's log (keys of a manifest's nodes), its checkpoint cosigned by co and it; the manifest files."""
    tf = make_federation(now=time.time())
    mx = make_node("mx", key=tf.audit["mx"])
    mx.append(12)
    mx.publish()
    for w in (make_node("co", key=tf.audit["co"]), make_node("it", key=tf.audit["it"])):
        status, _, body = w.witness({mx.origin: mx.key.public_raw}).handle(mx.publisher.witness_request(w.origin))
        assert status == 200
        mx.publisher.add_cosignatures(12, body, {w.origin: w.key.public_raw})
    mx.append(1)
    raw = canonical_bytes(tf.manifest)
    (tmp_path / "manifest.json").write_bytes(raw)
    (tmp_path / "manifest.sig").write_bytes(
        encode_signatures([sign_manifest(raw, f"auth/{a}/1", tf.authorities[a]) for a in ("eu", "mx")]))
    return mx, tf, tmp_path / "manifest.json"


@pytest.fixture
def serve(witnessed) -> Any:
    """``serve(edit)``: the URL of a stand-in auditor API serving mx's entries and its checkpoint as
    ``edit`` changes it (the audit's stand-in, /tmp/audit-c/verify_url_cosig.py)."""
    mx = witnessed[0]
    servers: list[ThreadingHTTPServer] = []

    def start(edit: Callable[[str], str] = lambda cp: cp) -> str:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(url.query))
                with AuditReader(mx.db) as r:
                    if url.path == "/v1/audit/checkpoint":
                        body, ctype = edit(r.served_checkpoint()).encode(), "text/plain"
                    else:
                        body = json.dumps(r.entries_json(start=int(q.get("from", 0)))).encode()
                        ctype = "application/json"
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _corrupt(name: str, *, key_id: bool = False) -> Callable[[str], str]:
    """Flip a bit of ``name``'s cosignature line: in its signature, or in its key id."""
    def edit(cp: str) -> str:
        lines = cp.split("\n")
        i = next(k for k, line in enumerate(lines) if line.startswith(f"\u2014 {name} "))
        raw = bytearray(base64.b64decode(lines[i].split(" ")[2]))
        raw[0 if key_id else -1] ^= 1
        lines[i] = f"\u2014 {name} {base64.b64encode(bytes(raw)).decode()}"
        return "\n".join(lines)
    return edit


def test_a_corrupted_cosignature_served_over_url_fails_naming_the_witness(witnessed, serve, capsys):
    _, _, manifest = witnessed
    url = serve(_corrupt(CO))
    assert main(["audit", "verify", "--url", url, "--manifest", str(manifest)]) == 1
    err = capsys.readouterr().err
    assert f"cosignature of witness '{CO}' does not verify" in err, err
    # a line under the witness's name by another key (its key id changed) fails as well
    assert main(["audit", "verify", "--url", serve(_corrupt(IT, key_id=True)), "--manifest", str(manifest)]) == 1
    assert f"cosignature of witness '{IT}' is by key id" in capsys.readouterr().err


def test_without_witness_keys_over_url_the_cosignatures_are_reported_as_not_verified(witnessed, serve, capsys):
    mx, _, _ = witnessed
    url = serve(_corrupt(CO))
    assert main(["audit", "verify", "--url", url, "--log-key", mx.key.public_b64]) == 0
    out = capsys.readouterr().out
    for name in (CO, IT):
        assert f"cosignature NOT verified: {name}: no key for this witness (give --manifest or --witness)" in out, out
    assert "0 witness cosignatures verified (witnesses: none; keys: none)" in out
    assert "only the latest checkpoint is served" in out
    assert main(["audit", "verify", "--json", "--url", url, "--log-key", mx.key.public_b64]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["unverified_cosignatures"]) == {CO, IT} and doc["only_latest_checkpoint"] is True


def test_genuine_cosignatures_verify_with_the_manifests_keys_over_url_and_db(witnessed, serve, capsys):
    mx, _, manifest = witnessed
    for source in (["--url", serve()], ["--db", str(mx.db)]):
        assert main(["audit", "verify", "--no-progress", *source, "--manifest", str(manifest)]) == 0, source
        out = capsys.readouterr().out
        assert (f"2 witness cosignatures verified (witnesses: {CO}, {IT}; keys: the manifest traza-test "
                "version 1)") in out, out
        assert "log key: the manifest traza-test version 1" in out and "NOT verified" not in out, out


def test_the_manifests_keys_catch_a_log_re_signed_by_another_key(witnessed, tmp_path, capsys):
    """The database's own recorded key is not trusted when a manifest is given."""
    mx, tf, _ = witnessed
    other = make_federation(now=time.time())
    tf.manifest["nodes"] = [n if n["id"] != "mx" else next(o for o in other.manifest["nodes"] if o["id"] == "mx")
                            for n in tf.manifest["nodes"]]
    where = tmp_path / "other"
    where.mkdir()
    raw = canonical_bytes(tf.manifest)
    (where / "manifest.json").write_bytes(raw)
    (where / "manifest.sig").write_bytes(
        encode_signatures([sign_manifest(raw, f"auth/{a}/1", tf.authorities[a]) for a in ("eu", "mx")]))
    assert main(["audit", "verify", "--no-progress", "--db", str(mx.db), "--manifest", str(where / "manifest.json")]) == 1
    assert "log signature" in capsys.readouterr().err


def test_bad_manifest_for_verify_is_bad_usage(witnessed, tmp_path, capsys):
    mx = witnessed[0]
    assert main(["audit", "verify", "--db", str(mx.db), "--manifest", str(tmp_path / "nope.json")]) == 2
    assert "--manifest" in capsys.readouterr().err
    assert main(["audit", "verify", "--url", "http://127.0.0.1:1"]) == 2
    assert "--url needs --log-key or --manifest" in capsys.readouterr().err
