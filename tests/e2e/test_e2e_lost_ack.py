"""A real lost ack: a TCP proxy sits between mx and latam-hub (latam-hub's manifest endpoint is the
proxy's address; TLS passes through it, so mTLS identities stay end to end). For the first two
connections the proxy drops latam-hub's answer once latam-hub has durably answered (audit entry
written): latam-hub has accepted and acked, mx never sees the ack. mx retries, latam-hub answers
``duplicate`` with the original ack, and es receives the message exactly once."""

from __future__ import annotations

import base64
import json
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from faultproxy import FaultProxy  # tests/e2e helper
from fedproc import FOUR, Federation, submit  # tests/e2e helper

from gateway.core.b64 import b64url_decode

sys.path.insert(0, "tests")
from core.message_examples import example

CUTS = 2
LIFETIME = 40.0  # the proxy stops by itself after this many seconds


def _count(db: Path, sql: str, *args: object) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(con.execute(sql, args).fetchone()[0])
    finally:
        con.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    hub_db: list[Path] = []

    def answered() -> int:  # latam-hub's durable answers: written before it sends the HTTP response
        return _count(hub_db[0], "SELECT count(*) FROM audit_entries WHERE event IN "
                                 "('envelope.accepted', 'envelope.duplicate')") if hub_db else 0

    proxy = FaultProxy(cut_first=CUTS, answered=answered, lifetime=LIFETIME)
    port = proxy.start()
    try:
        # no checkpoints (no witness traffic) and no manifest polls during the test: the only connections
        # through the proxy are mx's envelope batches
        fed = Federation(tmp_path_factory.mktemp("lostack"), FOUR, manifest_poll_seconds=3600,
                         limits={"checkpoint_interval": 3600, "retry_min": 0.2, "retry_max": 1.0},
                         endpoints={"latam-hub": f"https://127.0.0.1:{port}"})
        hub_db.append(fed.nodes["latam-hub"].data_dir / "node.db")
        proxy.target_port = fed.nodes["latam-hub"].peer_port
        try:
            fed.start_all()
            yield fed, proxy
        finally:
            fed.stop_all()
    finally:
        proxy.stop()


def _inbox_ids(fed: Federation, node: str) -> list[str]:
    status, doc = fed.call(node, "system", "GET", "/local/v1/inbox?after=0&limit=100")
    assert status == 200, doc
    return [m["id"] for m in doc["messages"]]


def _message(fed: Federation, node: str, jti: str) -> dict | None:
    status, doc = fed.call(node, "system", "GET", f"/local/v1/messages/{jti}")
    return doc if status == 200 else None


def test_lost_ack_is_retried_answered_duplicate_with_the_original_ack_and_delivered_once(setup):
    fed, proxy = setup
    t0 = time.monotonic()
    jti = submit(fed, "mx", "es", "trace.request", example("trace.request"))

    # mx gets an ack only through the third connection; it is then "forwarded" at mx
    fwd = fed.wait_for(lambda: (m := _message(fed, "mx", jti)) and m["state"] == "forwarded" and m, timeout=25)
    fed.wait_for(lambda: jti in _inbox_ids(fed, "es"), timeout=15)
    time.sleep(1.0)  # time for a second copy, if there were one
    assert _inbox_ids(fed, "es").count(jti) == 1
    assert proxy.errors == []
    assert proxy.cuts == CUTS, (proxy.cuts, proxy.connections)
    assert proxy.connections >= CUTS + 1

    # latam-hub's audit log: accepted once, then a duplicate for each resend
    status, doc = fed.call("latam-hub", "auditor", "GET", f"/audit/v1/entries?jti={jti}&limit=100")
    assert status == 200, doc
    entries = [json.loads(base64.b64decode(e["entry"])) for e in doc["entries"]]
    accepted = [e for e in entries if e["event"] == "envelope.accepted"]
    duplicates = [e for e in entries if e["event"] == "envelope.duplicate"]
    assert len(accepted) == 1, entries
    assert accepted[0]["from"] == "mx"
    assert len(duplicates) >= 1, entries
    assert all(d["from"] == "mx" and d["dig"] == accepted[0]["dig"] for d in duplicates)

    # the ack mx finally holds is the one latam-hub signed when it accepted (not a new one)
    db = fed.nodes["latam-hub"].data_dir / "node.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        (hub_idx,) = con.execute("SELECT ack_idx FROM messages WHERE jti=?", (jti,)).fetchone()
        # the ack it gave: with its transit copy once relayed, in its evidence for good
        acks = [r[0] for r in con.execute("SELECT value FROM audit_evidence WHERE jti=? AND kind='ack' ORDER BY id",
                                          (jti,))]
    finally:
        con.close()
    (hub_ack,) = [a for a in acks if json.loads(b64url_decode(a.split(".")[1]))["iss"] == "latam-hub"]
    mx_acks = [t["detail"] for t in fwd["timeline"] if t["state"] == "forwarded"]
    assert mx_acks == [hub_ack]
    claims = json.loads(b64url_decode(hub_ack.split(".")[1]))
    assert claims["iss"] == "latam-hub" and claims["aud"] == "mx" and claims["jti"] == jti
    assert claims["idx"] == hub_idx == accepted[0]["idx"]
    assert time.monotonic() - t0 < LIFETIME
