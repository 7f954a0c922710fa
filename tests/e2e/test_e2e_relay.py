"""End to end with real node processes: mx → latam-hub → eu-hub → es and back, with receipts."""

from __future__ import annotations

import base64
import json
import sqlite3
import sys

import pytest
from fedproc import Federation, inbox, submit  # tests/e2e helper

sys.path.insert(0, "tests")
from core.message_examples import example
from fedproc import STANDARD


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    f = Federation(tmp_path_factory.mktemp("fed"), limits={"checkpoint_interval": 1.0})
    f.start_all()
    yield f
    f.stop_all()






def state(fed, node, jti):
    status, doc = fed.call(node, "system", "GET", f"/local/v1/messages/{jti}")
    return doc["state"] if status == 200 else None


def test_trace_request_and_response_through_both_hubs_with_receipts(fed):
    req = submit(fed, "mx", "es", "trace.request", example("trace.request"))
    msgs = fed.wait_for(lambda: [m for m in inbox(fed, "es") if m["id"] == req])
    assert msgs[0]["type"] == "trace.request" and msgs[0]["from"] == "mx"
    assert json.loads(msgs[0]["content"])["body"]["firearm"]["serial_number"] == example("trace.request")["firearm"]["serial_number"]
    status, _ = fed.call("es", "system", "POST", f"/local/v1/inbox/{req}/ack", b"")
    assert status == 200
    # the receipt comes back to mx
    fed.wait_for(lambda: state(fed, "mx", req) == "delivered")
    # es answers
    resp = submit(fed, "es", "mx", "trace.response", example("trace.response"), reply_to=req)
    got = fed.wait_for(lambda: [m for m in inbox(fed, "mx") if m["id"] == resp])
    assert got[0]["conversation"] == req
    fed.call("mx", "system", "POST", f"/local/v1/inbox/{resp}/ack", b"")
    fed.wait_for(lambda: state(fed, "es", resp) == "delivered")

    # the hubs hold only ciphertext: the serial number appears nowhere in their databases
    serial = example("trace.request")["firearm"]["serial_number"].encode()
    for hub in ("latam-hub", "eu-hub"):
        db = fed.nodes[hub].data_dir / "node.db"
        con = sqlite3.connect(db)
        blobs = [bytes(r[0]) for r in con.execute("SELECT coalesce(e.envelope, x'') FROM messages m "
                                                "LEFT JOIN envelopes e ON e.jti=m.jti")]
        con.close()
        assert blobs
        for b in blobs:
            if not b:
                continue  # a transit copy dropped once the next hop acked it (SPEC §11, 1.1)
            env = json.loads(b)
            payload = base64.urlsafe_b64decode(env["payload"] + "==")
            assert serial not in payload and serial not in b
    # every hop is in each node's audit log
    for node, events in {"mx": {"envelope.accepted", "envelope.forwarded", "receipt.received"},
                         "latam-hub": {"envelope.accepted", "envelope.forwarded"},
                         "eu-hub": {"envelope.accepted", "envelope.forwarded"},
                         "es": {"envelope.accepted", "envelope.delivered"}}.items():
        status, doc = fed.call(node, "auditor", "GET", f"/audit/v1/entries?jti={req}&limit=100")
        assert status == 200, doc
        seen = {json.loads(base64.b64decode(e["entry"]))["event"] for e in doc["entries"]}
        assert events <= seen, (node, seen)


def test_wrong_role_is_refused_and_audited(fed):
    status, doc = fed.call("mx", "operator", "POST", "/local/v1/messages", b"{}", STANDARD)
    assert status == 403 and "operator" in doc["detail"]
    status, _doc = fed.call("mx", "system", "GET", "/ops/v1/status")
    assert status == 403

    def denied():
        st, d = fed.call("mx", "auditor", "GET", "/audit/v1/entries?event=auth.denied&limit=100")
        return [json.loads(base64.b64decode(e["entry"])) for e in d["entries"]] if st == 200 else []

    paths = {e["path"] for e in fed.wait_for(lambda: len(denied()) >= 2 and denied())}
    assert {"/local/v1/messages", "/ops/v1/status"} <= paths


def test_bad_body_gets_422_with_path(fed):
    body = example("trace.request")
    del body["legal_basis"]
    msg = {"type": "trace.request", "to": "es", "handling": "H1", "classification": "BASIC_PROTECTION_LEVEL",
           "purpose": "INVESTIGATION", "body": body}
    status, doc = fed.call("mx", "system", "POST", "/local/v1/messages", json.dumps(msg).encode(), STANDARD)
    assert status == 422
    assert "legal_basis" in doc["detail"]


def test_metrics_parse_and_carry_the_documented_names(fed):
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from gateway.metrics import DOCUMENTED

    for node in ("mx", "latam-hub"):
        with urllib.request.urlopen(f"http://127.0.0.1:{fed.nodes[node].ops_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        samples = {s.name for f in families.values() for s in f.samples}
        for name in DOCUMENTED:
            base = name.removesuffix("_total")
            assert base in families or name in samples, (node, name)
    # mx forwards a message of this test's own to latam-hub (the test may run without the module's others)
    # and measures the hop
    submit(fed, "mx", "es", "trace.request", example("trace.request"))
    fed.wait_for(lambda: any(s.name.endswith("_count") and s.value > 0
                             for s in families_of("mx", fed)["traza_hop_latency_seconds"].samples), timeout=30)


def families_of(node, fed):
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{fed.nodes[node].ops_port}/metrics", timeout=5) as r:
        return {f.name: f for f in text_string_to_metric_families(r.read().decode())}


def test_auditor_tools_against_a_running_node(fed, tmp_path):
    """traza audit verify --url / export --url against es with its auditor certificate; the exported
    evidence bundle verifies offline, and the node's database verifies with --db."""
    import subprocess

    from gateway.trust.pki import FederationDir

    req = submit(fed, "mx", "es", "trace.request", example("trace.request"))
    fed.wait_for(lambda: [m for m in inbox(fed, "es") if m["id"] == req])
    fd = FederationDir(fed.root / "pki")
    files = fd.node_files("es")
    cert, key = files.clients["auditor:default"]
    audit_pub = json.loads((fed.root / "pki" / "published" / "manifest.json").read_text())
    log_key = next(k["public_key"] for n in audit_pub["nodes"] if n["id"] == "es" for k in n["keys"] if k["use"] == "audit")
    url = f"https://127.0.0.1:{fed.nodes['es'].local_port}"
    common = ["--url", url, "--cert", str(cert), "--key", str(key), "--ca", str(files.tls_ca)]

    def traza(*args):
        return subprocess.run([sys.executable, "-m", "gateway.cli.main", *args], capture_output=True, text=True,
                              timeout=60)

    # wait for a checkpoint that covers the message (checkpoint_interval is 1 s here)
    def covered():
        r = traza("audit", "export", "--jti", req, "-o", str(tmp_path / "b.json"), *common)
        return r.returncode == 0

    fed.wait_for(covered, timeout=30, interval=1.0)
    r = traza("audit", "verify", *common, "--log-key", log_key, "--no-progress")
    assert r.returncode == 0, r.stdout + r.stderr
    r = traza("audit", "verify-bundle", str(tmp_path / "b.json"))
    assert r.returncode == 0, r.stdout + r.stderr
    bundle = json.loads((tmp_path / "b.json").read_text())
    assert bundle["jti"] == req and bundle["node"] == "es"
    r = traza("audit", "verify", "--db", str(fed.nodes["es"].data_dir / "node.db"), "--no-progress")
    assert r.returncode == 0, r.stdout + r.stderr
