"""SIGHUP swaps a renewed TLS certificate into a running `traza run` process (issue #12): real processes
(gateway.demo.procs.Federation), real mTLS on 127.0.0.1. The manifest poll is an hour, so only the signal
can be what reloads it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from pathlib import Path

from gateway.crypto.tls import cert_serial_hex, client_context
from gateway.demo.procs import Federation
from gateway.localfed import NodeSpec
from gateway.trust.pki import FederationDir

SPECS = [NodeSpec("hub", "hub", "NL"), NodeSpec("es", "national", "ES", hub="hub")]


def rotated_tls(log: Path) -> list[dict]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("event") == "key.rotated" and doc.get("use") == "tls":
            out.append(doc)
    return out


def get(conn: http.client.HTTPSConnection) -> int:
    conn.request("GET", "/v1/manifest")
    r = conn.getresponse()
    r.read()
    return r.status


def test_sighup_swaps_a_renewed_certificate_into_the_running_process_without_dropping_connections(tmp_path):
    fed = Federation(tmp_path / "fed", SPECS, manifest_poll_seconds=3600.0)
    fd = FederationDir(tmp_path / "fed" / "pki")
    es = fd.node_files("es")
    ctx = client_context(es.tls_cert, es.tls_key, [fd.ca_cert_path.read_text()])
    port = fed.nodes["hub"].peer_port
    try:
        fed.start("hub")
        kept = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        assert get(kept) == 200
        sock = kept.sock
        old = cert_serial_hex(sock.getpeercert(binary_form=True))
        res = fd.renew_tls("hub", now=time.time())
        os.kill(fed.procs["hub"].pid, signal.SIGHUP)
        deadline = time.monotonic() + 20
        while not rotated_tls(fed.log_path("hub")) and time.monotonic() < deadline:
            time.sleep(0.1)
        [event] = rotated_tls(fed.log_path("hub"))
        assert (event["serial"], event["previous_serial"], event["reason"]) == (res.serial, old, "sighup")
        # the connection opened before goes on, on the same socket; a new one sees the new certificate
        assert get(kept) == 200 and kept.sock is sock
        fresh = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        assert get(fresh) == 200
        assert cert_serial_hex(fresh.sock.getpeercert(binary_form=True)) == res.serial != old
        kept.close()
        fresh.close()
        assert fed.procs["hub"].poll() is None
    finally:
        fed.stop_all()
