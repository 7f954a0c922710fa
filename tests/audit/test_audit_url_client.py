"""The `--url` client of `traza audit` against a stand-in server that serves the auditor API views of
AuditReader (the node's real routes are the transport's; this checks the client and the JSON shapes)."""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.audit.bundle import build_bundle, encode_bundle
from gateway.audit.reader import AuditReader
from gateway.cli.main import main


@pytest.fixture
def served(make_node):
    a = make_node("mx")
    a.append(30)
    a.append(1, jti="J-1")
    a.append(9)
    a.publish()
    a.append(2)
    a.close()
    tamper: dict[int, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            q = dict(urllib.parse.parse_qsl(url.query))
            with AuditReader(a.db) as r:
                if url.path == "/v1/audit/checkpoint":
                    body, ctype = r.served_checkpoint().encode(), "text/plain"
                elif url.path == "/audit/v1/entries":
                    page = r.entries_json(
                        start=int(q.get("from", 0)),
                        end=int(q["to"]) if "to" in q else None,
                        jti=q.get("jti"),
                        limit=int(q.get("limit", 1000)),
                    )
                    for e in page["entries"]:
                        if e["index"] in tamper:
                            e["entry"] = base64.b64encode(tamper[e["index"]]).decode()
                    body, ctype = json.dumps(page).encode(), "application/json"
                elif url.path == "/audit/v1/proof/inclusion":
                    body = json.dumps(r.inclusion_json(int(q["index"]), int(q["size"]))).encode()
                    ctype = "application/json"
                elif url.path == "/audit/v1/bundle":
                    body, ctype = encode_bundle(build_bundle(r, q["jti"])), "application/json"
                else:
                    self.send_error(404)
                    return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield a, f"http://127.0.0.1:{srv.server_address[1]}", tamper
    srv.shutdown()
    srv.server_close()


def test_verify_show_prove_over_url(served, capsys):
    a, url, tamper = served
    assert main(["audit", "verify", "--url", url]) == 2  # the log key must be pinned
    assert "--log-key" in capsys.readouterr().err
    assert main(["audit", "verify", "--url", url, "--log-key", a.key.public_b64]) == 0
    out = capsys.readouterr().out
    assert "42 entries" in out and "1 checkpoints" in out
    assert main(["audit", "show", "--url", url, "--jti", "J-1"]) == 0
    assert json.loads(capsys.readouterr().out)["idx"] == 30
    assert main(["audit", "prove", "--url", url, "--index", "30"]) == 0
    assert json.loads(capsys.readouterr().out)["size"] == 40
    tamper[7] = b'{"event":"node.started","idx":7,"node":"mx","ts":"2026-01-01T00:00:00.000000Z"}'
    assert main(["audit", "verify", "--url", url, "--log-key", a.key.public_b64]) == 1
    assert "checkpoint #1 (size 40): root" in capsys.readouterr().err
    assert main(["audit", "prove", "--url", url, "--index", "7"]) == 1
    capsys.readouterr()


def test_https_needs_client_certificate_options(capsys):
    assert main(["audit", "verify", "--url", "https://127.0.0.1:1", "--log-key", "A" * 43 + "="]) == 2
    assert "--cert, --key and --ca" in capsys.readouterr().err
